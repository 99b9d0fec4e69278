"""The HPA reproduces Kubernetes' documented examples and the controller's own test cases."""

from __future__ import annotations

import pytest

from kubeinfer.autoscale.base import Observation, PodSample
from kubeinfer.autoscale.hpa import (
    HPA,
    Behavior,
    HpaConfig,
    HpaState,
    MetricTarget,
    Recommendation,
    ScalingPolicy,
    ScalingRules,
)

NOW = 10_000.0
CPU50 = MetricTarget("Resource", "cpu", "Utilization", 50)


def cpu_pods(*millicores: int, request: float = 1.0, ready: list[bool | None] | None = None) -> tuple[PodSample, ...]:
    """Pods started long ago; an unready one has never been ready (its condition changed at start)."""
    return tuple(
        PodSample(
            f"p{i}",
            metrics={"cpu": m / 1000},
            requests={"cpu": request},
            ready=True if ready is None else ready[i],
            started_at=NOW - 1000,
            ready_changed_at=NOW - 1000,
        )
        for i, m in enumerate(millicores)
    )


def hpa(metrics: tuple[MetricTarget, ...] = (CPU50,), lo: int = 1, hi: int = 100, **kw: object) -> HPA:
    return HPA(HpaConfig(lo, hi, metrics, **kw))  # type: ignore[arg-type]


def decide(policy: HPA, obs: Observation, state: HpaState | None = None, now: float = NOW) -> int:
    return policy.decide(obs, state or policy.initial_state(), now)[0].replicas


# -- replica calculation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "target", "current", "pods", "expected"),
    [
        # horizontal_test.go TestScaleUp: 1500m of 3000m requested = 50% vs 30% -> ceil(1.67 x 3) = 5
        ("scale-up", 30, 3, cpu_pods(300, 500, 700), 5),
        # TestScaleDown: 1400m / 5000m = 28% vs 50% -> ceil(0.56 x 5) = 3
        ("scale-down", 50, 5, cpu_pods(100, 300, 500, 250, 250), 3),
        # within tolerance: 53% vs 50% -> ratio 1.06 keeps the count
        ("tolerance-keeps-count", 50, 3, cpu_pods(530, 530, 530), 3),
        # TestScaleUpUnreadyLessScale: the unready pod counts as 0 on a scale-up -> 1200/3000 = 40% vs 30% -> 4
        ("unready-counted-as-zero-on-scale-up", 30, 3, cpu_pods(300, 500, 700, ready=[False, True, True]), 4),
        # TestScaleUpUnreadyNoScale: with unready pods at 0 the ratio falls below 1 -> no reversal, keep 3
        ("unready-no-reversal", 30, 3, cpu_pods(400, 500, 700, ready=[True, False, False]), 3),
        # utilization is truncated to a whole percent before the ratio: 549m -> 54% (1.08) keeps the count
        ("utilization-truncated", 50, 1, cpu_pods(549), 1),
    ],
)
def test_resource_utilization_matches_the_controller(
    name: str, target: int, current: int, pods: tuple[PodSample, ...], expected: int
) -> None:
    policy = hpa((MetricTarget("Resource", "cpu", "Utilization", target),))
    assert decide(policy, Observation(current, pods)) == expected


def test_missing_metrics_count_as_full_request_on_scale_down() -> None:
    """3 pods at 10% and one without metrics: the missing pod counts as 100%, 1300/4000 = 32% -> 3, not 1."""
    pods = (*cpu_pods(100, 100, 100), PodSample("m", requests={"cpu": 1.0}))
    assert decide(hpa(), Observation(4, pods)) == 3


def test_missing_metrics_count_as_target_when_target_above_100_percent() -> None:
    """With a 200% target the missing pod counts at 200% of its request on a scale-down."""
    pods = (*cpu_pods(500, 500, 500), PodSample("m", requests={"cpu": 1.0}))
    # 1500/3000 = 50% vs 200% -> 0.25; with the missing pod at 2000m: 3500/4000 = 87% -> 0.435 -> ceil(1.74) = 2
    policy = hpa((MetricTarget("Resource", "cpu", "Utilization", 200),))
    assert decide(policy, Observation(4, pods)) == 2


