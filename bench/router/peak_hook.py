"""The cost of the peak-arrivals count on the router's request path, side by side with the path without it.

    flock /tmp/kubeinfer-bench.lock .venv/bin/python bench/router/peak_hook.py [--repeats 9] [--number 200000]

Part 1 times ``Router.request_accepted`` (what both fronts call once per client request) with no peak window and
with windows of 0.1 s and 1 s (``core.ArrivalPeak``: on the request path, a clock read and a list append),
alternating the setups within each repeat; and ``time.monotonic()`` alone, the clock read the count adds. Each
figure is ns per call: median of the repeats, best and worst beside it.

Part 2 times the rest of the count, off the request path: ``ArrivalPeak.advance`` as the router's housekeeping tick
calls it every 50 ms, per arrival counted, for steady arrival rates of 20 to 20,000 requests/s (1 to 1,000 arrivals
per tick) and a 0.1 s window; the same median, best and worst over the repeats.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
import timeit

from kubeinfer.local.router import Router
from kubeinfer.local.router.core import ArrivalPeak

TICK = 0.05


def tick_ns_per_arrival(per_tick: int, ticks: int) -> float:
    """ns of ``advance`` per arrival, ``per_tick`` arrivals evenly spread over each 50 ms tick."""
    p = ArrivalPeak(0.1, 0.0)
    spent = 0.0
    for k in range(ticks):
        p.pending.extend((k + (i + 0.5) / per_tick) * TICK for i in range(per_tick))
        t0 = time.perf_counter()
        p.advance((k + 1) * TICK)
        spent += time.perf_counter() - t0
    return spent / (per_tick * ticks) * 1e9


def per_call_ns(fn: object, number: int) -> float:
    return timeit.timeit(fn, number=number) / number * 1e9  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--number", type=int, default=200_000)
    args = ap.parse_args()
    routers = {"no window": Router(), "window 0.1 s": Router(peak_window=0.1), "window 1 s": Router(peak_window=1.0)}
    setups = {name: r.request_accepted for name, r in routers.items()}
    setups["time.monotonic() alone"] = time.monotonic
    samples: dict[str, list[float]] = {name: [] for name in setups}
    gc.disable()
    for rep in range(args.repeats):
        order = list(setups) if rep % 2 == 0 else list(reversed(setups))
        for name in order:
            samples[name].append(per_call_ns(setups[name], args.number))
        for r in routers.values():
            r._tick(time.monotonic() + rep + 1)  # close a second, as the router's tick does
    gc.enable()
    base = samples["no window"]
    print(f"{platform.platform()}, Python {sys.version.split()[0]}; {args.repeats} repeats of {args.number} calls")
    print("| setup | ns/call median | best | worst | added vs no window, median of paired repeats |")
    print("|---|---:|---:|---:|---:|")
    for name, xs in samples.items():
        added = statistics.median(x - b for x, b in zip(xs, base, strict=True))
        print(f"| {name} | {statistics.median(xs):.1f} | {min(xs):.1f} | {max(xs):.1f} | {added:+.1f} |")
    print()
    print("| arrivals per 50 ms tick (requests/s) | advance, ns per arrival: median | best | worst |")
    print("|---|---:|---:|---:|")
    for per_tick in (1, 10, 100, 1000):
        ticks = max(200, 200_000 // per_tick)
        xs = [tick_ns_per_arrival(per_tick, ticks) for _ in range(args.repeats)]
        print(f"| {per_tick} ({per_tick * 20}) | {statistics.median(xs):.1f} | {min(xs):.1f} | {max(xs):.1f} |")


if __name__ == "__main__":
    main()
