"""The Kubernetes HorizontalPodAutoscaler (``autoscaling/v2``), reproduced decision for decision.

Reference: kubernetes/kubernetes ``pkg/controller/podautoscaler/`` -- ``horizontal.go`` (reconcile,
``computeReplicasForMetrics``, ``normalizeDesiredReplicas[WithBehaviors]``, stabilization and scale-event
bookkeeping), ``replica_calculator.go`` (per-metric replica counts, ``groupPods``, the missing/unready
rules) and ``metrics/utilization.go`` (usage ratios), plus ``pkg/apis/autoscaling/v2/defaults.go``. Where the
controller reads ``time.Now()`` this module takes ``now``; where it keeps per-HPA maps (recommendations,
scale-up and scale-down events) this module keeps them in :class:`HpaState`.

Defaults, all from the controller and its flags:

- tolerance 0.1 (``--horizontal-pod-autoscaler-tolerance``); per-direction tolerances from
  ``behavior.scaleUp/scaleDown.tolerance`` (Kubernetes 1.33) override it. A ratio inside
  ``[1 - down, 1 + up]`` keeps the current count.
- cpu initialization period 5 min and initial readiness delay 30 s
  (``--horizontal-pod-autoscaler-cpu-initialization-period``, ``--...-initial-readiness-delay``): only for the
  cpu resource metric, a pod that has just started or just became ready is treated as unready.
- downscale stabilization 300 s (``--horizontal-pod-autoscaler-downscale-stabilization``): used without
  ``behavior`` and as ``behavior.scaleDown.stabilizationWindowSeconds`` when that is unset.
- without ``behavior`` (the legacy path) a scale-up is capped at ``max(2 x current, 4)``.
- with ``behavior``, unset parts default as the API server defaults them: scale-up window 0 s, policies
  4 Pods / 15 s and 100 Percent / 15 s, selectPolicy Max; scale-down policy 100 Percent / 15 s,
  selectPolicy Max.

Quantities are compared in milli-units with integer arithmetic, as the controller does with
``Quantity.MilliValue()``; resource utilization is truncated to a whole percent before the ratio is taken.

kubeinfer extension: a Pods metric with no pods at all (scaled to zero) is read from ``observation.external``
under the same key, with External ``AverageValue`` semantics -- the way ``HPAScaleToZero`` scales from zero
on object/external metrics. Without it an HPA at zero replicas could never wake up on a request metric.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Literal, TypeVar

from kubeinfer.autoscale.base import Decision, Observation, PodSample

__all__ = [
    "DEFAULT_SCALE_DOWN",
    "DEFAULT_SCALE_UP",
    "HPA",
    "Behavior",
    "HpaConfig",
    "HpaState",
    "MetricTarget",
    "Recommendation",
    "ScaleEvent",
    "ScalingPolicy",
    "ScalingRules",
]

MetricKind = Literal["Resource", "Pods", "Object", "External"]
TargetType = Literal["Utilization", "AverageValue", "Value"]
SelectPolicy = Literal["Max", "Min", "Disabled"]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class MetricTarget:
    """One entry of ``spec.metrics``.

    ``name`` is the key of the metric in :class:`PodSample.metrics` (``cpu``/``memory`` for Resource) or in
    ``Observation.external`` (Object/External). ``value`` is a percent for ``Utilization``.
    """

    kind: MetricKind
    name: str
    target_type: TargetType
    value: float

    def __post_init__(self) -> None:
        allowed: dict[str, tuple[str, ...]] = {
            "Resource": ("Utilization", "AverageValue"),
            "Pods": ("AverageValue",),
            "Object": ("Value", "AverageValue"),
            "External": ("Value", "AverageValue"),
        }
        if self.target_type not in allowed[self.kind]:
            raise ValueError(
                f"metric {self.name!r}: a {self.kind} metric takes target type "
                f"{' or '.join(allowed[self.kind])}, not {self.target_type!r}"
            )
        if not self.value > 0:
            raise ValueError(f"metric {self.name!r}: target must be > 0, got {self.value}")


@dataclass(frozen=True, slots=True)
class ScalingPolicy:
    type: Literal["Pods", "Percent"]
    value: int
    period_seconds: int


@dataclass(frozen=True, slots=True)
class ScalingRules:
    stabilization_window_seconds: int
    select_policy: SelectPolicy
    policies: tuple[ScalingPolicy, ...]
    tolerance: float | None = None


DEFAULT_SCALE_UP = ScalingRules(
    stabilization_window_seconds=0,
    select_policy="Max",
    policies=(ScalingPolicy("Pods", 4, 15), ScalingPolicy("Percent", 100, 15)),
)
DEFAULT_SCALE_DOWN = ScalingRules(
    stabilization_window_seconds=300,
    select_policy="Max",
    policies=(ScalingPolicy("Percent", 100, 15),),
)


@dataclass(frozen=True, slots=True)
class Behavior:
    scale_up: ScalingRules = DEFAULT_SCALE_UP
    scale_down: ScalingRules = DEFAULT_SCALE_DOWN


@dataclass(frozen=True, slots=True)
class HpaConfig:
    min_replicas: int
    max_replicas: int
    metrics: tuple[MetricTarget, ...]
    tolerance: float = 0.1
    behavior: Behavior | None = None
    """``None`` selects the legacy path: downscale stabilization and the ``max(2 x current, 4)`` cap."""
    cpu_initialization_period: float = 300.0
    delay_of_initial_readiness_status: float = 30.0
    downscale_stabilization_window: float = 300.0

    def __post_init__(self) -> None:
        if self.min_replicas < 0 or self.max_replicas < 1 or self.min_replicas > self.max_replicas:
            raise ValueError(
                f"need 0 <= minReplicas <= maxReplicas and maxReplicas >= 1, "
                f"got minReplicas={self.min_replicas} maxReplicas={self.max_replicas}"
            )
        if not self.metrics:
            raise ValueError("metrics must name at least one metric")


@dataclass(frozen=True, slots=True)
class Recommendation:
    time: float
    replicas: int


@dataclass(frozen=True, slots=True)
class ScaleEvent:
    time: float
    change: int
    outdated: bool = False


@dataclass(frozen=True, slots=True)
class HpaState:
    """The controller's per-HPA memory: recent recommendations and scale events."""

    recommendations: tuple[Recommendation, ...] = ()
    scale_up_events: tuple[ScaleEvent, ...] = ()
    scale_down_events: tuple[ScaleEvent, ...] = ()