def test_missing_metrics_count_as_zero_on_scale_up() -> None:
    """3 pods at 90% and one missing: 2700/4000 = 67% vs 50% -> ceil(1.34 x 4) = 6 (not ceil(1.8 x 3) = 6+)."""
    pods = (*cpu_pods(900, 900, 900), PodSample("m", requests={"cpu": 1.0}))
    assert decide(hpa(), Observation(4, pods)) == 6


def test_missing_metrics_never_reverse_the_direction() -> None:
    """60% would scale up, but with the missing pod at 0 it is 45%: the HPA keeps the count instead."""
    pods = (*cpu_pods(600, 600, 600), PodSample("m", requests={"cpu": 1.0}))
    assert decide(hpa(), Observation(4, pods)) == 4


def test_deleting_and_failed_pods_are_ignored() -> None:
    pods = (
        *cpu_pods(900, 900),
        PodSample("gone", metrics={"cpu": 0.0}, requests={"cpu": 1.0}, deleting=True),
        PodSample("dead", metrics={"cpu": 0.0}, requests={"cpu": 1.0}, phase="Failed"),
    )
    # 1800/2000 = 90% vs 50% -> ceil(1.8 x 2) = 4
    assert decide(hpa(), Observation(4, pods)) == 4


def test_cpu_sample_taken_too_soon_after_readiness_is_ignored() -> None:
    """Within the cpu initialization period, a sample whose window overlaps the readiness change is unready."""
    fresh = PodSample(
        "new",
        metrics={"cpu": 0.0},
        requests={"cpu": 1.0},
        started_at=NOW - 60,
        ready_changed_at=NOW - 50,
        metrics_at=NOW - 25,
        metrics_window=30,
    )
    pods = (*cpu_pods(900, 900), fresh)
    # 900+900 of 2000 = 90% -> scale up with the unready pod at 0: 1800/3000 = 60% -> ceil(1.2 x 3) = 4
    assert decide(hpa(), Observation(3, pods)) == 4
    settled = PodSample("new", metrics={"cpu": 0.0}, requests={"cpu": 1.0}, started_at=NOW - 60)
    # now the idle pod counts: 1800/3000 = 60% -> 1.2 -> ceil(3.6) = 4 as well, but via the ready path
    assert decide(hpa(), Observation(3, (*cpu_pods(900, 900), settled))) == 4


def test_cpu_of_a_pod_that_was_ready_before_counts_after_the_initialization_period() -> None:
    """Kubernetes only sets aside an unready pod's cpu if it has never been ready (or is still starting)."""
    flapping = PodSample(
        "f", metrics={"cpu": 0.9}, requests={"cpu": 1.0}, ready=False, started_at=NOW - 1000, ready_changed_at=NOW - 10
    )
    pods = (*cpu_pods(900, 900, 900), flapping)
    # counted: 3600/4000 = 90% -> ceil(1.8 x 4) = 8 (set aside at 0 it would have been 2700/4000 -> 6)
    assert decide(hpa(lo=1, hi=8), Observation(4, pods)) == 8


def test_pending_pods_count_as_zero_for_pod_metrics_on_scale_up() -> None:
    conc = MetricTarget("Pods", "concurrency", "AverageValue", 4)
    pods = (
        PodSample("a", metrics={"concurrency": 8}),
        PodSample("b", metrics={"concurrency": 8}),
        PodSample("c", phase="Pending"),
    )
    # ready: 8 avg vs 4 -> 2.0; with the pending pod at 0: 16/3 = 5.333 vs 4 -> ceil(1.333 x 3) = 4
    assert decide(hpa((conc,)), Observation(3, pods)) == 4


def test_docs_example_doubling_and_halving() -> None:
    """Docs: a metric at 200m for a 100m target doubles the replicas; at 50m it halves them."""
    m = MetricTarget("Pods", "rps", "AverageValue", 0.1)
    double = tuple(PodSample(f"p{i}", metrics={"rps": 0.2}) for i in range(4))
    half = tuple(PodSample(f"p{i}", metrics={"rps": 0.05}) for i in range(4))
    assert decide(hpa((m,)), Observation(4, double)) == 8
    assert decide(hpa((m,)), Observation(4, half)) == 2


