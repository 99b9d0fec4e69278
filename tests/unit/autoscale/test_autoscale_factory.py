"""policy_from_spec builds each policy from spec.autoscaling with the documented defaults."""

from __future__ import annotations

import pytest

import kubeinfer.autoscale as autoscale
from kubeinfer.autoscale import HPA, KPA, FixedReplicas, Predictive, policy_from_spec
from kubeinfer.autoscale.hpa import DEFAULT_SCALE_DOWN, DEFAULT_SCALE_UP, MetricTarget, ScalingPolicy
from kubeinfer.spec.service import AutoscalingSpec


def test_hpa_maps_metric_types_onto_kubernetes_sources() -> None:
    spec = AutoscalingSpec(
        policy="hpa",
        maxReplicas=5,
        metrics=[
            {"type": "cpu", "target": 70},
            {"type": "concurrency", "target": 4},
            {"type": "external", "target": 10, "name": "queue"},
        ],
    )
    policy = policy_from_spec(spec)
    assert isinstance(policy, HPA)
    assert policy.config.metrics == (
        MetricTarget("Resource", "cpu", "Utilization", 70),
        MetricTarget("Pods", "concurrency", "AverageValue", 4),
        MetricTarget("External", "queue", "AverageValue", 10),
    )
    assert policy.config.behavior is None  # legacy path: 2x cap and 300 s downscale stabilization


def test_partial_behavior_is_completed_with_kubernetes_defaults() -> None:
    spec = AutoscalingSpec(
        maxReplicas=5,
        behavior={"scaleDown": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}},
    )
    policy = policy_from_spec(spec)
    assert isinstance(policy, HPA)
    behavior = policy.config.behavior
    assert behavior is not None
    assert behavior.scale_up == DEFAULT_SCALE_UP
    assert behavior.scale_down.stabilization_window_seconds == DEFAULT_SCALE_DOWN.stabilization_window_seconds
    assert behavior.scale_down.policies == (ScalingPolicy("Pods", 1, 60),)


def test_kpa_uses_the_soft_target_at_70_percent() -> None:
    spec = AutoscalingSpec(policy="kpa", maxReplicas=5, metric="concurrency", target=10)
    policy = policy_from_spec(spec)
    assert isinstance(policy, KPA)
    assert policy.config.target == pytest.approx(7.0)
    assert policy.config.stable_window == 60
    assert policy.config.panic_window == pytest.approx(6.0)


def test_predictive_needs_a_capacity() -> None:
    with pytest.raises(ValueError, match="capacityRps"):
        policy_from_spec(AutoscalingSpec(policy="predictive", maxReplicas=5))
    spec = AutoscalingSpec(policy="predictive", maxReplicas=5, predictive={"capacityRps": 50})
    assert isinstance(policy_from_spec(spec), Predictive)


def test_policy_none_holds_the_fixed_count() -> None:
    policy = policy_from_spec(AutoscalingSpec(policy="none", maxReplicas=5), fixed_replicas=3)
    assert isinstance(policy, FixedReplicas)
    from kubeinfer.autoscale.base import Observation

    assert policy.decide(Observation(1), policy.initial_state(), 0.0)[0].replicas == 3


def test_public_surface_is_explicit() -> None:
    assert set(autoscale.__all__) <= set(dir(autoscale))
    assert "policy_from_spec" in autoscale.__all__