class _InvalidMetric(Exception):
    """A metric could not be evaluated (the controller's per-metric error)."""


@dataclass(frozen=True, slots=True)
class _Tolerances:
    down: float
    up: float

    def within(self, ratio: float) -> bool:
        # NaN (0/0 at zero replicas) is never within, as in Go.
        return (1.0 - self.down) <= ratio <= (1.0 + self.up)


def _milli(value: float) -> int:
    # Quantity.MilliValue() rounds up; round first so 0.3 * 1000 = 300.00000000000006 stays 300.
    return math.ceil(round(value * 1000.0, 6))


class HPA:
    """The Kubernetes HPA as a pure policy. Build it from a spec with :func:`policy_from_spec`."""

    def __init__(self, config: HpaConfig) -> None:
        self.config = config

    @property
    def min_replicas(self) -> int:
        return self.config.min_replicas

    @property
    def max_replicas(self) -> int:
        return self.config.max_replicas

    def initial_state(self) -> HpaState:
        return HpaState()

    # -- reconcileAutoscaler -------------------------------------------------------------------------------

    def decide(self, observation: Observation, state: HpaState, now: float) -> tuple[Decision, HpaState]:
        cfg = self.config
        current = observation.current_replicas
        if current == 0 and cfg.min_replicas != 0:
            # The target was scaled to zero by hand: the HPA stands aside until someone scales it up.
            return Decision(0, "ScalingDisabled", "scaling is disabled since the replica count is zero"), state
        details: tuple[tuple[str, float], ...] = ()
        if current > cfg.max_replicas:
            desired, reason = cfg.max_replicas, "Current number of replicas above Spec.MaxReplicas"
            recommended = desired
        elif current < cfg.min_replicas:
            desired, reason = cfg.min_replicas, "Current number of replicas below Spec.MinReplicas"
            recommended = desired
        else:
            try:
                recommended, metric_name, details = self._replicas_for_metrics(observation, now)
            except _InvalidMetric as e:
                return Decision(current, "FailedGetMetrics", str(e)), state
            desired = max(0, recommended)
            reason = "ReadyForNewScale"
            if desired > current:
                reason = f"{metric_name} above target"
            elif desired < current:
                reason = "All metrics below target"
            if cfg.behavior is None:
                desired, state, limit = self._normalize(state, current, desired, now)
            else:
                desired, state, limit = self._normalize_with_behaviors(cfg.behavior, state, current, desired, now)
            if limit:
                reason = f"{reason}; {limit}"
        if desired != current and cfg.behavior is not None:
            state = _store_scale_event(cfg.behavior, state, current, desired, now)
        return Decision(desired, reason, recommended=recommended, details=details), state

    # -- computeReplicasForMetrics -------------------------------------------------------------------------

    def _tolerances(self) -> _Tolerances:
        cfg = self.config
        down = up = cfg.tolerance
        if cfg.behavior is not None:
            if cfg.behavior.scale_down.tolerance is not None:
                down = cfg.behavior.scale_down.tolerance
            if cfg.behavior.scale_up.tolerance is not None:
                up = cfg.behavior.scale_up.tolerance
        return _Tolerances(down=down, up=up)

    def _replicas_for_metrics(self, obs: Observation, now: float) -> tuple[int, str, tuple[tuple[str, float], ...]]:
        replicas, metric_name = 0, ""
        invalid: list[str] = []
        details: list[tuple[str, float]] = []
        for target in self.config.metrics:
            try:
                proposal = self._replicas_for_metric(target, obs, now)
            except _InvalidMetric as e:
                invalid.append(f"{target.name}: {e}")
                continue
            details.append((f"{target.name}.replicas", float(proposal)))
            if replicas == 0 or proposal > replicas:
                replicas, metric_name = proposal, target.name
        # All metrics invalid, or some invalid and the valid ones would scale down: do nothing, since the
        # invalid metric might have asked for more.
        if len(invalid) >= len(self.config.metrics) or (invalid and replicas < obs.current_replicas):
            raise _InvalidMetric("; ".join(invalid))
        return replicas, metric_name, tuple(details)

    def _replicas_for_metric(self, target: MetricTarget, obs: Observation, now: float) -> int:
        tol = self._tolerances()
        current = obs.current_replicas
        if target.kind == "Resource":
            if target.target_type == "Utilization":
                return self._resource_replicas(target, obs, now, tol)
            return self._plain_replicas(target, obs, now, tol, resource=target.name)
        if target.kind == "Pods":
            if not obs.pods and target.name in obs.external:
                return _per_pod_value_replicas(obs.external[target.name], target, obs.status_count(), tol)
            return self._plain_replicas(target, obs, now, tol, resource="")
        value = obs.external.get(target.name)
        if value is None:
            raise _InvalidMetric(f"no value for {target.kind.lower()} metric {target.name!r}")
        if target.target_type == "AverageValue":
            return _per_pod_value_replicas(value, target, obs.status_count(), tol)
        # Value: usage ratio against the whole target, scaled by the ready pods.
        usage_ratio = _milli(value) / _milli(target.value)
        if current == 0:
            return math.ceil(usage_ratio)
        if tol.within(usage_ratio):
            return current
        if not obs.pods and obs.ready_replicas is None:
            raise _InvalidMetric("no pods returned by selector while calculating replica count")
        return math.ceil(usage_ratio * obs.ready_count())

    # -- groupPods ---------------------------------------------------------------------------------------

    def _group_pods(
        self, pods: tuple[PodSample, ...], key: str, resource: str, now: float
    ) -> tuple[int, list[PodSample], list[PodSample], list[PodSample], list[PodSample]]:
        """Split pods into (ready count, with-metric ready pods, unready, missing, ignored)."""
        cfg = self.config
        ready: list[PodSample] = []
        unready: list[PodSample] = []
        missing: list[PodSample] = []
        ignored: list[PodSample] = []
        for pod in pods:
            if pod.deleting or pod.phase == "Failed":
                ignored.append(pod)
                continue
            if pod.phase == "Pending":
                unready.append(pod)
                continue
            if key not in pod.metrics:
                missing.append(pod)
                continue
            if resource == "cpu":
                if pod.ready is None or pod.started_at is None:
                    is_unready = True
                elif pod.started_at + cfg.cpu_initialization_period > now:
                    # Within the initialization period: ignore the sample if the pod is unready or the metric
                    # window has not fully passed since the last readiness transition.
                    metrics_at = now if pod.metrics_at is None else pod.metrics_at
                    is_unready = (pod.ready is False) or metrics_at < pod.ready_changed_at + pod.metrics_window
                else:
                    # After it: ignore only a pod that is unready and has never been ready.
                    is_unready = (pod.ready is False) and (
                        pod.started_at + cfg.delay_of_initial_readiness_status > pod.ready_changed_at
                    )
                if is_unready:
                    unready.append(pod)
                    continue
            ready.append(pod)
        return len(ready), ready, unready, missing, ignored

    # -- GetResourceReplicas -----------------------------------------------------------------------------

    def _resource_replicas(self, target: MetricTarget, obs: Observation, now: float, tol: _Tolerances) -> int:
        current = obs.current_replicas
        key = target.name
        if not obs.pods:
            raise _InvalidMetric("no pods returned by selector while calculating replica count")
        if not any(key in p.metrics for p in obs.pods):
            raise _InvalidMetric(f"unable to get metrics for resource {key}: no metrics returned")
        requests: dict[str, int] = {}
        for pod in obs.pods:
            if key not in pod.requests:
                raise _InvalidMetric(f"missing request for {key} in pod {pod.name}")
            requests[pod.name] = _milli(pod.requests[key])
        ready_count, ready, unready, missing, _ignored = self._group_pods(obs.pods, key, key, now)
        metrics = {p.name: _milli(p.metrics[key]) for p in ready}
        if not metrics:
            raise _InvalidMetric("did not receive metrics for targeted pods (pods might be unready)")
        target_util = target.value
        usage_ratio = _utilization_ratio(metrics, requests, target_util)
        scale_up_with_unready = bool(unready) and usage_ratio > 1.0
        if not scale_up_with_unready and not missing:
            if tol.within(usage_ratio):
                return current
            return math.ceil(usage_ratio * ready_count)
        if missing:
            if usage_ratio < 1.0:
                # On a scale-down, a pod without metrics counts as using all its request, or the target when
                # the target is above 100%, so that it cannot drive the scale-down.
                fallback = max(100, int(target_util))
                for pod in missing:
                    metrics[pod.name] = requests[pod.name] * fallback // 100
            elif usage_ratio > 1.0:
                for pod in missing:
                    metrics[pod.name] = 0
        if scale_up_with_unready:
            for pod in unready:
                metrics[pod.name] = 0
        new_ratio = _utilization_ratio(metrics, requests, target_util)
        return _recomputed(current, usage_ratio, new_ratio, len(metrics), tol)

    # -- calcPlainMetricReplicas -------------------------------------------------------------------------

    def _plain_replicas(
        self, target: MetricTarget, obs: Observation, now: float, tol: _Tolerances, resource: str
    ) -> int:
        current = obs.current_replicas
        key = target.name
        if not obs.pods:
            raise _InvalidMetric("no pods returned by selector while calculating replica count")
        ready_count, ready, unready, missing, _ignored = self._group_pods(obs.pods, key, resource, now)
        metrics = {p.name: _milli(p.metrics[key]) for p in ready}
        if not metrics:
            raise _InvalidMetric("did not receive metrics for targeted pods (pods might be unready)")
        target_usage = _milli(target.value)
        usage_ratio = _usage_ratio(metrics, target_usage)
        scale_up_with_unready = bool(unready) and usage_ratio > 1.0
        if not scale_up_with_unready and not missing:
            if tol.within(usage_ratio):
                return current
            return math.ceil(usage_ratio * ready_count)
        if missing:
            fill = target_usage if usage_ratio < 1.0 else 0
            for pod in missing:
                metrics[pod.name] = fill
        if scale_up_with_unready:
            for pod in unready:
                metrics[pod.name] = 0
        new_ratio = _usage_ratio(metrics, target_usage)
        return _recomputed(current, usage_ratio, new_ratio, len(metrics), tol)

    # -- normalizeDesiredReplicas (no behavior) ----------------------------------------------------------

    def _normalize(self, state: HpaState, current: int, desired: int, now: float) -> tuple[int, HpaState, str]:
        cfg = self.config
        cutoff = now - cfg.downscale_stabilization_window
        stabilized = desired
        old_index = -1
        for i, rec in enumerate(state.recommendations):
            if rec.time < cutoff:
                old_index = i
            elif rec.replicas > stabilized:
                stabilized = rec.replicas
        state = replace(state, recommendations=_record(state.recommendations, old_index, desired, now))
        limit = "ScaleDownStabilized" if stabilized != desired else ""
        scale_up_limit = max(2 * current, 4)
        if cfg.max_replicas > scale_up_limit:
            maximum, max_reason = scale_up_limit, "ScaleUpLimit"
        else:
            maximum, max_reason = cfg.max_replicas, "TooManyReplicas"
        if stabilized < cfg.min_replicas:
            return cfg.min_replicas, state, "TooFewReplicas"
        if stabilized > maximum:
            return maximum, state, max_reason
        return stabilized, state, limit

    # -- normalizeDesiredReplicasWithBehaviors -----------------------------------------------------------

    def _normalize_with_behaviors(
        self, behavior: Behavior, state: HpaState, current: int, desired: int, now: float
    ) -> tuple[int, HpaState, str]:
        cfg = self.config
        up_cutoff = now - behavior.scale_up.stabilization_window_seconds
        down_cutoff = now - behavior.scale_down.stabilization_window_seconds
        up_rec = down_rec = desired
        old_index = -1
        for i, rec in enumerate(state.recommendations):
            if rec.time > up_cutoff:
                up_rec = min(rec.replicas, up_rec)
            if rec.time > down_cutoff:
                down_rec = max(rec.replicas, down_rec)
            if rec.time < up_cutoff and rec.time < down_cutoff:
                old_index = i
        stabilized = current
        stabilized = max(stabilized, up_rec)
        stabilized = min(stabilized, down_rec)
        state = replace(state, recommendations=_record(state.recommendations, old_index, desired, now))
        limit = ""
        if stabilized != desired:
            limit = "ScaleUpStabilized" if desired >= current else "ScaleDownStabilized"

        if stabilized > current:
            scale_up_limit = _scale_up_limit(current, state, behavior.scale_up, now)
            scale_up_limit = max(scale_up_limit, current)
            if cfg.max_replicas > scale_up_limit:
                maximum, reason = scale_up_limit, "ScaleUpLimit"
            else:
                maximum, reason = cfg.max_replicas, "TooManyReplicas"
            if stabilized > maximum:
                return maximum, state, reason
        elif stabilized < current:
            scale_down_limit = _scale_down_limit(current, state, behavior.scale_down, now)
            scale_down_limit = min(scale_down_limit, current)
            if cfg.min_replicas < scale_down_limit:
                minimum, reason = scale_down_limit, "ScaleDownLimit"
            else:
                minimum, reason = cfg.min_replicas, "TooFewReplicas"
            if stabilized < minimum:
                return minimum, state, reason
        return stabilized, state, limit


