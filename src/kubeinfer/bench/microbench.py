"""Micro-benchmarks of a hot path in nanoseconds, several variants timed side by side: the variants alternate within each repeat (forwards on
even repeats, backwards on odd ones) so that a drift of the machine's speed during the run falls on all of them alike,
and each figure is the median of the repeats with the best and the worst beside it. A variant's added cost over a
baseline is the median of the paired differences (repeat by repeat), which cancels the drift that the two shared.
:func:`ns_per_arrival` times the other half of a count kept off the request path: the periodic pass over the
arrivals that the request path only appended.

The scripts under ``bench/`` that time a hot path in nanoseconds (``bench/replica_peak/peak_hook.py``,
``bench/router/peak_hook.py``) use it; their tables are Markdown, pasted as they are into the RESULTS files.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
import timeit
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "Counting",
    "Spread",
    "compare",
    "comparison_table",
    "interleave",
    "machine_line",
    "ns_per_arrival",
    "ns_per_call",
    "paired_median",
    "parser",
    "spread_table",
]


@dataclass(frozen=True, slots=True)
class Spread:
    """The median of the repeats' figures, the best (smallest: the figures are costs) and the worst (largest)."""

    median: float
    best: float
    worst: float

    @classmethod
    def of(cls, xs: Sequence[float]) -> Spread:
        if not xs:
            raise ValueError("a spread needs at least one figure")
        return cls(statistics.median(xs), min(xs), max(xs))


def parser(description: str) -> argparse.ArgumentParser:
    """The options every such script takes: ``--repeats`` (9) and ``--number`` of calls per timing (200,000)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--number", type=int, default=200_000)
    return ap


def ns_per_call(fn: Callable[[], object], number: int) -> float:
    """Nanoseconds per call of ``fn``, over ``number`` calls in a row."""
    return timeit.timeit(fn, number=number) / number * 1e9


def interleave(
    setups: Mapping[str, Callable[[], object]],
    *,
    repeats: int,
    number: int,
    after_repeat: Callable[[int], object] | None = None,
) -> dict[str, list[float]]:
    """Time each setup ``number`` calls at a time, ``repeats`` times, alternating the setups' order from one repeat to
    the next; returns each setup's ns per call, one figure a repeat. The garbage collector is off while they run (a
    collection would land on whichever setup it happened in); ``after_repeat(rep)`` runs after each repeat, outside
    the timed calls (the periodic work that keeps a setup's state as it is in service)."""
    samples: dict[str, list[float]] = {name: [] for name in setups}
    names = list(setups)
    gc.disable()
    try:
        for rep in range(repeats):
            order = names if rep % 2 == 0 else names[::-1]
            for name in order:
                samples[name].append(ns_per_call(setups[name], number))
            if after_repeat is not None:
                after_repeat(rep)
    finally:
        gc.enable()
    return samples


class Counting(Protocol):
    """A count whose request path appends an arrival's time to ``pending`` and whose periodic ``advance`` counts
    them (``kubeinfer.autoscale.arrivals.RecentPeak``, the router's ``ArrivalPeak``)."""

    pending: list[float]

    def advance(self, now: float) -> None: ...


def ns_per_arrival(counter: Counting, per_tick: int, ticks: int, tick: float) -> float:
    """Nanoseconds of ``counter.advance`` per arrival counted: ``per_tick`` arrivals spread evenly over each of
    ``ticks`` ticks of ``tick`` seconds (on a virtual clock from 0), ``advance`` called at the end of each tick. Only
    ``advance`` is timed, not the appends."""
    spent = 0.0
    for k in range(ticks):
        counter.pending.extend((k + (i + 0.5) / per_tick) * tick for i in range(per_tick))
        t0 = time.perf_counter()
        counter.advance((k + 1) * tick)
        spent += time.perf_counter() - t0
    return spent / (per_tick * ticks) * 1e9


def compare(
    setups: Mapping[str, Callable[[], object]],
    *,
    repeats: int,
    number: int,
    what: str,
    baseline: Callable[[str], str],
    after_repeat: Callable[[int], object] | None = None,
) -> dict[str, list[float]]:
    """:func:`interleave` the setups, then print the machine's line and the :func:`comparison_table` in ns per one of
    ``what`` (the calls' plural: ``requests``, ``calls``); returns the figures."""
    samples = interleave(setups, repeats=repeats, number=number, after_repeat=after_repeat)
    print(machine_line(repeats, number, what))
    for line in comparison_table(samples, f"ns/{what.removesuffix('s')}", baseline):
        print(line)
    return samples


def paired_median(xs: Sequence[float], base: Sequence[float]) -> float:
    """The median of ``xs[i] - base[i]``: what a variant adds over the baseline timed in the same repeats."""
    return statistics.median(x - b for x, b in zip(xs, base, strict=True))


def machine_line(repeats: int, number: int, what: str) -> str:
    """The line above a run's tables: the platform, the Python version and how much was timed."""
    return f"{platform.platform()}, Python {sys.version.split()[0]}; {repeats} repeats of {number} {what}"


def comparison_table(
    samples: Mapping[str, Sequence[float]], unit: str, baseline: Callable[[str], str], against: str = "no window"
) -> Iterator[str]:
    """Markdown rows of :func:`interleave`'s figures: median, best and worst per ``unit``, and the paired median added
    over the setup that ``baseline`` names for each setup (``against`` says what that baseline is)."""
    yield f"| setup | {unit} median | best | worst | added vs {against}, median of paired repeats |"
    yield "|---|---:|---:|---:|---:|"
    for name, xs in samples.items():
        s = Spread.of(xs)
        added = paired_median(xs, samples[baseline(name)])
        yield f"| {name} | {s.median:.1f} | {s.best:.1f} | {s.worst:.1f} | {added:+.1f} |"


def spread_table(
    label: str, figure: str, rows: Iterable[tuple[str, Callable[[], float]]], repeats: int
) -> Iterator[str]:
    """Markdown rows of ``figure``'s median, best and worst over ``repeats`` calls of each row's measurement (the
    column headed ``label`` names the rows). A row is measured when its line is asked for, so that printing the lines
    as they come shows each row as soon as it is done."""
    yield f"| {label} | {figure}: median | best | worst |"
    yield "|---|---:|---:|---:|"
    for name, measure in rows:
        s = Spread.of([measure() for _ in range(repeats)])
        yield f"| {name} | {s.median:.1f} | {s.best:.1f} | {s.worst:.1f} |"
