"""The router's pure decisions: power of two choices, the retry budget, the per-second window and the peak of
arrivals within a sliding window."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubeinfer.local.router.core import ArrivalPeak, RateWindow, RetryBudget, pick


@dataclass(eq=False)
class B:
    name: str
    outstanding: int = 0


def seq(*values: float):  # type: ignore[no-untyped-def]
    it = iter(values)
    return lambda: next(it)


def test_pick_empty_is_none() -> None:
    assert pick([], random.random) is None


def test_pick_single_backend_needs_no_randomness() -> None:
    only = B("a", 99)
    assert pick([only], seq()) is only


def test_pick_takes_the_less_loaded_of_the_two_drawn() -> None:
    a, b, c = B("a", 5), B("b", 1), B("c", 0)
    # draws index 0 (a) and then index 0 of the remaining two -> b; c is never looked at
    assert pick([a, b, c], seq(0.0, 0.0)) is b
    # draws c (index 2) and a
    assert pick([a, b, c], seq(0.99, 0.0)) is c


def test_pick_never_draws_the_same_backend_twice() -> None:
    a, b = B("a", 3), B("b", 7)
    for r1 in (0.0, 0.3, 0.6, 0.99):
        for r2 in (0.0, 0.99):
            assert pick([a, b], seq(r1, r2)) is a  # both are always compared, so the lighter one wins


def test_pick_avoids_tried_backends_while_another_is_left() -> None:
    a, b, c = B("a", 0), B("b", 10), B("c", 10)
    rng = random.Random(1).random
    for _ in range(100):
        assert pick([a, b, c], rng, exclude=[a]) in (b, c)
    assert pick([a, b], rng, exclude=[a]) is b


def test_pick_retries_on_a_tried_backend_when_it_is_the_only_one() -> None:
    a = B("a")
    assert pick([a], random.random, exclude=[a]) is a


def test_pick_spreads_equal_load_evenly() -> None:
    backends = [B(str(i)) for i in range(4)]
    rng = random.Random(7).random
    counts = Counter(pick(backends, rng).name for _ in range(8000))  # type: ignore[union-attr]
    assert all(1700 < counts[b.name] < 2300 for b in backends), counts


@given(st.lists(st.integers(0, 50), min_size=2, max_size=8), st.randoms(use_true_random=False))
def test_pick_never_chooses_the_most_loaded_when_strictly_heaviest(loads: list[int], rnd: random.Random) -> None:
    """With two distinct draws the strictly most loaded backend can never win."""
    backends = [B(str(i), n) for i, n in enumerate(loads)]
    heaviest = max(loads)
    chosen = pick(backends, rnd.random)
    assert chosen is not None
    if loads.count(heaviest) == 1:
        assert chosen.outstanding < heaviest


def test_rate_window_counts_closed_and_open_seconds() -> None:
    w = RateWindow(3, now=100.2)
    w.add(5)
    w.advance(100.9)  # same second
    w.add(1)
    w.advance(101.0)
    assert w.last_second() == 6
    w.add(2)
    assert w.total() == 8
    w.advance(102.5)
    w.add(1)
    assert w.total() == 9  # 6 + 2 + 1: three seconds
    w.advance(103.0)
    assert w.total() == 3  # 100's 6 fell out of the window
    w.advance(110.0)  # a long gap clears everything
    assert w.total() == 0 and w.last_second() == 0


def test_rate_window_rejects_empty_window() -> None:
    with pytest.raises(ValueError, match="seconds must be an integer >= 1"):
        RateWindow(0, 0.0)


def test_arrival_peak_counts_the_most_arrivals_within_the_window() -> None:
    p = ArrivalPeak(0.1, now=0.0)
    for t in (0.10, 0.15, 0.19, 0.50, 0.55, 0.60, 0.62, 0.64):
        p.add(t)
    # (0.10, 0.15, 0.19) within 0.1 s; 0.55..0.64 are four, 0.50 fell out of (0.54, 0.64]
    p.advance(1.0)
    assert p.last_second() == 4
    p.add(1.0)
    p.add(1.1)  # exactly one window apart: (1.0, 1.1] no longer holds 1.0
    p.advance(2.0)
    assert p.last_second() == 1
    p.advance(3.0)  # a second without arrivals
    assert p.last_second() == 0


def test_arrival_peak_sees_a_burst_across_a_read_boundary_whole() -> None:
    """A burst across a second's edge counts in the second of its last arrival with its earlier part too, as the
    simulator counts it; the earlier second keeps its own part."""
    p = ArrivalPeak(0.1, now=0.0)
    for t in (0.95, 0.97, 0.99):
        p.add(t)
    p.advance(1.0)
    assert p.last_second() == 3
    for t in (1.01, 1.03):
        p.add(t)
    p.advance(2.0)
    assert p.last_second() == 5
    p.add(2.5)
    p.advance(4.0)  # the read skipped a whole second: nothing is the last second's, as RateWindow.last_second
    assert p.last_second() == 0 and len(p.recent) == 1 and not p.pending


def sim_peaks(arrivals: list[float], window: float, seconds: int) -> list[int]:
    """Per-second peaks as ``sim.engine`` computes them from a whole trace."""
    arr = np.asarray(arrivals)
    within = np.arange(1, len(arr) + 1) - np.searchsorted(arr, arr - window, side="right")
    out = [0] * seconds
    for t, n in zip(arr, within, strict=True):
        out[int(t)] = max(out[int(t)], int(n))
    return out


@given(
    st.lists(st.floats(0.0, 5.999, allow_nan=False), max_size=200),
    st.sampled_from([0.01, 0.05, 0.1, 0.25, 1.0, 2.5]),
)
def test_arrival_peak_matches_the_simulators_count(arrivals: list[float], window: float) -> None:
    """Counted at every housekeeping tick (50 ms) and read once a second, the router's counter gives what the
    simulator reports for the same arrivals."""
    arrivals.sort()
    p = ArrivalPeak(window, now=0.0)
    seen = []
    i = 0
    for tick in range(1, 121):
        now = tick / 20
        while i < len(arrivals) and arrivals[i] < now:
            p.add(arrivals[i])
            i += 1
        p.advance(now)
        if tick % 20 == 0:
            seen.append(p.last_second())
    assert seen == sim_peaks(arrivals, window, 6)


@pytest.mark.parametrize("window", [0.0, -1.0, float("inf"), float("nan")])
def test_arrival_peak_rejects_a_window_that_is_not_a_positive_number(window: float) -> None:
    with pytest.raises(ValueError, match="window must be a number of seconds > 0"):
        ArrivalPeak(window, 0.0)


def test_retry_budget_floor_allows_retries_without_traffic() -> None:
    budget = RetryBudget(0.2, now=0.0, window=10, min_per_second=1.0)
    granted = sum(budget.try_withdraw() for _ in range(20))
    assert granted == 10  # min_per_second x window


def test_retry_budget_grows_with_requests_by_the_ratio() -> None:
    budget = RetryBudget(0.2, now=0.0, window=10, min_per_second=0.0)
    for _ in range(100):
        budget.deposit()
    granted = sum(budget.try_withdraw() for _ in range(50))
    assert granted == 20  # 0.2 x 100


def test_retry_budget_refills_as_the_window_slides() -> None:
    budget = RetryBudget(0.5, now=0.0, window=2, min_per_second=0.0)
    for _ in range(10):
        budget.deposit()
    assert sum(budget.try_withdraw() for _ in range(10)) == 5
    assert not budget.try_withdraw()
    budget.advance(1.0)
    assert not budget.try_withdraw()  # the spent retries are still in the window
    budget.advance(2.0)  # second 0 (10 requests, 5 retries) left the window
    assert budget.balance() == 0
    for _ in range(4):
        budget.deposit()
    assert sum(budget.try_withdraw() for _ in range(4)) == 2


def test_retry_budget_validates_ratio() -> None:
    with pytest.raises(ValueError, match="retry_budget_ratio"):
        RetryBudget(-0.1, now=0.0)


@given(st.lists(st.sampled_from(["req", "retry", "tick"]), max_size=300))
def test_retry_budget_never_exceeds_ratio_times_requests_plus_floor(events: list[str]) -> None:
    """When a retry is granted, the retries in the window ending then <= ratio x its requests + floor x window.
    (Checked at grant time: a later window may hold a retry without the requests that funded it.)"""
    budget = RetryBudget(0.2, now=0.0, window=5, min_per_second=1.0)
    now = 0.0
    history: list[tuple[float, str]] = []
    for e in events:
        if e == "tick":
            now += 1.0
            budget.advance(now)
        elif e == "req":
            budget.deposit()
            history.append((now, "req"))
        elif budget.try_withdraw():
            history.append((now, "retry"))
            in_window = [k for t, k in history if t > now - 5]
            assert in_window.count("retry") <= 0.2 * in_window.count("req") + 5.0