# -- metrics/utilization.go ------------------------------------------------------------------------------


def _utilization_ratio(metrics: Mapping[str, int], requests: Mapping[str, int], target_util: float) -> float:
    total = sum(metrics.values())
    requested = sum(requests[name] for name in metrics if name in requests)
    if requested == 0:
        raise _InvalidMetric("no metrics returned matched known pods")
    utilization = (total * 100) // requested  # whole percent, truncated, as int32 in Go
    return utilization / target_util


def _usage_ratio(metrics: Mapping[str, int], target_usage: int) -> float:
    current_usage = sum(metrics.values()) // len(metrics)
    return current_usage / target_usage


def _recomputed(current: int, usage_ratio: float, new_ratio: float, n: int, tol: _Tolerances) -> int:
    # Keep the current count if the change is too small or if filling in missing/unready pods reversed the
    # direction of the scale ("no reversal").
    if tol.within(new_ratio) or (usage_ratio < 1.0 < new_ratio) or (usage_ratio > 1.0 > new_ratio):
        return current
    new_replicas = math.ceil(new_ratio * n)
    if (new_ratio < 1.0 and new_replicas > current) or (new_ratio > 1.0 and new_replicas < current):
        return current
    return new_replicas


def _per_pod_value_replicas(value: float, target: MetricTarget, status_replicas: int, tol: _Tolerances) -> int:
    """GetObjectPerPodMetricReplicas / GetExternalPerPodMetricReplicas."""
    usage, per_pod = _milli(value), _milli(target.value)
    denominator = per_pod * status_replicas
    # At zero replicas the ratio is +Inf (or NaN for no usage), never within tolerance, as in Go.
    ratio = usage / denominator if denominator else (math.inf if usage > 0 else math.nan)
    if tol.within(ratio):
        return status_replicas
    return math.ceil(usage / per_pod)


