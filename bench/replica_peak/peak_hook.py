"""The cost of ``kubeinfer_arrivals_peak`` on a replica's request path, side by side with the path without it.

    flock /tmp/kubeinfer-bench.lock .venv/bin/python bench/replica_peak/peak_hook.py [--repeats 9] [--number 200000]

Part 1 times ``DataPlane.begin`` (what every protocol calls once per request: the in-flight count and the clock
read; the hook is there) alone, then with ``DataPlane.end`` (the request counter and latency histogram too: the
whole per-request metrics cost), with no window and with windows of 0.1 s and 1 s (the hook: a list append of the
clock reading ``begin`` already takes), alternating the setups within each repeat. Each figure is ns per request:
median of the repeats, best and worst beside it, and the added cost as the median of the paired differences
against no window.

Part 2 times the rest of the count, off the request path: ``RecentPeak.advance`` as the replica's loop calls it every
0.5 s, per arrival counted, for steady arrival rates of 20 to 20,000 requests/s and a 0.1 s window; the same median,
best and worst over the repeats. (The router's counterpart is ``bench/router/peak_hook.py``.)
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
import timeit

from kubeinfer.autoscale.arrivals import RecentPeak
from kubeinfer.server.dataplane import DataPlane
from kubeinfer.server.metrics import PEAK_HORIZON_SECONDS, Metrics

TICK = 0.5


def request(plane: DataPlane) -> object:
    def one() -> None:
        plane.end(plane.begin(), None, "v2", 200)

    return one


def begin(plane: DataPlane) -> object:
    return plane.begin


def tick_ns_per_arrival(per_second: int, seconds: int) -> float:
    """ns of ``advance`` per arrival, ``per_second`` arrivals evenly spread, counted every 0.5 s."""
    p = RecentPeak(0.1, PEAK_HORIZON_SECONDS)
    per_tick = max(1, int(per_second * TICK))
    spent = 0.0
    ticks = int(seconds / TICK)
    for k in range(ticks):
        p.pending.extend((k + (i + 0.5) / per_tick) * TICK for i in range(per_tick))
        t0 = time.perf_counter()
        p.advance((k + 1) * TICK)
        spent += time.perf_counter() - t0
    return spent / (per_tick * ticks) * 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--number", type=int, default=200_000)
    args = ap.parse_args()
    planes = {
        "no window": DataPlane(metrics=Metrics()),
        "window 0.1 s": DataPlane(metrics=Metrics(peak_window=0.1)),
        "window 1 s": DataPlane(metrics=Metrics(peak_window=1.0)),
    }
    setups = {f"begin, {name}": begin(p) for name, p in planes.items()}
    setups |= {f"begin+end, {name}": request(p) for name, p in planes.items()}
    samples: dict[str, list[float]] = {name: [] for name in setups}
    gc.disable()
    for rep in range(args.repeats):
        order = list(setups) if rep % 2 == 0 else list(reversed(setups))
        for name in order:
            samples[name].append(timeit.timeit(setups[name], number=args.number) / args.number * 1e9)  # type: ignore[arg-type]
        for p in planes.values():
            p.metrics.count_arrivals()  # as the replica's half-second count does: the list does not grow
    gc.enable()
    print(f"{platform.platform()}, Python {sys.version.split()[0]}; {args.repeats} repeats of {args.number} requests")
    print("| setup | ns/request median | best | worst | added vs no window, median of paired repeats |")
    print("|---|---:|---:|---:|---:|")
    for name, xs in samples.items():
        base = samples[name.split(", ")[0] + ", no window"]
        added = statistics.median(x - b for x, b in zip(xs, base, strict=True))
        print(f"| {name} | {statistics.median(xs):.1f} | {min(xs):.1f} | {max(xs):.1f} | {added:+.1f} |")
    print()
    print("| requests/s (arrivals per 0.5 s count) | advance, ns per arrival: median | best | worst |")
    print("|---|---:|---:|---:|")
    for rate in (20, 200, 2000, 20000):
        seconds = max(20, 400_000 // rate)
        xs = [tick_ns_per_arrival(rate, seconds) for _ in range(args.repeats)]
        print(f"| {rate} ({int(rate * TICK)}) | {statistics.median(xs):.1f} | {min(xs):.1f} | {max(xs):.1f} |")


if __name__ == "__main__":
    main()
