"""Invariants every policy keeps, whatever the load: bounds, stabilization, panic, VPA ordering, need."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kubeinfer.autoscale.base import LoadSample, Observation
from kubeinfer.autoscale.hpa import HPA, Behavior, HpaConfig, MetricTarget
from kubeinfer.autoscale.kpa import KPA, KpaConfig
from kubeinfer.autoscale.predictive import Predictive, PredictiveConfig
from kubeinfer.autoscale.vpa import VPA, VpaObservation
from strategies import behaviors, concurrency_series, cpu_pod_sets, replica_bounds

FAST = settings(max_examples=60, deadline=None)
METRICS = (
    (MetricTarget("Resource", "cpu", "Utilization", 60),),
    (MetricTarget("Pods", "concurrency", "AverageValue", 4),),
    (MetricTarget("Resource", "cpu", "Utilization", 60), MetricTarget("Pods", "concurrency", "AverageValue", 4)),
)


@FAST
@given(
    bounds=replica_bounds(),
    behavior=behaviors,
    metrics=st.sampled_from(METRICS),
    data=st.data(),
)
def test_hpa_stays_within_bounds_and_never_scales_down_inside_the_window(
    bounds: tuple[int, int], behavior: Behavior | None, metrics: tuple[MetricTarget, ...], data: st.DataObject
) -> None:
    lo, hi = bounds
    policy = HPA(HpaConfig(lo, hi, metrics, behavior=behavior))
    window = 300 if behavior is None else behavior.scale_down.stabilization_window_seconds
    state = policy.initial_state()
    current = data.draw(st.integers(lo, hi))
    history: list[tuple[float, int]] = []
    for tick in range(data.draw(st.integers(1, 12))):
        now = 15.0 * tick
        pods = data.draw(cpu_pod_sets(current))
        decision, state = policy.decide(Observation(current, pods), state, now)
        assert lo <= decision.replicas <= hi
        if decision.recommended is not None and decision.reason != "FailedGetMetrics":
            history.append((now, decision.recommended))
            in_window = [r for t, r in history if t > now - window or t == now]
            # No scale-down below what any recommendation inside the window asked for.
            assert decision.replicas >= min(current, max(in_window), hi) or decision.replicas == lo
        current = decision.replicas


@FAST
@given(bounds=replica_bounds(allow_zero=True), levels=concurrency_series, tbc=st.sampled_from([-1.0, 0.0, 211.0]))
def test_kpa_stays_within_bounds_and_panic_never_scales_down(
    bounds: tuple[int, int], levels: list[float], tbc: float
) -> None:
    lo, hi = bounds
    policy = KPA(KpaConfig(lo, hi, target=7.0, total=10.0, target_burst_capacity=tbc))
    state = policy.initial_state()
    current, previous = max(lo, 1), None
    t = 0.0
    for level in levels:
        samples = tuple(LoadSample(t + i, concurrency=level) for i in range(2))
        t += 2.0
        decision, state = policy.decide(Observation(current, ready_replicas=current, load=samples), state, t)
        assert lo <= decision.replicas <= hi
        if decision.panic and previous is not None and previous.panic:
            assert decision.replicas >= previous.replicas
        previous, current = decision, decision.replicas


@FAST
@given(
    usage=st.lists(st.tuples(st.floats(0.0, 8.0), st.floats(1e6, 8e9)), min_size=1, max_size=30),
    spacing=st.floats(1.0, 7200.0),
)
def test_vpa_bounds_are_ordered(usage: list[tuple[float, float]], spacing: float) -> None:
    vpa = VPA()
    obs = VpaObservation(
        cpu=tuple((i * spacing, c) for i, (c, _) in enumerate(usage)),
        memory=tuple((i * spacing, m) for i, (_, m) in enumerate(usage)),
    )
    d, _ = vpa.decide(obs, vpa.initial_state(), len(usage) * spacing)
    assert d.lower_bound.cpu <= d.target.cpu <= d.upper_bound.cpu
    assert d.lower_bound.memory <= d.target.memory <= d.upper_bound.memory


@FAST
@given(
    bounds=replica_bounds(allow_zero=True),
    rates=st.lists(st.floats(0.0, 500.0, allow_nan=False), min_size=1, max_size=60),
)
def test_predictive_never_provisions_below_the_current_need(bounds: tuple[int, int], rates: list[float]) -> None:
    lo, hi = bounds
    policy = Predictive(PredictiveConfig(lo, hi, capacity_rps=20.0, season_seconds=600.0))
    state = policy.initial_state()
    t = 0.0
    for rate in rates:
        samples = tuple(LoadSample(t + i, rps=rate) for i in range(15))
        t += 15.0
        decision, state = policy.decide(Observation(1, load=samples), state, t)
        need = decision.detail("need_now")
        assert need is not None
        assert decision.replicas >= min(need, hi)
        assert lo <= decision.replicas <= hi
