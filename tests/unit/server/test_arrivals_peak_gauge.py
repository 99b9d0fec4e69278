"""``kubeinfer_arrivals_peak``: the most requests within any window of ``KUBEINFER_PEAK_WINDOW_SECONDS`` over the last
15 s, counted from known arrival times on a fake clock, summed over a multi-process replica's processes, and absent
without a window."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kubeinfer.autoscale.arrivals import RecentPeak, count_within
from kubeinfer.server.dataplane import DataPlane
from kubeinfer.server.metrics import PEAK_HORIZON_SECONDS, Metrics, peak_horizon_from_env, peak_window_from_env


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def gauge(m: Metrics) -> float | None:
    for fam in text_string_to_metric_families(m.render().decode()):
        if fam.name == "kubeinfer_arrivals_peak":
            [s] = fam.samples
            return float(s.value)
    return None


def test_count_within_counts_each_arrival_with_its_predecessors_in_the_window() -> None:
    import numpy as np

    times, within, recent = count_within(np.array([0.95]), [1.0, 1.02, 1.5, 1.55, 1.56], 0.1)
    assert within.tolist() == [2, 3, 1, 2, 3]
    assert times.tolist() == [1.0, 1.02, 1.5, 1.55, 1.56] and recent.tolist() == [1.5, 1.55, 1.56]


def test_the_gauge_is_the_busiest_window_of_the_last_15_seconds() -> None:
    clock = Clock(100.0)
    m = Metrics(peak_window=0.1, clock=clock)
    assert m.arrival is not None
    # a burst of 5 within 40 ms at t=100.2, then 3 spread a second apart
    for t in (100.20, 100.21, 100.22, 100.23, 100.24, 101.5, 102.5, 103.5):
        m.arrival(t)
    clock.now = 104.0
    assert gauge(m) == 5
    assert gauge(m) == 5, "a read resets nothing: a second scraper reads the same"
    m.count_arrivals()  # the replica's half-second count changes nothing either
    clock.now = 100.0 + PEAK_HORIZON_SECONDS + 0.99  # second 100 is still the oldest of the look-back
    assert gauge(m) == 5
    clock.now = 101.0 + PEAK_HORIZON_SECONDS  # ...and now it left: the spread arrivals' 1 remains
    assert gauge(m) == 1
    clock.now = 104.0 + PEAK_HORIZON_SECONDS
    assert gauge(m) == 0


def test_a_burst_across_a_seconds_edge_is_seen_whole() -> None:
    clock = Clock(10.0)
    m = Metrics(peak_window=0.1, clock=clock)
    assert m.arrival is not None
    for t in (10.96, 10.98, 11.0, 11.02):
        m.arrival(t)
    m.count_arrivals()
    m.arrival(11.03)  # counted later, with its predecessors of the earlier count
    clock.now = 11.5
    assert gauge(m) == 5


def test_without_a_window_there_is_no_gauge_and_no_hook() -> None:
    m = Metrics()
    assert m.arrival is None and m.arrivals is None and gauge(m) is None
    assert m.snapshot()["arrivals_peak"] == 0


def test_a_replicas_value_is_the_sum_of_its_processes_peaks() -> None:
    clock = Clock(50.0)
    m = Metrics(peak_window=0.5, clock=clock)
    assert m.arrival is not None
    for t in (49.0, 49.1, 49.2):
        m.arrival(t)
    sibling = Metrics(peak_window=0.5, clock=clock)
    assert sibling.arrival is not None
    for t in (45.0, 45.3):
        sibling.arrival(t)
    m.siblings = lambda: [sibling.snapshot()]
    assert gauge(m) == 3 + 2


def test_the_request_path_hook_records_the_start_time_of_counted_requests() -> None:
    m = Metrics(peak_window=0.1)
    plane = DataPlane(metrics=m)
    assert m.arrivals is not None
    t = plane.begin()
    plane.begin(arrival=False)  # a probe or scrape before its route is known: not an arrival
    assert m.arrivals.pending == [t]


@pytest.mark.parametrize(
    ("raw", "seconds"), [(None, 0.0), ("", 0.0), ("0.1", 0.1), (" 2 ", 2.0), ("0", 0.0), ("-1", 0.0), ("x", 0.0)]
)
def test_the_window_comes_from_the_environment(
    raw: str | None, seconds: float, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {} if raw is None else {"KUBEINFER_PEAK_WINDOW_SECONDS": raw}
    assert peak_window_from_env(env) == seconds
    err = capsys.readouterr().err
    assert ("KUBEINFER_PEAK_WINDOW_SECONDS" in err) == (raw in ("0", "-1", "x"))


@pytest.mark.parametrize(
    ("raw", "seconds"), [(None, PEAK_HORIZON_SECONDS), ("", PEAK_HORIZON_SECONDS), ("5", 5), ("0", 15), ("2.5", 15)]
)
def test_the_look_back_comes_from_the_environment(
    raw: str | None, seconds: int, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {} if raw is None else {"KUBEINFER_PEAK_HORIZON_SECONDS": raw}
    assert peak_horizon_from_env(env) == seconds
    assert ("KUBEINFER_PEAK_HORIZON_SECONDS" in capsys.readouterr().err) == (raw in ("0", "2.5"))


def test_a_shorter_look_back_forgets_a_burst_sooner() -> None:
    t = [100.0]
    m = Metrics(peak_window=0.1, clock=lambda: t[0], peak_horizon=5)
    assert m.arrival is not None and m.arrivals is not None
    for i in range(30):
        m.arrival(100.0 + i * 0.001)
    t[0] = 104.5
    assert m.arrivals.value(t[0]) == 30
    t[0] = 106.5  # more than 5 whole seconds after the burst's second
    assert m.arrivals.value(t[0]) == 0


def test_recent_peak_rejects_a_window_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="window must be"):
        RecentPeak(0.0, 15)
    with pytest.raises(ValueError, match="horizon must be"):
        RecentPeak(0.1, 0)
