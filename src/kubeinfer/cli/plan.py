"""``kubeinfer profile`` and ``kubeinfer plan solve|replay``: measure a model, then place services at the lowest cost.

- ``kubeinfer profile SPEC.yaml -o model.profile.yaml`` measures one real replica over a batch-size x concurrency
  sweep (``bench.profile``) and writes the profile file the planner reads.
- ``kubeinfer plan solve --services S.yaml --node-groups N.yaml`` chooses slices, replicas and nodes
  (``placement.planner``) and places the replicas with the same policy as ``plan replay`` (``--policy``);
  ``--emit-spec DIR`` writes the ``resources:`` block of each service.
- ``kubeinfer plan replay --nodes NODES.csv --pods PODS.csv`` replays a GPU-sharing trace under placement policies
  and reports the GPUs left unallocated as the workload arrives (``placement.fragmentation``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from kubeinfer.cli.base import app, err, fail, load_or_fail, out, print_table

__all__ = ["plan_app", "profile", "replay", "solve"]

plan_app = typer.Typer(
    name="plan",
    help="Cost-optimal placement (solve) and GPU-fragmentation replay of a trace (replay).",
    no_args_is_help=True,
)
app.add_typer(plan_app, name="plan")


def _ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        vals = ()
    if not vals or min(vals) < 1:
        raise fail(f"{flag} {text!r}: use comma-separated integers >= 1, e.g. 1,8,32", 2)
    return vals


def _read_doc(path: Path, what: str) -> Any:
    from kubeinfer.spec.load import SpecError, safe_yaml, strict_json

    try:
        text = path.read_text()
    except OSError as e:
        raise fail(f"cannot read {what} {path}: {e.strerror or e}", 2) from None
    try:
        return strict_json(text) if path.suffix == ".json" else safe_yaml(text, str(path))
    except SpecError as e:
        raise fail(str(e), 2) from None
    except ValueError as e:
        raise fail(f"{path}: not valid JSON ({e})", 2) from None


def _dump(doc: Any, fmt: str) -> str:
    import yaml

    if fmt == "json":
        return json.dumps(doc, indent=2)
    return str(yaml.safe_dump(doc, sort_keys=False))


# ------------------------------------------------------------------------------------------------ profile


@app.command()
def profile(
    spec_file: Annotated[Path, typer.Argument(help="InferenceService YAML.", show_default=False)],
    output_file: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the profile here (YAML; .json for JSON).")
    ] = None,
    batch_sizes: Annotated[str, typer.Option(help="maxBatchSize values, comma-separated.")] = "1,8,32,64",
    concurrency: Annotated[str, typer.Option(help="Closed-loop clients, comma-separated.")] = "1,8,64",
    duration: Annotated[float, typer.Option(help="Seconds measured per point.")] = 5.0,
    warmup: Annotated[float, typer.Option(help="Seconds of load before each point is measured.")] = 1.0,
    rows: Annotated[int, typer.Option(help="Rows per request.")] = 1,
) -> None:
    """Measure one replica over batch sizes x concurrency: throughput, p50/p90/p99, peak memory, CPU."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from kubeinfer.bench.profile import ProfileSettings, run_profile

    load_or_fail(spec_file)
    try:
        settings = ProfileSettings(
            batch_sizes=_ints(batch_sizes, "--batch-sizes"),
            concurrencies=_ints(concurrency, "--concurrency"),
            duration=duration,
            warmup=warmup,
            rows=rows,
        )
    except ValueError as e:
        raise fail(str(e), 2) from None
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn(), console=err, transient=True
    ) as prog:
        task = prog.add_task("profile", total=1.0)

        def tick(desc: str, frac: float) -> None:
            prog.update(task, description=desc, completed=frac)

        try:
            result = run_profile(spec_file, settings, tick)
        except (RuntimeError, TimeoutError, OSError) as e:
            raise fail(f"profiling {spec_file} failed: {e}") from None
    doc = result.to_dict()
    t = Table(title=f"profile of {result.model!r} (slice cpu, this machine)")
    for col in ("batch", "concurrency", "req/s", "p50 ms", "p90 ms", "p99 ms", "peak RSS", "CPU cores"):
        t.add_column(col, justify="right")
    for p in result.points:
        t.add_row(
            str(p.batch_size),
            str(p.concurrency),
            f"{p.throughput_rps:,.1f}",
            *(f"{p.latency_ms.get(k, float('nan')):.2f}" for k in ("p50", "p90", "p99")),
            f"{p.peak_memory_bytes / 2**20:,.0f} Mi",
            f"{p.cpu_cores or 0:.2f}",
        )
    print_table(t, err if output_file is None else out)
    if output_file is None:
        out.print(_dump(doc, "yaml"), end="", markup=False, highlight=False)
        return
    output_file.write_text(_dump(doc, "json" if output_file.suffix == ".json" else "yaml"))
    out.print(f"wrote {output_file} ({len(result.points)} points)")


