"""The prober of one replica process: startup, readiness and liveness with Kubernetes' fields and semantics.

Reference: the kubelet's ``pkg/kubelet/prober/worker.go`` and the probe documentation:

- each probe first runs ``initialDelaySeconds`` after the container started, then every ``periodSeconds``;
  a probe that does not answer within ``timeoutSeconds`` failed;
- a result flips only after ``successThreshold`` consecutive successes or ``failureThreshold`` consecutive failures;
- while a startup probe is configured and has not succeeded, readiness and liveness do not run (the container is
  not ready); ``failureThreshold`` startup failures kill the container;
- liveness failing ``failureThreshold`` times kills the container (it is restarted with back-off);
- readiness failing ``failureThreshold`` times marks it not ready: out of the load balancer, not restarted.

A sans-I/O machine: ``step(event, now) -> actions``; the shell runs the HTTP GETs (``/startupz``, ``/readyz``,
``/healthz``) the :class:`RunProbe` actions ask for and feeds back :class:`ProbeResult` events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kubeinfer.spec.service import ProbeSpec, ProbesSpec

__all__ = [
    "PROBE_PATHS",
    "Killed",
    "ProbeAction",
    "ProbeEvent",
    "ProbeKind",
    "ProbeResult",
    "Prober",
    "ReadyChanged",
    "RunProbe",
    "Started",
    "Tick",
]

ProbeKind = Literal["startup", "readiness", "liveness"]
PROBE_PATHS: dict[ProbeKind, str] = {"startup": "/startupz", "readiness": "/readyz", "liveness": "/healthz"}


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed; run the probes that are due."""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    kind: ProbeKind
    ok: bool
    detail: str = ""


ProbeEvent = Tick | ProbeResult


@dataclass(frozen=True, slots=True)
class RunProbe:
    kind: ProbeKind
    timeout: float


@dataclass(frozen=True, slots=True)
class Started:
    """The startup probe succeeded: readiness and liveness begin."""


@dataclass(frozen=True, slots=True)
class ReadyChanged:
    ready: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Killed:
    """The container must be killed and restarted (liveness or startup failed)."""

    kind: ProbeKind
    reason: str


ProbeAction = RunProbe | Started | ReadyChanged | Killed


class _Probe:
    def __init__(self, kind: ProbeKind, spec: ProbeSpec, first_at: float) -> None:
        self.kind = kind
        self.spec = spec
        self.next_at = first_at
        self.in_flight = False
        self.successes = 0
        self.failures = 0

    def due(self, now: float) -> bool:
        return not self.in_flight and now >= self.next_at

    def launch(self, now: float) -> RunProbe:
        self.in_flight = True
        # The next run is a period after this one started (the kubelet's ticker), never in the past.
        self.next_at = max(self.next_at + self.spec.periodSeconds, now)
        return RunProbe(self.kind, self.spec.timeoutSeconds)

    def record(self, ok: bool) -> None:
        self.in_flight = False
        if ok:
            self.successes += 1
            self.failures = 0
        else:
            self.failures += 1
            self.successes = 0


class Prober:
    """Probe state of one process, started at ``started_at`` (seconds on the caller's monotonic clock)."""

    def __init__(self, spec: ProbesSpec, started_at: float) -> None:
        self.spec = spec
        self.started_at = started_at
        self.started = False
        self.ready = False
        self.dead = False
        self._startup: _Probe | None = _Probe("startup", spec.startup, started_at + spec.startup.initialDelaySeconds)
        self._others: list[_Probe] = []

    def _begin_others(self, now: float) -> None:
        for kind, s in (("readiness", self.spec.readiness), ("liveness", self.spec.liveness)):
            first = max(now, self.started_at + s.initialDelaySeconds)
            self._others.append(_Probe(kind, s, first))  # type: ignore[arg-type]

    def _probes(self) -> list[_Probe]:
        return [self._startup] if self._startup is not None else self._others

    def next_due(self) -> float:
        """When the next probe is due (``inf`` while all are in flight or the process is dead)."""
        if self.dead:
            return float("inf")
        times = [p.next_at for p in self._probes() if not p.in_flight]
        return min(times, default=float("inf"))

    def step(self, event: ProbeEvent, now: float) -> list[ProbeAction]:
        if self.dead:
            return []
        if isinstance(event, Tick):
            return [p.launch(now) for p in self._probes() if p.due(now)]
        return self._result(event, now)

    def _result(self, r: ProbeResult, now: float) -> list[ProbeAction]:
        probe = next((p for p in self._probes() if p.kind == r.kind), None)
        if probe is None:  # a late answer from a probe that no longer runs
            return []
        probe.record(r.ok)
        s = probe.spec
        detail = f": {r.detail}" if r.detail else ""
        actions: list[ProbeAction] = []
        if r.kind == "startup":
            if probe.successes >= s.successThreshold:
                self.started = True
                self._startup = None
                self._begin_others(now)
                actions.append(Started())
            elif probe.failures >= s.failureThreshold:
                self.dead = True
                actions.append(Killed("startup", f"startup probe failed {probe.failures} times{detail}"))
        elif r.kind == "readiness":
            if not self.ready and probe.successes >= s.successThreshold:
                self.ready = True
                actions.append(ReadyChanged(True, "readiness probe succeeded"))
            elif self.ready and probe.failures >= s.failureThreshold:
                self.ready = False
                actions.append(ReadyChanged(False, f"readiness probe failed {probe.failures} times{detail}"))
        elif probe.failures >= s.failureThreshold:
            self.dead = True
            if self.ready:
                self.ready = False
                actions.append(ReadyChanged(False, "liveness probe failed"))
            actions.append(Killed("liveness", f"liveness probe failed {probe.failures} times{detail}"))
        return actions