def test_highest_proposal_across_metrics_wins() -> None:
    conc = MetricTarget("Pods", "concurrency", "AverageValue", 4)
    pods = tuple(PodSample(f"p{i}", metrics={"cpu": 0.1, "concurrency": 12}, requests={"cpu": 1}) for i in range(2))
    decision, _ = hpa((CPU50, conc)).decide(Observation(2, pods), HpaState(), NOW)
    assert decision.replicas == 4  # legacy cap max(2 x 2, 4) = 4 of the 6 concurrency asks for
    assert decision.recommended == 6
    assert decision.detail("cpu.replicas") == 1.0


def test_invalid_metric_blocks_scale_down_from_the_valid_ones() -> None:
    ext = MetricTarget("External", "queue", "Value", 10)
    pods = cpu_pods(100, 100, 100, 100)
    decision, state = hpa((CPU50, ext)).decide(Observation(4, pods), HpaState(), NOW)
    assert decision.replicas == 4
    assert decision.reason == "FailedGetMetrics"
    assert state == HpaState()


def test_external_average_value_scales_from_zero() -> None:
    ext = MetricTarget("External", "queue", "AverageValue", 10)
    policy = hpa((ext,), lo=0)
    assert decide(policy, Observation(0, external={"queue": 30})) == 3
    assert decide(policy, Observation(0, external={"queue": 0})) == 0


def test_pods_metric_with_no_pods_reads_the_service_total() -> None:
    conc = MetricTarget("Pods", "concurrency", "AverageValue", 4)
    assert decide(hpa((conc,), lo=0), Observation(0, external={"concurrency": 6})) == 2


def test_object_value_scales_by_ready_pods() -> None:
    obj = MetricTarget("Object", "requests", "Value", 100)
    pods = (PodSample("a"), PodSample("b"), PodSample("u", ready=False))
    # 300 vs 100 -> ratio 3 x 2 ready pods = 6
    assert decide(hpa((obj,)), Observation(3, pods, external={"requests": 300})) == 6


# -- reconcile: bounds, legacy cap and stabilization ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "lo", "hi", "current", "millicores", "expected"),
    [
        ("above-max-is-clamped", 1, 5, 7, (500,) * 7, 5),
        ("below-min-is-raised", 3, 5, 1, (500,), 3),
        ("legacy-cap-2x-current", 1, 100, 3, (2000, 2000, 2000), 6),
        ("legacy-cap-at-least-4", 1, 100, 1, (5000,), 4),
        ("recommendation-clamped-to-min", 2, 10, 4, (10, 10, 10, 10), 2),
    ],
)
def test_reconcile_bounds(
    name: str, lo: int, hi: int, current: int, millicores: tuple[int, ...], expected: int
) -> None:
    assert decide(hpa(lo=lo, hi=hi), Observation(current, cpu_pods(*millicores))) == expected


def test_replicas_scaled_to_zero_by_hand_disable_the_hpa() -> None:
    decision, _ = hpa().decide(Observation(0), HpaState(), NOW)
    assert (decision.replicas, decision.reason) == (0, "ScalingDisabled")


def test_legacy_scale_down_waits_for_the_300s_window() -> None:
    policy = hpa()
    state = HpaState(recommendations=(Recommendation(NOW - 200, 8),))
    low = cpu_pods(50, 50, 50, 50, 50, 50, 50, 50)
    d, state = policy.decide(Observation(8, low), state, NOW)
    assert d.replicas == 8
    d, _ = policy.decide(Observation(8, low), state, NOW + 101)
    assert d.replicas == 1


def test_recommendations_stay_bounded_by_the_window() -> None:
    policy = hpa()
    state = HpaState()
    for i in range(100):
        _, state = policy.decide(Observation(2, cpu_pods(500, 500)), state, NOW + 15 * i)
    assert len(state.recommendations) <= 300 // 15 + 2


# -- behavior ---------------------------------------------------------------------------------------------


def test_default_scale_up_policy_adds_4_pods_or_100_percent_per_15s() -> None:
    policy = hpa(behavior=Behavior())
    hot = cpu_pods(5000)
    d, state = policy.decide(Observation(1, hot), HpaState(), NOW)
    assert d.replicas == 5  # max(1 + 4, 2 x 1)
    d, state = policy.decide(Observation(5, cpu_pods(*(5000,) * 5)), state, NOW + 10)
    assert d.replicas == 5  # the +4 at NOW is still inside the 15 s period
    d, state = policy.decide(Observation(5, cpu_pods(*(5000,) * 5)), state, NOW + 15)
    assert d.replicas == 10  # max(5 + 4, 2 x 5)


