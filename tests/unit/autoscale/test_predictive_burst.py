"""Predictive's burst allowance: learned from the arrivals it has seen, nothing for smooth traffic, enough spare
capacity for bursts it cannot see coming, and never more than the static envelope of the same history."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubeinfer.autoscale import LoadSample, Observation, Predictive, PredictiveConfig
from kubeinfer.autoscale.predictive import _excess_level
from kubeinfer.sim import parse_generator


def _cfg(**kw: object) -> PredictiveConfig:
    base = PredictiveConfig(1, 200, capacity_rps=10.0, headroom=1.0, startup_seconds=60.0, sync_period=5.0)
    return replace(base, **kw)  # type: ignore[arg-type]


def _history(text: str, seed: int, seconds: int = 3600) -> tuple[tuple[float, float], ...]:
    per = parse_generator(text, seed).per_second()[:seconds]
    return tuple((float(t + 1), float(x)) for t, x in enumerate(per))


@given(st.lists(st.floats(-50, 500), min_size=1, max_size=200), st.floats(0, 200))
def test_the_excess_level_is_the_smallest_that_keeps_the_excess_within_budget(
    values: list[float], budget: float
) -> None:
    v = np.array(values)
    a = _excess_level(v, budget)
    excess = lambda level: float(np.maximum(v - level, 0).sum())  # noqa: E731
    assert a >= 0
    assert excess(a) <= budget + 1e-6 * (1 + abs(v).sum())
    if a > 1e-6:
        assert excess(a - 1e-3 * max(1.0, a)) > budget  # any lower level spends more than the budget


@pytest.mark.parametrize("seed", range(3))
def test_smooth_traffic_learns_no_allowance(seed: int) -> None:
    policy = Predictive(_cfg())
    for text in ("gen:poisson,rate=20,duration=3600", "gen:diurnal,base=5,peak=40,period=3600,duration=3600"):
        allowance, envelope = policy.allowance(_history(text, seed))
        assert allowance == pytest.approx(0.0, abs=1.0), text
        assert np.isfinite(envelope)


@pytest.mark.parametrize("seed", range(3))
def test_bursty_traffic_learns_an_allowance_within_its_envelope(seed: int) -> None:
    policy = Predictive(_cfg())
    batch, env_b = policy.allowance(_history("gen:batch,rate=3,alpha=1.3,max=80,duration=3600", seed))
    mmpp, env_m = policy.allowance(_history("gen:mmpp,low=2,high=12,quiet=300,burst=120,duration=3600", seed))
    assert batch > 10 and mmpp > 4
    assert batch <= env_b and mmpp <= env_m
    # In work mode, n requests of 4.5 s want n slots; the same arrivals of 25 ms ones far fewer.
    long, _ = policy.allowance(_history("gen:batch,rate=3,alpha=1.3,max=80,duration=3600", seed), 4.5)
    short, _ = policy.allowance(_history("gen:batch,rate=3,alpha=1.3,max=80,duration=3600", seed), 0.025)
    assert long > 10 * short


def test_no_allowance_before_enough_history() -> None:
    policy = Predictive(_cfg())
    trace = "gen:batch,rate=3,alpha=1.3,max=80,duration=3600"
    assert policy.allowance(_history(trace, 0, 100)) == (0.0, np.inf)
    allowance, envelope = policy.allowance(_history(trace, 0, 300))  # two minutes of batches already show them
    assert 0.0 < allowance <= envelope < np.inf


def _run(cfg: PredictiveConfig, text: str, seed: int) -> list[int]:
    """Feed a trace's per-second arrivals to the policy, deciding every sync period; the replicas it asks for."""
    policy = Predictive(cfg)
    state = policy.initial_state()
    per = parse_generator(text, seed).per_second()
    out, pending, current = [], [], 1
    for t, x in enumerate(per, start=1):
        pending.append(LoadSample(float(t), concurrency=float(x) / 10, rps=float(x)))
        if t % 5 == 0:
            d, state = policy.decide(Observation(current, load=tuple(pending)), state, float(t))
            pending, current = [], d.replicas
            out.append(d.replicas)
    return out


def test_batch_traffic_holds_spare_replicas_and_smooth_traffic_does_not() -> None:
    batch = "gen:batch,rate=20,alpha=1.3,max=300,duration=7200"
    with_, without = _run(_cfg(), batch, 1), _run(_cfg(burst_allowance=False), batch, 1)
    # After the first hour (history learned), the allowance keeps more replicas between batches.
    assert np.median(with_[720:]) > np.median(without[720:])
    smooth = "gen:poisson,rate=20,duration=7200"
    assert np.mean(_run(_cfg(), smooth, 1)[720:]) <= np.mean(_run(_cfg(burst_allowance=False), smooth, 1)[720:]) + 0.1
