"""Autoscaling policies against the oracle on three traces, and the simulator's speed on a day at 100 req/s.

    .venv/bin/python bench/sim/run.py            # all scenarios + speed; writes bench/sim/results/
    .venv/bin/python bench/sim/run.py --only spike --no-speed
    .venv/bin/python bench/sim/run.py --no-speed --only none --nodes   # only the node-level cost example
    .venv/bin/python bench/sim/run.py --no-speed --kpa-targets 80,90    # kpa's trade-off at other utilizations

Scenarios (documented in RESULTS.md):
- diurnal: a classifier (25 ms lognormal service, cv 0.5; 2 workers = 2 slots per replica; SLO 100 ms on the whole
  request; start-up 10 s) under a 24-hour Poisson day, 5 req/s at midnight to 100 req/s at noon.
- spike: the same classifier, 50 req/s with a surge to 200 req/s for 10 minutes (60 s ramps), one hour.
- azure: an LLM on the real Azure conversation trace (one hour, 19k requests): 8 sequences per replica,
  150 ms + 0.15 ms/context token + 20 ms/generated token; SLO 1 s on the wait before service (time to first
  token, less prefill); start-up 60 s.
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


def scenarios() -> dict[str, tuple]:
    clf = SimOptions(service=ServiceModel(fixed_ms=25, distribution="lognormal", cv=0.5), slo_ms=100)
    llm = SimOptions(
        service=ServiceModel(fixed_ms=150, cost_ms={"ContextTokens": 0.15, "GeneratedTokens": 20}),
        slo_ms=1000,
        slo_basis="wait",
    )
    out: dict[str, tuple] = {
        "diurnal": (
            classifier_spec,
            lambda: generate("diurnal", {"base": 5, "peak": 100, "duration": 86400}, seed=1),
            clf,
        ),
        "spike": (
            classifier_spec,
            lambda: generate(
                "spike", {"base": 50, "high": 200, "at": 1800, "length": 600, "ramp": 60, "duration": 3600}, seed=1
            ),
            clf,
        ),
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
        for target in [float(t) for t in args.kpa_targets.split(",") if t.strip()]:
            spec = spec_fn()
            auto = spec.autoscaling
            kpa = auto.kpa.model_copy(update={"targetUtilizationPercentage": target})
            spec = spec.model_copy(update={"autoscaling": auto.model_copy(update={"kpa": kpa})})
            s = compare(spec, trace, ["kpa"], opts).summaries[0]
            rows.append(
                {
                    "trace": name, "policy": f"kpa@{target:g}%", "att": f"{s.slo_attainment:.3%}",
                    "p50": f"{s.p50_ms:.0f}", "p99": f"{s.p99_ms:.0f}", "dropped": s.dropped,
                    "rh": f"{s.replica_seconds / 3600:.2f}", "vs": f"{s.vs_oracle:.3f}x", "events": s.scaling_events,
                    "secs": "-",
                }
            )  # fmt: skip
        o = c.oracle_summary
        rows.append(
            {
                "trace": name, "policy": "oracle", "att": "-", "p50": "-", "p99": "-", "dropped": "-",
                "rh": f"{o.replica_seconds / 3600:.1f}", "vs": "1.00x", "events": "-", "secs": "-",
            }
        )  # fmt: skip
        print(f"{name}: {len(trace):,} requests; notes: {c.notes}", flush=True)
    print(table(rows), flush=True)
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


if __name__ == "__main__":
    main()
