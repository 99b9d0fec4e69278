"""The side-by-side micro-benchmark runner behind ``bench/*/peak_hook.py``: the order the setups alternate in, the
median, best and worst of the repeats, the paired added cost, and the Markdown rows that carry them."""

from __future__ import annotations

import gc
import platform
from collections.abc import Callable

import pytest

from kubeinfer.bench import microbench


def test_spread_is_the_median_the_smallest_and_the_largest() -> None:
    assert microbench.Spread.of([5.0, 1.0, 3.0, 2.0, 4.0]) == microbench.Spread(median=3.0, best=1.0, worst=5.0)
    assert microbench.Spread.of([4.0, 1.0, 3.0, 10.0]) == microbench.Spread(median=3.5, best=1.0, worst=10.0)
    with pytest.raises(ValueError, match="at least one"):
        microbench.Spread.of([])


def test_paired_median_is_the_median_of_the_differences_not_the_difference_of_the_medians() -> None:
    xs, base = [10.0, 20.0, 30.0], [9.0, 15.0, 40.0]
    assert microbench.paired_median(xs, base) == 1.0  # differences 1, 5, -10 (the medians differ by 5)
    with pytest.raises(ValueError):
        microbench.paired_median(xs, base[:2])


def test_interleave_alternates_the_order_and_runs_the_hook_between_repeats_with_the_collector_off() -> None:
    calls: list[str] = []
    collector_on: list[bool] = []

    def setup(name: str) -> Callable[[], None]:
        def one() -> None:
            calls.append(name)
            collector_on.append(gc.isenabled())

        return one

    def after(rep: int) -> None:
        calls.append(f"after {rep}")

    samples = microbench.interleave(
        {"a": setup("a"), "b": setup("b"), "c": setup("c")}, repeats=3, number=2, after_repeat=after
    )
    forwards, backwards = ["a", "a", "b", "b", "c", "c"], ["c", "c", "b", "b", "a", "a"]
    assert calls == [*forwards, "after 0", *backwards, "after 1", *forwards, "after 2"]
    assert not any(collector_on)
    assert gc.isenabled()
    assert list(samples) == ["a", "b", "c"]
    assert all(len(xs) == 3 and all(x > 0 for x in xs) for xs in samples.values())


def test_interleave_turns_the_collector_back_on_when_a_setup_fails() -> None:
    def fails() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        microbench.interleave({"fails": fails}, repeats=1, number=1)
    assert gc.isenabled()


def test_comparison_rows_carry_median_best_worst_and_the_paired_added_cost_against_each_baseline() -> None:
    samples = {
        "begin, no window": [100.0, 120.0, 110.0],
        "begin, window": [130.0, 125.0, 200.0],
        "end, no window": [1000.0, 900.0, 950.0],
        "end, window": [990.0, 1000.0, 900.0],
    }
    rows = list(microbench.comparison_table(samples, "ns/request", lambda name: name.split(", ")[0] + ", no window"))
    assert rows == [
        "| setup | ns/request median | best | worst | added vs no window, median of paired repeats |",
        "|---|---:|---:|---:|---:|",
        "| begin, no window | 110.0 | 100.0 | 120.0 | +0.0 |",
        "| begin, window | 130.0 | 125.0 | 200.0 | +30.0 |",  # paired differences 30, 5, 90
        "| end, no window | 950.0 | 900.0 | 1000.0 | +0.0 |",
        "| end, window | 990.0 | 900.0 | 1000.0 | -10.0 |",  # paired differences -10, 100, -50
    ]


def test_spread_rows_measure_each_row_repeats_times_and_only_when_asked() -> None:
    figures = {"slow": iter([30.0, 90.0, 10.0]), "fast": iter([2.0, 1.0, 4.0])}
    measured: list[str] = []

    def measure(name: str) -> Callable[[], float]:
        def one() -> float:
            measured.append(name)
            return next(figures[name])

        return one

    lines = microbench.spread_table("rate", "advance, ns", ((n, measure(n)) for n in figures), 3)
    assert [next(lines), next(lines)] == ["| rate | advance, ns: median | best | worst |", "|---|---:|---:|---:|"]
    assert measured == []
    assert next(lines) == "| slow | 30.0 | 10.0 | 90.0 |"
    assert measured == ["slow"] * 3
    assert list(lines) == ["| fast | 2.0 | 1.0 | 4.0 |"]


class _Recorder:
    def __init__(self) -> None:
        self.pending: list[float] = []
        self.advanced: list[tuple[float, list[float]]] = []

    def advance(self, now: float) -> None:
        self.advanced.append((now, list(self.pending)))
        self.pending.clear()


def test_ns_per_arrival_spreads_each_ticks_arrivals_evenly_and_advances_at_the_ticks_end() -> None:
    counter = _Recorder()
    assert microbench.ns_per_arrival(counter, per_tick=2, ticks=3, tick=0.5) > 0
    assert counter.advanced == [(0.5, [0.125, 0.375]), (1.0, [0.625, 0.875]), (1.5, [1.125, 1.375])]


def test_compare_prints_the_machine_line_and_the_table_in_ns_per_call(capsys: pytest.CaptureFixture[str]) -> None:
    samples = microbench.compare(
        {"no window": lambda: None}, repeats=2, number=10, what="requests", baseline=lambda _name: "no window"
    )
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(platform.platform()) and out[0].endswith("; 2 repeats of 10 requests")
    assert out[1].startswith("| setup | ns/request median |")
    s = microbench.Spread.of(samples["no window"])
    assert out[3] == f"| no window | {s.median:.1f} | {s.best:.1f} | {s.worst:.1f} | +0.0 |"


def test_parser_defaults_to_nine_repeats_of_200000_calls() -> None:
    args = microbench.parser("x").parse_args([])
    assert (args.repeats, args.number) == (9, 200_000)
    assert microbench.parser("x").parse_args(["--repeats", "3", "--number", "5"]).number == 5
