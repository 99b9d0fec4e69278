"""Counting :attr:`LoadSample.peak <kubeinfer.autoscale.LoadSample.peak>` from arrival times: the most arrivals
within any ``window`` seconds, over a sliding window of arrival times.

Every shell that reports the burst signal counts it the way the simulator does (``sim.engine``): each arrival at
``t`` counts the arrivals in ``(t - window, t]``, and a second's peak is the largest count of an arrival in it. The
router of ``kubeinfer up`` (``local.router.core.ArrivalPeak``) and each replica server (``server.metrics``: the
``kubeinfer_arrivals_peak`` gauge the operator reads) share :func:`count_within` for that count; :class:`RecentPeak`
keeps a replica's per-second peaks for a fixed look-back, so that every scraper reads the same value without
resetting it. Times are parameters (pure code: no clock is read here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["RecentPeak", "count_within"]

FloatArr = npt.NDArray[np.float64]
IntArr = npt.NDArray[np.int64]


def count_within(recent: FloatArr, pending: Sequence[float], window: float) -> tuple[FloatArr, IntArr, FloatArr]:
    """Each of ``pending``'s arrivals' count of arrivals within ``window`` seconds up to it, its predecessors in
    ``recent`` included: ``(pending as an array, their counts, the new recent)``. The new recent is the arrivals
    within ``window`` of the last one, the next call's predecessors. Times are non-decreasing (``recent`` then
    ``pending``); one vectorized pass, O(1) amortized per arrival."""
    arr = np.concatenate((recent, np.asarray(pending, dtype=np.float64)))
    k = len(recent)
    # arrival i's count: i + 1 minus those at or before t_i - window (np.searchsorted is the sim's count too)
    within = np.arange(k + 1, len(arr) + 1, dtype=np.int64) - np.searchsorted(arr, arr[k:] - window, side="right")
    return arr[k:], within, arr[np.searchsorted(arr, arr[-1] - window, side="right") :]


class RecentPeak:
    """The most arrivals within any ``window`` seconds over the last ``horizon`` seconds: the largest per-second
    peak of the open second and the ``horizon`` whole seconds before it (so at least ``horizon`` seconds are
    covered, and a reader every ``horizon`` seconds misses none).

    ``add`` (the request path) only appends the arrival's time to ``pending``; :meth:`advance` counts the pending
    arrivals (:func:`count_within`) into per-second peaks and forgets the seconds older than the look-back, and
    :meth:`value` advances, then reads. Reading resets nothing: two readers at one instant read the same value.
    """

    __slots__ = ("horizon", "peaks", "pending", "recent", "window")

    def __init__(self, window: float, horizon: int) -> None:
        if not (window > 0 and math.isfinite(window)):
            raise ValueError(f"window must be a number of seconds > 0, got {window}")
        if horizon < 1:
            raise ValueError(f"horizon must be an integer number of seconds >= 1, got {horizon}")
        self.window = float(window)
        self.horizon = int(horizon)
        self.pending: list[float] = []
        """Arrival times (non-decreasing) since the last :meth:`advance`."""
        self.recent: FloatArr = np.empty(0)
        self.peaks: dict[int, int] = {}
        """Whole second -> the largest count of an arrival in it, for the seconds of the look-back."""

    def add(self, t: float) -> None:
        """One arrival at ``t``."""
        self.pending.append(t)

    def advance(self, now: float) -> None:
        """Count the pending arrivals; forget the seconds before the look-back of ``now``."""
        pending = self.pending
        if pending:
            times, within, self.recent = count_within(self.recent, pending, self.window)
            pending.clear()
            secs = np.floor(times).astype(np.int64)
            starts = np.flatnonzero(np.diff(secs, prepend=secs[0] - 1))
            peaks = self.peaks
            for s, c in zip(secs[starts].tolist(), np.maximum.reduceat(within, starts).tolist(), strict=True):
                if c > peaks.get(s, 0):
                    peaks[s] = c
        oldest = math.floor(now) - self.horizon
        for s in [s for s in self.peaks if s < oldest]:
            del self.peaks[s]

    def value(self, now: float) -> int:
        """The most arrivals within any ``window`` seconds among those of the open second and the ``horizon`` whole
        seconds before it (0 without arrivals there)."""
        self.advance(now)
        second = math.floor(now)
        return max((c for s, c in self.peaks.items() if s <= second), default=0)
