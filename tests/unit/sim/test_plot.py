"""The simulator's plot draws the quantity the SLO is on (wait or latency), marks and counts drops, and keeps the
latency axis readable; checked on the matplotlib figure itself, not on pixels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kubeinfer.sim import ServiceModel, SimOptions, compare, generate
from kubeinfer.sim.plot import DROP_MARK_Y, binned_quantile, figure, plot_png
from kubeinfer.spec.service import ServiceSpec

pytest.importorskip("matplotlib")

SPEC = ServiceSpec.model_validate(
    {
        "model": {"format": "python", "className": "m:C"},
        "autoscaling": {"policy": "hpa", "metric": "concurrency", "target": 1, "minReplicas": 1, "maxReplicas": 1},
    }
)


def _comparison(basis: str) -> Any:
    # One replica with one slot and a load that overwhelms it after 120 s: requests wait, then time out (drops).
    tr = generate("step", {"base": 5, "high": 60, "at": 120, "duration": 300}, seed=3)
    opts = SimOptions(
        service=ServiceModel(fixed_ms=40, distribution="lognormal", cv=0.3),
        slots=1,
        slo_ms=50,
        slo_basis=basis,  # type: ignore[arg-type]
        request_timeout_s=2.0,
        references=False,
    )
    return compare(SPEC, tr, ["none"], opts)


@pytest.fixture(scope="module")
def wait_result() -> Any:
    return _comparison("wait")


def _bins(c: Any) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    duration = c.trace.duration
    edges = np.linspace(0, duration, int(min(400, max(10, duration // 10))) + 1)
    return edges, (edges[:-1] + edges[1:]) / 2


def _line(ax: Any, label: str) -> Any:
    found = [ln for ln in ax.get_lines() if ln.get_label() == label]
    assert len(found) == 1, [ln.get_label() for ln in ax.get_lines()]
    return found[0]


def test_wait_basis_plots_the_wait_quantile_not_the_latency(wait_result: Any) -> None:
    """With --slo-basis wait the curve is the p99 of start - arrival per bin, in ms, against the wait SLO."""
    c = wait_result
    run = c.runs["none"]
    assert run.dropped.any() and (~run.dropped).any()
    edges, _ = _bins(c)
    fig = figure(c)
    ax = fig.axes[2]
    ys = np.asarray(_line(ax, "none").get_ydata(), dtype=float)
    wait = np.where(run.dropped, np.nan, run.start - run.arrivals)
    expected = binned_quantile(run.arrivals, wait, edges, 0.99)
    shown = np.isfinite(expected)
    np.testing.assert_allclose(ys[shown], expected[shown] * 1000)
    # the whole-request latency is larger than the wait in every bin that has one: the curve is not the latency
    latency = binned_quantile(run.arrivals, run.latency, edges, 0.99)
    both = shown & np.isfinite(latency)
    assert both.any() and (ys[both] < latency[both] * 1000).all()
    assert "wait" in ax.get_ylabel() and "p99" in ax.get_ylabel()
    slo = _line(ax, "SLO 50 ms (wait)")
    assert list(slo.get_ydata()) == [50, 50]


def test_drops_are_gaps_marked_and_counted_in_the_legend(wait_result: Any) -> None:
    """A bin whose quantile is a drop is a gap (no 1e4 s clamp); each bin with drops gets a marker; the legend
    counts the drops."""
    c = wait_result
    run = c.runs["none"]
    n_dropped = int(run.dropped.sum())
    assert n_dropped == c.summaries[0].dropped
    edges, mids = _bins(c)
    ax = figure(c).axes[2]
    ys = np.asarray(_line(ax, "none").get_ydata(), dtype=float)
    assert np.nanmax(ys) < 2000 * 1.01  # nothing clamped far above the timeout
    expected = binned_quantile(run.arrivals, np.where(run.dropped, np.nan, run.start - run.arrivals), edges)
    assert np.isinf(expected).any()
    assert np.isnan(ys[np.isinf(expected)]).all()
    marks = _line(ax, f"none: {n_dropped:,} dropped")
    per_bin = np.histogram(run.arrivals[run.dropped], edges)[0]
    np.testing.assert_allclose(marks.get_xdata(), mids[per_bin > 0])  # a 300 s trace is plotted in seconds
    assert set(marks.get_ydata()) == {DROP_MARK_Y}
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"none: {n_dropped:,} dropped" in legend and "none" in legend and "SLO 50 ms (wait)" in legend


def test_axes_are_readable(wait_result: Any) -> None:
    """Labels and units on every panel, plain-number ticks on the latency axis (a zero wait is drawable), integer
    replica ticks."""
    fig = figure(wait_result)
    load, replicas, lat = fig.axes
    assert load.get_ylabel() == "requests/s" and replicas.get_ylabel() == "replicas (billed)"
    assert lat.get_xlabel() == "time (s)"
    assert lat.get_yscale() == "symlog" and lat.get_ylim()[0] == 0
    top = lat.get_ylim()[1]
    assert 50 < top < 1e4 * 1000 / 100  # bounded by the data and the SLO, not by a 1e4 s clamp
    fig.canvas.draw()
    labels = [t.get_text() for t in lat.get_yticklabels() if t.get_text()]
    assert labels and all("$" not in s for s in labels)  # "100", not "$10^{2}$"
    assert all(float(v).is_integer() for v in replicas.get_yticks())


def test_latency_basis_plots_the_whole_request(tmp_path: Path) -> None:
    c = _comparison("latency")
    run = c.runs["none"]
    edges, _ = _bins(c)
    fig = figure(c)
    ax = fig.axes[2]
    ys = np.asarray(_line(ax, "none").get_ydata(), dtype=float)
    expected = binned_quantile(run.arrivals, run.latency, edges)
    shown = np.isfinite(expected)
    np.testing.assert_allclose(ys[shown], expected[shown] * 1000)
    assert "latency" in ax.get_ylabel()
    assert plot_png(c, tmp_path / "p.png").stat().st_size > 10_000
