"""In-process batched throughput of a spec's model: the ceiling a server of it can approach when the model's own
compute is the limit (no HTTP, no batcher, no client on the machine).

The model is loaded as a replica loads it (``create_model``), with the spec's threads, and called on full batches of
one request body's rows in a loop, in as many processes as the spec's ``server.processes`` (each with its share of
threads, as the server gives them). Prints rows/s per repeat and the median.

    .venv/bin/python bench/inprocess.py examples/minilm/service.yaml --batch 32 --seconds 8 --repeats 3
    .venv/bin/python bench/inprocess.py examples/tabular64/service.yaml --batch 64
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

SENTENCE = "The quick brown fox jumps over the lazy dog."


def _rows(info: Any, batch: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(0)
    for s in info.inputs:
        shape = [batch if i == 0 else (d if d > 0 else 1) for i, d in enumerate(s.shape)] or [batch]
        if s.datatype == "BYTES":
            out[s.name] = np.full(shape, SENTENCE.encode(), dtype=object)
        else:
            from kubeinfer.server.tensors import DATATYPES

            out[s.name] = rng.normal(size=shape).astype(DATATYPES[s.datatype])
    return out


def _worker(spec: str, threads: int, batch: int, seconds: float, start: Any, result: Any) -> None:
    import os

    os.environ["OMP_NUM_THREADS"] = str(threads)
    from kubeinfer.runtimes import create_model
    from kubeinfer.spec import load_spec, merge_overrides

    path = Path(spec)
    svc = load_spec(path)
    args = dict(svc.spec.model.args)
    args.setdefault("intraOpThreads", threads)
    svc = merge_overrides(svc, {"spec.model.args": args})
    model = create_model(svc, path.parent)
    info = model.load()
    x = _rows(info, batch)
    for _ in range(3):
        model.predict(x)
    start.wait()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        model.predict(x)
        n += batch
    result.put(n / (time.perf_counter() - t0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("spec")
    ap.add_argument("--batch", type=int, default=32, help="rows per call (per process)")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cpus", type=int, default=None, help="threads in all (default: os.cpu_count())")
    args = ap.parse_args()
    import os

    from kubeinfer.spec import load_spec

    svc = load_spec(args.spec)
    procs = svc.spec.server.processes
    cpus = args.cpus or os.cpu_count() or 1
    threads = max(1, cpus // procs)
    ctx = mp.get_context("spawn")
    rates = []
    for r in range(args.repeats):
        start, result = ctx.Barrier(procs + 1), ctx.Queue()  # every process loaded and warm before any is timed
        ps = [
            ctx.Process(target=_worker, args=(args.spec, threads, args.batch, args.seconds, start, result))
            for _ in range(procs)
        ]
        for p in ps:
            p.start()
        start.wait()
        total = sum(result.get(timeout=600) for _ in ps)
        for p in ps:
            p.join()
        rates.append(total)
        print(json.dumps({"repeat": r + 1, "rows_per_s": round(total, 1)}), flush=True)
    print(
        json.dumps(
            {
                "spec": args.spec,
                "processes": procs,
                "threads_each": threads,
                "batch": args.batch,
                "median_rows_per_s": round(statistics.median(rates), 1),
                "min": round(min(rates), 1),
                "max": round(max(rates), 1),
            }
        )
    )


if __name__ == "__main__":
    main()