# -------------------------------------------------------------------------------------------------- solve


@plan_app.command()
def solve(
    services: Annotated[Path, typer.Option(help="Services YAML (profile, SLO, rates).", show_default=False)],
    node_groups: Annotated[
        Path, typer.Option(help="Node groups YAML (accelerator, CPU, memory, price).", show_default=False)
    ],
    method: Annotated[str, typer.Option(help="auto | milp | heuristic (auto: exact when small).")] = "auto",
    share_counts: Annotated[str, typer.Option(help="Time-slicing replicas per GPU the plan may use.")] = "2,4",
    sharing: Annotated[str, typer.Option(help="time-slicing | mps: how GPU shares are made.")] = "time-slicing",
    no_mig: Annotated[bool, typer.Option("--no-mig", help="Never partition GPUs with MIG.")] = False,
    no_cpu: Annotated[bool, typer.Option("--no-cpu", help="Never place a replica on CPU only.")] = False,
    time_limit: Annotated[float | None, typer.Option(help="Seconds for the exact solver (default: none).")] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table | json | yaml")] = "table",
    emit_spec: Annotated[
        Path | None, typer.Option(help="Write each service's spec `resources:` block into this directory.")
    ] = None,
    policy: Annotated[
        str,
        typer.Option(
            help="Placement policy that puts the replicas on nodes and GPUs: kubeinfer, first-fit, best-fit or fgd "
            "(the code `plan replay` measures)."
        ),
    ] = "kubeinfer",
) -> None:
    """Choose each service's slice (GPU, MIG, share or CPU), replicas and nodes at the lowest cost per hour.

    The solver (HiGHS, or the heuristic for large models) chooses the node counts and slices; the placement policy
    of `plan replay` then puts each replica on a node and GPU, so the plan and the replay agree."""
    from kubeinfer.placement import InfeasiblePlan, PlannerOptions, plan
    from kubeinfer.placement.fragmentation import POLICIES
    from kubeinfer.placement.inputs import node_groups_from_dict, services_from_dict
    from kubeinfer.placement.planner import service_costs

    if output not in ("table", "json", "yaml"):
        raise fail(f"--output {output!r}: use table, json or yaml", 2)
    if method not in ("auto", "milp", "heuristic"):
        raise fail(f"--method {method!r}: use auto, milp or heuristic", 2)
    if sharing not in ("time-slicing", "mps"):
        raise fail(f"--sharing {sharing!r}: use time-slicing or mps", 2)
    if policy not in POLICIES:
        raise fail(f"--policy {policy!r}: use one of {', '.join(POLICIES)}", 2)
    shares = tuple(k for k in _ints(share_counts, "--share-counts") if k >= 2) if share_counts.strip() else ()
    base = services.resolve().parent

    def load_profile(rel: str) -> Mapping[str, Any]:
        p = Path(rel) if Path(rel).is_absolute() else base / rel
        doc = _read_doc(p, "profile")
        if not isinstance(doc, Mapping):
            raise ValueError(f"{p} is not a profile mapping")
        return doc

    try:
        svcs = services_from_dict(_read_doc(services, "services file"), load_profile)
        groups = node_groups_from_dict(_read_doc(node_groups, "node groups file"))
    except ValueError as e:
        raise fail(f"invalid input: {e}", 2) from None
    opts = PlannerOptions(
        allow_mig=not no_mig,
        share_counts=shares,
        share_mode=sharing,  # type: ignore[arg-type]
        allow_cpu=not no_cpu,
        time_limit_s=time_limit,
        placement=policy,
    )
    import time

    t0 = time.perf_counter()
    try:
        result = plan(svcs, groups, opts, method=method)  # type: ignore[arg-type]
    except InfeasiblePlan as e:
        raise fail(f"no plan: {e}; raise maxNodes, add node groups or relax the SLOs") from None
    elapsed = time.perf_counter() - t0
    costs = service_costs(result, svcs, groups)
    mean = {s.name: s.mean_rps for s in svcs}
    doc: dict[str, Any] = dict(result.to_dict())
    doc["placement"] = policy
    doc["solveSeconds"] = round(elapsed, 3)
    doc["savingVsNaive"] = None if result.savings_vs_naive is None else round(result.savings_vs_naive, 6)
    doc["serviceCosts"] = {
        n: {
            "costPerHour": round(c, 4),
            "costPerMillionRequests": round(c / (mean[n] * 3600) * 1e6, 4) if mean[n] > 0 else None,
        }
        for n, c in costs.items()
    }
    if emit_spec is not None:
        doc["emitted"] = _emit(emit_spec, result)
    if output != "table":
        out.print(_dump(doc, output), end="", markup=False, highlight=False)
        return
    _print_plan(result, doc, costs, mean, elapsed)


