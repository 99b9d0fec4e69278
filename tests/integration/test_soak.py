"""Soak (opt-in: ``pytest -m slow tests/integration/test_soak.py``): a replica at half its capacity for ten minutes
(``KUBEINFER_SOAK_SECONDS``), with 5% bad requests mixed in, keeps its memory flat and answers every good request.

Capacity is measured first (closed loop, 16 connections); then open-loop Poisson load at half of it, 95% good
requests and 5% spread over five kinds of bad ones (malformed JSON, text and null in numeric data, a wrong shape, an
unknown model). RSS is sampled every 5 s: the median of the last minute must be within 5% of the median of the
second minute (the first is warm-up: allocator pools and caches filling).
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from kubeinfer.bench.loadgen import LoadResult, LoadSpec, run_in_process
from kubeinfer.testing import ServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(0)]


def _body(data: object, shape: list[int] | None = None) -> bytes:
    t = {"name": "input-0", "shape": shape or [1, 4], "datatype": "FP32", "data": data}
    return json.dumps({"inputs": [t]}).encode()


def test_rss_stays_flat_at_half_capacity_with_bad_requests_mixed_in(examples: Path) -> None:
    seconds = float(os.environ.get("KUBEINFER_SOAK_SECONDS", "600"))
    good = _body([5.1, 3.5, 1.4, 0.2])
    bad = {
        "malformed": b'{"inputs": [',
        "text": _body(["5.1", 3.5, 1.4, 0.2]),
        "null": _body([None, 3.5, 1.4, 0.2]),
        "shape": _body([1.0, 2.0, 3.0], [1, 3]),
    }
    with ServerProcess(examples / "iris" / "service.yaml", grpc=False) as s:
        url = f"{s.url}/v2/models/iris/infer"
        cap = run_in_process(LoadSpec(url, good, concurrency=16, duration=5, warmup=1)).throughput
        rate = cap / 2
        proc = psutil.Process(s.pid)
        samples: list[tuple[float, int]] = []
        done = threading.Event()

        def sample() -> None:
            t0 = time.monotonic()
            while not done.wait(5.0):
                samples.append((time.monotonic() - t0, proc.memory_info().rss))

        specs = {"good": LoadSpec(url, good, rate=rate * 0.95, duration=seconds, warmup=0, concurrency=64)}
        for name, body in bad.items():
            specs[name] = LoadSpec(url, body, rate=rate * 0.04 / len(bad), duration=seconds, warmup=0, seed=len(specs))
        specs["unknown model"] = LoadSpec(
            f"{s.url}/v2/models/nope/infer", good, rate=rate * 0.01, duration=seconds, warmup=0, seed=99
        )
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        with ThreadPoolExecutor(len(specs)) as pool:
            results: dict[str, LoadResult] = dict(zip(specs, pool.map(run_in_process, specs.values()), strict=True))
        done.set()
        sampler.join()
    g = results["good"]
    assert set(g.statuses) == {"200"} and g.requests > 0, g.statuses
    for name in bad:
        assert set(results[name].statuses) == {"400"}, (name, results[name].statuses)
    assert set(results["unknown model"].statuses) == {"404"}
    second = [rss for t, rss in samples if 60 <= t < 120]
    last = [rss for t, rss in samples if t >= seconds - 60]
    base, end = statistics.median(second), statistics.median(last)
    drift = (end - base) / base
    print(
        f"capacity {cap:.0f} req/s, load {rate:.0f} req/s, RSS {base / 2**20:.1f} -> {end / 2**20:.1f} MiB ({drift:+.1%})"
    )
    assert abs(drift) <= 0.05, f"RSS moved {drift:+.1%} over the soak ({base} -> {end} bytes)"
