"""``kubeinfer profile``: measure one replica of a model over a sweep of batch sizes and client concurrency.

For each batch size the runner starts one real replica (``kubeinfer serve SPEC --max-batch-size B``) and, for each
concurrency, runs a closed loop against it with the load generator in its own process (so the client's CPU is never
counted as the server's). While the load runs a sampler thread reads the server's resident memory and CPU time
through psutil (the process and its children, e.g. model workers). Each (batch size, concurrency) becomes one
``ProfilePoint`` on slice ``cpu``; the result is a ``placement.profile.Profile`` that the planner reads.

Why a fresh replica per batch size: ``maxBatchSize`` is fixed when the batcher starts, and a fresh process also
gives each batch size its own peak memory rather than the maximum of everything run before it.

The numbers are of this machine (recorded under ``machine`` in the file); GPU points measured elsewhere can be
added by hand in the same format (see ``examples/plan/``).
"""

from __future__ import annotations

import math
import os
import platform
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from kubeinfer.bench.loadgen import LoadResult, LoadSpec, run_in_process
from kubeinfer.bench.requests import fetch_metadata, v2_body
from kubeinfer.placement.profile import CPU_SLICE, Profile, ProfilePoint
from kubeinfer.spec import load_spec
from kubeinfer.spec.quantity import format_memory, parse_quantity

__all__ = ["ProfileSettings", "machine_info", "run_profile"]

Progress = Callable[[str, float], None]
"""``(description, fraction of the sweep done)``."""


@dataclass(frozen=True)
class ProfileSettings:
    batch_sizes: tuple[int, ...] = (1, 8, 32, 64)
    concurrencies: tuple[int, ...] = (1, 8, 64)
    duration: float = 5.0
    """Seconds measured per point."""
    warmup: float = 1.0
    rows: int = 1
    """Rows per request."""
    start_timeout: float = 120.0

    def __post_init__(self) -> None:
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError(f"batch sizes {self.batch_sizes}: need at least one integer >= 1")
        if not self.concurrencies or min(self.concurrencies) < 1:
            raise ValueError(f"concurrency {self.concurrencies}: need at least one integer >= 1")
        if self.duration <= 0 or self.warmup < 0:
            raise ValueError(f"duration {self.duration} must be > 0 and warmup {self.warmup} >= 0")


class _Sampler:
    """Peak RSS and CPU seconds of a process tree, sampled every ``interval`` seconds on a thread."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="profile-sampler")

    def _tree(self) -> list[psutil.Process]:
        try:
            return [self.proc, *self.proc.children(recursive=True)]
        except psutil.Error:
            return []

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self._tree():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                continue
        return total

    def _sample(self) -> None:
        rss = 0
        for p in self._tree():
            try:
                rss += p.memory_info().rss
            except psutil.Error:
                continue
        self.peak_rss = max(self.peak_rss, rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> _Sampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sample()


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on (kept in the profile under ``machine``)."""
    return {
        "cpus": os.cpu_count() or 1,
        "memory": format_memory(psutil.virtual_memory().total),  # a quantity, as everywhere else in the file
        "processor": platform.processor() or platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
    }


def _measure(
    url: str, body: bytes, concurrency: int, s: ProfileSettings, sampler: _Sampler
) -> tuple[LoadResult, float]:
    spec = LoadSpec(url=url, body=body, concurrency=concurrency, duration=s.duration, warmup=s.warmup)
    cpu0, t0 = sampler.cpu_seconds(), time.monotonic()
    result = run_in_process(spec)
    cpu1, t1 = sampler.cpu_seconds(), time.monotonic()
    return result, (cpu1 - cpu0) / max(t1 - t0, 1e-9)


def run_profile(
    spec_file: str | Path,
    settings: ProfileSettings = ProfileSettings(),
    progress: Progress | None = None,
) -> Profile:
    """Run the sweep against real replicas of ``spec_file`` and return the measured profile (slice ``cpu``)."""
    from kubeinfer.bench.server import ServerProcess

    svc = load_spec(spec_file)
    model = svc.model_name
    total = len(settings.batch_sizes) * len(settings.concurrencies)
    done = 0
    points: list[ProfilePoint] = []
    peak_all = 0
    for batch in settings.batch_sizes:
        if progress:
            progress(f"starting a replica (maxBatchSize {batch})", done / total)
        server = ServerProcess(
            spec_file, ["--max-batch-size", str(batch)], grpc=False, start_timeout=settings.start_timeout
        )
        server.start()
        try:
            base = server.url
            body = v2_body(fetch_metadata(base, model), rows=settings.rows)
            url = f"{base}/v2/models/{model}/infer"
            with _Sampler(server.pid) as sampler:
                for conc in settings.concurrencies:
                    if progress:
                        progress(f"batch {batch}, concurrency {conc}", done / total)
                    result, cores = _measure(url, body, conc, settings, sampler)
                    if result.ok == 0:
                        raise RuntimeError(
                            f"no request succeeded at batch {batch}, concurrency {conc}: statuses {result.statuses}"
                        )
                    points.append(
                        ProfilePoint(
                            slice=CPU_SLICE,
                            batch_size=batch,
                            concurrency=conc,
                            throughput_rps=round(result.throughput, 3),
                            latency_ms={
                                k: round(float(result.latency_ms[k]), 3)
                                for k in ("p50", "p90", "p99")
                                if k in result.latency_ms
                            },
                            peak_memory_bytes=sampler.peak_rss,
                            cpu_cores=round(cores, 3),
                        )
                    )
                    done += 1
            peak_all = max(peak_all, sampler.peak_rss)
        finally:
            server.stop(10)
    if progress:
        progress("done", 1.0)
    return Profile(
        model=svc.metadata.name,
        points=tuple(points),
        host_cpu=_host_cpu(svc, points),
        host_memory_bytes=_host_memory(svc, peak_all),
        extra={"machine": machine_info()},
    )


def _host_cpu(svc: Any, points: Sequence[ProfilePoint]) -> float:
    """The replica's CPU request: the spec's if it sets one, else the most CPU measured (0.1-core steps)."""
    req = svc.spec.resources.requests.quantity("cpu")
    if req is not None:
        return float(req)
    used = max((p.cpu_cores or 0.0) for p in points) if points else 1.0
    return max(0.1, math.ceil(used * 10 - 1e-9) / 10)


def _host_memory(svc: Any, peak_rss: int) -> int:
    """The replica's memory request: the larger of the spec's request and the peak RSS measured."""
    req = svc.spec.resources.requests.memory
    spec_bytes = parse_quantity(req).int_value if req is not None else 0
    return max(spec_bytes, peak_rss)
