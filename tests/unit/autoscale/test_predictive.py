"""The predictive policy provisions ahead of seasonal load and falls back to reactive when wrong."""

from __future__ import annotations

import math

import pytest

from kubeinfer.autoscale.base import LoadSample, Observation
from kubeinfer.autoscale.predictive import Predictive, PredictiveConfig, PredictiveState

SEASON = 600.0  # a 10-minute "day" keeps the tests fast; the step is 12.5 s


def run(policy: Predictive, rate, until: float, state: PredictiveState | None = None, start: float = 0.0):  # type: ignore[no-untyped-def]
    """Drive the policy every 15 s with one load sample per second from ``start`` to ``until``."""
    tick = 15.0
    state = state or policy.initial_state()
    t, decisions = start, []
    while t < until:
        samples = tuple(LoadSample(t + i, rps=rate(t + i)) for i in range(int(tick)))
        t += tick
        d, state = policy.decide(Observation(1, load=samples), state, t)
        decisions.append((t, d))
    return decisions, state


def seasonal(t: float) -> float:
    return 100.0 + 80.0 * math.sin(2 * math.pi * t / SEASON)


def test_reactive_until_the_forecasters_have_a_track_record() -> None:
    # Without the burst prior (test_predictive_peak.py): the first half hour's spare replica is not sizing.
    policy = Predictive(PredictiveConfig(1, 50, capacity_rps=10.0, season_seconds=SEASON, burst_prior=False))
    decisions, _ = run(policy, lambda t: 50.0, 30.0)
    assert decisions[0][1].reason == "Reactive"
    assert decisions[-1][1].replicas == math.ceil(50 * 1.1 / 10)


def test_seasonal_load_is_provisioned_before_it_arrives() -> None:
    policy = Predictive(PredictiveConfig(1, 50, capacity_rps=10.0, season_seconds=SEASON, startup_seconds=30.0))
    decisions, _ = run(policy, seasonal, 4 * SEASON)
    late = [(t, d) for t, d in decisions if t > 3 * SEASON]
    assert any(d.reason.startswith("Forecast") for _, d in late)
    # Ready for the load 30 s ahead: replicas cover what the rate will be at t + startup (within 1 replica).
    shortfalls = [math.ceil(seasonal(t + 30) * 1.1 / 10) - d.replicas for t, d in late]
    assert max(shortfalls) <= 1
    assert sum(s > 0 for s in shortfalls) <= len(late) // 10


def test_a_forecast_that_keeps_missing_falls_back_to_reactive() -> None:
    policy = Predictive(PredictiveConfig(1, 200, capacity_rps=10.0, season_seconds=SEASON))
    rng = [((i * 7919) % 97) / 97 for i in range(10_000)]

    def noisy(t: float) -> float:
        return 1000.0 * rng[int(t / 12.5) % len(rng)]  # unpredictable from step to step

    decisions, _ = run(policy, noisy, 2 * SEASON)
    assert decisions[-1][1].reason.startswith("Reactive")


def test_scale_down_is_held_for_the_stabilization_window() -> None:
    policy = Predictive(PredictiveConfig(0, 50, capacity_rps=10.0, season_seconds=SEASON, burst_prior=False))
    decisions, state = run(policy, lambda t: 100.0 if t < 60 else 0.0, 60.0)
    assert decisions[-1][1].replicas == 11
    more, _ = run(policy, lambda t: 0.0, 360.0, state=state, start=60.0)
    assert more[0][1].replicas == 11  # still inside 120 s
    assert any("ScaleDownStabilized" in d.reason for _, d in more)
    assert more[-1][1].replicas == 0


def test_per_call_cost_does_not_grow_with_history() -> None:
    """State keeps one season of slots and a few pending forecasts, however long the trace."""
    policy = Predictive(PredictiveConfig(1, 50, capacity_rps=10.0, season_seconds=SEASON))
    _, state = run(policy, seasonal, 10 * SEASON)
    assert len(state.season) == policy.config.season_steps
    assert len(state.pending) <= policy.config.horizon_steps + 1
    assert len(state.recent) <= 31


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacityRps"):
        PredictiveConfig(1, 2, capacity_rps=0.0)
