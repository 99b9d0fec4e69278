"""``kubeinfer simulate``: compare autoscaling policies on a request trace, against the oracle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from kubeinfer.cli.base import app, err, fail, load_or_fail, out, print_table

__all__ = ["simulate"]


@app.command()
def simulate(
    spec_file: Annotated[Path, typer.Argument(help="InferenceService YAML.", show_default=False)],
    trace: Annotated[
        str,
        typer.Option(
            help="CSV of timestamps or per-interval counts, or gen:KIND,key=value,... "
            "(KIND: poisson, diurnal, step, spike, onoff, flash -- each also noise=SIGMA -- or mmpp, batch; "
            "tokens=conv|long adds token columns; e.g. gen:spike,base=50,high=200,duration=3600 or "
            "gen:batch,rate=3,alpha=1.3,max=80,tokens=conv).",
            show_default=False,
        ),
    ],
    policy: Annotated[str, typer.Option(help="Comma-separated: hpa, kpa, predictive, none.")] = "hpa,kpa,predictive",
    slo_ms: Annotated[float | None, typer.Option(help="Latency target [default: predictive.sloLatencyMs].")] = None,
    slo_basis: Annotated[str, typer.Option(help="latency (whole request) or wait (queueing only, e.g. TTFT).")] = (
        "latency"
    ),
    price: Annotated[float, typer.Option(help="Price per replica-hour.")] = 1.0,
    service_ms: Annotated[float, typer.Option(help="Fixed service time per request (ms).")] = 20.0,
    cost: Annotated[
        list[str] | None,
        typer.Option(help="Per-column cost COLUMN=MS, repeatable (e.g. GeneratedTokens=20).", show_default=False),
    ] = None,
    service_dist: Annotated[str, typer.Option(help="fixed | exponential | lognormal.")] = "fixed",
    service_cv: Annotated[float, typer.Option(help="Coefficient of variation for lognormal.")] = 0.5,
    slots: Annotated[int | None, typer.Option(help="Requests a replica serves at once [default: from the spec].")] = (
        None
    ),
    startup_s: Annotated[float | None, typer.Option(help="Replica start-up [default: predictive.startupSeconds].")] = (
        None
    ),
    timeout_s: Annotated[float | None, typer.Option(help="Request timeout [default: requestTimeoutMs].")] = None,
    time_scale: Annotated[float, typer.Option(help="Multiply trace times (0.5 plays it twice as fast).")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of generated traces and service-time noise.")] = 0,
    output: Annotated[str, typer.Option("--output", "-o", help="table | json")] = "table",
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Write a PNG of load, replicas and the SLO's quantile of wait or latency (per --slo-basis), drops marked."
        ),
    ] = None,
    html: Annotated[Path | None, typer.Option(help="Write a self-contained HTML report.")] = None,
    node_groups: Annotated[
        Path | None,
        typer.Option(
            help="YAML of node groups (the `kubeinfer plan` format plus provisionSeconds): schedule replicas onto "
            "nodes with the cluster autoscaler model and report node-hours, GPU-hours and cost.",
            show_default=False,
        ),
    ] = None,
    references: Annotated[
        bool,
        typer.Option(
            help="Also replay the hindsight schedule and search the static frontier (the cheapest constant count "
            "meeting the SLO): attainable references, each with its simulated attainment."
        ),
    ] = True,
) -> None:
    """Simulate autoscaling policies on a trace: SLO attainment, latency, drops, replica-hours, cost vs the oracle."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from kubeinfer.sim import POLICIES, ServiceModel, SimOptions, TraceError, compare, load_trace, parse_generator

    if output not in ("table", "json"):
        raise fail(f"--output {output!r}: use table or json", 2)
    if slo_basis not in ("latency", "wait"):
        raise fail(f"--slo-basis {slo_basis!r}: use latency or wait", 2)
    names = [p.strip() for p in policy.split(",") if p.strip()]
    bad = [n for n in names if n not in POLICIES]
    if bad or not names:
        raise fail(f"--policy {policy!r}: use a comma-separated list of {', '.join(POLICIES)}", 2)
    costs: dict[str, float] = {}
    for item in cost or []:
        col, sep, ms = item.partition("=")
        try:
            costs[col.strip()] = float(ms)
        except ValueError:
            sep = ""
        if not sep:
            raise fail(f"--cost {item!r}: use COLUMN=MS, e.g. GeneratedTokens=20", 2)
    svc = load_or_fail(spec_file)
    setup = None
    if node_groups is not None:
        from kubeinfer.sim.nodes import node_setup_from_dict
        from kubeinfer.spec.load import safe_yaml

        try:
            setup = node_setup_from_dict(safe_yaml(node_groups.read_text(), str(node_groups)))
        except OSError as e:
            raise fail(f"--node-groups {node_groups}: {e.strerror or e}", 2) from None
        except ValueError as e:
            raise fail(f"--node-groups {node_groups}: {e}", 2) from None
    try:
        tr = parse_generator(trace, seed) if trace.startswith("gen:") else load_trace(trace, seed)
        if time_scale != 1.0:
            tr = tr.scaled(time_scale)
        model = ServiceModel(fixed_ms=service_ms, cost_ms=costs, distribution=service_dist, cv=service_cv)  # type: ignore[arg-type]
        opts = SimOptions(
            service=model,
            slots=slots,
            slo_ms=slo_ms,
            slo_basis=slo_basis,  # type: ignore[arg-type]
            startup_s=startup_s,
            request_timeout_s=timeout_s,
            price_per_replica_hour=price,
            seed=seed,
            nodes=setup,
            references=references,
        )
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=output == "json",
        ) as prog:
            tasks = {n: prog.add_task(n, total=tr.duration) for n in names}

            def tick(name: str, t: float) -> None:
                prog.update(tasks[name], completed=t)

            result = compare(svc.spec, tr, names, opts, tick)
    except (TraceError, ValueError) as e:
        raise fail(str(e), 2) from None
    if plot is not None:
        from kubeinfer.sim.plot import plot_png

        plot_png(result, plot)
    if html is not None:
        from kubeinfer.sim.plot import write_html

        write_html(result, html)
    if output == "json":
        out.print_json(json.dumps(result.to_json()))
        return
    o = result.oracle_summary
    t = Table(
        title=f"{tr.name}: {len(tr):,} requests, {tr.duration:,.0f} s; SLO {result.slo_s * 1000:g} ms "
        f"({slo_basis}), start-up {result.startup_s:g} s, {result.slots} slot(s)/replica"
    )
    cols = ["policy", "SLO met", "p50 ms", "p99 ms", "dropped", "replica-h", "cost", "vs oracle", "events"]
    if setup is not None:
        cols += ["node-h", "GPU-h", "node $", "peak nodes"]
    for col in cols:
        t.add_column(col, justify="left" if col == "policy" else "right")
    for s in result.summaries:
        extra: list[str] = []
        if setup is not None:
            extra = [
                f"{s.node_hours or 0:,.2f}",
                f"{s.gpu_hours or 0:,.2f}",
                f"{s.node_cost or 0:,.2f}",
                str(s.peak_nodes or 0),
            ]
        t.add_row(
            s.policy,
            f"{s.slo_attainment:.2%}",
            f"{s.p50_ms:,.1f}",
            f"{s.p99_ms:,.1f}",
            f"{s.dropped:,}",
            f"{s.replica_seconds / 3600:,.2f}",
            f"{s.cost:,.2f}",
            f"{s.vs_oracle:.2f}x",
            str(s.scaling_events),
            *extra,
        )
    none = ["-"] * (len(cols) - 9)
    t.add_row(
        "oracle (queueing bound)",
        "-",
        "-",
        "-",
        "-",
        f"{o.replica_seconds / 3600:,.2f}",
        f"{o.cost:,.2f}",
        "1.00x",
        "-",
        *none,
    )
    price = result.options.price_per_replica_hour
    for ref in (result.hindsight, result.static):
        if ref is None:
            continue
        name = "hindsight" if ref.name == "hindsight" else f"static {ref.name.removeprefix('static-')}"
        t.add_row(
            name,
            f"{ref.attainment:.2%}",
            "-",
            "-",
            f"{int(ref.run.dropped.sum()):,}",
            f"{ref.replica_seconds / 3600:,.2f}",
            f"{ref.replica_seconds / 3600 * price:,.2f}",
            f"{ref.replica_seconds / max(o.replica_seconds, 1e-9):.2f}x",
            "-",
            *none,
        )
    print_table(t)
    if result.hindsight is not None:
        err.print(
            "oracle: the queueing-model bound (may be unattainable); hindsight: the cheapest schedule found knowing "
            "the trace, replayed here; static N: the fewest constant replicas meeting the SLO, replayed",
            highlight=False,
        )
    for note in result.notes:
        err.print(f"note: {note}", highlight=False)
