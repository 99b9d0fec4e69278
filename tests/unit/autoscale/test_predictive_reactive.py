"""Predictive's reactive floor: the short window and a rising trend; the pooled capacity curve."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kubeinfer.autoscale import LoadSample, Observation, Predictive, PredictiveConfig


def _decide(cfg: PredictiveConfig, rates: list[float]) -> int:
    policy = Predictive(cfg)
    samples = tuple(LoadSample(float(i + 1), rps=r) for i, r in enumerate(rates))
    decision, _ = policy.decide(Observation(1, load=samples), policy.initial_state(), float(len(rates)))
    return decision.replicas


def test_a_surge_in_the_last_seconds_is_seen_before_the_30s_average_catches_up() -> None:
    cfg = PredictiveConfig(1, 100, capacity_rps=10.0, headroom=1.0, trend=False, burst_prior=False)
    assert _decide(cfg, [10.0] * 24 + [100.0] * 6) == 10  # 6 s average, not the 30 s average of 28


def test_a_rising_rate_is_carried_over_the_lead_time_and_a_falling_one_is_not() -> None:
    cfg = PredictiveConfig(
        1, 100, capacity_rps=10.0, headroom=1.0, startup_seconds=10, sync_period=10, burst_prior=False
    )
    rising = [float(i) for i in range(1, 31)]  # slope 1 req/s per s; 6 s average 27.5; lead 20 s
    assert _decide(cfg, rising) == 5  # ceil((27.5 + 20) / 10)
    assert _decide(cfg, rising[::-1]) == 2  # no trend downwards: the larger (30 s) average, ceil(15.5 / 10)


def test_capacity_curve_sizes_with_pooled_capacity_and_extends_linearly() -> None:
    cfg = PredictiveConfig(
        0, 100, capacity_rps=10.0, headroom=1.0, capacity_curve=(10.0, 25.0, 40.0), trend=False, burst_prior=False
    )
    assert _decide(cfg, [24.0] * 30) == 2
    assert _decide(cfg, [41.0] * 30) == 4  # beyond the curve: 40/3 req/s per extra replica
    with pytest.raises(ValueError, match="non-decreasing"):
        PredictiveConfig(0, 1, capacity_rps=1.0, capacity_curve=(2.0, 1.0))


@pytest.mark.parametrize(("envelope", "replicas"), [(40.0, 4), (30.0, 5), (float("inf"), 5)])
def test_a_surge_within_the_learned_envelope_carries_its_trend_no_higher_than_the_envelope(
    envelope: float, replicas: int
) -> None:
    """A surge rising 5 req/s each second (6 s average 32.5 req/s) carries its trend over the 20 s lead to ~47.7
    req/s: 5 replicas of 10. Where the history's static envelope is 40, the surge is one of the bursts seen and is
    sized at 40 (4 replicas); where it is 30, the surge is beyond anything seen, and without a history (inf)
    nothing caps it: 5 both times."""
    cfg = PredictiveConfig(
        1, 100, capacity_rps=10.0, headroom=1.0, startup_seconds=10, sync_period=10, burst_prior=False
    )
    policy = Predictive(cfg)
    rates = [10.0] * 24 + [20.0, 25.0, 30.0, 35.0, 40.0, 45.0]
    samples = tuple(LoadSample(float(i + 1), rps=r) for i, r in enumerate(rates))
    now = float(len(rates))
    state = replace(policy.initial_state(), envelope=envelope, allowance_at=now)  # learned; not refreshed now
    decision, _ = policy.decide(Observation(1, load=samples), state, now)
    assert decision.replicas == replicas
    assert dict(decision.details)["sized_demand"] == pytest.approx(40.0 if envelope == 40.0 else 47.69, abs=0.01)
