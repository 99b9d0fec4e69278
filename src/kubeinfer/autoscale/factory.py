"""Build a policy from ``spec.autoscaling``: the one place where the spec meets the policies.

The local controller, the simulator and the Kubernetes operator all call :func:`policy_from_spec`, so a
service scales the same way wherever it runs. Mapping of ``MetricSpec.type`` onto HPA metric sources:
``cpu``/``memory`` are Resource metrics with an ``averageUtilization`` target (percent of the request);
``concurrency``, ``rps``, ``queue-depth`` and ``gpu-utilization`` are Pods metrics with an ``averageValue``
target; ``external`` is an External metric with an ``averageValue`` target (the spec has no way to ask for
``value`` yet).
"""

from __future__ import annotations

from typing import Any, Literal

from kubeinfer.autoscale.base import Decision, Observation, Policy
from kubeinfer.autoscale.hpa import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    HPA,
    Behavior,
    HpaConfig,
    MetricTarget,
    ScalingPolicy,
    ScalingRules,
)
from kubeinfer.autoscale.kpa import KPA, KpaConfig, resolve_target
from kubeinfer.autoscale.predictive import Predictive, predictive_config_from_spec
from kubeinfer.spec.service import AutoscalingSpec, BehaviorSpec, HPAScalingRules, MetricSpec

__all__ = ["FixedReplicas", "hpa_config_from_spec", "kpa_config_from_spec", "policy_from_spec"]


class FixedReplicas:
    """``policy: none``: hold the replica count at ``replicas`` (``spec.replicas`` or minReplicas)."""

    def __init__(self, replicas: int) -> None:
        self.replicas = replicas

    @property
    def min_replicas(self) -> int:
        return self.replicas

    @property
    def max_replicas(self) -> int:
        return self.replicas

    def initial_state(self) -> None:
        return None

    def decide(self, observation: Observation, state: None, now: float) -> tuple[Decision, None]:
        return Decision(self.replicas, "Fixed"), state


def _metric_target(m: MetricSpec) -> MetricTarget:
    if m.type in ("cpu", "memory"):
        return MetricTarget("Resource", m.type, "Utilization", m.target)
    if m.type == "external":
        return MetricTarget("External", m.name or "external", "AverageValue", m.target)
    return MetricTarget("Pods", m.type, "AverageValue", m.target)


def _rules(spec: HPAScalingRules | None, default: ScalingRules) -> ScalingRules:
    # The API server fills unset parts of a given behavior; an unset scale-down window becomes the
    # controller's --horizontal-pod-autoscaler-downscale-stabilization (300 s, in DEFAULT_SCALE_DOWN).
    if spec is None:
        return default
    window = spec.stabilizationWindowSeconds
    if window is None:
        window = default.stabilization_window_seconds
    policies = default.policies
    if spec.policies:
        policies = tuple(ScalingPolicy(p.type, p.value, p.periodSeconds) for p in spec.policies)
    return ScalingRules(window, spec.selectPolicy, policies, spec.tolerance)


def _behavior(spec: BehaviorSpec | None) -> Behavior | None:
    if spec is None:
        return None
    return Behavior(
        scale_up=_rules(spec.scaleUp, DEFAULT_SCALE_UP),
        scale_down=_rules(spec.scaleDown, DEFAULT_SCALE_DOWN),
    )


def hpa_config_from_spec(spec: AutoscalingSpec) -> HpaConfig:
    return HpaConfig(
        min_replicas=spec.minReplicas,
        max_replicas=spec.maxReplicas,
        metrics=tuple(_metric_target(m) for m in spec.effective_metrics),
        tolerance=spec.tolerance,
        behavior=_behavior(spec.behavior),
    )


def kpa_config_from_spec(spec: AutoscalingSpec) -> KpaConfig:
    k = spec.kpa
    metric: Literal["concurrency", "rps"] = "concurrency"
    soft: float | None = None
    if spec.metric in ("concurrency", "rps"):
        metric, soft = spec.metric, spec.target
    elif spec.metrics:
        m = spec.metrics[0]
        if m.type in ("concurrency", "rps"):
            metric = "rps" if m.type == "rps" else "concurrency"
            soft = m.target
    target, total = resolve_target(metric, k.containerConcurrency, soft, k.targetUtilizationPercentage)
    return KpaConfig(
        min_replicas=spec.minReplicas,
        max_replicas=spec.maxReplicas,
        target=target,
        total=total,
        metric=metric,
        stable_window=k.stableWindowSeconds,
        panic_window_percentage=k.panicWindowPercentage,
        panic_threshold=k.panicThresholdPercentage / 100.0,
        max_scale_up_rate=k.maxScaleUpRate,
        max_scale_down_rate=k.maxScaleDownRate,
        scale_to_zero_grace_period=k.scaleToZeroGracePeriodSeconds,
        scale_down_delay=k.scaleDownDelaySeconds,
        activation_scale=k.activationScale,
        target_burst_capacity=k.targetBurstCapacity,
        initial_scale=k.initialScale,
    )


def policy_from_spec(spec: AutoscalingSpec, fixed_replicas: int | None = None) -> Policy[Any]:
    """The policy ``spec.policy`` names, configured from the spec's fields and their documented defaults.

    ``fixed_replicas`` is ``ServiceSpec.replicas``, used by ``policy: none`` (default: minReplicas).
    """
    if spec.policy == "hpa":
        return HPA(hpa_config_from_spec(spec))
    if spec.policy == "kpa":
        return KPA(kpa_config_from_spec(spec))
    if spec.policy == "predictive":
        return Predictive(predictive_config_from_spec(spec))
    replicas = spec.minReplicas if fixed_replicas is None else fixed_replicas
    return FixedReplicas(replicas)
