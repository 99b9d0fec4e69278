"""What an autoscaler that does not know the trace can reach: bounds on the families of ``families.py``.

    .venv/bin/python bench/sim/bounds.py                  # seeds 1-9; writes bench/sim/results/bounds.json
    .venv/bin/python bench/sim/bounds.py --only mmpp --seeds 3   # replaces those rows of results/bounds.json

The two references of ``families.py`` are the static frontier (the fewest constant replicas meeting the target)
and the hindsight schedule (knows every arrival). A policy sees only the past, so neither says what a policy
*could* reach. Each bound below is a schedule that knows more than any policy -- but not the arrivals to come --
replayed in the same engine on the same draw (:func:`kubeinfer.sim.scenario.replay`):

- **State genie** (``mmpp``, ``clf-mmpp``): sees the hidden state of the Markov-modulated process the moment it
  changes (:func:`kubeinfer.sim.traces.mmpp_states`), never when it will. Sojourns are exponential, so within a
  state nothing the past shows tells when it ends: a constant count per state is the best such a schedule can do.
  It holds ``Q`` pods while quiet and ``H`` while bursting (created when the burst starts, ready a start-up later;
  back to ``Q`` when it ends). For each ``H`` from the frontier's count minus one to plus two, the fewest ``Q``
  meeting the target is found by bisection; the cheapest pair is the bound. A policy must infer the state from
  arrivals, so it cannot do better in expectation.
- **Oblivious variation** (``batch``, ``clf-batch``): batches start at Poisson instants with independent sizes, so
  no history says anything about the next second, and whatever a policy decides is independent of the arrivals it
  will serve. Its misses are then, in expectation, those of the counts it held, each for as long as it held it;
  misses fall with the count ever more slowly (convex), so by Jensen's inequality a constant deployment of the same
  mean count misses less. Measured: schedules holding ``n - 1`` or ``n + 1`` replicas in random ten-minute blocks
  (``n`` the frontier's count; five draws of the blocks per seed) against static ``n - 1``, ``n``, ``n + 1``
  replayed, the static deployment of equal cost interpolated between them.
- **Curve genie** (``diurnal``): knows the noise-free daily curve ahead of time (:func:`~kubeinfer.sim.traces.
  rate_curve`: what the cycle is, not each minute's log-normal noise) and holds the replicas for ``h`` times it,
  created a start-up ahead (the oracle's pooled capacity model); the smallest ``h`` on a grid that meets the target.

The figures are set against the targets of the trace families (<= 0.8x the static frontier, <= 1.2x the
hindsight schedule, never below a static deployment of equal cost) and against predictive, from the saved
``results/families*.json`` (run ``families.py`` first).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from families import FAMILIES, Family, static_at  # noqa: E402
from rich.progress import Progress  # noqa: E402

from kubeinfer.sim import Trace, compare  # noqa: E402
from kubeinfer.sim.hindsight import pods_for  # noqa: E402
from kubeinfer.sim.scenario import replay  # noqa: E402
from kubeinfer.sim.traces import mmpp_states, rate_curve  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"
KINDS = {"mmpp": "state", "clf-mmpp": "state", "batch": "oblivious", "clf-batch": "oblivious", "diurnal": "curve"}
H_GRID = tuple(round(1.0 + 0.1 * i, 1) for i in range(21))  # 1.0 .. 3.0
BLOCK_S = 600
PHASES = 5


def references() -> dict[tuple[str, int], dict[str, Any]]:
    """The saved rows of ``families.py`` (seeds 1-3, 4-6, 7-9): static frontier, hindsight, policies."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for name in ("families.json", "families-seed4.json", "families-seed7.json"):
        path = OUT / name
        if path.exists():
            for r in json.loads(path.read_text())["rows"]:
                rows[(r["family"], r["seed"])] = r
    return rows


def generator_params(trace: Trace) -> dict[str, float]:
    """A generated trace's parameters, from its name (``mmpp(burst=120,duration=14400,...,tokens=conv)``), without
    the token mix and the noise (what the rate curve itself takes)."""
    body = trace.name[trace.name.index("(") + 1 : -1]
    pairs = (p.split("=", 1) for p in body.split(","))
    return {k: float(v) for k, v in pairs if k not in ("tokens", "noise", "noiseStep")}


def _replay(fam: Family, trace: Trace, seed: int, pods: np.ndarray) -> tuple[float, float]:
    r = replay(fam.spec(), trace, pods, fam.options(seed))
    return r.attainment, r.replica_seconds / 3600.0