def test_docs_example_percent_policy_removes_10_percent_per_minute() -> None:
    """Docs: with Pods 4 and Percent 10 per 60 s, 80 replicas drop by 8, then by 8 again (64), not 7.2."""
    down = ScalingRules(0, "Max", (ScalingPolicy("Pods", 4, 60), ScalingPolicy("Percent", 10, 60)))
    policy = hpa(behavior=Behavior(scale_down=down))
    d, state = policy.decide(Observation(80, cpu_pods(*(10,) * 80)), HpaState(), NOW)
    assert d.replicas == 72
    d, state = policy.decide(Observation(72, cpu_pods(*(10,) * 72)), state, NOW + 30)
    assert d.replicas == 72  # the 8 removed at NOW still count in this period
    d, state = policy.decide(Observation(72, cpu_pods(*(10,) * 72)), state, NOW + 60)
    assert d.replicas == 64


def test_select_policy_min_picks_the_smallest_change() -> None:
    up = ScalingRules(0, "Min", (ScalingPolicy("Pods", 4, 15), ScalingPolicy("Percent", 100, 15)))
    policy = hpa(behavior=Behavior(scale_up=up))
    assert decide(policy, Observation(10, cpu_pods(*(5000,) * 10))) == 14


def test_select_policy_disabled_never_scales_that_way() -> None:
    down = ScalingRules(0, "Disabled", (ScalingPolicy("Percent", 100, 15),))
    policy = hpa(behavior=Behavior(scale_down=down))
    assert decide(policy, Observation(10, cpu_pods(*(10,) * 10))) == 10


def test_scale_down_stabilization_window_applies_highest_recent_recommendation() -> None:
    policy = hpa(behavior=Behavior())  # scale-down window 300 s
    state = HpaState(recommendations=(Recommendation(NOW - 100, 10),))
    d, state = policy.decide(Observation(10, cpu_pods(*(10,) * 10)), state, NOW)
    assert d.replicas == 10
    assert "ScaleDownStabilized" in d.reason
    d, _ = policy.decide(Observation(10, cpu_pods(*(10,) * 10)), state, NOW + 201)
    assert d.replicas == 1


def test_scale_up_stabilization_window_applies_lowest_recent_recommendation() -> None:
    up = ScalingRules(60, "Max", (ScalingPolicy("Percent", 100, 15),))
    policy = hpa(behavior=Behavior(scale_up=up))
    state = HpaState(recommendations=(Recommendation(NOW - 30, 2),))
    assert decide(policy, Observation(2, cpu_pods(5000, 5000)), state) == 2
    assert decide(policy, Observation(2, cpu_pods(5000, 5000)), state, NOW + 31) == 4


def test_per_direction_tolerance_overrides_the_global_one() -> None:
    instant = ScalingRules(0, "Max", (ScalingPolicy("Percent", 100, 15),))
    up = ScalingRules(0, "Max", (ScalingPolicy("Percent", 100, 15),), tolerance=0.5)
    policy = hpa(behavior=Behavior(scale_up=up, scale_down=instant))
    assert decide(policy, Observation(4, cpu_pods(*(650,) * 4))) == 4  # 1.3 is within +50%
    assert decide(policy, Observation(4, cpu_pods(*(800,) * 4))) == 7  # 1.6 is not: ceil(6.4)
    assert decide(policy, Observation(4, cpu_pods(*(300,) * 4))) == 3  # 0.6: the global 0.1 applies down


def test_scale_events_are_recorded_only_with_behavior() -> None:
    _, legacy = hpa().decide(Observation(1, cpu_pods(5000)), HpaState(), NOW)
    assert legacy.scale_up_events == ()
    _, with_behavior = hpa(behavior=Behavior()).decide(Observation(1, cpu_pods(5000)), HpaState(), NOW)
    assert [(e.time, e.change) for e in with_behavior.scale_up_events] == [(NOW, 4)]


def test_decide_does_not_mutate_its_inputs() -> None:
    policy = hpa(behavior=Behavior())
    obs = Observation(3, cpu_pods(900, 900, 900))
    state = HpaState(recommendations=(Recommendation(NOW - 1, 3),))
    before = (obs, state)
    policy.decide(obs, state, NOW)
    assert (obs, state) == before
