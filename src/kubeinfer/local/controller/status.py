"""The service's status, typed: what ``GET /v1/status`` answers and ``kubeinfer get/describe`` render.

Frozen snapshots the controller builds (:meth:`ServiceController.snapshot`) and the platform completes with its
endpoint, creation time, spec and router counters; :meth:`ServiceStatus.to_json` writes the JSON document the CLI
reads (``replicas``, ``autoscaling``, ``rollout``, ``vpa``, ``events``, ``cold_starts``, ``endpoint``, ...), with
the same keys as before it was typed. Reading the cgroup throttling counters is this module's only I/O.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from kubeinfer.autoscale import Decision, Resources, VpaDecision
from kubeinfer.lifecycle.canary import CanaryConfig, CanaryState
from kubeinfer.local.controller.records import Replica
from kubeinfer.local.events import Event
from kubeinfer.local.resources import CpuQuota

__all__ = [
    "AutoscalingStatus",
    "CanaryStatus",
    "Endpoint",
    "LastExit",
    "ReplicaStatus",
    "ResourceAmounts",
    "RolloutStatus",
    "RouterCounters",
    "ServiceStatus",
    "VpaStatus",
]


def _json(value: Any) -> Any:
    """Dataclasses to dicts (field order kept), tuples to lists, events to their JSON form."""
    if isinstance(value, Event):
        return value.to_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    return value


@dataclass(frozen=True, slots=True)
class LastExit:
    code: int
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    id: str
    pid: int | None
    port: int | None
    grpc_port: int | None
    uds: str | None
    """The Unix socket it serves on, once it listens (without a port: its only way in, the router's)."""
    grpc_uds: tuple[str, ...]
    state: str
    reason: str
    ready: bool
    version: str
    revision: int
    restarts: int
    age: float
    message: str
    last_exit: LastExit | None
    cpu: float | None
    """CPU cores used between the last two scrapes."""
    memory: float | None
    """Resident memory at the last scrape, bytes."""
    cpus: tuple[int, ...] | None
    """The CPUs it is pinned to (None: not pinned)."""
    cpu_throttled_seconds: float | None
    """How long the CFS quota (``limits.cpu``) held it back, as cAdvisor's container_cpu_cfs_throttled_* report
    it; None without a quota."""
    log: str

    @classmethod
    def of(cls, r: Replica, now: float) -> ReplicaStatus:
        m = r.machine
        last = m.last_exit
        return cls(
            id=r.id,
            pid=m.pid,
            port=r.http_port,
            grpc_port=r.grpc_port,
            uds=r.uds if r.address is not None else None,
            grpc_uds=r.grpc_uds,
            state=m.phase,
            reason=m.reason,
            ready=m.ready,
            version=r.revision.version,
            revision=r.revision.number,
            restarts=m.restarts,
            age=round(now - m.created_at, 1),
            message=m.message,
            last_exit=None if last is None else LastExit(last.code, last.reason, last.message),
            cpu=None if r.cpu_cores is None else round(r.cpu_cores, 3),
            memory=r.rss,
            cpus=tuple(r.launch.cpus) if r.launch.cpus else None,
            cpu_throttled_seconds=round(CpuQuota.throttled(r.cpu_cgroup)[1], 3) if r.cpu_cgroup else None,
            log=str(r.log_path),
        )


@dataclass(frozen=True, slots=True)
class AutoscalingStatus:
    policy: str
    min: int
    max: int
    reason: str
    """The last decision's reason ("" before the first decision)."""
    message: str
    buffering: bool
    """The policy asked the router to buffer requests (scaled to zero, or about to be)."""
    details: dict[str, float]
    """The numbers behind the last decision (:meth:`Decision.shown_details`): the rates, forecast and burst
    allowance predictive sized for, the share of requests that missed the SLO; empty before the first decision."""

    @classmethod
    def of(cls, policy: str, lo: int, hi: int, d: Decision | None) -> AutoscalingStatus:
        return cls(
            policy,
            lo,
            hi,
            d.reason if d else "",
            d.message if d else "",
            bool(d and d.buffer_requests),
            d.shown_details() if d else {},
        )


@dataclass(frozen=True, slots=True)
class RolloutStatus:
    revision: int
    previous: int
    elapsed: float


@dataclass(frozen=True, slots=True)
class CanaryStatus:
    """A canary under analysis: the split now and the step's window so far (``kubeinfer get`` shows the split)."""

    stable: int
    canary: int
    weight: int
    """Percent of the traffic the canary gets now."""
    step: int
    """The step being run, counted from 1."""
    steps: tuple[int, ...]
    phase: str
    """``Waiting`` (for the step's replicas to be ready) or ``Analyzing``."""
    analysis: dict[str, Any] | None
    """The step's window so far: requests, errors, errorPercent, p99Ms, seconds."""

    @classmethod
    def of(cls, c: CanaryState, cfg: CanaryConfig) -> CanaryStatus:
        return cls(
            c.stable,
            c.canary,
            c.weight,
            c.step + 1,
            cfg.steps,
            "Waiting" if c.window_start is None else "Analyzing",
            None if c.last is None else c.last.to_json(),
        )

    @property
    def split(self) -> str:
        """``r1 90% / r2 10%``: stable first."""
        return f"r{self.stable} {100 - self.weight}% / r{self.canary} {self.weight}%"


@dataclass(frozen=True, slots=True)
class ResourceAmounts:
    cpu: float
    """Cores."""
    memory: float
    """Bytes."""


@dataclass(frozen=True, slots=True)
class VpaStatus:
    target: ResourceAmounts
    lower: ResourceAmounts
    upper: ResourceAmounts
    mode: str
    """``spec.autoscaling.vertical.updateMode``."""
    reason: str

    @classmethod
    def of(cls, v: VpaDecision, mode: str) -> VpaStatus:
        def amounts(r: Resources) -> ResourceAmounts:
            return ResourceAmounts(r.cpu, r.memory)

        return cls(amounts(v.target), amounts(v.lower_bound), amounts(v.upper_bound), mode, v.reason)


@dataclass(frozen=True, slots=True)
class Endpoint:
    http: str
    grpc: int | None


@dataclass(frozen=True, slots=True)
class RouterCounters:
    requests: int
    retries: int
    buffered: int
    buffered_total: int
    rejected: int
    rps: float


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    name: str
    revision: int
    """The target revision."""
    version: str
    """The target revision's model version."""
    desired: int
    ready_replicas: int
    ready: bool
    """As many ready replicas as desired, and no rollout in progress."""
    replicas: tuple[ReplicaStatus, ...]
    autoscaling: AutoscalingStatus
    rollout: RolloutStatus | None
    canary: CanaryStatus | None
    """A canary under analysis (left out of the JSON while none is)."""
    cold_starts: tuple[float, ...]
    vpa: VpaStatus | None
    events: tuple[Event, ...]
    """The latest events, oldest first."""
    # What the platform adds (the controller knows none of it); left out of the JSON while unset.
    endpoint: Endpoint | None = None
    created: float | None = None
    """Wall-clock seconds, as metadata.creationTimestamp."""
    spec: dict[str, Any] | None = None
    router: RouterCounters | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = _json(self)
        for key in ("canary", "endpoint", "created", "spec", "router"):
            if doc[key] is None:
                del doc[key]
        return doc
