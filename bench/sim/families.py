"""Autoscaling policies on trace families: every policy against the static frontier and the hindsight schedule.

    .venv/bin/python bench/sim/families.py                    # all families, seeds 1..3; writes bench/sim/results/
    .venv/bin/python bench/sim/families.py --only batch,mmpp --seeds 5
    .venv/bin/python bench/sim/families.py --no-plots -o json
    .venv/bin/python bench/sim/families.py --seeds 3 --first-seed 4  # held-out draws: results/families-seed4.json
    .venv/bin/python bench/sim/families.py --seeds 9 --policies-only predictive  # predictive alone, seeds 1-9

One policy tuned on one trace is not an autoscaler: each family below is a different kind of traffic, each drawn
with several seeds (arrivals, token counts and service times anew), and every policy's cost is compared with two
references the simulator itself replays on the same draw -- the cheapest constant replica count that meets the
SLO target (the static frontier) and the hindsight schedule (knows the trace; cheapest per-interval schedule found
that meets the target). The verdict per family and seed: does the policy meet the target, at what share of the
static frontier's and of the hindsight schedule's replica-hours, and does the static deployment of the same cost
do better (the static frontier's curve, interpolated).

Families (LLM: the azure scenario of ``run.py`` -- 8 sequences a replica, 150 ms + 0.15 ms/context token + 20
ms/generated token, SLO 1 s on the wait, start-up 60 s; classifier: 25 ms log-normal, 2 slots, SLO 100 ms on the
whole request, start-up 10 s):
- conv@1x, conv@0.5x, conv@2x: the public Azure LLM conversation trace at three time scales (0.5x plays it twice
  as fast: twice the rate, bursts twice as dense); real arrivals and tokens, so one draw each.
Generated families run four hours (a policy that learns from history is judged after it had some), the real
trace its one hour.
- mmpp: a Markov-modulated Poisson process, 2 req/s quiet for 10 min on average, 10 req/s bursts of 2 min.
- batch: heavy-tailed batch arrivals, 2.5 req/s on average in Pareto(1.3) batches of up to 80 requests within a
  second (real LLM traffic has bursts of 67 requests in one second).
- flash: a flash crowd 20 minutes in, 2 -> 12 req/s in 30 s, decaying over 10 min; long prompts (median 1,500 tokens).
- diurnal: a 6-hour cycle, 1 -> 6 req/s, with log-normal noise (sigma 0.3) on each minute's rate.
- long: Poisson at 12 req/s with the long-prompt, short-answer token mix.
- clf-mmpp, clf-batch: the classifier under a Markov-modulated process (20 / 150 req/s) and batch arrivals
  (50 req/s, Pareto(1.5) batches of up to 400).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rich.progress import Progress  # noqa: E402
from run import classifier_spec, clf_options, llm_options, llm_spec  # noqa: E402

from kubeinfer.sim import SimOptions, Trace, compare, load_trace  # noqa: E402
from kubeinfer.sim.traces import parse_generator  # noqa: E402
from kubeinfer.spec.service import ServiceSpec  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"
AZURE = REPO.parent / "shared" / "data" / "azure_llm_inference_2023_conv.csv"
POLICIES = ("hpa", "kpa", "predictive")


@dataclass(frozen=True)
class Family:
    name: str
    kind: str  # llm | classifier
    trace: Callable[[int], Trace]
    seeded: bool = True  # False: a real trace, one draw

    def spec(self) -> ServiceSpec:
        return llm_spec() if self.kind == "llm" else classifier_spec()

    def options(self, seed: int) -> SimOptions:
        return replace(llm_options() if self.kind == "llm" else clf_options(), seed=seed)


def _gen(text: str) -> Callable[[int], Trace]:
    return lambda seed: parse_generator(text, seed)


def _azure(scale: float) -> Callable[[int], Trace]:
    return lambda seed: load_trace(AZURE).scaled(scale)


FAMILIES = [
    Family("conv@1x", "llm", _azure(1.0), seeded=False),
    Family("conv@0.5x", "llm", _azure(0.5), seeded=False),
    Family("conv@2x", "llm", _azure(2.0), seeded=False),
    Family("mmpp", "llm", _gen("gen:mmpp,low=2,high=10,quiet=600,burst=120,duration=14400,tokens=conv")),
    Family("batch", "llm", _gen("gen:batch,rate=2.5,alpha=1.3,max=80,duration=14400,tokens=conv")),
    Family("flash", "llm", _gen("gen:flash,base=2,peak=12,at=1200,rise=30,decay=600,duration=14400,tokens=long")),
    Family("diurnal", "llm", _gen("gen:diurnal,base=1,peak=6,period=21600,duration=21600,noise=0.3,tokens=conv")),
    Family("long", "llm", _gen("gen:poisson,rate=12,duration=14400,tokens=long")),
    Family("clf-mmpp", "classifier", _gen("gen:mmpp,low=20,high=150,quiet=600,burst=120,duration=14400")),
    Family("clf-batch", "classifier", _gen("gen:batch,rate=50,alpha=1.5,max=400,duration=14400")),
]


def static_at(tried: list[tuple[int, float, float]], rh: float) -> float | None:
    """The attainment a static deployment of ``rh`` replica-hours reaches: the static frontier's curve (counts the
    search replayed) interpolated linearly between neighbouring counts; None below the smallest count tried (at
    most that count's attainment, unknown how much less), the largest's above it."""
    pts = sorted((r / 3600.0, a) for _, r, a in tried)
    if not pts or rh < pts[0][0]:
        return None
    for (x0, a0), (x1, a1) in itertools.pairwise(pts):
        if x0 <= rh <= x1:
            return a0 + (a1 - a0) * (rh - x0) / (x1 - x0) if x1 > x0 else max(a0, a1)
    return pts[-1][1]


def run_policies(fam: Family, seed: int, target: float, policies: list[str]) -> dict[str, Any]:
    """The policies alone on one draw (no references): their attainment and replica-hours. A policy's run does not
    depend on the references, so these are the figures :func:`run_one` reports for it, in a fraction of the time."""
    trace = fam.trace(seed)
    t0 = time.perf_counter()
    c = compare(fam.spec(), trace, policies, replace(fam.options(seed), quantile=target, references=False))
    return {
        "family": fam.name,
        "seed": seed,
        "requests": len(trace),
        "policies": {
            s.policy: {"slo_attainment": s.slo_attainment, "replica_hours": s.replica_seconds / 3600.0}
            for s in c.summaries
        },
        "seconds": time.perf_counter() - t0,
    }


def run_one(fam: Family, seed: int, target: float) -> dict[str, Any]:
    trace = fam.trace(seed)
    opts = replace(fam.options(seed), quantile=target)
    t0 = time.perf_counter()
    c = compare(fam.spec(), trace, list(POLICIES), opts)
    assert c.static is not None and c.hindsight is not None
    static_rh = c.static.replica_seconds / 3600.0
    hind_rh = c.hindsight.replica_seconds / 3600.0
    tried = list(c.static.tried)
    row: dict[str, Any] = {
        "family": fam.name,
        "seed": seed,
        "requests": len(trace),
        "mean_rps": trace.mean_rate,
        "peak_per_second": int(trace.per_second().max(initial=0)),
        "static": {
            "replicas": int(c.static.need[0]),
            "replica_hours": static_rh,
            "slo_attainment": c.static.attainment,
        },
        "static_tried": c.static.to_json()["tried"],
        "hindsight": {"replica_hours": hind_rh, "slo_attainment": c.hindsight.attainment},
        "policies": {},
        "seconds": time.perf_counter() - t0,
    }
    for s in c.summaries:
        rh = s.replica_seconds / 3600.0
        same_cost_static = static_at(tried, rh)
        row["policies"][s.policy] = {
            "slo_attainment": s.slo_attainment,
            "replica_hours": rh,
            "vs_static": rh / static_rh if static_rh else float("nan"),
            "vs_hindsight": rh / hind_rh if hind_rh else float("nan"),
            "static_same_cost": same_cost_static,
            "beaten_by_static": same_cost_static is not None and same_cost_static > s.slo_attainment + 1e-9,
            "p99_ms": s.p99_ms,
            "dropped": s.dropped,
        }
    return row


def verdict(p: dict[str, Any], target: float) -> str:
    miss = []
    if p["slo_attainment"] < target:
        miss.append("SLO")
    if p["vs_static"] > 0.8:
        miss.append(">0.8x static")
    if p["vs_hindsight"] > 1.2:
        miss.append(">1.2x hindsight")
    if p["beaten_by_static"]:
        miss.append("static better")
    return "pass" if not miss else ", ".join(miss)


def _pct(x: float | None) -> str:
    return "below the curve" if x is None else f"{x:.2%}"


def markdown(rows: list[dict[str, Any]], target: float) -> str:
    fams = list(dict.fromkeys(r["family"] for r in rows))
    out = [
        "| family | seeds | policy | SLO met mean (worst) | replica-h mean | x static frontier mean (worst) | "
        "x hindsight mean (worst) | static of equal cost met (worst seed) | verdict (worst seed) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in fams:
        rs = [r for r in rows if r["family"] == f]
        st = statistics.mean(r["static"]["replica_hours"] for r in rs)
        hi = statistics.mean(r["hindsight"]["replica_hours"] for r in rs)
        h_att = min(r["hindsight"]["slo_attainment"] for r in rs)
        out.append(
            f"| {f} | {len(rs)} | static frontier | {min(r['static']['slo_attainment'] for r in rs):.2%} | {st:.2f} "
            f"| 1.00 | {st / hi:.2f} | | {', '.join(str(r['static']['replicas']) for r in rs)} replicas |"
        )
        out.append(f"| {f} | {len(rs)} | hindsight | {h_att:.2%} | {hi:.2f} | {hi / st:.2f} | 1.00 | | |")
        for pol in POLICIES:
            ps = [r["policies"][pol] for r in rs]
            worst = min(ps, key=lambda p: (p["slo_attainment"] >= target, -p["vs_static"]))
            att = [p["slo_attainment"] for p in ps]
            out.append(
                f"| {f} | {len(rs)} | {pol} | {statistics.mean(att):.2%} ({min(att):.2%}) | "
                f"{statistics.mean(p['replica_hours'] for p in ps):.2f} | "
                f"{statistics.mean(p['vs_static'] for p in ps):.2f} ({max(p['vs_static'] for p in ps):.2f}) | "
                f"{statistics.mean(p['vs_hindsight'] for p in ps):.2f} ({max(p['vs_hindsight'] for p in ps):.2f}) | "
                f"{_pct(min((p['static_same_cost'] for p in ps), key=lambda x: -1 if x is None else x))} | "
                f"{verdict(worst, target)} |"
            )
    return "\n".join(out)


def pareto_png(family: str, rows: list[dict[str, Any]], target: float, path: Path) -> None:
    """SLO attainment against replica-hours per seed: each policy, the hindsight schedule and the static curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = {"hpa": "tab:red", "kpa": "tab:orange", "predictive": "tab:blue", "hindsight": "tab:green"}
    markers = "os^Dv<>"
    for i, r in enumerate(rows):
        m = markers[i % len(markers)]
        tried = r["static_tried"]
        ax.plot(
            [t["replica_hours"] for t in tried],
            [100 * t["slo_attainment"] for t in tried],
            color="grey",
            alpha=0.5,
            marker=".",
            label="static counts" if i == 0 else None,
        )
        for pol, p in r["policies"].items():
            ax.scatter(p["replica_hours"], 100 * p["slo_attainment"], color=colors[pol], marker=m,
                       label=pol if i == 0 else None)  # fmt: skip
        h = r["hindsight"]
        ax.scatter(h["replica_hours"], 100 * h["slo_attainment"], color=colors["hindsight"], marker=m,
                   label="hindsight" if i == 0 else None)  # fmt: skip
    ax.axhline(100 * target, color="black", linestyle=":", linewidth=1, label=f"target {target:.0%}")
    lo = min(
        [100 * p["slo_attainment"] for r in rows for p in r["policies"].values()]
        + [100 * t["slo_attainment"] for r in rows for t in r["static_tried"]]
    )
    ax.set_ylim(max(lo - 1, 0), 100.3)
    # The search replays counts far above the frontier; frame the policies and the frontier instead.
    right = max(
        [p["replica_hours"] for r in rows for p in r["policies"].values()]
        + [r["static"]["replica_hours"] for r in rows]
    )
    ax.set_xlim(0, 1.25 * right)
    ax.set_xlabel("replica-hours")
    ax.set_ylabel("SLO attainment (%)")
    ax.set_title(f"{family}: attainment for cost, {len(rows)} draw(s) (marker = draw; up-left is better)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated family names")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument(
        "--first-seed",
        type=int,
        default=1,
        help="first seed of the generated families (draws not tuned on: e.g. 4); the output file is then "
        "families-seed<N>.json and no plots are drawn; the real trace (one draw) is left out",
    )
    ap.add_argument("--target", type=float, default=0.99, help="SLO attainment target")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("-o", "--output", default="table", choices=["table", "json"])
    ap.add_argument("--from-json", action="store_true", help="redraw the table and plots from the saved results")
    ap.add_argument(
        "--policies-only",
        default="",
        help="comma-separated policies (e.g. predictive): run them alone, without the references, one row per "
        "family and seed; nothing is written to results/",
    )
    args = ap.parse_args()
    out_name = "families.json" if args.first_seed == 1 else f"families-seed{args.first_seed}.json"
    if args.first_seed != 1:
        args.no_plots = True
    if args.from_json:
        saved = json.loads((OUT / out_name).read_text())
        for name in dict.fromkeys(r["family"] for r in saved["rows"]) if not args.no_plots else ():
            rs = [r for r in saved["rows"] if r["family"] == name]
            pareto_png(name, rs, saved["target"], OUT / f"family-{name.replace('@', '-')}.png")
        print(markdown(saved["rows"], saved["target"]))
        return
    fams = [f for f in FAMILIES if not args.only or f.name in args.only.split(",")]
    # A real trace has one draw, already in the first seed's results.
    fams = [f for f in fams if f.seeded or (AZURE.exists() and args.first_seed == 1)]
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    jobs = [(f, s) for f in fams for s in (seeds if f.seeded else [1])]
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    if args.policies_only:
        names = [p for p in args.policies_only.split(",") if p]
        unknown = sorted(set(names) - set(POLICIES))
        if unknown:
            ap.error(f"--policies-only: unknown policy {', '.join(unknown)} (use {', '.join(POLICIES)})")
        rows = [run_policies(fam, seed, args.target, names) for fam, seed in jobs]
        if args.output == "json":
            print(json.dumps({"target": args.target, "rows": rows}, indent=2))
            return
        print("| family | seed | policy | SLO met | replica-h |\n|---|---|---|---|---|")
        for r in rows:
            for name, p in r["policies"].items():
                print(
                    f"| {r['family']} | {r['seed']} | {name} | {p['slo_attainment']:.2%} | {p['replica_hours']:.2f} |"
                )
        print(f"\n{len(jobs)} runs in {time.perf_counter() - t0:.0f} s")
        return
    with Progress(transient=True, disable=args.output == "json") as prog:
        task = prog.add_task("families", total=len(jobs))
        for fam, seed in jobs:
            prog.update(task, description=f"{fam.name} seed {seed}")
            rows.append(run_one(fam, seed, args.target))
            prog.advance(task)
    OUT.mkdir(exist_ok=True)
    (OUT / out_name).write_text(json.dumps({"target": args.target, "rows": rows}, indent=2))
    if not args.no_plots:
        for fam in fams:
            pareto_png(fam.name, [r for r in rows if r["family"] == fam.name], args.target,
                       OUT / f"family-{fam.name.replace('@', '-')}.png")  # fmt: skip
    if args.output == "json":
        print(json.dumps({"target": args.target, "rows": rows}, indent=2))
        return
    print(markdown(rows, args.target))
    print(f"\n{len(jobs)} runs in {time.perf_counter() - t0:.0f} s; results in {OUT}/{out_name}")


if __name__ == "__main__":
    main()
