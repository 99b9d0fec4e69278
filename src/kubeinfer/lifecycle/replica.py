"""The lifecycle of one replica (a Kubernetes pod with one container, restartPolicy Always), as a sans-I/O machine.

Phases, as ``kubectl get pods`` shows them: ``Pending`` (about to start), ``Starting`` (process up, startup probe
not yet passed), ``Running``, ``CrashLoopBackOff`` (exited; waiting out the back-off before the next start),
``Terminating`` (SIGTERM sent; SIGKILL after the grace period) and ``Terminated``.

A crash, a failed startup probe or a failed liveness probe restarts the process in place: same replica id,
``restarts + 1``, a new port, after the CrashLoopBackOff delay (:mod:`kubeinfer.lifecycle.backoff`). A stop (scale-down,
rollout, ``down``) drains and ends it for good. The caller has already taken the replica out of the router when it
asks for a stop (the :class:`SetReady` action makes the shell do so for probe-driven changes).

``step(event, now) -> actions``: the shell spawns processes, sends signals, runs probes and updates the router.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Literal

from kubeinfer.lifecycle import probes
from kubeinfer.lifecycle.backoff import BackoffConfig, BackoffState, next_delay
from kubeinfer.spec.service import ProbesSpec

__all__ = [
    "Emit",
    "ExitReason",
    "Exited",
    "Phase",
    "ReplicaAction",
    "ReplicaEvent",
    "ReplicaMachine",
    "SetReady",
    "Signal",
    "Spawn",
    "Spawned",
    "Stop",
    "classify_exit",
]

Phase = Literal["Pending", "Starting", "Running", "CrashLoopBackOff", "Terminating", "Terminated"]
ExitReason = Literal["Completed", "Error", "OOMKilled", "Killed", "StartError"]


@dataclass(frozen=True, slots=True)
class Spawned:
    pid: int


@dataclass(frozen=True, slots=True)
class Exited:
    code: int
    """Exit status; negative for a signal (as ``Popen.returncode``)."""
    reason: ExitReason
    message: str = ""


@dataclass(frozen=True, slots=True)
class Stop:
    reason: str


ReplicaEvent = probes.Tick | probes.ProbeResult | Spawned | Exited | Stop


@dataclass(frozen=True, slots=True)
class Spawn:
    """Start the process (the shell answers with :class:`Spawned` or :class:`Exited` ``StartError``)."""


@dataclass(frozen=True, slots=True)
class Signal:
    signal: int


@dataclass(frozen=True, slots=True)
class SetReady:
    ready: bool


@dataclass(frozen=True, slots=True)
class Emit:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


ReplicaAction = Spawn | Signal | SetReady | Emit | probes.RunProbe


def classify_exit(
    code: int,
    *,
    we_killed: bool,
    oom_kills: int = 0,
    rss: float = 0.0,
    memory_limit: float | None = None,
    log_tail: str = "",
) -> ExitReason:
    """Name an exit as the kubelet does: ``OOMKilled`` for the memory limit, ``Error`` for non-zero, ...

    Without a cgroup's ``oom_kill`` counter an OOM shows as a SIGKILL nobody here sent while memory was near the
    limit, or (under RLIMIT_DATA) a MemoryError that ended the process.
    """
    if oom_kills > 0:
        return "OOMKilled"
    if memory_limit:
        if code == -signal.SIGKILL and not we_killed and rss >= 0.8 * memory_limit:
            return "OOMKilled"
        if code == 1 and _ended_by_memory_error(log_tail):
            return "OOMKilled"
    if code == 0:
        return "Completed"
    if code < 0 and we_killed:
        return "Killed"
    return "Error"


def _ended_by_memory_error(log_tail: str) -> bool:
    """Whether the process ended on an uncaught MemoryError: the last line of its output is the traceback's final
    ``MemoryError`` line. (Not "the word anywhere in the tail": a client can put that word into a logged line.)"""
    lines = [ln for ln in log_tail.splitlines() if ln.strip()]
    return bool(lines) and (lines[-1] == "MemoryError" or lines[-1].startswith("MemoryError: "))


class ReplicaMachine:
    """One replica. ``grace`` is the stop grace period (drain timeout + margin)."""

    def __init__(
        self,
        replica_id: str,
        revision: int,
        probes_spec: ProbesSpec,
        backoff: BackoffConfig,
        grace: float,
        now: float,
    ) -> None:
        self.id = replica_id
        self.revision = revision
        self.probes_spec = probes_spec
        self.backoff = backoff
        self.grace = grace
        self.created_at = now
        self.phase: Phase = "Pending"
        self.restarts = 0
        self.ready = False
        self.pid: int | None = None
        self.process_started_at: float | None = None
        self.restart_at = now
        self.kill_at: float | None = None
        self.kill_sent = False
        self.stopping = False
        self.last_exit: Exited | None = None
        self.message = ""
        self.reason = ""
        """Why the replica waits, as ``kubectl get pods`` shows it in STATUS: ``ModelLoadFailed`` when the server
        said its model failed to load (it stays up and not ready; the startup probe restarts it in time)."""
        self.prober: probes.Prober | None = None
        self._backoff = BackoffState()

    @property
    def alive(self) -> bool:
        return self.phase in ("Starting", "Running", "Terminating")

    def step(self, event: ReplicaEvent, now: float) -> list[ReplicaAction]:
        if self.phase == "Terminated":
            return []
        if isinstance(event, probes.Tick):
            return self._tick(now)
        if isinstance(event, probes.ProbeResult):
            return self._probe(event, now)
        if isinstance(event, Spawned):
            self.pid = event.pid
            self.process_started_at = now
            self.phase = "Starting"
            self.reason = ""
            self.prober = probes.Prober(self.probes_spec, now)
            return [Emit("Normal", "Started", f"started process {event.pid}")]
        if isinstance(event, Exited):
            return self._exited(event, now)
        return self._stop(event, now)

    def _tick(self, now: float) -> list[ReplicaAction]:
        out: list[ReplicaAction] = []
        if self.phase in ("Pending", "CrashLoopBackOff") and now >= self.restart_at:
            self.phase = "Starting"  # spawning: the shell answers with Spawned or Exited(StartError)
            return [Spawn()]
        if self.phase == "Terminating":
            if self.kill_at is not None and now >= self.kill_at and not self.kill_sent:
                self.kill_sent = True
                out.append(Signal(signal.SIGKILL))
                out.append(
                    Emit("Warning", "Killing", f"did not exit within the {self.grace:g} s grace period: SIGKILL")
                )
            return out
        if self.prober is not None and self.phase in ("Starting", "Running"):
            out += [a for a in self.prober.step(probes.Tick(), now) if isinstance(a, probes.RunProbe)]
        return out

    def _probe(self, event: probes.ProbeResult, now: float) -> list[ReplicaAction]:
        if self.prober is None or self.phase not in ("Starting", "Running"):
            return []
        out: list[ReplicaAction] = []
        if not event.ok and not self.ready and event.detail:
            # What describe shows while the replica is not ready (the server says why: loading, failed to load).
            self.message = f"{event.kind} probe: {event.detail}"
            if not self.reason and "failed to load" in event.detail:
                self.reason = "ModelLoadFailed"
                out.append(Emit("Warning", "Failed", f"Error: {event.detail}"))  # as the kubelet reports a container
        for a in self.prober.step(event, now):
            if isinstance(a, probes.Started):
                self.phase = "Running"
            elif isinstance(a, probes.ReadyChanged):
                self.ready = a.ready
                if a.ready:
                    self.message = ""
                    self.reason = ""
                out.append(SetReady(a.ready))
                if a.ready:
                    out.append(Emit("Normal", "Ready", a.reason))
                else:
                    out.append(Emit("Warning", "Unhealthy", f"not ready: {a.reason}"))
            elif isinstance(a, probes.Killed):
                out.append(Emit("Warning", "Unhealthy", a.reason))
                out += self._terminate(now, f"Killing: {a.kind} probe failed, will be restarted", restart=True)
            else:
                out.append(a)
        return out

    def _terminate(self, now: float, why: str, restart: bool) -> list[ReplicaAction]:
        out: list[ReplicaAction] = []
        if self.ready:
            self.ready = False
            out.append(SetReady(False))
        self.phase = "Terminating"
        self.stopping = self.stopping or not restart
        self.kill_at = now + self.grace
        self.kill_sent = False
        reason, _, msg = why.partition(": ")
        out.append(Emit("Normal" if not restart else "Warning", reason, msg))
        out.append(Signal(signal.SIGTERM))
        return out

    def _stop(self, event: Stop, now: float) -> list[ReplicaAction]:
        if self.phase in ("Pending", "CrashLoopBackOff"):
            self.phase = "Terminated"
            self.stopping = True
            return [Emit("Normal", "Stopped", event.reason)]
        if self.phase == "Terminating":
            self.stopping = True
            return []
        return self._terminate(now, f"Stopping: {event.reason}", restart=False)

    def _exited(self, event: Exited, now: float) -> list[ReplicaAction]:
        self.last_exit = event
        self.pid = None
        self.prober = None
        out: list[ReplicaAction] = []
        if self.ready:
            self.ready = False
            out.append(SetReady(False))
        desc = f"exit code {event.code}" if event.code >= 0 else f"signal {-event.code}"
        desc = f"{event.reason} ({desc})" + (f": {event.message}" if event.message else "")
        if self.stopping:
            self.phase = "Terminated"
            out.append(Emit("Normal", "Stopped", f"process exited, {desc}"))
            return out
        ran_for = now - (self.process_started_at if self.process_started_at is not None else now)
        delay, self._backoff = next_delay(self.backoff, self._backoff, ran_for)
        self.restarts += 1
        self.restart_at = now + delay
        self.phase = "CrashLoopBackOff"
        why = f" ({self.reason})" if self.reason else ""
        msg = f"back-off {delay:g} s restarting failed process{why}; last exit {desc}"
        self.message = f"CrashLoopBackOff: {msg} (restarted {self.restarts} times)"
        out.append(Emit("Warning", "BackOff", msg))
        return out
