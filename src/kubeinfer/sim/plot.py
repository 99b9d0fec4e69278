"""Plots of a comparison: load, replicas (each policy and the oracle) and p99 latency over time.

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

from kubeinfer.sim.scenario import Comparison

__all__ = ["binned_latency", "plot_png", "write_html"]


def binned_latency(arrivals: np.ndarray[Any, Any], latency: np.ndarray[Any, Any], edges: np.ndarray[Any, Any]) -> Any:
    """p99 latency (seconds) of the requests that arrived in each bin; dropped ones count as infinitely late."""
    idx = np.searchsorted(arrivals, edges)
    out = np.full(len(edges) - 1, np.nan)
    for b in range(len(edges) - 1):
        chunk = latency[idx[b] : idx[b + 1]]
        if len(chunk):
            out[b] = np.percentile(np.where(np.isnan(chunk), np.inf, chunk), 99, method="inverted_cdf")
    return out


def _figure(c: Comparison) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    duration = c.trace.duration
    n_bins = int(min(400, max(10, duration // 10)))
    edges = np.linspace(0, duration, n_bins + 1)
    mids = (edges[:-1] + edges[1:]) / 2
    scale, unit = (3600.0, "h") if duration > 3 * 3600 else (60.0, "min")
    fig, axes = plt.subplots(3, 1, figsize=(11, 8.5), sharex=True, constrained_layout=True)
    counts = np.histogram(c.trace.arrivals, edges)[0] / np.diff(edges)
    axes[0].plot(mids / scale, counts, color="0.3", lw=1)
    axes[0].set_ylabel("requests/s")
    axes[0].set_title(f"{c.trace.name}: load, replicas and p99 latency")
    secs = np.arange(len(c.oracle.provisioned)) / scale
    axes[1].step(secs, c.oracle.provisioned, where="post", color="k", lw=1.2, ls="--", label="oracle")
    for name, run in c.runs.items():
        axes[1].step(
            np.arange(len(run.timeline["replicas"])) / scale, run.timeline["replicas"], where="post", lw=1, label=name
        )
        lat = binned_latency(run.arrivals, run.latency, edges)
        axes[2].plot(mids / scale, np.minimum(lat, 1e4) * 1000, lw=1, label=name)
    axes[1].set_ylabel("replicas (billed)")
    axes[1].legend(loc="upper left", fontsize=8, ncol=4)
    axes[2].axhline(c.slo_s * 1000, color="r", lw=0.8, ls=":", label="SLO")
    axes[2].set_yscale("log")
    axes[2].set_ylabel("p99 latency (ms)")
    axes[2].set_xlabel(f"time ({unit})")
    axes[2].legend(loc="upper left", fontsize=8, ncol=4)
    return fig


def plot_png(c: Comparison, path: str | Path) -> Path:
    fig = _figure(c)
    out = Path(path)
    fig.savefig(out, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return out


def write_html(c: Comparison, path: str | Path) -> Path:
    fig = _figure(c)
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
