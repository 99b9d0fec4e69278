"""CrashLoopBackOff: how long a crashed replica waits before its next start.

Reference: the kubelet's container restart back-off (``pkg/kubelet/kuberuntime``, ``flowcontrol.Backoff``) as the
Kubernetes documentation states it: "the kubelet restarts them with an exponential back-off delay (10s, 20s,
40s, ...), that is capped at five minutes. Once a container has executed for 10 minutes without any problems, the
kubelet resets the restart back-off timer for that container."

So the n-th consecutive crash waits ``min(base x 2^(n-1), cap)``; a process that ran ``reset_after`` seconds before
it exited starts the count again. ``base`` is configurable (``KUBEINFER_BACKOFF_BASE``) so tests and demos do not
wait 10 s; the cap and the reset scale with it only when given explicitly.

Pure: time is a parameter; nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["BackoffConfig", "BackoffState", "next_delay"]


@dataclass(frozen=True, slots=True)
class BackoffConfig:
    base: float = 10.0
    """Delay after the first crash (seconds)."""
    cap: float = 300.0
    """Longest delay (five minutes)."""
    reset_after: float = 600.0
    """A process that ran this long before it exited resets the count (ten minutes)."""

    def __post_init__(self) -> None:
        if not (self.base >= 0 and self.cap >= self.base and self.reset_after > 0):
            raise ValueError(f"back-off needs 0 <= base <= cap and reset_after > 0, got {self}")


@dataclass(frozen=True, slots=True)
class BackoffState:
    crashes: int = 0
    """Consecutive crashes counted toward the delay."""
    delay: float = 0.0
    """The delay chosen at the last crash."""


def next_delay(config: BackoffConfig, state: BackoffState, ran_for: float) -> tuple[float, BackoffState]:
    """The wait before restarting a process that exited after running ``ran_for`` seconds."""
    crashes = 0 if ran_for >= config.reset_after else state.crashes
    crashes += 1
    delay = min(config.base * 2 ** (crashes - 1), config.cap)
    return delay, replace(state, crashes=crashes, delay=delay)
