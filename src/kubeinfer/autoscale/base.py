"""The values every horizontal policy speaks: what a controller observed, what the policy decided.

A policy is a pure function ``decide(observation, state, now) -> (Decision, state)`` over frozen values
(the shape of Ray Serve's ``autoscaling_policy.py``; Kubernetes keeps the same arithmetic in a pure
``metrics/utilization.go``). ``now`` is seconds on whatever clock the caller runs (the local controller's
monotonic clock, the simulator's virtual clock); a policy never reads a clock, never does I/O and never
mutates its inputs, so one policy object can serve many services and replays are exact.

The state a policy returns must be passed back on the next call. Policies assume the decision is carried
out (as the Kubernetes HPA assumes its Scale update succeeded): they record scale events from it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, Protocol, TypeVar

__all__ = [
    "Decision",
    "LoadSample",
    "Observation",
    "PodPhase",
    "PodSample",
    "Policy",
]

PodPhase = Literal["Pending", "Running", "Succeeded", "Failed"]

_EMPTY: Mapping[str, float] = MappingProxyType({})


def _empty() -> Mapping[str, float]:
    return _EMPTY


@dataclass(frozen=True, slots=True)
class PodSample:
    """One replica as the HPA sees it: its phase, readiness and the latest value of each metric.

    ``metrics`` maps a metric key (``cpu``, ``memory``, ``concurrency``, ``rps``, ...) to the replica's
    current value; cpu is in cores and memory in bytes, like ``requests``. A metric absent from the map is
    a *missing* metric in the HPA's sense.
    """

    name: str
    metrics: Mapping[str, float] = field(default_factory=_empty)
    requests: Mapping[str, float] = field(default_factory=_empty)
    phase: PodPhase = "Running"
    ready: bool | None = True
    """The Ready condition: True, False, or None when the pod has no Ready condition yet."""
    deleting: bool = False
    """The pod has a deletion timestamp (it is draining); the HPA ignores it."""
    started_at: float | None = -math.inf
    """Pod start time; ``None`` when the pod has not started (the HPA treats it as unready for cpu)."""
    ready_changed_at: float = -math.inf
    """Last transition time of the Ready condition."""
    metrics_at: float | None = None
    """Time of the metric sample; ``None`` means it is fresh (taken after any readiness change)."""
    metrics_window: float = 30.0
    """Window the metric sample averages over (metrics-server reports a window with each sample)."""

    @property
    def running_and_ready(self) -> bool:
        return self.phase == "Running" and self.ready is True and not self.deleting


@dataclass(frozen=True, slots=True)
class LoadSample:
    """Service-wide load at one instant, as the router (or Knative's activator and queue-proxies) sees it.

    ``concurrency`` counts requests in flight across all replicas plus those buffered in front of them;
    ``rps`` is the arrival rate over the interval that ended at ``time``; ``work``, when reported, the busy time
    over that interval per second: slot-seconds spent serving requests (the rate of the replicas'
    ``kubeinfer_compute_duration_seconds`` sum, or the time-average of requests in service), i.e. the load in
    Erlangs. Unlike ``rps`` it weighs each request by its cost, which for an LLM varies a hundredfold.

    ``peak``, when reported, is the most requests that arrived within any ``peak_window`` seconds during the
    interval (a sliding window over arrival times, :mod:`kubeinfer.autoscale.arrivals`: ``kubeinfer up``'s router
    counts it over all arrivals; on Kubernetes each replica exports it as ``kubeinfer_arrivals_peak`` and the
    operator sums the pods'; the simulator counts it over the trace). Per-second counts hide how a second's arrivals are spread; with a 100 ms
    SLO, forty requests within 100 ms need several times the slots of forty spread over the second. The window is
    the SLO's length: arrivals further apart do not compete for the same slots within it.
    """

    time: float
    concurrency: float = 0.0
    rps: float = 0.0
    work: float | None = None
    peak: float | None = None
    peak_window: float = 0.0
    late: float | None = None
    """Requests per second, over the interval, that missed the SLO (answered after it, refused for want of capacity,
    or dropped), when reported -- the rate of the replicas' ``kubeinfer_requests_late_total``, the simulator's count
    of requests whose deadline passed in the second: the feedback that tells a policy its spare capacity falls
    short. In the unit of ``rps``, so the share of requests missed is their ratio."""


@dataclass(frozen=True, slots=True)
class Observation:
    """What a controller saw at one tick.

    ``current_replicas`` is the replica count currently asked for (a Deployment's ``spec.replicas``);
    ``pods`` the replicas that exist; ``external`` service-wide or external metric values keyed like pod
    metrics; ``load`` the load samples taken since the previous tick (oldest first), which window-based
    policies (kpa, predictive) fold into their state.
    """

    current_replicas: int
    pods: tuple[PodSample, ...] = ()
    ready_replicas: int | None = None
    """Ready replicas; by default the pods that are Running and Ready (or ``current_replicas`` if no pods)."""
    status_replicas: int | None = None
    """Replicas that exist (a Deployment's ``status.replicas``); by default ``len(pods)`` or current."""
    external: Mapping[str, float] = field(default_factory=_empty)
    load: tuple[LoadSample, ...] = ()

    def ready_count(self) -> int:
        if self.ready_replicas is not None:
            return self.ready_replicas
        if self.pods:
            return sum(1 for p in self.pods if p.running_and_ready)
        return self.current_replicas

    def status_count(self) -> int:
        if self.status_replicas is not None:
            return self.status_replicas
        if self.pods:
            return len(self.pods)
        return self.current_replicas


@dataclass(frozen=True, slots=True)
class Decision:
    """What a horizontal policy wants: a replica count, why, and what the data plane must do meanwhile."""

    replicas: int
    reason: str
    message: str = ""
    recommended: int | None = None
    """The raw recommendation from the metrics, before stabilization, rate limits and bounds."""
    panic: bool = False
    """Knative panic mode is on (never scales down while set)."""
    excess_burst_capacity: float | None = None
    """Knative's excess burst capacity; negative means the service cannot absorb the target burst."""
    buffer_requests: bool = False
    """The router must hold requests (Knative's activator in the path): scaled to zero or short of burst."""
    details: tuple[tuple[str, float], ...] = ()
    """Numbers behind the decision (per-metric proposals, windowed averages, forecasts) for events/plots."""

    def detail(self, key: str) -> float | None:
        for k, v in self.details:
            if k == key:
                return v
        return None

    def shown_details(self) -> dict[str, float]:
        """The finite :attr:`details`, to four significant digits: what a status shows (a forecast not made yet, or
        an envelope not learned yet, is nan or inf there and left out)."""
        return {k: float(f"{v:.4g}") for k, v in self.details if math.isfinite(v)}


S = TypeVar("S")


class Policy(Protocol[S]):
    """A horizontal autoscaling policy: pure, deterministic, over frozen values."""

    @property
    def min_replicas(self) -> int: ...

    @property
    def max_replicas(self) -> int: ...

    def initial_state(self) -> S:
        """The state before the first decision."""
        ...

    def decide(self, observation: Observation, state: S, now: float) -> tuple[Decision, S]:
        """Decide the replica count at time ``now`` (seconds); return the decision and the next state."""
        ...
