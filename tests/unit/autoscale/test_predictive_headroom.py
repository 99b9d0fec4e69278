"""Predictive's own sync period and capacityWork from the spec; headroom from the forecast's recent error."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from kubeinfer.autoscale import LoadSample, Observation, Predictive, PredictiveConfig
from kubeinfer.autoscale.predictive import predictive_config_from_spec
from kubeinfer.spec.service import AutoscalingSpec


def test_spec_gives_predictive_its_own_sync_period_and_capacity_work() -> None:
    spec = AutoscalingSpec.model_validate(
        {"policy": "predictive", "maxReplicas": 5, "predictive": {"capacityRps": 10, "capacityWork": 1.6}}
    )
    cfg = predictive_config_from_spec(spec)
    assert cfg.sync_period == 5.0 and spec.syncPeriodSeconds == 15.0  # not the HPA's
    assert cfg.capacity_work == 1.6
    assert predictive_config_from_spec(spec.model_copy(update={"predictive": spec.predictive.model_copy(
        update={"capacityWork": None, "syncPeriodSeconds": 2.0})})).capacity_work is None  # fmt: skip


def _steady(rate: float, seconds: int, noise: float = 0.0) -> tuple[LoadSample, ...]:
    # A deterministic +-noise wobble around a flat rate, one sample a second.
    return tuple(
        LoadSample(float(t), concurrency=rate, rps=rate * (1 + noise * math.sin(t * 0.7))) for t in range(1, seconds)
    )


def _run(cfg: PredictiveConfig, samples: tuple[LoadSample, ...], every: int = 5) -> dict[str, float]:
    policy = Predictive(cfg)
    state = policy.initial_state()
    details: dict[str, float] = {}
    for i in range(0, len(samples), every):
        chunk = samples[i : i + every]
        d, state = policy.decide(Observation(1, load=chunk), state, chunk[-1].time)
        details = dict(d.details)
    return details


def test_an_accurate_forecast_earns_a_smaller_headroom() -> None:
    """A flat rate is forecast almost exactly: the margin falls from 1.1 towards 1.0."""
    cfg = PredictiveConfig(1, 100, capacity_rps=10.0, step_seconds=10.0, trend=False)
    details = _run(cfg, _steady(50.0, 600, noise=0.01))
    assert 1.0 <= details["headroom"] < 1.05


def test_the_full_headroom_until_enough_outcomes_are_known() -> None:
    cfg = PredictiveConfig(1, 100, capacity_rps=10.0, step_seconds=10.0, trend=False, headroom_min_samples=1000)
    assert _run(cfg, _steady(50.0, 600))["headroom"] == 1.1


def test_fixed_headroom_when_adaptive_headroom_is_off() -> None:
    cfg = PredictiveConfig(1, 100, capacity_rps=10.0, step_seconds=10.0, trend=False, adaptive_headroom=False)
    assert _run(cfg, _steady(50.0, 600, noise=0.01))["headroom"] == 1.1


@settings(max_examples=60, deadline=None)
@given(
    rates=st.lists(st.floats(0.0, 500.0), min_size=20, max_size=80),
    cap=st.floats(1.0, 1.5),
    q=st.floats(0.05, 1.0),
)
def test_headroom_stays_within_one_and_its_cap_and_replicas_within_bounds(
    rates: list[float], cap: float, q: float
) -> None:
    """Whatever the load, the margin stays in [1, headroom], replicas in [min, max] and never below the need."""
    cfg = PredictiveConfig(
        1, 40, capacity_rps=10.0, headroom=cap, headroom_quantile=q, step_seconds=5.0, headroom_min_samples=3
    )
    policy = Predictive(cfg)
    state = policy.initial_state()
    for i, r in enumerate(rates):
        now = float(5 * (i + 1))
        load = tuple(LoadSample(now - 4 + j, concurrency=r, rps=r) for j in range(5))
        d, state = policy.decide(Observation(1, load=load), state, now)
        h = dict(d.details)["headroom"]
        assert 1.0 <= h <= cap
        assert cfg.min_replicas <= d.replicas <= cfg.max_replicas
        assert d.replicas >= min(cfg.max_replicas, math.ceil(round(dict(d.details)["current_rps"] / 10.0, 9)))


def test_min_headroom_floors_the_adaptive_headroom_and_buys_replicas() -> None:
    base = PredictiveConfig(1, 100, capacity_rps=10.0, step_seconds=10.0, trend=False, headroom=1.5)
    samples = _steady(50.0, 600, noise=0.01)
    low, high = _run(base, samples), _run(replace(base, min_headroom=1.4), samples)
    assert low["headroom"] < 1.05 and high["headroom"] == 1.4
    assert high["need_now"] > low["need_now"]


def test_min_headroom_comes_from_the_spec_and_must_not_exceed_headroom() -> None:
    spec = AutoscalingSpec.model_validate(
        {"policy": "predictive", "predictive": {"capacityRps": 10, "headroom": 1.5, "minHeadroom": 1.3}}
    )
    assert predictive_config_from_spec(spec).min_headroom == 1.3
    with pytest.raises(ValidationError, match=r"minHeadroom \(1.6\) must be at most headroom \(1.5\)"):
        AutoscalingSpec.model_validate({"predictive": {"headroom": 1.5, "minHeadroom": 1.6}})
    with pytest.raises(ValueError, match="min_headroom"):
        PredictiveConfig(1, 10, capacity_rps=1.0, min_headroom=0.9)
