"""Canary analysis: steps of traffic, an analysis window per step, gates -> SetWeight, Promote or Rollback.

References, and where this follows them:

- Argo Rollouts' canary strategy (``spec.strategy.canary.steps``): a step is ``setWeight: W`` followed by
  ``pause: {duration: D}``; here each step is a weight held for ``analysisSeconds``. After the last step the canary
  is promoted (becomes the stable revision, all traffic); a failed analysis aborts the rollout and all traffic goes
  back to the stable revision, which never stopped serving (``dynamicStableScale: false`` with traffic routing:
  the stable replicas stay at full count while the canary runs, so a rollback moves no load onto cold replicas).
- Flagger's analysis (``analysis.metrics``): its two builtin checks, ``request-success-rate`` (non-5xx share of
  the responses over the interval) and ``request-duration`` (p99 over the interval), are the two gates here,
  computed from the router's own counters of the canary revision rather than from Prometheus queries.
- Argo's "inconclusive" analysis: a window in which the canary answered fewer than ``minRequests`` requests cannot
  be judged; the step is held until it has them instead of passing on no data. The error gate is also checked
  before the window ends (Flagger judges every ``interval``): a revision that fails most requests is rolled back as
  soon as it has answered ``minRequests``, not a whole window later.

The caller (the local controller, or the operator on Kubernetes) passes the canary revision's cumulative counters
(:class:`Counters`) and whether its replicas for the step's weight are ready, with ``now``; :func:`decide` returns
the decision and the next state. It keeps the counters at the start of each window, so the window's values are a
difference of two snapshots: nothing here reads a clock or resets a counter.

The latency histogram's buckets (:data:`LATENCY_BOUNDS`) are defined here, so that the router (which fills them on
its request path: one bisect per response) and the analysis (which reads a quantile off them) agree.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

__all__ = [
    "LATENCY_BOUNDS",
    "CanaryConfig",
    "CanaryState",
    "Counters",
    "Decision",
    "Measured",
    "Promote",
    "Rollback",
    "SetWeight",
    "canary_replicas",
    "decide",
    "histogram_quantile",
    "latency_bucket",
    "quantile",
    "start",
]

LATENCY_BOUNDS: tuple[float, ...] = tuple(0.0005 * 1.25**i for i in range(60))
"""Upper bounds (seconds) of the latency buckets, 0.5 ms to about 300 s, each 25% above the last (a p99 read off
them is within 25% of the exact one); one more bucket counts everything above the last bound."""


def latency_bucket(seconds: float) -> int:
    """The bucket of a latency: an index into a counts array of ``len(LATENCY_BOUNDS) + 1``."""
    return bisect.bisect_left(LATENCY_BOUNDS, seconds)


def histogram_quantile(bounds: Sequence[float], counts: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a histogram: ``bounds`` are the buckets' upper bounds (ascending, the last may be
    ``inf``), ``counts`` the per-bucket (not cumulative) counts. Linear within the bucket, as Prometheus'
    ``histogram_quantile`` is; a rank in the ``+Inf`` bucket answers the highest finite bound (all that is known).
    None when nothing was counted."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0.0
    finite = [b for b in bounds if math.isfinite(b)]
    top = finite[-1] if finite else None
    for i, n in enumerate(counts):
        if n > 0 and seen + n >= rank:
            hi = bounds[i]
            if not math.isfinite(hi):
                return top
            lo = bounds[i - 1] if i else 0.0
            return lo + (hi - lo) * (rank - seen) / n
        seen += n
    return top


_BUCKETS = (*LATENCY_BOUNDS, math.inf)


def quantile(counts: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of the latencies counted in ``counts`` (per :func:`latency_bucket`), in seconds."""
    return histogram_quantile(_BUCKETS, counts, q)


@dataclass(frozen=True, slots=True)
class Counters:
    """A revision's cumulative counters as the router keeps them: responses, errors among them, latencies."""

    requests: int = 0
    errors: int = 0
    latency: tuple[int, ...] = ()
    """Responses per latency bucket (:data:`LATENCY_BOUNDS`); () when none yet."""

    def minus(self, base: Counters) -> Counters:
        """What was counted since ``base`` (an earlier snapshot of the same revision)."""
        lat = self.latency
        if base.latency:
            lat = tuple(a - b for a, b in zip(lat or (0,) * len(base.latency), base.latency, strict=True))
        return Counters(self.requests - base.requests, self.errors - base.errors, lat)


@dataclass(frozen=True, slots=True)
class Measured:
    """The canary's values over a window: what the gates are checked against, and what events and status show."""

    requests: int
    errors: int
    seconds: float
    p99_ms: float | None

    @property
    def error_percent(self) -> float:
        return 100.0 * self.errors / self.requests if self.requests else 0.0

    def text(self) -> str:
        p99 = "n/a" if self.p99_ms is None else f"{self.p99_ms:.1f} ms"
        return (
            f"error rate {self.error_percent:.2f}% ({self.errors}/{self.requests} requests), p99 {p99}, "
            f"over {self.seconds:.1f} s"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "errorPercent": round(self.error_percent, 3),
            "p99Ms": None if self.p99_ms is None else round(self.p99_ms, 3),
            "seconds": round(self.seconds, 1),
        }


