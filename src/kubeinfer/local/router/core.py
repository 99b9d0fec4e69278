"""The router's decisions, free of sockets and clocks: backend choice, the retry budget, the request-rate window.

- ``pick``: power of two choices on least outstanding requests (Mitzenmacher, "The Power of Two Choices in
  Randomized Load Balancing"; Envoy's ``LEAST_REQUEST`` with ``choice_count: 2``, Linkerd's P2C balancer). Two
  distinct backends are drawn at random and the one with fewer outstanding requests wins; a retry avoids the
  backends already tried while another one is left. For generative services ``balance.choose`` does the same on
  outstanding tokens, with session or prefix affinity.
- ``RetryBudget``: Finagle's and Linkerd's retry budget. Every request deposits ``ratio`` of a token, every retry
  withdraws one, over a sliding window of ``window`` seconds; a floor of ``min_per_second`` retries per second keeps
  retries possible at low traffic. So retries can add at most ``ratio`` of load (plus the floor) and a failing
  backend cannot multiply traffic into a retry storm.
- ``RateWindow``: per-second counters in a ring, for the router's requests-per-second observation.
- ``ArrivalPeak``: the most arrivals within any ``window`` seconds (a sliding window over arrival times), per whole
  second: the sub-second burst signal (``autoscale.LoadSample.peak``) beside the requests per second.
- ``RevisionCounts`` and ``choose_revision``: traffic split between revisions (a canary) and the per-revision
  counters its analysis reads. A revision is drawn by weight first (as a Gateway API ``HTTPRoute`` rule draws among
  its weighted ``backendRefs``: weights are proportions, not percentages), then a backend within it by ``pick``;
  each response adds one count, and one bucket of a latency histogram (``lifecycle.canary.LATENCY_BOUNDS``), to
  its revision.

Time is a parameter (``advance(now)``), so the router's shell calls ``advance`` from its housekeeping tick and the
request path only increments integers and appends (``ArrivalPeak`` keeps the arrivals' times, which its caller
reads, and counts them in ``advance``).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from kubeinfer.autoscale.arrivals import count_within
from kubeinfer.lifecycle.canary import LATENCY_BOUNDS, Counters

__all__ = [
    "ArrivalPeak",
    "HasOutstanding",
    "RateWindow",
    "RetryBudget",
    "RevisionCounts",
    "choose_revision",
    "draw_two",
    "http_error",
    "pick",
]


class HasOutstanding(Protocol):
    outstanding: int


B = TypeVar("B", bound=HasOutstanding)


def pick(backends: Sequence[B], rng: Callable[[], float], exclude: Sequence[B] = ()) -> B | None:
    """The backend for the next try: the less loaded of two drawn at random, avoiding ``exclude`` while possible.

    ``rng`` returns floats in [0, 1) (``random.random``). Returns None only when ``backends`` is empty. When every
    backend is in ``exclude`` (a retry with one backend left), the choice is made among all of them: a retry on the
    same backend over a fresh connection still beats failing the request.
    """
    n = len(backends)
    if n == 0:
        return None
    if exclude:
        rest = [b for b in backends if b not in exclude]
        if rest:
            backends, n = rest, len(rest)
    if n == 1:
        return backends[0]
    i, j = draw_two(n, rng)
    a, b = backends[i], backends[j]
    return a if a.outstanding <= b.outstanding else b


def draw_two(n: int, rng: Callable[[], float]) -> tuple[int, int]:
    """Two distinct indices in [0, ``n``), uniformly (``n`` >= 2): the draw of power of two choices."""
    i = int(rng() * n)
    j = int(rng() * (n - 1))
    if j >= i:
        j += 1
    return i, j


class RateWindow:
    """Counts per whole second in a ring of ``seconds`` buckets; ``advance(now)`` moves to the bucket of ``now``."""

    __slots__ = ("buckets", "current", "second")

    def __init__(self, seconds: int, now: float) -> None:
        if seconds < 1:
            raise ValueError(f"seconds must be an integer >= 1, got {seconds}")
        self.buckets = [0] * seconds
        self.second = int(now)
        self.current = 0  # the open bucket's count

    def add(self, n: int = 1) -> None:
        self.current += n

    def advance(self, now: float) -> None:
        second = int(now)
        if second <= self.second:
            return
        size = len(self.buckets)
        steps = second - self.second
        self.buckets[self.second % size] = self.current
        for s in range(self.second + 1, self.second + min(steps, size + 1)):
            self.buckets[s % size] = 0
        self.second = second
        self.current = 0

    def total(self) -> int:
        """The count of the open second and the ``seconds - 1`` closed ones before it."""
        size = len(self.buckets)
        closed = sum(self.buckets[(self.second - k) % size] for k in range(1, size))
        return closed + self.current

    def last_second(self) -> int:
        """The count of the last closed second (the open one is partial)."""
        return self.buckets[(self.second - 1) % len(self.buckets)]


class ArrivalPeak:
    """The most arrivals within any ``window`` seconds, per whole second, as the simulator counts them
    (``sim.engine``): each arrival at ``t`` counts those in ``(t - window, t]`` -- its predecessors of the previous
    second too, so a burst across a second's edge is seen whole -- and a second's peak is the largest count of an
    arrival in it (0 for a second without arrivals).

    The request path only appends the arrival's time to ``pending`` (``add``, or its bound ``pending.append``);
    ``advance(now)``, from the housekeeping tick, counts the pending arrivals in one vectorized pass over them and
    the last ``window`` of earlier ones (``recent``): O(1) amortized per arrival, each time searched once and kept
    at most until it leaves the window. It then closes the open second as :class:`RateWindow` does (the router
    advances both from its tick, so the peak and the rate cover the same second).
    """

    __slots__ = ("current", "last", "pending", "recent", "second", "window")

    def __init__(self, window: float, now: float) -> None:
        if not (window > 0 and math.isfinite(window)):
            raise ValueError(f"window must be a number of seconds > 0, got {window}")
        self.window = float(window)
        self.pending: list[float] = []
        """Arrival times (non-decreasing: ``time.monotonic()``) since the last ``advance``."""
        self.recent: npt.NDArray[np.float64] = np.empty(0)
        """The counted arrivals within ``window`` of the last one: the next arrivals' predecessors."""
        self.second = int(now)
        self.current = 0  # the open second's peak
        self.last = 0  # the last closed second's peak

    def add(self, t: float) -> None:
        """One arrival at ``t``."""
        self.pending.append(t)

    def _count(self) -> None:
        pending = self.pending
        if not pending:
            return
        _, within, self.recent = count_within(self.recent, pending, self.window)  # the replicas' count too
        pending.clear()
        self.current = max(self.current, int(within.max()))

    def advance(self, now: float) -> None:
        self._count()
        second = int(now)
        if second <= self.second:
            return
        # a tick that skipped a whole second leaves the last closed second empty, as RateWindow.last_second does
        self.last = self.current if second == self.second + 1 else 0
        self.second = second
        self.current = 0

    def last_second(self) -> int:
        """The peak of the last closed second (the open one is partial)."""
        return self.last


