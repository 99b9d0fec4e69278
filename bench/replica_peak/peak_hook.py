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

from collections.abc import Callable
from functools import partial

from kubeinfer.autoscale.arrivals import RecentPeak
from kubeinfer.bench import microbench
from kubeinfer.server.dataplane import DataPlane
from kubeinfer.server.metrics import PEAK_HORIZON_SECONDS, Metrics

TICK = 0.5
RATES = (20, 200, 2000, 20000)


def request(plane: DataPlane) -> Callable[[], None]:
    def one() -> None:
        plane.end(plane.begin(), None, "v2", 200)

    return one


def begin(plane: DataPlane) -> Callable[[], object]:
    return plane.begin


def tick_ns_per_arrival(per_second: int, seconds: int) -> float:
    """ns of ``advance`` per arrival, ``per_second`` arrivals evenly spread, counted every 0.5 s."""
    per_tick = max(1, int(per_second * TICK))
    return microbench.ns_per_arrival(RecentPeak(0.1, PEAK_HORIZON_SECONDS), per_tick, int(seconds / TICK), TICK)


def main() -> None:
    args = microbench.parser(__doc__.split("\n\n")[0]).parse_args()
    planes = {
        "no window": DataPlane(metrics=Metrics()),
        "window 0.1 s": DataPlane(metrics=Metrics(peak_window=0.1)),
        "window 1 s": DataPlane(metrics=Metrics(peak_window=1.0)),
    }
    setups = {f"begin, {name}": begin(p) for name, p in planes.items()}
    setups |= {f"begin+end, {name}": request(p) for name, p in planes.items()}

    def count(_rep: int) -> None:
        for p in planes.values():
            p.metrics.count_arrivals()  # as the replica's half-second count does: the list does not grow

    microbench.compare(
        setups,
        repeats=args.repeats,
        number=args.number,
        what="requests",
        baseline=lambda name: name.split(", ")[0] + ", no window",
        after_repeat=count,
    )
    print()
    rows = (
        (f"{rate} ({int(rate * TICK)})", partial(tick_ns_per_arrival, rate, max(20, 400_000 // rate))) for rate in RATES
    )
    for line in microbench.spread_table(
        "requests/s (arrivals per 0.5 s count)", "advance, ns per arrival", rows, args.repeats
    ):
        print(line)


if __name__ == "__main__":
    main()