def _emit(directory: Path, result: Any) -> list[str]:
    """One ``<service>.resources.yaml`` per service (a service split over slices gets one file per slice)."""
    import yaml

    directory.mkdir(parents=True, exist_ok=True)
    per_service: dict[str, list[Any]] = {}
    for p in result.placements:
        per_service.setdefault(p.service, []).append(p)
    written = []
    for name, pls in per_service.items():
        for i, p in enumerate(pls):
            suffix = "" if len(pls) == 1 else f".{i + 1}"
            path = directory / f"{name}{suffix}.resources.yaml"
            req = {k: v for k, v in p.requests.items() if k in ("cpu", "memory")}
            block = {"resources": {"requests": req, "gpu": dict(p.gpu_spec)}}
            head = (
                f"# kubeinfer plan: {name} on node group {p.group!r}, slice {p.slice}, {p.replicas} replica(s)\n"
                f"# device-plugin resource: {p.resource_name or 'none (CPU only)'}\n"
            )
            if len(pls) > 1:
                head += f"# this service is split over {len(pls)} slices: one Deployment per file\n"
            path.write_text(head + yaml.safe_dump(block, sort_keys=False))
            written.append(str(path))
    return written


def _print_plan(result: Any, doc: Mapping[str, Any], costs: Mapping[str, float], mean: Mapping[str, float],
                elapsed: float) -> None:  # fmt: skip
    from rich.table import Table

    t = Table(title=f"plan ({result.method}, placement {doc['placement']}, {elapsed:.2f} s)")
    for col in ("service", "group", "slice", "replicas", "rps", "cpu/mem", "device", "$/h", "$/1M req"):
        t.add_column(col, justify="right" if col in ("replicas", "rps", "$/h", "$/1M req") else "left")
    seen: set[str] = set()
    for p in result.placements:
        first = p.service not in seen
        seen.add(p.service)
        c = costs.get(p.service, 0.0)
        per_m = c / (mean[p.service] * 3600) * 1e6 if mean.get(p.service) else 0.0
        t.add_row(
            p.service if first else "",
            p.group,
            str(p.slice),
            str(p.replicas),
            f"{p.capacity_rps:,.0f}",
            f"{p.requests.get('cpu', '-')}/{p.requests.get('memory', '-')}",
            p.resource_name or "-",
            f"{c:.3f}" if first else "",
            f"{per_m:.3f}" if first else "",
        )
    print_table(t)
    nodes = ", ".join(f"{k}: {v}" for k, v in result.nodes.items() if v)
    out.print(f"nodes: {nodes or 'none'}")
    line = f"total [bold]${result.cost_per_hour:.3f}/h[/], ${result.cost_per_million_requests:.3f} per million requests"
    if result.naive_cost_per_hour:
        line += (
            f"; naive plan (one whole GPU per replica) ${result.naive_cost_per_hour:.3f}/h, "
            f"saving {result.savings_vs_naive:.1%}"
        )
    out.print(line, markup=True)
    out.print(
        f"lower bound ${result.lower_bound:.3f}/h, gap {result.gap:.1%}"
        + (" (optimal)" if result.optimal else "")
        + (f"; {result.extra_nodes} node(s) added by the packer" if result.extra_nodes else "")
    )
    if result.unplaced:
        out.print(f"could not pack node groups: {', '.join(result.unplaced)}", style="red")
    for f in doc.get("emitted", []):
        out.print(f"wrote {f}")


