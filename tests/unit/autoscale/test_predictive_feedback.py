"""Predictive's SLO feedback: the misses the load samples report shrink the burst budget, so the allowance and the
envelope grow; without reports, with misses within the budget, or with misses in one spell only, nothing changes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from kubeinfer.autoscale import LoadSample, Observation, Predictive, PredictiveConfig
from kubeinfer.sim import parse_generator

BUDGET = 0.0035  # PredictiveConfig.burst_budget's default


def _cfg(**kw: object) -> PredictiveConfig:
    base = PredictiveConfig(1, 200, capacity_rps=10.0, headroom=1.0, startup_seconds=60.0, sync_period=5.0)
    return replace(base, **kw)  # type: ignore[arg-type]


def _per_second(seed: int) -> np.ndarray:
    return parse_generator("gen:batch,rate=20,alpha=1.3,max=200,duration=3600", seed).per_second()[:3600]


def _history(seed: int, late: np.ndarray | float | None) -> tuple[tuple[float, ...], ...]:
    """An hour of heavy-tailed batch arrivals as (time, rps, peak rate, window[, late]) samples: ``late`` requests per
    second missed (an array of them, or a share of each second's arrivals; None: no late column, as from a source
    that does not report it)."""
    per = _per_second(seed)
    missed = None if late is None else (late if isinstance(late, np.ndarray) else late * per)
    rows = []
    for t, x in enumerate(per):
        row: tuple[float, ...] = (float(t + 1), float(x), float(x), 1.0)
        rows.append(row if missed is None else (*row, float(missed[t])))
    return tuple(rows)


def _factor(p: Predictive, history: tuple[tuple[float, ...], ...]) -> float:
    return p.budget_factor(np.array(history, dtype=float))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_misses_beyond_the_budget_grow_the_allowance_and_the_envelope(seed: int) -> None:
    p = Predictive(_cfg())
    allowance0, envelope0 = p.allowance(_history(seed, None))
    assert allowance0 > 0  # bursts that start-up cannot follow: something to hold
    # Within the budget (0.3% of the requests missed), or none: the guess stands.
    assert p.allowance(_history(seed, 0.003)) == (allowance0, envelope0)
    assert p.allowance(_history(seed, 0.0)) == (allowance0, envelope0)
    # 2% missed, spread over the hour: the budget shrinks to about 0.35 / 2 of itself (the worst minute left out)...
    tight = _history(seed, 0.02)
    f = _factor(p, tight)
    assert BUDGET / 0.02 <= f <= 1.1 * BUDGET / 0.02
    # ...exactly as if it had been set so, for the allowance and the envelope alike; both grow.
    got = p.allowance(tight)
    assert got == pytest.approx(Predictive(_cfg(burst_budget=BUDGET * f)).allowance(_history(seed, None)))
    assert got[0] > allowance0 and got[1] > envelope0


def test_one_spell_of_misses_is_left_out_two_are_not() -> None:
    """A burst no spare capacity could have met (the hour's worst minute) says nothing about the budget."""
    per = _per_second(1)
    p = Predictive(_cfg())
    one = np.zeros(3600)
    one[600:660] = 0.5 * per[600:660]  # half of one minute's requests: more than the budget of the hour
    assert one.sum() > 2 * BUDGET * per.sum()
    assert _factor(p, _history(1, one)) == 1.0
    two = one.copy()
    two[2400:2460] = 0.5 * per[2400:2460]
    assert _factor(p, _history(1, two)) < 1.0


def test_the_budget_shrinks_to_a_tenth_at_most_and_feedback_can_be_switched_off() -> None:
    p = Predictive(_cfg())
    assert _factor(p, _history(1, 1.0)) == 0.1  # every request missed
    assert p.allowance(_history(1, 1.0)) == pytest.approx(
        Predictive(_cfg(burst_budget=BUDGET / 10)).allowance(_history(1, None))
    )
    off = Predictive(_cfg(miss_feedback=False))
    assert off.allowance(_history(1, 1.0)) == off.allowance(_history(1, None))
    assert _factor(p, _history(1, None)) == 1.0  # no reports: nothing to go by


def test_late_reports_reach_the_allowance_through_decide() -> None:
    """The same arrivals, decided on sample by sample: reported misses give more replicas than none."""
    per = _per_second(4)

    def run(late_share: float | None) -> list[int]:
        p = Predictive(_cfg())
        state = p.initial_state()
        counts = []
        shown: dict[str, float] = {}
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
            shown = decision.shown_details()
        # What a status shows with the last decision: the share the policy acted on and the factor it took from it.
        if late_share is None:
            assert "miss_share" not in shown and shown["burst_budget_factor"] == 1.0  # nothing reported
        else:
            # The worst minute of the hour is left out, so the share is a little under the 5% reported.
            assert 0.04 < shown["miss_share"] < late_share
            assert shown["burst_budget_factor"] == pytest.approx(max(0.1, BUDGET / shown["miss_share"]), rel=1e-3)
        assert shown["burst_allowance"] >= 0 and shown["burst_envelope"] > 0
        return counts

    quiet, late = run(None), run(0.05)
    assert all(b >= a for a, b in zip(quiet, late, strict=True))
    assert sum(late) > sum(quiet)