@dataclass(frozen=True, slots=True)
class CanaryConfig:
    steps: tuple[int, ...]
    """Percent of traffic to the canary at each step, increasing."""
    analysis_seconds: float
    min_requests: int
    max_error_percent: float | None
    max_p99_ms: float | None
    deadline_seconds: float
    """How long a step may wait for the canary's replicas to be ready before the canary is rolled back
    (``spec.rollout.progressDeadlineSeconds``)."""

    @classmethod
    def from_spec(cls, canary: Any, deadline_seconds: float) -> CanaryConfig:
        """From ``spec.rollout.canary`` (a :class:`~kubeinfer.spec.service.CanarySpec`)."""
        return cls(
            tuple(canary.steps),
            float(canary.analysisSeconds),
            int(canary.minRequests),
            canary.maxErrorPercent,
            canary.maxP99Ms,
            float(deadline_seconds),
        )

    def error_gate_failed(self, m: Measured) -> bool:
        return self.max_error_percent is not None and m.error_percent > self.max_error_percent

    def latency_gate_failed(self, m: Measured) -> bool:
        return self.max_p99_ms is not None and m.p99_ms is not None and m.p99_ms > self.max_p99_ms

    def gates(self) -> str:
        parts = []
        if self.max_error_percent is not None:
            parts.append(f"error rate <= {self.max_error_percent:g}%")
        if self.max_p99_ms is not None:
            parts.append(f"p99 <= {self.max_p99_ms:g} ms")
        return ", ".join(parts) or "no gates"


def canary_replicas(desired: int, weight: int) -> int:
    """Replicas the canary runs for ``weight`` percent of the traffic: the same share of ``desired``, rounded up,
    at least one (Argo Rollouts scales the canary ReplicaSet to ``ceil(replicas * weight / 100)``)."""
    return max(1, math.ceil(desired * weight / 100))


@dataclass(frozen=True, slots=True)
class SetWeight:
    """Send ``weight`` percent of the traffic to the canary from now on (step ``step``, counted from 0)."""

    weight: int
    step: int
    message: str


@dataclass(frozen=True, slots=True)
class Promote:
    """The last step passed: the canary becomes the stable revision and takes all the traffic."""

    message: str
    measured: Measured


@dataclass(frozen=True, slots=True)
class Rollback:
    """A gate failed (or the canary never became ready): all traffic back to the stable revision."""

    message: str
    measured: Measured | None


Decision = SetWeight | Promote | Rollback


@dataclass(frozen=True, slots=True)
class CanaryState:
    stable: int
    """The revision serving the rest of the traffic."""
    canary: int
    """The revision under analysis."""
    step: int
    """The step being run (an index into the steps)."""
    weight: int
    """The canary's share of the traffic now (0 until its first step starts)."""
    waiting_since: float
    """When the step began to wait for its replicas (the progress deadline counts from here)."""
    window_start: float | None
    """When the step's analysis window began; None while its replicas are not ready yet."""
    baseline: Counters
    """The canary's counters at ``window_start``."""
    last: Measured | None = None
    """The window's values at the last decision (status shows them)."""


def start(stable: int, canary: int, now: float) -> CanaryState:
    """A canary of revision ``canary`` over ``stable``, before its first step (no traffic yet)."""
    return CanaryState(stable, canary, 0, 0, now, None, Counters())


def _measure(window: Counters, seconds: float) -> Measured:
    p99 = quantile(window.latency, 0.99) if window.latency else None
    return Measured(window.requests, window.errors, seconds, None if p99 is None else p99 * 1000.0)


def decide(
    cfg: CanaryConfig, state: CanaryState, counters: Counters, ready: bool, now: float
) -> tuple[Decision | None, CanaryState]:
    """One analysis step. ``counters``: the canary revision's cumulative counters now; ``ready``: its replicas for
    the current step's weight are ready. Returns the decision (None: hold) and the next state."""
    n = len(cfg.steps)
    if state.window_start is None:
        if not ready:
            waited = now - state.waiting_since
            if waited > cfg.deadline_seconds:
                return Rollback(
                    f"revision {state.canary} had no ready replicas for step {state.step + 1}/{n} within "
                    f"{cfg.deadline_seconds:g} s (progressDeadlineSeconds)",
                    None,
                ), state
            return None, state
        weight = cfg.steps[state.step]
        passed = "" if state.last is None else f"step {state.step}/{n} passed ({state.last.text()}); "
        nxt = replace(state, weight=weight, window_start=now, baseline=counters, last=None)
        return SetWeight(
            weight,
            state.step,
            f"{passed}step {state.step + 1}/{n}: {weight}% of the traffic to revision {state.canary}, "
            f"{100 - weight}% to revision {state.stable}; analysis for {cfg.analysis_seconds:g} s ({cfg.gates()})",
        ), nxt
    elapsed = now - state.window_start
    measured = _measure(counters.minus(state.baseline), elapsed)
    state = replace(state, last=measured)
    judged = measured.requests >= cfg.min_requests
    if judged and cfg.error_gate_failed(measured):
        return Rollback(
            f"revision {state.canary} failed the error gate at step {state.step + 1}/{n} ({state.weight}%): "
            f"{measured.text()}; allowed {cfg.gates()}",
            measured,
        ), state
    if elapsed < cfg.analysis_seconds or not judged:
        return None, state
    if cfg.latency_gate_failed(measured):
        return Rollback(
            f"revision {state.canary} failed the latency gate at step {state.step + 1}/{n} ({state.weight}%): "
            f"{measured.text()}; allowed {cfg.gates()}",
            measured,
        ), state
    if state.step + 1 < n:
        # The next step's replicas may need to start: its window opens (and its weight is set) once the caller says
        # they are ready, at a later call.
        return None, replace(state, step=state.step + 1, waiting_since=now, window_start=None)
    return Promote(
        f"revision {state.canary} passed all {n} steps ({cfg.gates()}); last step: {measured.text()}",
        measured,
    ), state
