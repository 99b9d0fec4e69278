"""Predictive's SLO feedback: the misses the load samples report shrink the burst budget, so the allowance and the
envelope grow; without reports, or with misses within half the SLO's budget, nothing changes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kubeinfer.autoscale import LoadSample, Observation, Predictive, PredictiveConfig
from kubeinfer.sim import parse_generator


def _cfg(**kw: object) -> PredictiveConfig:
    base = PredictiveConfig(1, 200, capacity_rps=10.0, headroom=1.0, startup_seconds=60.0, sync_period=5.0)
    return replace(base, **kw)  # type: ignore[arg-type]


def _history(seed: int, late_share: float | None) -> tuple[tuple[float, ...], ...]:
    """An hour of heavy-tailed batch arrivals as (time, rps, peak rate, window[, late]) samples, with ``late_share``
    of each second's requests reported late (None: no late column, as from a source that does not report it)."""
    per = parse_generator("gen:batch,rate=20,alpha=1.3,max=200,duration=3600", seed).per_second()[:3600]
    rows = []
    for t, x in enumerate(per):
        row: tuple[float, ...] = (float(t + 1), float(x), float(x), 1.0)
        rows.append(row if late_share is None else (*row, late_share * float(x)))
    return tuple(rows)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_misses_beyond_half_the_budget_grow_the_allowance_and_the_envelope(seed: int) -> None:
    p = Predictive(_cfg())
    allowance0, envelope0 = p.allowance(_history(seed, None))
    assert allowance0 > 0  # bursts that start-up cannot follow: something to hold
    # Within half the SLO's miss budget (0.5% of 1%): the guess stands.
    assert p.allowance(_history(seed, 0.004)) == (allowance0, envelope0)
    assert p.allowance(_history(seed, 0.0)) == (allowance0, envelope0)
    # 2% late: the budget shrinks to a quarter, exactly as if it had been set so.
    tight = p.allowance(_history(seed, 0.02))
    quarter = Predictive(_cfg(burst_budget=0.0035 / 4)).allowance(_history(seed, None))
    assert tight == pytest.approx(quarter)
    assert tight[1] > envelope0
    assert tight[0] > allowance0


def test_the_budget_shrinks_to_a_tenth_at_most_and_feedback_can_be_switched_off() -> None:
    p = Predictive(_cfg())
    everything_late = p.allowance(_history(1, 1.0))
    assert everything_late == pytest.approx(Predictive(_cfg(burst_budget=0.00035)).allowance(_history(1, None)))
    off = Predictive(_cfg(miss_feedback=False))
    assert off.allowance(_history(1, 1.0)) == off.allowance(_history(1, None))


def test_late_reports_reach_the_allowance_through_decide() -> None:
    """The same arrivals, decided on sample by sample: reported misses give more replicas than none."""
    per = parse_generator("gen:batch,rate=20,alpha=1.3,max=200,duration=3600", 4).per_second()[:3600]

    def run(late_share: float | None) -> list[int]:
        p = Predictive(_cfg())
        state = p.initial_state()
        counts = []
        for k in range(0, 3600, 5):
            load = tuple(
                LoadSample(
                    float(t + 1),
                    concurrency=float(per[t]),
                    rps=float(per[t]),
                    late=None if late_share is None else late_share * float(per[t]),
                )
                for t in range(k, k + 5)
            )
            decision, state = p.decide(Observation(current_replicas=3, load=load), state, float(k + 5))
            counts.append(decision.replicas)
        return counts

    quiet, late = run(None), run(0.05)
    assert all(b >= a for a, b in zip(quiet, late, strict=True))
    assert sum(late) > sum(quiet)
