"""The rounds of several ``run.py --alternate`` runs pooled: their ratios of means with one bootstrap interval.

    .venv/bin/python bench/tracing/pool.py OUTPUT [OUTPUT ...]

Each ``OUTPUT`` is what ``run.py --alternate`` printed (its ``round N: ...`` lines are read). One run's interval is
wide on a shared machine (CPU per request moves between two levels from run to run); the rounds of several runs made
with the same code and command narrow it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import _ratio_of_means

ROUND = re.compile(
    r"round \d+: off ([\d,]+) req/s ([\d.]+) us CPU/request, 1% ([\d,]+) req/s ([\d.]+) us \(.*?\), "
    r"off again ([\d,]+) req/s ([\d.]+) us"
)


def rounds(path: Path) -> list[tuple[float, ...]]:
    """(off req/s, off again req/s, 1% req/s, off CPU, off again CPU, 1% CPU) per round, as run.py's alternate
    keeps them."""
    out = []
    for m in ROUND.finditer(path.read_text()):
        a_thr, a_cpu, b_thr, b_cpu, c_thr, c_cpu = (float(x.replace(",", "")) for x in m.groups())
        out.append((a_thr, c_thr, b_thr, a_cpu, c_cpu, b_cpu))
    if not out:
        raise SystemExit(f"{path}: no 'round N: ...' line of run.py --alternate")
    return out


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    pooled = [r for arg in sys.argv[1:] for r in rounds(Path(arg))]
    print(f"| ratio of means, {len(pooled)} rounds of {len(sys.argv) - 1} runs | value | 95% interval |")
    print("|---|---|---|")
    for label, top, bottom in (
        ("1% throughput / off", (2,), (0, 1)),
        ("1% CPU per request / off", (5,), (3, 4)),
        ("control: off again / off, throughput", (1,), (0,)),
        ("control: off again / off, CPU per request", (4,), (3,)),
    ):
        value, low, high = _ratio_of_means(pooled, top, bottom)
        print(f"| {label} | {value:.3f} | {low:.3f}-{high:.3f} |")


if __name__ == "__main__":
    main()
