"""Autoscaling policies against the oracle on three traces, and the simulator's speed on a day at 100 req/s.

    .venv/bin/python bench/sim/run.py            # all scenarios + speed; writes bench/sim/results/
    .venv/bin/python bench/sim/run.py --only spike --no-speed
    .venv/bin/python bench/sim/run.py --no-speed --only none --nodes   # only the node-level cost example
    .venv/bin/python bench/sim/run.py --no-speed --kpa-targets 80,90    # kpa's trade-off at other utilizations
    .venv/bin/python bench/sim/run.py --no-speed --kpa-targets 60,80,90 --predictive-headrooms 1.2,1.3,1.4,1.5
                                                                         # both trade-offs, frontier PNGs
    .venv/bin/python bench/sim/run.py --no-speed --only spike --seeds 8  # defaults on 8 draws of the trace

Scenarios (documented in RESULTS.md):
- diurnal: a classifier (25 ms lognormal service, cv 0.5; 2 workers = 2 slots per replica; SLO 100 ms on the whole
  request; start-up 10 s) under a 24-hour Poisson day, 5 req/s at midnight to 100 req/s at noon.
- spike: the same classifier, 50 req/s with a surge to 200 req/s for 10 minutes (60 s ramps), one hour.
- azure: an LLM on the real Azure conversation trace (one hour, 19k requests): 8 sequences per replica,
  150 ms + 0.15 ms/context token + 20 ms/generated token; SLO 1 s on the wait before service (time to first
  token, less prefill); start-up 60 s. Also an hpa on ``tokens`` (generated tokens/s per replica) at 70% of a
  replica's tokens/s with all 8 sequences busy under that cost model (``llm_tokens_spec``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

from kubeinfer.sim import ServiceModel, SimOptions, compare, generate, load_trace  # noqa: E402
from kubeinfer.sim.plot import plot_png  # noqa: E402
from kubeinfer.spec.service import ServiceSpec  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"
DATA = REPO.parent / "shared" / "data"


def classifier_spec() -> ServiceSpec:
    return ServiceSpec.model_validate(
        {
            "model": {"format": "python", "className": "m:C"},
            "server": {"workers": 2, "limits": {"requestTimeoutMs": 30000}},
            "autoscaling": {
                "policy": "hpa",
                "metric": "concurrency",
                "target": 1.4,  # 70% of 2 slots, Knative's default utilization
                "minReplicas": 1,
                "maxReplicas": 100,
                "kpa": {"containerConcurrency": 2},
                "predictive": {"sloLatencyMs": 100, "startupSeconds": 10},
            },
        }
    )


def llm_spec(gpu: bool = False) -> ServiceSpec:
    return ServiceSpec.model_validate(
        {
            "model": {"format": "python", "className": "m:C"},
            "server": {"workers": 8, "limits": {"requestTimeoutMs": 120000}},
            **({"resources": {"requests": {"cpu": "3", "memory": "12Gi"}, "gpu": {"count": 1}}} if gpu else {}),
            "autoscaling": {
                "policy": "hpa",
                "metric": "concurrency",
                "target": 5.6,  # 70% of 8 sequences
                "minReplicas": 1,
                "maxReplicas": 50,
                "kpa": {"containerConcurrency": 8},
                "predictive": {"sloLatencyMs": 1000, "startupSeconds": 60},
            },
        }
    )


def llm_tokens_spec(trace, opts: SimOptions) -> ServiceSpec:
    """The azure spec as a generative model's, its hpa on ``tokens`` at 70% of a replica's generated tokens/s when
    all its sequences are busy: slots x (the trace's generated tokens / its slot-seconds under the cost model)."""
    base = llm_spec()
    slots = base.autoscaling.kpa.containerConcurrency
    service = opts.service.service_times(trace, opts.seed)
    capacity = slots * float(trace.columns["GeneratedTokens"].sum()) / float(service.sum())
    doc = base.model_dump(exclude_unset=True)
    doc["model"] = {"format": "llm", "uri": "./llm", "version": "1"}
    doc["autoscaling"].update(metric="tokens", target=round(0.7 * capacity, 1))
    return ServiceSpec.model_validate(doc)


GENERATED = {
    "diurnal": ("diurnal", {"base": 5, "peak": 100, "duration": 86400}),
    "spike": ("spike", {"base": 50, "high": 200, "at": 1800, "length": 600, "ramp": 60, "duration": 3600}),
}


def clf_options() -> SimOptions:
    return SimOptions(service=ServiceModel(fixed_ms=25, distribution="lognormal", cv=0.5), slo_ms=100)


def llm_options() -> SimOptions:
    return SimOptions(
        service=ServiceModel(fixed_ms=150, cost_ms={"ContextTokens": 0.15, "GeneratedTokens": 20}),
        slo_ms=1000,
        slo_basis="wait",
    )


def scenarios() -> dict[str, tuple]:
    clf, llm = clf_options(), llm_options()
    out: dict[str, tuple] = {
        "diurnal": (classifier_spec, lambda: generate(*GENERATED["diurnal"], seed=1), clf),
        "spike": (classifier_spec, lambda: generate(*GENERATED["spike"], seed=1), clf),
    }
    azure = DATA / "azure_llm_inference_2023_conv.csv"
    if azure.exists():
        out["azure"] = (llm_spec, lambda: load_trace(azure), llm)
    return out


def table(rows: list[dict]) -> str:
    head = "| trace | policy | SLO met | p50 ms | p99 ms | dropped | replica-h | vs oracle | scaling events | sim s |"
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        lines.append(
            f"| {r['trace']} | {r['policy']} | {r['att']} | {r['p50']} | {r['p99']} | {r['dropped']} | "
            f"{r['rh']} | {r['vs']} | {r['events']} | {r['secs']} |"
        )
    return "\n".join(lines)


def nodes_example() -> None:
    """The azure scenario with one L4 GPU per replica, on node groups (bench/sim/node-groups.yaml)."""
    import yaml

    from kubeinfer.sim.nodes import node_setup_from_dict

    azure = DATA / "azure_llm_inference_2023_conv.csv"
    if not azure.exists():
        print("node-level example skipped: no Azure trace")
        return
    _, _, opts = scenarios()["azure"]
    setup = node_setup_from_dict(yaml.safe_load((Path(__file__).parent / "node-groups.yaml").read_text()))
    c = compare(llm_spec(gpu=True), load_trace(azure), ["hpa", "kpa", "predictive"], replace(opts, nodes=setup))
    (OUT / "azure-nodes.json").write_text(json.dumps(c.to_json(), indent=2))
    print("\n| policy | SLO met | replica-h | node-h | GPU-h | node $ | peak nodes | s waiting for a node | sim s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for x in c.summaries:
        print(
            f"| {x.policy} | {x.slo_attainment:.2%} | {x.replica_seconds / 3600:.1f} | {x.node_hours:.1f} | "
            f"{x.gpu_hours:.1f} | {x.node_cost:.2f} | {x.peak_nodes} | {x.pending_seconds:.0f} | "
            f"{c.seconds[x.policy]:.1f} |"
        )


def with_predictive_headroom(spec: ServiceSpec, headroom: float) -> ServiceSpec:
    """The spec with predictive's headroom fixed at ``headroom`` (``headroom`` = ``minHeadroom``)."""
    auto = spec.autoscaling
    pred = auto.predictive.model_copy(update={"headroom": headroom, "minHeadroom": headroom})
    return spec.model_copy(update={"autoscaling": auto.model_copy(update={"predictive": pred})})


def with_kpa_target(spec: ServiceSpec, target: float) -> ServiceSpec:
    auto = spec.autoscaling
    kpa = auto.kpa.model_copy(update={"targetUtilizationPercentage": target})
    return spec.model_copy(update={"autoscaling": auto.model_copy(update={"kpa": kpa})})


def seeds_table(name: str, seeds: int) -> None:
    """hpa, kpa and predictive (defaults) on ``seeds`` draws of a generated trace and of its service times: a
    difference of a few requests on one draw is noise; the mean and the per-seed wins are not."""
    spec_fn, _, opts = scenarios()[name]
    kind, params = GENERATED[name]
    per: dict[str, list[tuple[float, float]]] = {"hpa": [], "kpa": [], "predictive": []}
    oracle_rh: list[float] = []
    for seed in range(1, seeds + 1):
        c = compare(spec_fn(), generate(kind, params, seed=seed), list(per), replace(opts, seed=seed))
        for x in c.summaries:
            per[x.policy].append((x.slo_attainment, x.replica_seconds / 3600))
        oracle_rh.append(c.oracle_summary.replica_seconds / 3600)
        print(f"  {name} seed {seed}: " + ", ".join(f"{k} {v[-1][0]:.4%} {v[-1][1]:.2f} rh" for k, v in per.items()))
    wins = sum(p[0] >= k[0] for p, k in zip(per["predictive"], per["kpa"], strict=True))
    cheaper = sum(p[1] < k[1] for p, k in zip(per["predictive"], per["kpa"], strict=True))
    out = {"trace": name, "seeds": seeds, "oracle_replica_hours": oracle_rh, "runs": per}
    (OUT / f"seeds-{name}.json").write_text(json.dumps(out, indent=2))
    print(f"\n{name}, seeds 1..{seeds} (trace and service times drawn anew each time):\n")
    print("| policy | SLO met, mean | min | max | replica-h, mean | vs oracle, mean |")
    print("|---|---|---|---|---|---|")
    orc = statistics.mean(oracle_rh)
    for k, v in per.items():
        att = [a for a, _ in v]
        rh = statistics.mean(r for _, r in v)
        print(f"| {k} | {statistics.mean(att):.4%} | {min(att):.4%} | {max(att):.4%} | {rh:.2f} | {rh / orc:.2f}x |")
    print(f"\npredictive >= kpa's attainment on {wins} of {seeds} seeds, cheaper than kpa on {cheaper} of {seeds}")


def frontier_png(name: str, points: dict[str, list[tuple[str, float, float]]], oracle_rh: float, path: Path) -> None:
    """SLO attainment against replica-hours, one line per policy family: what each buys for its cost."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    # Frame kpa's and predictive's points; a policy far outside them (hpa on a spike) is named, not drawn.
    framed = [p for fam in ("kpa", "predictive") for p in points.get(fam, [])]
    lo_att, hi_att = min(p[1] for p in framed), max(p[1] for p in framed)
    pad = max(hi_att - lo_att, 1e-4) * 0.15
    ylim = (100 * (lo_att - pad), 100 * (hi_att + pad))
    xs = [p[2] for p in framed] + [oracle_rh, 1.2 * oracle_rh]
    xlim = (min(xs) * 0.97, max(xs) * 1.03)
    for family, pts in points.items():
        pts = sorted(pts, key=lambda p: p[2])
        inside = [p for p in pts if xlim[0] <= p[2] <= xlim[1] and ylim[0] <= 100 * p[1] <= ylim[1]]
        off = [f"{100 * a:.2f}%, {rh:.1f} rh" for _, a, rh in pts if (_, a, rh) not in inside]
        label = family + (f" ({'; '.join(off)}: off the chart)" if off else "")
        ax.plot([p[2] for p in inside], [100 * p[1] for p in inside], marker="o", label=label)
        for text, att, rh in inside:
            ax.annotate(text, (rh, 100 * att), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.axvline(oracle_rh, color="grey", linestyle=":", label="oracle")
    ax.axvline(1.2 * oracle_rh, color="grey", linestyle="--", label="1.2 x oracle")
    ax.set_xlabel("replica-hours")
    ax.set_ylabel("SLO attainment (%)")
    ax.set_title(f"{name}: attainment for cost (up and to the left is better)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="")
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--nodes", action="store_true", help="also the node-level cost example (azure on L4 nodes)")
    ap.add_argument("--repeat", type=int, default=3, help="speed runs per policy (the median is reported)")
    ap.add_argument(
        "--kpa-targets",
        default="",
        help="also kpa at these targetUtilizationPercentage values (e.g. 80,90): its cost/attainment trade-off",
    )
    ap.add_argument(
        "--predictive-headrooms",
        default="",
        help="also predictive with its headroom fixed at these values (e.g. 1.2,1.3): its trade-off (frontier PNG)",
    )
    ap.add_argument(
        "--seeds",
        type=int,
        default=0,
        help="also hpa/kpa/predictive on this many draws of the generated traces (--only selects them)",
    )
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    rows: list[dict] = []
    for name, (spec_fn, trace_fn, opts) in scenarios().items():
        if args.only and name not in args.only.split(","):
            continue
        trace = trace_fn()
        c = compare(spec_fn(), trace, ["hpa", "kpa", "predictive"], opts)
        (OUT / f"{name}.json").write_text(json.dumps(c.to_json(), indent=2))
        plot_png(c, OUT / f"{name}.png")
        for s in c.summaries:
            rows.append(
                {
                    "trace": name, "policy": s.policy, "att": f"{s.slo_attainment:.2%}", "p50": f"{s.p50_ms:.0f}",
                    "p99": f"{s.p99_ms:.0f}", "dropped": s.dropped, "rh": f"{s.replica_seconds / 3600:.1f}",
                    "vs": f"{s.vs_oracle:.2f}x", "events": s.scaling_events, "secs": f"{c.seconds[s.policy]:.1f}",
                }
            )  # fmt: skip
        by = {x.policy: x for x in c.summaries}
        points: dict[str, list[tuple[str, float, float]]] = {
            "hpa": [("hpa", by["hpa"].slo_attainment, by["hpa"].replica_seconds / 3600)],
            "kpa": [("70%", by["kpa"].slo_attainment, by["kpa"].replica_seconds / 3600)],
            "predictive": [("default", by["predictive"].slo_attainment, by["predictive"].replica_seconds / 3600)],
        }
        if "GeneratedTokens" in trace.columns and name == "azure":
            spec = llm_tokens_spec(trace, opts)
            tc = compare(spec, trace, ["hpa"], opts)
            (OUT / f"{name}-hpa-tokens.json").write_text(json.dumps(tc.to_json(), indent=2))
            s = tc.summaries[0]
            print(f"{name}: hpa on tokens, target {spec.autoscaling.target:g} tokens/s per replica", flush=True)
            points["hpa"].append(("tokens", s.slo_attainment, s.replica_seconds / 3600))
            rows.append(
                {
                    "trace": name, "policy": "hpa (tokens)", "att": f"{s.slo_attainment:.2%}", "p50": f"{s.p50_ms:.0f}",
                    "p99": f"{s.p99_ms:.0f}", "dropped": s.dropped, "rh": f"{s.replica_seconds / 3600:.1f}",
                    "vs": f"{s.vs_oracle:.2f}x", "events": s.scaling_events, "secs": f"{tc.seconds['hpa']:.1f}",
                }
            )  # fmt: skip
        variants = [("kpa", f"kpa@{t:g}%", with_kpa_target(spec_fn(), t)) for t in _floats(args.kpa_targets)]
        variants += [
            ("predictive", f"predictive@{h:g}", with_predictive_headroom(spec_fn(), h))
            for h in _floats(args.predictive_headrooms)
        ]
        for family, label, spec in variants:
            s = compare(spec, trace, [family], opts).summaries[0]
            points[family].append((label.split("@")[1], s.slo_attainment, s.replica_seconds / 3600))
            rows.append(
                {
                    "trace": name, "policy": label, "att": f"{s.slo_attainment:.3%}",
                    "p50": f"{s.p50_ms:.0f}", "p99": f"{s.p99_ms:.0f}", "dropped": s.dropped,
                    "rh": f"{s.replica_seconds / 3600:.2f}", "vs": f"{s.vs_oracle:.3f}x", "events": s.scaling_events,
                    "secs": "-",
                }
            )  # fmt: skip
        if variants:
            frontier_png(name, points, c.oracle_summary.replica_seconds / 3600, OUT / f"{name}-frontier.png")
        o = c.oracle_summary
        rows.append(
            {
                "trace": name, "policy": "oracle", "att": "-", "p50": "-", "p99": "-", "dropped": "-",
                "rh": f"{o.replica_seconds / 3600:.1f}", "vs": "1.00x", "events": "-", "secs": "-",
            }
        )  # fmt: skip
        print(f"{name}: {len(trace):,} requests; notes: {c.notes}", flush=True)
    print(table(rows), flush=True)
    for name in GENERATED:
        if args.seeds and (not args.only or name in args.only.split(",")):
            seeds_table(name, args.seeds)
    if args.nodes:
        nodes_example()
    if not args.no_speed:
        t0 = time.perf_counter()
        trace = generate("diurnal", {"base": 50, "peak": 150, "duration": 86400}, seed=7)
        gen = time.perf_counter() - t0
        print(f"\nspeed: 24 h diurnal at 100 req/s mean = {len(trace):,} requests (generated in {gen:.1f} s)")
        opts = SimOptions(service=ServiceModel(fixed_ms=25, distribution="lognormal", cv=0.5), slo_ms=100)
        for policy in ("hpa", "kpa", "predictive"):
            times = sorted(
                compare(classifier_spec(), trace, [policy], opts).seconds[policy] for _ in range(args.repeat)
            )
            runs = ", ".join(f"{t:.1f}" for t in times)
            print(f"  {policy}: median {statistics.median(times):.1f} s ({runs})", flush=True)


def _floats(csv: str) -> list[float]:
    return [float(t) for t in csv.split(",") if t.strip()]


if __name__ == "__main__":
    main()
