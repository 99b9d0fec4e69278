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

import time
from collections.abc import Callable
from functools import partial

from kubeinfer.bench import microbench
from kubeinfer.local.router import Router
from kubeinfer.local.router.core import ArrivalPeak

TICK = 0.05
PER_TICK = (1, 10, 100, 1000)


def tick_ns_per_arrival(per_tick: int, ticks: int) -> float:
    """ns of ``advance`` per arrival, ``per_tick`` arrivals evenly spread over each 50 ms tick."""
    return microbench.ns_per_arrival(ArrivalPeak(0.1, 0.0), per_tick, ticks, TICK)


def main() -> None:
    args = microbench.parser(__doc__.split("\n\n")[0]).parse_args()
    routers = {"no window": Router(), "window 0.1 s": Router(peak_window=0.1), "window 1 s": Router(peak_window=1.0)}
    setups: dict[str, Callable[[], object]] = {name: r.request_accepted for name, r in routers.items()}
    setups["time.monotonic() alone"] = time.monotonic

    def tick(rep: int) -> None:
        for r in routers.values():
            r._tick(time.monotonic() + rep + 1)  # close a second, as the router's tick does

    microbench.compare(
        setups,
        repeats=args.repeats,
        number=args.number,
        what="calls",
        baseline=lambda _name: "no window",
        after_repeat=tick,
    )
    print()
    rows = ((f"{n} ({n * 20})", partial(tick_ns_per_arrival, n, max(200, 200_000 // n))) for n in PER_TICK)
    for line in microbench.spread_table(
        "arrivals per 50 ms tick (requests/s)", "advance, ns per arrival", rows, args.repeats
    ):
        print(line)


if __name__ == "__main__":
    main()