# -- behavior: rate limits and scale events --------------------------------------------------------------


def _record(recs: tuple[Recommendation, ...], old_index: int, desired: int, now: float) -> tuple[Recommendation, ...]:
    # The controller overwrites one sample that fell out of every window, otherwise appends: the list stays
    # about as long as the window holds samples.
    return _replace_or_append(recs, old_index, Recommendation(now, desired))


def _replace_or_append(items: tuple[T, ...], index: int, item: T) -> tuple[T, ...]:
    if index >= 0:
        return (*items[:index], item, *items[index + 1 :])
    return (*items, item)


def _change_in_period(period: int, events: tuple[ScaleEvent, ...], now: float) -> int:
    cutoff = now - period
    return sum(e.change for e in events if e.time > cutoff)


def _select(rules: ScalingRules, direction: Literal["up", "down"]) -> tuple[int, Callable[[int, int], int]]:
    # For a scale-up the largest proposal is the biggest change; for a scale-down the smallest is.
    if (rules.select_policy == "Min") == (direction == "up"):
        return (2**31 - 1, min)
    return (-(2**31), max)


def _scale_up_limit(current: int, state: HpaState, rules: ScalingRules, now: float) -> int:
    if rules.select_policy == "Disabled":
        return current
    result, pick = _select(rules, "up")
    for policy in rules.policies:
        added = _change_in_period(policy.period_seconds, state.scale_up_events, now)
        deleted = _change_in_period(policy.period_seconds, state.scale_down_events, now)
        period_start = current - added + deleted
        if policy.type == "Pods":
            proposed = period_start + policy.value
        else:
            # Rounded up so that a small percentage can still add a pod.
            proposed = math.ceil(period_start * (1 + policy.value / 100))
        result = pick(result, proposed)
    return result