class RetryBudget:
    """Retries allowed: ``ratio`` x requests in the window + ``min_per_second`` x window, minus retries spent.

    ``deposit`` per request and ``try_withdraw`` per retry are O(1) on the request path; ``advance(now)`` slides the
    window (called about once a second by the owner).
    """

    __slots__ = ("min_per_second", "ratio", "requests", "retries", "window")

    def __init__(self, ratio: float, now: float, *, window: int = 10, min_per_second: float = 10.0) -> None:
        if not 0.0 <= ratio <= 1000.0:
            raise ValueError(f"retry_budget_ratio must be a number in [0, 1000], got {ratio}")
        if min_per_second < 0:
            raise ValueError(f"min_per_second must be >= 0, got {min_per_second}")
        self.ratio = ratio
        self.min_per_second = min_per_second
        self.window = window
        self.requests = RateWindow(window, now)
        self.retries = RateWindow(window, now)

    def deposit(self) -> None:
        self.requests.current += 1

    def balance(self) -> float:
        allowed = self.ratio * self.requests.total() + self.min_per_second * self.window
        return allowed - self.retries.total()

    def try_withdraw(self) -> bool:
        if self.balance() < 1.0:
            return False
        self.retries.current += 1
        return True

    def advance(self, now: float) -> None:
        self.requests.advance(now)
        self.retries.advance(now)


class RevisionCounts:
    """One revision's responses as the router saw them: total, errors, and a latency histogram. ``record`` is on the
    request path: two increments and one bisect."""

    __slots__ = ("errors", "latency", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.latency = [0] * (len(LATENCY_BOUNDS) + 1)

    def record(self, error: bool, seconds: float) -> None:
        self.requests += 1
        if error:
            self.errors += 1
        self.latency[bisect.bisect_left(LATENCY_BOUNDS, seconds)] += 1

    def snapshot(self) -> Counters:
        return Counters(self.requests, self.errors, tuple(self.latency))


def http_error(status: int) -> bool:
    """Whether a response counts against its revision: a 5xx other than 503 (a 503 is a replica that did not run
    the request -- full, draining or not ready -- and the router retries it elsewhere), as Flagger's
    request-success-rate counts non-5xx as success."""
    return status >= 500 and status != 503


def choose_revision(
    split: Sequence[tuple[int, int]], groups: Mapping[int, Sequence[B]], rng: Callable[[], float]
) -> Sequence[B] | None:
    """The ready backends of the revision that takes the next request: drawn by weight among the revisions of
    ``split`` ((revision, weight) pairs) that have ready backends; None when none of them has (the caller falls back
    to every ready backend). A revision of weight 0 gets nothing (only requests pinned to it)."""
    live = [(groups[rev], w) for rev, w in split if w > 0 and groups.get(rev)]
    if not live:
        return None
    if len(live) == 1:
        return live[0][0]
    x = rng() * sum(w for _, w in live)
    for backends, w in live:
        x -= w
        if x < 0:
            return backends
    return live[-1][0]