# ------------------------------------------------------------------------------------------------- replay


@plan_app.command()
def replay(
    nodes: Annotated[Path, typer.Option(help="Node list CSV (sn, cpu_milli, memory_mib, gpu, model).")],
    pods: Annotated[
        Path, typer.Option(help="Pod list CSV (cpu_milli, memory_mib, num_gpu, gpu_milli, gpu_spec, creation_time).")
    ],
    policy: Annotated[str, typer.Option(help="Comma-separated policies, or 'all'.")] = "first-fit,best-fit,kubeinfer",
    seed: Annotated[str, typer.Option(help="Seed, or comma-separated seeds (the median is reported).")] = "42",
    target: Annotated[float, typer.Option(help="Stop when arrived GPU requests reach this x capacity.")] = 1.3,
    order: Annotated[str, typer.Option(help="shuffle (the paper's) | trace (creation order, then re-draws).")] = (
        "shuffle"
    ),
    output: Annotated[str, typer.Option("--output", "-o", help="table | json")] = "table",
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of unallocated GPUs vs arrived workload.")] = None,
    variant: Annotated[
        str | None,
        typer.Option(
            help="Re-draw the pods to a preset mix per seed: gpushare40, gpushare100, gpuspec33, multigpu50, cpu25 "
            "(the share options below override or refine it).",
            show_default=False,
        ),
    ] = None,
    gpu_share: Annotated[
        float | None, typer.Option(help="Variant: share of GPU pods that share one GPU (0-1).", show_default=False)
    ] = None,
    gpu_spec: Annotated[
        float | None,
        typer.Option(help="Variant: share of GPU pods pinned to a set of GPU models (0-1).", show_default=False),
    ] = None,
    multi_gpu: Annotated[
        float | None, typer.Option(help="Variant: share of GPU pods asking for several GPUs (0-1).", show_default=False)
    ] = None,
    cpu_only: Annotated[
        float | None,
        typer.Option(help="Variant: share of all pods asking for no GPU (0-1, below 1).", show_default=False),
    ] = None,
    bound: Annotated[
        bool,
        typer.Option(
            "--bound/--no-bound",
            help="Report the lower bound on unallocated GPUs at 100% (node-group LP, per-GPU packing and their "
            "join per node group).",
        ),
    ] = True,
) -> None:
    """Replay a GPU-sharing pod trace onto its nodes; report the GPU capacity left unallocated as pods arrive.

    With a variant (--variant or any of --gpu-share, --gpu-spec, --multi-gpu, --cpu-only) each seed first re-draws
    the pod list to that mix with the seed (pods drawn with replacement inside each class: CPU-only, sharing, one
    whole GPU, multi-GPU; pinned pods get a GPU-model set of the trace's production mix), then replays it; the table
    shows the median over seeds, the worst seed and the distance to the lower bound."""
    from dataclasses import replace as dc_replace

    from kubeinfer.placement.fragmentation import POLICIES
    from kubeinfer.placement.variants import PRESETS, Variant
    from kubeinfer.sim.openb import load_nodes_csv, load_pods_csv, replay_many_timed

    if output not in ("table", "json"):
        raise fail(f"--output {output!r}: use table or json", 2)
    if order not in ("shuffle", "trace"):
        raise fail(f"--order {order!r}: use shuffle or trace", 2)
    names = list(POLICIES) if policy.strip() == "all" else [p.strip() for p in policy.split(",") if p.strip()]
    bad = [n for n in names if n not in POLICIES]
    if bad or not names:
        raise fail(f"--policy {policy!r}: use 'all' or a comma-separated list of {', '.join(POLICIES)}", 2)
    try:
        seeds = tuple(int(s) for s in seed.split(",") if s.strip())
    except ValueError:
        seeds = ()
    if not seeds:
        raise fail(f"--seed {seed!r}: use an integer or comma-separated integers", 2)
    var: Variant | None = None
    if variant is not None:
        if variant not in PRESETS:
            raise fail(f"--variant {variant!r}: use one of {', '.join(PRESETS)}", 2)
        var = PRESETS[variant]
    shares = {"gpu_share": gpu_share, "gpu_spec": gpu_spec, "multi_gpu": multi_gpu, "cpu_only": cpu_only}
    given = {k: v for k, v in shares.items() if v is not None}
    if given:
        name = "custom" if var is None else f"{var.name}+custom"
        try:
            var = dc_replace(var or Variant(), name=name, **given)
        except ValueError as e:
            flag = next((f"--{k.replace('_', '-')}" for k in given if k in str(e)), "--variant")
            raise fail(f"{flag}: {e}", 2) from None
    try:
        cluster = load_nodes_csv(nodes)
        workload = load_pods_csv(pods)
    except OSError as e:
        raise fail(f"cannot read the trace: {e}", 2) from None
    except ValueError as e:
        raise fail(f"invalid trace: {e}", 2) from None
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=output == "json",
    ) as prog:
        task = prog.add_task("replay", total=len(names) * len(seeds))

        def tick(pol: str, sd: int) -> None:
            prog.update(task, advance=1, description=f"{pol} (seed {sd})")

        try:
            doc = replay_many_timed(
                cluster, workload, names, seeds=seeds, target=target, order=order, progress=tick, variant=var,
                bound=bound,
            )  # fmt: skip
        except ValueError as e:
            raise fail(str(e), 2) from None
    if plot is not None:
        _plot(doc, plot)
    if output == "json":
        out.print_json(json.dumps(doc))
        return
    _print_replay(doc)
    if plot is not None:
        out.print(f"wrote {plot}")


