"""Predictive's sub-second burst signal (the most arrivals within an SLO-length window, ``LoadSample.peak``), the
burst allowance's Poisson deviation in work, and the prior that holds a replica before any burst was seen."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from classifier_policy import SERVICE, WINDOW, classifier_config, run_policy
from kubeinfer.autoscale import LoadSample, Observation, Predictive, PredictiveConfig
from kubeinfer.sim import parse_generator


def _cfg(**kw: object) -> PredictiveConfig:
    return classifier_config(**kw)


def _samples(seconds: int, bunched_every: int, peak: bool = True, rate: float = 40.0) -> list[LoadSample]:
    """``rate`` (40) requests every second; every ``bunched_every``-th second 30 of them land within 100 ms (the
    count is the same), the others spread evenly (at most 6 within any 100 ms). Work is their busy time."""
    out = []
    for t in range(1, seconds + 1):
        p = 30.0 if bunched_every and t % bunched_every == 0 else 6.0
        out.append(
            LoadSample(
                float(t),
                concurrency=rate * SERVICE,
                rps=rate,
                work=rate * SERVICE,
                peak=p if peak else None,
                peak_window=WINDOW if peak else 0.0,
            )
        )
    return out


def _replicas(samples: list[LoadSample], cfg: PredictiveConfig) -> list[int]:
    return [d.replicas for _, d, _ in run_policy(cfg, samples)]


def test_the_peak_rate_is_the_rate_unless_the_window_stands_out_of_poisson_noise() -> None:
    policy = Predictive(_cfg())
    assert policy.peak_rate(50.0, None, WINDOW) == 50.0
    assert policy.peak_rate(50.0, 12.0, 0.0) == 50.0
    # 50 req/s puts 5 in 100 ms on average; 12 is within 4 standard deviations and one request (5 + 8.9 + 1).
    assert policy.peak_rate(50.0, 12.0, WINDOW) == 50.0
    # 40 within 100 ms: the excess over that threshold, at the window's rate.
    assert policy.peak_rate(50.0, 40.0, WINDOW) == pytest.approx(50.0 + (40 - 5 - 4 * math.sqrt(5) - 1) / WINDOW)


def test_bunched_arrivals_learn_an_allowance_the_same_counts_do_not() -> None:
    """Equal per-second counts; only the peaks tell the seconds apart. Ignoring the peak learns nothing."""
    policy = Predictive(_cfg())
    state = policy.initial_state()
    bunched = _samples(1800, 20)
    state = policy._ingest(state, Observation(1, load=tuple(bunched)), 1800.0)
    with_peak, envelope = policy.allowance(state.arrivals, SERVICE)
    without, _ = policy.allowance(tuple(a[:2] for a in state.arrivals), SERVICE)
    smooth_state = policy._ingest(policy.initial_state(), Observation(1, load=tuple(_samples(1800, 0))), 1800.0)
    smooth, _ = policy.allowance(smooth_state.arrivals, SERVICE)
    assert without == pytest.approx(0.0, abs=1e-9) and smooth == pytest.approx(0.0, abs=1e-9)
    # 30 in 100 ms stand 30 - 4 - 4 x 2 - 1 = 17 requests out: 170 req/s x 25 ms = 4.25 Erlangs over the level's 1.
    assert 3.0 < with_peak <= envelope


def test_the_policy_holds_replicas_for_peaks_it_has_seen_and_not_for_the_same_counts_without_them() -> None:
    cfg = _cfg(burst_prior=False)
    with_peak = _replicas(_samples(3600, 20), cfg)
    no_peak = _replicas(_samples(3600, 20, peak=False), cfg)
    smooth = _replicas(_samples(3600, 0), cfg)
    late = slice(len(with_peak) // 2, None)
    assert min(with_peak[late]) >= 3  # about 4 Erlangs of spare: replicas beyond the level's one
    assert max(no_peak[late]) == max(smooth[late]) == 1


def _work_history(text: str, seed: int, seconds: int = 3600) -> tuple[tuple[float, float], ...]:
    per = parse_generator(text, seed).per_second()[:seconds]
    return tuple((float(t + 1), float(x)) for t, x in enumerate(per))


@pytest.mark.parametrize("seed", range(3))
def test_in_work_the_poisson_deviation_is_that_of_the_arrivals_counted(seed: int) -> None:
    """Short requests: a second's work is its count times 25 ms, so Poisson noise in work is 25 ms x sqrt(count),
    not sqrt(work). Bursts from 20 to 150 req/s (3.25 Erlangs more) are then learned in full; smooth Poisson
    traffic at 150 req/s still learns about nothing."""
    policy = Predictive(_cfg())
    mmpp, _ = policy.allowance(
        _work_history("gen:mmpp,low=20,high=150,quiet=600,burst=120,duration=3600", seed), SERVICE
    )
    assert mmpp >= 0.8 * (150 - 20) * SERVICE
    poisson, _ = policy.allowance(_work_history("gen:poisson,rate=150,duration=3600", seed), SERVICE)
    assert poisson <= 0.05 * 150 * SERVICE


def test_the_prior_holds_a_replica_beyond_the_level_and_fades_as_the_history_spans_the_window() -> None:
    cfg = _cfg(burst_window=1200.0)
    # 1 Erlang needs one replica (1.2 within the SLO); until half the window is seen, the prior adds one.
    early = _replicas(_samples(600, 0), cfg)
    assert set(early) == {2}
    assert _replicas(_samples(1500, 0), cfg)[-1] == 1  # the window seen, smooth: no burst to keep spare for
    assert set(_replicas(_samples(600, 0), replace(cfg, burst_prior=False))) == {1}
    # 0.2 Erlangs leave one replica 1 Erlang of slack: the prior's step (1.95 Erlangs, the second replica's) fills
    # it only while more than half the window is unseen.
    low = _replicas(_samples(1100, 0, rate=8.0), cfg)
    assert low[0] == 2 and low[-1] == 1


def test_the_prior_does_not_wake_a_service_without_traffic() -> None:
    policy = Predictive(_cfg(min_replicas=0, burst_window=600.0))
    idle = tuple(LoadSample(float(t), rps=0.0, work=0.0, peak=0.0, peak_window=WINDOW) for t in range(1, 121))
    state = policy.initial_state()
    d, state = policy.decide(Observation(0, load=idle[:60]), state, 60.0)
    d, _ = policy.decide(Observation(0, load=idle[60:]), state, 120.0)
    assert d.replicas == 0 and "BurstPrior" not in d.reason


def test_a_peak_counts_for_short_requests_and_not_beyond_the_service_time_of_long_ones() -> None:
    """Once a minute 30 requests arrive within 100 ms (28 more than that second's usual 2). Requests of 25 ms: per
    second they are 0.75 Erlangs of work, but within their 100 ms they offer 270 req/s x 25 ms, about 7: the peak
    is what counts. Requests of 4.5 s: each holds its slot far beyond the window, and the arrivals of the last
    4.5 s (what the policy counts from per-second counts) already need those slots: the peak adds nothing."""
    policy = Predictive(_cfg())
    counts = tuple((float(t), 30.0 if t % 60 == 0 else 2.0) for t in range(1, 1801))
    peaks = tuple((t, c, policy.peak_rate(c, c if c > 2 else 1.0, WINDOW), WINDOW) for t, c in counts)
    long_peak, _ = policy.allowance(peaks, 4.5)
    long_counts, _ = policy.allowance(counts, 4.5)
    assert long_peak == pytest.approx(long_counts)
    short_peak, _ = policy.allowance(peaks, SERVICE)
    short_counts, _ = policy.allowance(counts, SERVICE)
    assert short_peak > 5 * short_counts > 0
