"""Plots of a comparison: load, replicas (each policy and the oracle) and the quantity the SLO bounds over time.

The bottom panel plots, per time bin, the SLO quantile (p99 by default) of the quantity the SLO is on: the wait for
a slot with ``slo_basis="wait"`` (time to first token for an LLM), the whole request otherwise -- so the SLO line
and the curves it is compared with measure the same thing. A dropped request has no latency: it counts as
infinitely late in its bin's quantile (a bin whose quantile is a drop is left as a gap, not clamped to a made-up
value), and every bin with drops is marked with a triangle at the top of the panel, in the policy's colour, with
the policy's drop count in the legend.

matplotlib (the ``plan`` extra) is imported lazily with the Agg backend, so the simulator itself needs only numpy.
:func:`write_html` embeds the PNG and the table in one self-contained page.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from kubeinfer.sim.engine import RunResult
from kubeinfer.sim.oracle import SloBasis
from kubeinfer.sim.scenario import Comparison

__all__ = ["binned_latency", "binned_quantile", "figure", "plot_png", "slo_measure", "write_html"]

DROP_MARK_Y = 0.97
"""Height (fraction of the latency panel) of the triangles that mark bins with dropped requests."""


def slo_measure(run: RunResult, basis: SloBasis) -> Any:
    """Seconds per request of the quantity the SLO bounds: arrival to start of service (``wait``) or to its end
    (``latency``); NaN for a dropped request."""
    return np.where(run.dropped, np.nan, (run.start if basis == "wait" else run.end) - run.arrivals)


def binned_quantile(
    arrivals: np.ndarray[Any, Any], values: np.ndarray[Any, Any], edges: np.ndarray[Any, Any], quantile: float = 0.99
) -> Any:
    """The ``quantile`` of ``values`` (seconds, NaN = dropped) of the requests that arrived in each bin; a dropped
    request counts as infinitely late, so a bin whose quantile falls on a drop is ``inf``; an empty bin is NaN."""
    idx = np.searchsorted(arrivals, edges)
    out = np.full(len(edges) - 1, np.nan)
    for b in range(len(edges) - 1):
        chunk = values[idx[b] : idx[b + 1]]
        if len(chunk):
            out[b] = np.percentile(np.where(np.isnan(chunk), np.inf, chunk), quantile * 100, method="inverted_cdf")
    return out


def binned_latency(arrivals: np.ndarray[Any, Any], latency: np.ndarray[Any, Any], edges: np.ndarray[Any, Any]) -> Any:
    """p99 latency (seconds) of the requests that arrived in each bin; dropped ones count as infinitely late."""
    return binned_quantile(arrivals, latency, edges, 0.99)


def _quantile_name(q: float) -> str:
    return f"p{q * 100:g}"


def figure(c: Comparison) -> Any:
    """The comparison's figure (a matplotlib ``Figure``, three panels); the caller saves and closes it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    basis = c.options.slo_basis
    qname = _quantile_name(c.options.quantile)
    what = "wait for a slot" if basis == "wait" else "latency"
    duration = c.trace.duration
    n_bins = int(min(400, max(10, duration // 10)))
    edges = np.linspace(0, duration, n_bins + 1)
    mids = (edges[:-1] + edges[1:]) / 2
    scale, unit = (3600.0, "h") if duration > 3 * 3600 else (60.0, "min") if duration > 600 else (1.0, "s")
    fig, axes = plt.subplots(3, 1, figsize=(11, 8.5), sharex=True, constrained_layout=True)
    counts = np.histogram(c.trace.arrivals, edges)[0] / np.diff(edges)
    axes[0].plot(mids / scale, counts, color="0.3", lw=1)
    axes[0].set_ylabel("requests/s")
    axes[0].set_ylim(bottom=0)
    axes[0].set_title(f"{c.trace.name}: load, replicas and {qname} {what} (SLO on {basis})")
    secs = np.arange(len(c.oracle.provisioned)) / scale
    axes[1].step(secs, c.oracle.provisioned, where="post", color="k", lw=1.2, ls="--", label="oracle")
    lat_ax = axes[2]
    finite: list[float] = []
    for i, (name, run) in enumerate(c.runs.items()):
        color = f"C{i}"
        axes[1].step(
            np.arange(len(run.timeline["replicas"])) / scale,
            run.timeline["replicas"],
            where="post",
            lw=1,
            color=color,
            label=name,
        )
        q = binned_quantile(run.arrivals, slo_measure(run, basis), edges, c.options.quantile)
        # A quantile that is a drop has no value to draw: a gap, with the drops marked above it.
        ms = np.where(np.isinf(q), np.nan, q * 1000)
        finite.extend(ms[np.isfinite(ms)].tolist())
        lat_ax.plot(mids / scale, ms, lw=1, color=color, label=name)
        drops = np.histogram(run.arrivals[run.dropped], edges)[0]
        n_dropped = int(drops.sum())
        if n_dropped:
            at = drops > 0
            lat_ax.plot(
                mids[at] / scale,
                np.full(int(at.sum()), DROP_MARK_Y),
                transform=lat_ax.get_xaxis_transform(),
                ls="none",
                marker="v",
                ms=5,
                color=color,
                clip_on=False,
                label=f"{name}: {n_dropped:,} dropped",
            )
    axes[1].set_ylabel("replicas (billed)")
    axes[1].set_ylim(bottom=0)
    axes[1].yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[1].legend(loc="upper left", fontsize=8, ncol=4)
    slo_ms = c.slo_s * 1000
    lat_ax.axhline(slo_ms, color="r", lw=0.8, ls=":", label=f"SLO {slo_ms:g} ms ({basis})")
    # symlog: a wait is often exactly 0 (a free slot), which a log axis cannot show; linear below 1 ms.
    top = max([slo_ms, *finite]) * 3
    lat_ax.set_yscale("symlog", linthresh=1.0, linscale=0.3)
    lat_ax.set_ylim(0, top)
    lat_ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    lat_ax.set_ylabel(f"{qname} {what} (ms)")
    lat_ax.set_xlabel(f"time ({unit})")
    lat_ax.grid(True, which="major", axis="y", lw=0.3, alpha=0.5)
    lat_ax.legend(loc="upper left", bbox_to_anchor=(0, 0.92), fontsize=8, ncol=4)
    return fig


def plot_png(c: Comparison, path: str | Path) -> Path:
    fig = figure(c)
    out = Path(path)
    fig.savefig(out, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return out


def write_html(c: Comparison, path: str | Path) -> Path:
    fig = figure(c)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    img = base64.b64encode(buf.getvalue()).decode()
    o = c.oracle_summary
    rows = [
        "<tr><th>policy</th><th>SLO attainment</th><th>p50 ms</th><th>p99 ms</th><th>dropped</th>"
        "<th>replica-hours</th><th>cost</th><th>vs oracle</th><th>scaling events</th></tr>"
    ]
    for s in c.summaries:
        rows.append(
            f"<tr><td>{html.escape(s.policy)}</td><td>{s.slo_attainment:.2%}</td><td>{s.p50_ms:.1f}</td>"
            f"<td>{s.p99_ms:.1f}</td><td>{s.dropped}</td><td>{s.replica_seconds / 3600:.2f}</td>"
            f"<td>{s.cost:.2f}</td><td>{s.vs_oracle:.2f}x</td><td>{s.scaling_events}</td></tr>"
        )
    rows.append(
        f"<tr><td>oracle</td><td>-</td><td>-</td><td>-</td><td>-</td><td>{o.replica_seconds / 3600:.2f}</td>"
        f"<td>{o.cost:.2f}</td><td>1.00x</td><td>-</td></tr>"
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>kubeinfer simulate</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 10px;text-align:right}"
        "table{border-collapse:collapse}tr:nth-child(even){background:#f3f3f3}</style></head><body>"
        f"<h2>{html.escape(c.trace.name)}</h2><p>{len(c.trace):,} requests over {c.trace.duration:,.0f} s; "
        f"SLO {c.slo_s * 1000:g} ms ({c.options.slo_basis}); {html.escape(c.options.service.describe())}</p>"
        f"<table>{''.join(rows)}</table><img src='data:image/png;base64,{img}' style='max-width:100%'>"
        "</body></html>"
    )
    out = Path(path)
    out.write_text(page)
    return out
