"""Predictive's first-burst prior: as many replicas of spare as the start-up calls for, standing aside for good once
a burst has been seen (learned by the allowance, or a surge beyond what the prior holds)."""

from __future__ import annotations

import pytest

from classifier_policy import SERVICE, WINDOW, classifier_config, run_policy
from kubeinfer.autoscale import LoadSample, Predictive, PredictiveConfig, PredictiveState


def _cfg(**kw: object) -> PredictiveConfig:
    kw.setdefault("startup_seconds", 60.0)  # an LLM's start-up: a prior of four replicas
    return classifier_config(**kw)


def _sample(t: int, rate: float, peak: float) -> LoadSample:
    return LoadSample(
        float(t), concurrency=rate * SERVICE, rps=rate, work=rate * SERVICE, peak=peak, peak_window=WINDOW
    )


def _steady(seconds: int, bunched_every: int = 0, rate: float = 40.0) -> list[LoadSample]:
    """``rate`` requests every second, spread evenly (6 within 100 ms); every ``bunched_every``-th second 30 of
    them land within 100 ms."""
    return [_sample(t, rate, 30.0 if bunched_every and t % bunched_every == 0 else 6.0) for t in range(1, seconds + 1)]


def _decide(cfg: PredictiveConfig, samples: list[LoadSample]) -> list[tuple[float, int, str, PredictiveState]]:
    return [(t, d.replicas, d.reason, state) for t, d, state in run_policy(cfg, samples)]


def test_the_prior_holds_a_replica_per_fifteen_seconds_of_start_up() -> None:
    assert Predictive(_cfg(startup_seconds=10.0)).prior_replicas == 1
    assert Predictive(_cfg(startup_seconds=60.0)).prior_replicas == 4
    # 1 Erlang needs one replica; a 60 s start-up holds four more at the start, a 10 s one one more.
    assert {r for _, r, _, _ in _decide(_cfg(), _steady(600))} == {5}
    assert {r for _, r, _, _ in _decide(_cfg(startup_seconds=10.0), _steady(600))} == {2}
    assert {r for _, r, _, _ in _decide(_cfg(burst_prior=False), _steady(600))} == {1}


def test_a_burst_the_allowance_has_learned_ends_the_prior() -> None:
    bursty = _decide(_cfg(), _steady(900, bunched_every=20))
    smooth = _decide(_cfg(), _steady(900))
    # Two minutes of history show the bunched seconds (about 4 Erlangs of spare, more than a replica's step): from
    # then on the allowance decides, and it holds fewer replicas than the prior's four.
    late = [(r, reason, s) for t, r, reason, s in bursty if t >= 600]
    assert all(s.burst_seen and "BurstPrior" not in reason for _, reason, s in late)
    assert max(r for r, _, _ in late) < 5
    assert all(not s.burst_seen and r == 5 for t, r, _, s in smooth if t >= 600)


def test_a_surge_beyond_the_prior_ends_it_and_a_smaller_one_does_not() -> None:
    quiet = _steady(300)
    surge = quiet + [_sample(t, 400.0, 60.0) for t in range(301, 331)]  # 10 Erlangs: beyond the prior's 4 replicas
    small = quiet + [_sample(t, 80.0, 12.0) for t in range(301, 331)]  # 2 Erlangs: within them
    at = {t: s for t, _, _, s in _decide(_cfg(), surge)}
    assert not at[300.0].burst_seen and at[305.0].burst_seen  # seen at once, before the allowance is refreshed
    assert not any(s.burst_seen for _, _, _, s in _decide(_cfg(), small))


@pytest.mark.parametrize("seconds", [0.0, -15.0, float("nan")])
def test_a_prior_start_up_share_that_is_not_positive_is_refused(seconds: float) -> None:
    with pytest.raises(ValueError, match="burst_prior_startup must be > 0"):
        _cfg(burst_prior_startup=seconds)