def state_genie(fam: Family, seed: int, static_n: int, target: float) -> dict[str, Any]:
    trace = fam.trace(seed)
    starts, _, rates = mmpp_states(generator_params(trace), seed)
    n_sec = math.ceil(trace.duration)
    t = np.arange(n_sec) + 0.5
    hot = rates[np.searchsorted(starts, t, side="right") - 1] > rates.min()
    cache: dict[tuple[int, int], tuple[float, float]] = {}

    def run(quiet: int, burst: int) -> tuple[float, float]:
        if (quiet, burst) not in cache:
            cache[(quiet, burst)] = _replay(fam, trace, seed, np.where(hot, burst, quiet).astype(np.int64))
        return cache[(quiet, burst)]

    best: dict[str, Any] | None = None
    for burst in range(max(1, static_n - 1), static_n + 3):
        if run(burst, burst)[0] < target:
            continue
        lo, hi = 0, burst  # the fewest replicas while quiet that still meet the target
        while lo < hi:
            mid = (lo + hi) // 2
            if run(mid, burst)[0] >= target:
                hi = mid
            else:
                lo = mid + 1
        a, rh = run(lo, burst)
        if best is None or rh < best["replica_hours"]:
            best = {"quiet": lo, "burst": burst, "slo_attainment": a, "replica_hours": rh}
    tried = [{"quiet": q, "burst": b, "slo_attainment": a, "replica_hours": rh} for (q, b), (a, rh) in cache.items()]
    return {"bound": best, "tried": tried}