def _print_replay(doc: Mapping[str, Any]) -> None:
    from rich.table import Table

    levels = [lv for lv in (0.9, 0.95, 1.0, 1.1, 1.2, 1.3) if lv <= doc["target"] + 1e-9]
    t = Table(
        title=f"{doc['nodes']} nodes / {doc['gpus']} GPUs, {doc['pods']} pods, order {doc['order']}, "
        f"seeds {','.join(str(s) for s in doc['seeds'])} (median)"
    )
    t.add_column("policy")
    for lv in levels:
        t.add_column(f"unalloc @{lv:.0%}", justify="right")
    t.add_column("worst seed @100%", justify="right")
    t.add_column("failed @100%", justify="right")
    t.add_column("vs best-fit @100%", justify="right")
    if "lowerBoundAt100" in doc:
        t.add_column("gap to bound @100%", justify="right")
    t.add_column("s/replay", justify="right")
    for r in doc["results"]:
        at = r["unallocatedAt"]
        cells = [f"{at[f'{lv:.2f}']:.2%}" if f"{lv:.2f}" in at else "-" for lv in levels]
        rel = r.get("vsBestFit")
        gap = [f"{r['gapToBoundAt100']:+.2%}"] if "lowerBoundAt100" in doc else []
        t.add_row(
            r["policy"],
            *cells,
            f"{max(r['perSeedUnallocatedAt100']):.2%}",
            f"{r['failedAt'].get('1.00', float('nan')):.2%}",
            "-" if rel is None else f"{rel:+.1%}",
            *gap,
            f"{r['seconds']:.1f}",
        )
    print_table(t)
    if "variant" in doc:
        v = doc["variant"]
        parts = [f"{k} {v[k]:.0%}" for k in ("gpuShare", "gpuSpec", "multiGpu", "cpuOnly") if v.get(k) is not None]
        out.print(f"variant {v['name']}: {', '.join(parts)} (pods re-drawn per seed)")
    if "lowerBoundAt100" in doc:
        per = ", ".join(f"{b:.2%}" for b in doc["perSeedLowerBoundAt100"])
        out.print(
            f"lower bound on unallocated GPUs @100% (node-group LP, per-GPU packing): {doc['lowerBoundAt100']:.2%} "
            f"(per seed {per})"
        )


def _plot(doc: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for r in doc["results"]:
        xs = [100 * a for a in r["curve"]["arrived"]]
        ax.plot(xs, [100 * u for u in r["curve"]["unallocated"]], label=r["policy"], linewidth=1.8)
    ax.plot([0, 100], [100, 0], linestyle=":", color="grey", label="ideal")
    ax.set_xlim(75, 100 * doc["target"])
    ax.set_ylim(0, 25)
    ax.set_xlabel("arrived workload (% of cluster GPU capacity)")
    ax.set_ylabel("unallocated GPU (%)")
    ax.set_title(f"{doc['gpus']} GPUs, median of {len(doc['seeds'])} seed(s)")
    ax.grid(alpha=0.4, linestyle="-.")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