def _scale_down_limit(current: int, state: HpaState, rules: ScalingRules, now: float) -> int:
    if rules.select_policy == "Disabled":
        return current
    result, pick = _select(rules, "down")
    for policy in rules.policies:
        added = _change_in_period(policy.period_seconds, state.scale_up_events, now)
        deleted = _change_in_period(policy.period_seconds, state.scale_down_events, now)
        period_start = current - added + deleted
        if policy.type == "Pods":
            proposed = period_start - policy.value
        else:
            proposed = int(period_start * (1 - policy.value / 100))  # Go's int32() truncates
        result = pick(result, proposed)
    return result


def _store_scale_event(behavior: Behavior, state: HpaState, previous: int, new: int, now: float) -> HpaState:
    if new > previous:
        rules, events, change = behavior.scale_up, state.scale_up_events, new - previous
    else:
        rules, events, change = behavior.scale_down, state.scale_down_events, previous - new
    longest = max((p.period_seconds for p in rules.policies), default=0)
    cutoff = now - longest
    marked = tuple(replace(e, outdated=True) if e.time < cutoff else e for e in events)
    old_index = -1
    for i, e in enumerate(marked):
        if e.outdated:
            old_index = i
    event = ScaleEvent(now, change)
    updated = _replace_or_append(marked, old_index, event)
    if new > previous:
        return replace(state, scale_up_events=updated)
    return replace(state, scale_down_events=updated)