def oblivious(fam: Family, seed: int, static_n: int) -> dict[str, Any]:
    trace = fam.trace(seed)
    n_sec = math.ceil(trace.duration)
    statics = {
        n: _replay(fam, trace, seed, np.full(n_sec, n, dtype=np.int64)) for n in (static_n - 1, static_n, static_n + 1)
    }
    curve = [(n, rh * 3600.0, a) for n, (a, rh) in statics.items()]
    draws = []
    for phase in range(PHASES):
        rng = np.random.default_rng([seed, phase])
        blocks = np.where(rng.random(-(-n_sec // BLOCK_S)) < 0.5, static_n - 1, static_n + 1)
        a, rh = _replay(fam, trace, seed, np.repeat(blocks, BLOCK_S)[:n_sec].astype(np.int64))
        eq = static_at(curve, rh)
        draws.append({"slo_attainment": a, "replica_hours": rh, "static_equal_cost": eq})
    return {
        "static": {str(n): {"slo_attainment": a, "replica_hours": rh} for n, (a, rh) in statics.items()},
        "draws": draws,
    }


def curve_genie(fam: Family, seed: int, target: float) -> dict[str, Any]:
    trace = fam.trace(seed)
    params = generator_params(trace)
    kind = trace.name[: trace.name.index("(")]
    curve = rate_curve(kind, {k: v for k, v in params.items() if k != "duration"}, trace.duration)
    opts = replace(fam.options(seed), references=False)
    c = compare(fam.spec(), trace, [], opts)
    capacity = c.oracle.capacity
    tried = []
    for h in H_GRID:
        need = np.minimum(np.searchsorted(capacity, h * curve, side="left"), len(capacity) - 1).astype(np.int64)
        a, rh = _replay(fam, trace, seed, pods_for(need, c.startup_s))
        tried.append({"h": h, "slo_attainment": a, "replica_hours": rh})
    met = [t for t in tried if t["slo_attainment"] >= target]
    return {"bound": min(met, key=lambda t: t["replica_hours"]) if met else None, "tried": tried}


def job(args: tuple[str, int, int, float]) -> dict[str, Any]:
    name, seed, static_n, target = args
    fam = next(f for f in FAMILIES if f.name == name)
    t0 = time.perf_counter()
    kind = KINDS[name]
    if kind == "state":
        out = state_genie(fam, seed, static_n, target)
    elif kind == "oblivious":
        out = oblivious(fam, seed, static_n)
    else:
        out = curve_genie(fam, seed, target)
    return {"family": name, "seed": seed, "kind": kind, **out, "seconds": time.perf_counter() - t0}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.2%}"


def markdown(rows: list[dict[str, Any]], refs: dict[tuple[str, int], dict[str, Any]], target: float) -> str:
    lines = []
    genies = [r for r in rows if r["kind"] in ("state", "curve")]
    if genies:
        lines += [
            "| family | seed | bound | bound: SLO met, replica-h | static frontier rh | bound x static | hindsight rh | "
            "bound x hindsight | predictive: SLO met, rh |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in genies:
            ref = refs[(r["family"], r["seed"])]
            st, hi = ref["static"]["replica_hours"], ref["hindsight"]["replica_hours"]
            p = ref["policies"]["predictive"]
            b = r["bound"]
            what = "-" if b is None else (f"Q={b['quiet']}, H={b['burst']}" if "quiet" in b else f"h={b['h']}")
            got = "none meets the target" if b is None else f"{b['slo_attainment']:.2%}, {b['replica_hours']:.2f}"
            xs = "-" if b is None else f"{b['replica_hours'] / st:.2f}"
            xh = "-" if b is None else f"{b['replica_hours'] / hi:.2f}"
            lines.append(
                f"| {r['family']} | {r['seed']} | {what} | {got} | {st:.2f} | {xs} | {hi:.2f} | {xh} | "
                f"{p['slo_attainment']:.2%}, {p['replica_hours']:.2f} |"
            )
        lines.append("")
    for name in dict.fromkeys(r["family"] for r in rows if r["kind"] == "curve"):
        rs = [r for r in rows if r["family"] == name]
        ok = [
            h for h in H_GRID if all(any(t["h"] == h and t["slo_attainment"] >= target for t in r["tried"]) for r in rs)
        ]
        if not ok:
            lines.append(f"{name}: no h up to {H_GRID[-1]} meets the target on every seed.\n")
            continue
        h = ok[0]
        at = [next(t for t in r["tried"] if t["h"] == h) for r in rs]
        hind = [refs[(r["family"], r["seed"])]["hindsight"]["replica_hours"] for r in rs]
        stat = [refs[(r["family"], r["seed"])]["static"]["replica_hours"] for r in rs]
        xs = [t["replica_hours"] / s for t, s in zip(at, stat, strict=True)]
        xh = [t["replica_hours"] / hh for t, hh in zip(at, hind, strict=True)]
        lines.append(
            f"{name}, one h for every seed (a genie cannot tune it to the draw): h={h}, worst SLO met "
            f"{min(t['slo_attainment'] for t in at):.2%}, x static {min(xs):.2f}-{max(xs):.2f}, "
            f"x hindsight {min(xh):.2f}-{max(xh):.2f}.\n"
        )
    obl = [r for r in rows if r["kind"] == "oblivious"]
    if obl:
        lines += [
            "| family | seed | static n-1, n, n+1: SLO met | varying n-1 / n+1: SLO met (median of draws) | "
            "static of equal cost: SLO met (median) | static better in |",
            "|---|---|---|---|---|---|",
        ]
        for r in obl:
            st = " / ".join(_pct(v["slo_attainment"]) for v in r["static"].values())
            d = r["draws"]
            better = sum(x["static_equal_cost"] is not None and x["static_equal_cost"] > x["slo_attainment"] for x in d)
            med = statistics.median(x["slo_attainment"] for x in d)
            eqs = [x["static_equal_cost"] for x in d if x["static_equal_cost"] is not None]
            lines.append(
                f"| {r['family']} | {r['seed']} | {st} | {med:.2%} | {_pct(statistics.median(eqs) if eqs else None)} | "
                f"{better} of {len(d)} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help=f"comma-separated families among {', '.join(KINDS)}")
    ap.add_argument("--seeds", type=int, default=9)
    ap.add_argument("--target", type=float, default=0.99)
    ap.add_argument("--jobs", type=int, default=2, help="processes")
    ap.add_argument("--from-json", action="store_true", help="redraw the tables from results/bounds.json")
    args = ap.parse_args()
    refs = references()
    if args.from_json:
        saved = json.loads((OUT / "bounds.json").read_text())
        print(markdown(saved["rows"], refs, saved["target"]))
        return
    wanted = [n for n in args.only.split(",") if n]
    unknown = sorted(set(wanted) - set(KINDS))
    if unknown:
        ap.error(f"--only: no bound for {', '.join(unknown)} (use {', '.join(KINDS)})")
    names = [n for n in KINDS if not wanted or n in wanted]
    missing = [(n, s) for n in names for s in range(1, args.seeds + 1) if (n, s) not in refs]
    if missing:
        ap.error(f"no saved families.py row for {missing[0][0]} seed {missing[0][1]}: run families.py for it first")
    jobs = [
        (n, s, int(refs[(n, s)]["static"]["replicas"]), args.target) for n in names for s in range(1, args.seeds + 1)
    ]
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with Progress(transient=True) as prog, mp.Pool(max(1, args.jobs)) as pool:
        task = prog.add_task("bounds", total=len(jobs))
        for row in pool.imap_unordered(job, jobs):
            rows.append(row)
            prog.advance(task)
    # Merged into what an earlier run saved (same target): a run of some families or seeds replaces only those rows.
    path = OUT / "bounds.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    merged = {(r["family"], r["seed"]): r for r in saved.get("rows", []) if saved.get("target") == args.target}
    merged.update({(r["family"], r["seed"]): r for r in rows})
    kinds = list(KINDS)
    ordered = sorted(merged.values(), key=lambda r: (kinds.index(r["family"]), r["seed"]))
    OUT.mkdir(exist_ok=True)
    path.write_text(json.dumps({"target": args.target, "rows": ordered}, indent=2))
    order = {(n, s): i for i, (n, s, *_) in enumerate(jobs)}
    rows.sort(key=lambda r: order[(r["family"], r["seed"])])
    print(markdown(rows, refs, args.target))
    print(f"\n{len(jobs)} jobs in {time.perf_counter() - t0:.0f} s; results in {OUT}/bounds.json")


if __name__ == "__main__":
    main()
