"""Predictive by work: busy time sizes requests of different cost; surges are read on arrivals; a cold start."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from kubeinfer.autoscale import LoadSample, Observation, Predictive, PredictiveConfig


def _work_cfg(**kw: object) -> PredictiveConfig:
    # One replica sustains 4 busy slots within the SLO; 10 req/s when counted in requests. No burst prior
    # (test_predictive_peak.py): these decisions are about sizing, not the first half hour's spare replica.
    kw.setdefault("burst_prior", False)
    return PredictiveConfig(1, 100, capacity_rps=10.0, capacity_work=4.0, headroom=1.0, trend=False, **kw)  # type: ignore[arg-type]


def _decide(cfg: PredictiveConfig, samples: tuple[LoadSample, ...], current: int = 1) -> int:
    policy = Predictive(cfg)
    d, _ = policy.decide(Observation(current, load=samples), policy.initial_state(), samples[-1].time)
    return d.replicas


def test_the_same_request_rate_needs_replicas_in_proportion_to_its_work() -> None:
    """10 req/s of 0.4 s requests is 4 busy slots (1 replica); of 2 s requests, 20 busy slots (5 replicas)."""
    short = tuple(LoadSample(float(t), concurrency=4.0, rps=10.0, work=4.0) for t in range(1, 31))
    long = tuple(LoadSample(float(t), concurrency=20.0, rps=10.0, work=20.0) for t in range(1, 31))
    assert _decide(_work_cfg(), short) == 1
    assert _decide(_work_cfg(), long) == 5
    rps_only = PredictiveConfig(1, 100, capacity_rps=10.0, headroom=1.0, trend=False, burst_prior=False)
    assert _decide(rps_only, short) == _decide(rps_only, long) == 1  # by rate, both look alike


def test_samples_without_work_fall_back_to_requests_in_flight() -> None:
    samples = tuple(LoadSample(float(t), concurrency=12.0, rps=10.0) for t in range(1, 31))
    assert _decide(_work_cfg(), samples) == 3


def test_a_work_curve_sizes_with_pooled_capacity() -> None:
    cfg = _work_cfg(work_curve=(4.0, 10.0, 16.0))
    samples = tuple(LoadSample(float(t), concurrency=9.0, rps=10.0, work=9.0) for t in range(1, 31))
    assert _decide(cfg, samples) == 2


def test_a_surge_in_arrivals_scales_work_before_busy_time_catches_up() -> None:
    """Busy time lags arrivals by a service time; the 6 s arrival surge is carried over at the current cost."""
    calm = [LoadSample(float(t), concurrency=4.0, rps=10.0, work=4.0) for t in range(1, 25)]
    surge = [LoadSample(float(t), concurrency=4.0, rps=40.0, work=4.0) for t in range(25, 31)]
    # 30 s averages: work 4, rps 16 -> 0.25 busy slots per req/s; 40 req/s -> 10 busy slots -> 3 replicas
    assert _decide(_work_cfg(), tuple(calm + surge)) == 3


def test_the_first_decision_does_not_scale_a_running_service_down() -> None:
    """Cold windows (a controller that just started) hold the current count for a stabilization window."""
    policy = Predictive(_work_cfg())
    idle = tuple(LoadSample(float(t), rps=10.0, work=0.5) for t in range(1, 16))
    d, state = policy.decide(Observation(6, load=idle), policy.initial_state(), 15.0)
    assert d.replicas == 6
    later = tuple(LoadSample(float(t), rps=10.0, work=0.5) for t in range(16, 200))
    d, _ = policy.decide(Observation(6, load=later), state, 200.0)
    assert d.replicas == 1


@settings(max_examples=60, deadline=None)
@given(
    lo=st.integers(0, 3),
    span=st.integers(0, 20),
    loads=st.lists(
        st.tuples(st.floats(0, 200, allow_nan=False), st.floats(0, 50, allow_nan=False), st.booleans()),
        min_size=1,
        max_size=40,
    ),
)
def test_work_mode_stays_within_bounds_and_never_below_the_current_need(
    lo: int, span: int, loads: list[tuple[float, float, bool]]
) -> None:
    hi = max(1, lo + span)
    policy = Predictive(
        PredictiveConfig(lo, hi, capacity_rps=20.0, capacity_work=2.0, work_curve=(2.0, 5.0), season_seconds=600.0)
    )
    state = policy.initial_state()
    t = 0.0
    for rps, work, reported in loads:
        samples = tuple(
            LoadSample(t + i, concurrency=work, rps=rps, work=work if reported else None) for i in range(15)
        )
        t += 15.0
        d, state = policy.decide(Observation(1, load=samples), state, t)
        need = d.detail("need_now")
        assert need is not None
        assert lo <= d.replicas <= hi
        assert d.replicas >= min(need, hi)


def test_burst_allowance_ignores_work_that_overflows() -> None:
    # A vanishing arrival rate with seconds of work gives a per-request service time of 1e307 or inf: the allowance
    # learns nothing from it instead of computing NaNs (numpy's warnings are errors in this suite).
    policy = Predictive(PredictiveConfig(0, 5, capacity_rps=20.0, capacity_work=2.0, work_curve=(2.0, 5.0)))
    arrivals = tuple((float(t), 150.0 + (t % 7)) for t in range(1, 400))
    for service in (1e307, math.inf, math.nan, 0.0):
        assert policy.allowance(arrivals, service)[0] >= 0.0
    assert policy.allowance(arrivals, 1e307) == (0.0, math.inf)  # 150 req/s x 1e307 s overflows
