"""Tracing's cost on a replica: the same server with tracing off, on at 1% (parent-based ratio) and on at 100%.

    .venv/bin/python bench/tracing/run.py [--rounds 3] [--duration 5] [--conns 16] [--out bench/tracing/RESULTS.md]

Load: ``wrk`` (C, one thread; ``kubeinfer.bench.loadgen.run_wrk``) POSTing one row of ``examples/tabular64`` (OIP v2
JSON, 64 FP32) over ``--conns`` keep-alive connections, without a ``traceparent`` (so the replica's sampler decides,
as for traffic from outside a traced system). Three replicas run side by side, the same spec each:

* ``off``: no ``OTEL_*`` variable (the default);
* ``1%``: ``OTEL_TRACES_EXPORTER=otlp``, ``OTEL_TRACES_SAMPLER=parentbased_traceidratio``, ``_ARG=0.01``;
* ``100%``: the same with ``_ARG=1``.

The traced replicas export OTLP over gRPC to a receiver in this process that counts the requests and bytes it gets
without decoding them (a collector's CPU is not the replica's cost). Each round loads the three in a rotating order,
after a short warm-up; figures are medians over the rounds.

Two figures per setting: throughput, and CPU time per request (time on a CPU, from each thread's
``/proc/PID/task/TID/schedstat``, over the measured run only) of the replica's serving process and, beside it, of
its span exporter process (``tracing.py`` exports from a child process of the replica). On a machine shared with other work throughput moves with the
neighbours' load from one run to the next; CPU time per request moves far less, so it is the figure the cost of
tracing is read from when the two disagree.

``--paired``: instead of one replica at a time, ``off``, a second ``off`` replica (``off'``, the control: what two
identical replicas differ by on this machine) and ``1%`` are loaded at the same time in each round (``--conns`` each),
so that all three see the same neighbours; each round gives the ratios ``off'``/``off`` and ``1%``/``off`` of
throughput and of CPU time per request, and the median, best and worst over the rounds are reported.

``--alternate``: two replicas, ``off`` and ``1%``, loaded one at a time in rounds of three short runs, ``off``, ``1%``,
``off`` again, so that each ``1%`` run is compared with the ``off`` runs just before and after it (a neighbour's load
that drifts linearly over the round cancels); each round gives ``1%`` over the mean of its two ``off`` runs, for
throughput and for CPU seconds per request of the replica's processes (serving process and exporter process, from
``/proc``), and, as the control, the second ``off`` run over the first. Medians over many short rounds, with the
worst and best round; and the ratios of the means over all rounds, with a 95% bootstrap interval over the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from kubeinfer.bench.loadgen import LoadSpec, run_wrk  # noqa: E402
from kubeinfer.testing import ServerProcess  # noqa: E402

BODY = json.dumps(
    {"inputs": [{"name": "input-0", "shape": [1, 64], "datatype": "FP32", "data": [0.25 * (i % 7) for i in range(64)]}]}
).encode()
KINDS = ("off", "1%", "100%")


class Sink:
    """An OTLP/gRPC ``TraceService`` that counts what it is sent (raw bytes: no decoding)."""

    def __init__(self) -> None:
        self.exports = 0
        self.bytes = 0
        self.lock = threading.Lock()
        self.server = grpc.server(ThreadPoolExecutor(max_workers=2))

        def export(request: bytes, context: Any) -> bytes:
            with self.lock:
                self.exports += 1
                self.bytes += len(request)
            return b""  # an empty ExportTraceServiceResponse

        handler = grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.trace.v1.TraceService",
            {"Export": grpc.unary_unary_rpc_method_handler(export)},
        )
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()


def cpu_seconds(pid: int) -> tuple[float, float, float]:
    """CPU time of a process so far: all its threads; its threads but the main one (the event loop serves requests
    there; the span sender and the model's pool run in the others); and its child processes' (the span exporter
    process), live ones read from their own threads.

    From each thread's ``/proc/.../schedstat`` (time on the CPU in nanoseconds, the scheduler's own count) rather than
    ``stat``'s user and system times, which count 10 ms ticks: too coarse for the exporter process's part of a run of
    a few seconds (a millisecond or two)."""
    total = others = 0.0
    children: list[str] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            cpu = _thread_cpu(task)
            children += (task / "children").read_text().split()
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
        total += cpu
        if task.name != str(pid):
            others += cpu
    kids = 0.0
    for child in children:
        try:
            kids += sum(_thread_cpu(t) for t in Path(f"/proc/{child}/task").iterdir())
        except FileNotFoundError:
            continue
    return total, others, kids


def _thread_cpu(task: Path) -> float:
    """Seconds a thread (``/proc/PID/task/TID``) has run on a CPU."""
    try:
        return int((task / "schedstat").read_text().split()[0]) / 1e9
    except (FileNotFoundError, PermissionError):  # a kernel without schedstats: user + system ticks
        if not (task / "stat").exists():
            raise
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def env(kind: str, endpoint: str) -> dict[str, str]:
    if kind == "off":
        return {}
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.01" if kind == "1%" else "1",
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--out", type=Path)
    ap.add_argument(
        "--alternate",
        action="store_true",
        help="rounds of off, 1%%, off again, one replica loaded at a time; ratios of 1%% to the mean of its two off "
        "runs (throughput and CPU per request, exporter process included), off again vs off as the control",
    )
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of load before each measured run")
    ap.add_argument(
        "--paired",
        action="store_true",
        help="load 'off', a second 'off' (the control) and '1%%' at the same time in each round (three wrk) and "
        "report the median, best and worst of the rounds' ratios to 'off': all see the same neighbours",
    )
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench/tracing/run.py needs wrk on PATH")
    spec = ROOT / "examples" / "tabular64" / "service.yaml"
    if not (spec.parent / "model.joblib").exists():
        raise SystemExit("build the model first: .venv/bin/python examples/build.py tabular64")
    sink = Sink()
    endpoint = f"http://127.0.0.1:{sink.port}"
    if args.alternate:
        servers = {k: ServerProcess(spec, grpc=False, env=env(k, endpoint)).start() for k in ("off", "1%")}
        try:
            alternate(servers, args)
        finally:
            for s in servers.values():
                s.stop()
        print(f"OTLP received: {sink.exports} export requests, {sink.bytes / 1e6:.1f} MB")
        return
    servers = {k: ServerProcess(spec, grpc=False, env=env(k, endpoint)).start() for k in KINDS}
    # req/s, p50 ms, CPU us/request, of which outside the event loop's thread, the exporter process's
    runs: dict[str, list[tuple[float, float, float, float, float]]] = {k: [] for k in KINDS}
    if args.paired:
        servers["100%"].stop()
        servers["off'"] = ServerProcess(spec, grpc=False, env=env("off", endpoint)).start()
        try:
            paired(servers, args)
        finally:
            for s in servers.values():
                s.stop()
        return
    try:
        for r in range(args.rounds):
            order = KINDS[r % 3 :] + KINDS[: r % 3]
            for kind in order:
                m = measure(servers[kind], args.conns, args.duration)
                runs[kind].append(m)
                print(
                    f"round {r + 1} {kind:>4}: {m[0]:9.0f} req/s  p50 {m[1]:.2f} ms  {m[2]:6.1f} us CPU/request "
                    f"({m[3]:.1f} outside the loop's thread) + {m[4]:.1f} in the exporter process"
                )
    finally:
        for s in servers.values():
            s.stop()  # the traced ones export what they still hold
    med = {k: tuple(statistics.median(run[i] for run in v) for i in range(5)) for k, v in runs.items()}
    base, base_cpu = med["off"][0], med["off"][2]
    lines = [
        f"| tracing | req/s (median of {args.rounds}) | vs off | serving process CPU us/request (median) | "
        "of which outside the loop's thread | exporter process CPU us/request | CPU (both) vs off | p50 ms | "
        "runs (req/s) | runs (serving + exporter CPU us/request) |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {k} | {med[k][0]:,.0f} | {med[k][0] / base:.3f} | {med[k][2]:.1f} | {med[k][3]:.1f} | "
            f"{med[k][4]:.1f} | {statistics.median(run[2] + run[4] for run in runs[k]) / base_cpu:.3f} | "
            f"{med[k][1]:.2f} | {', '.join(f'{run[0]:,.0f}' for run in runs[k])} | "
            f"{', '.join(f'{run[2] + run[4]:.1f}' for run in runs[k])} |"
            for k in KINDS
        ),
        "",
        f"OTLP received: {sink.exports} export requests, {sink.bytes / 1e6:.1f} MB "
        f"(wrk -t1 -c{args.conns} -d{args.duration:g}s, keep-alive; examples/tabular64, one row per request; "
        f"{platform.machine()}, Python {platform.python_version()})",
    ]
    print("\n".join(lines))
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n")


def measure(
    server: ServerProcess, conns: int, duration: float, warmup: float = 1.0
) -> tuple[float, float, float, float, float]:
    """One measured wrk run after a warm-up: req/s, p50 ms, the replica's serving process's CPU us per request (all
    threads, and the threads other than the event loop's), and its exporter process's."""
    url = f"{server.url}/v2/models/tabular64/infer"
    if warmup > 0:
        run_wrk(LoadSpec(url=url, body=BODY, concurrency=conns, duration=warmup, warmup=0))
    before = cpu_seconds(server.pid)
    res = run_wrk(LoadSpec(url=url, body=BODY, concurrency=conns, duration=duration, warmup=0))
    if res.errors:
        raise RuntimeError(f"{res.errors} errors: {res.statuses}")
    after = cpu_seconds(server.pid)
    n = max(res.requests, 1)
    cpu, others, kids = ((a - b) / n * 1e6 for a, b in zip(after, before, strict=True))
    return res.throughput, res.latency_ms["p50"], cpu, others, kids


def alternate(servers: dict[str, ServerProcess], args: argparse.Namespace) -> None:
    """Rounds of ``off``, ``1%``, ``off`` again (one replica loaded at a time); see the module's docstring."""
    rows: dict[str, list[float]] = {k: [] for k in ("thr", "cpu", "thr_control", "cpu_control")}
    absolute: dict[str, list[float]] = {k: [] for k in ("off", "1%", "exporter", "threads_off", "threads_1%")}
    # per round: (off req/s, off again req/s, 1% req/s, off CPU, off again CPU, 1% CPU), for the ratios of means
    raw: list[tuple[float, float, float, float, float, float]] = []
    for r in range(args.rounds):
        a = measure(servers["off"], args.conns, args.duration, args.warmup)
        b = measure(servers["1%"], args.conns, args.duration, args.warmup)
        c = measure(servers["off"], args.conns, args.duration, args.warmup)
        off_thr, off_cpu = (a[0] + c[0]) / 2, (a[2] + a[4] + c[2] + c[4]) / 2
        rows["thr"].append(b[0] / off_thr)
        rows["cpu"].append((b[2] + b[4]) / off_cpu)
        rows["thr_control"].append(c[0] / a[0])
        rows["cpu_control"].append((c[2] + c[4]) / (a[2] + a[4]))
        absolute["off"] += [a[2] + a[4], c[2] + c[4]]
        absolute["1%"].append(b[2] + b[4])
        absolute["exporter"].append(b[4])
        absolute["threads_off"] += [a[3], c[3]]
        absolute["threads_1%"].append(b[3])
        raw.append((a[0], c[0], b[0], a[2] + a[4], c[2] + c[4], b[2] + b[4]))
        print(
            f"round {r + 1}: off {a[0]:,.0f} req/s {a[2] + a[4]:.1f} us CPU/request, 1% {b[0]:,.0f} req/s "
            f"{b[2] + b[4]:.1f} us ({b[4]:.2f} in the exporter process), off again {c[0]:,.0f} req/s "
            f"{c[2] + c[4]:.1f} us; 1% vs off: {rows['thr'][-1]:.3f}x req/s, {rows['cpu'][-1]:.3f}x CPU/request",
            flush=True,
        )
    med = statistics.median
    lines = [
        f"| ratio (rounds of off, 1%, off again: {args.rounds} rounds of {args.duration:g} s runs) | median | best "
        "round | worst round |",
        "|---|---|---|---|",
        f"| 1% throughput / off (mean of the two off runs around it) | {med(rows['thr']):.3f} | "
        f"{max(rows['thr']):.3f} | {min(rows['thr']):.3f} |",
        f"| 1% CPU per request / off (serving + exporter process) | {med(rows['cpu']):.3f} | "
        f"{min(rows['cpu']):.3f} | {max(rows['cpu']):.3f} |",
        f"| control: off again / off, throughput | {med(rows['thr_control']):.3f} | "
        f"{max(rows['thr_control']):.3f} | {min(rows['thr_control']):.3f} |",
        f"| control: off again / off, CPU per request | {med(rows['cpu_control']):.3f} | "
        f"{min(rows['cpu_control']):.3f} | {max(rows['cpu_control']):.3f} |",
        "",
        f"CPU us per request, medians: off {med(absolute['off']):.1f} (runs {min(absolute['off']):.1f}-"
        f"{max(absolute['off']):.1f}), 1% {med(absolute['1%']):.1f} ({min(absolute['1%']):.1f}-"
        f"{max(absolute['1%']):.1f}), of which the exporter process {med(absolute['exporter']):.2f}; in the serving "
        f"process's threads other than the event loop's: off {med(absolute['threads_off']):.2f}, 1% "
        f"{med(absolute['threads_1%']):.2f} "
        f"(wrk -t1 -c{args.conns} -d{args.duration:g}s after {args.warmup:g} s of warm-up; examples/tabular64; "
        f"{platform.machine()}, Python {platform.python_version()})",
        "",
        "Ratios of means over all rounds (each setting's runs averaged, then divided), with a 95% interval from "
        "resampling the rounds (bootstrap, 2,000 resamples): a mean is less moved than a median by CPU per request "
        "that sits on one of two levels from run to run, as it does on this machine.",
        "",
        "| ratio of means | value | 95% interval |",
        "|---|---|---|",
        *(
            f"| {label} | {value:.3f} | {low:.3f}-{high:.3f} |"
            for label, (value, low, high) in (
                ("1% throughput / off", _ratio_of_means(raw, (2,), (0, 1))),
                ("1% CPU per request / off", _ratio_of_means(raw, (5,), (3, 4))),
                ("control: off again / off, throughput", _ratio_of_means(raw, (1,), (0,))),
                ("control: off again / off, CPU per request", _ratio_of_means(raw, (4,), (3,))),
            )
        ),
        "",
        # The batcher moves a model's batches from the event loop back to worker threads (which costs more CPU per
        # request) after a batch on the loop took long in wall time, e.g. while the process was preempted: a state of
        # its own per replica that moves its CPU per request, whatever tracing does. Counted, to read the ratios by.
        "batches moved back to worker threads during the run: "
        + ", ".join(f"{k} {s.log().count('batches run in worker threads again')}" for k, s in servers.items()),
    ]
    print("\n".join(lines))
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n")


def _ratio_of_means(
    rounds: list[tuple[float, ...]], top: tuple[int, ...], bottom: tuple[int, ...]
) -> tuple[float, float, float]:
    """The mean over rounds of the ``top`` fields over the mean of the ``bottom`` fields, and its 2.5th and 97.5th
    percentiles over 2,000 resamples of the rounds (with replacement; a fixed seed)."""

    def ratio(sample: list[tuple[float, ...]]) -> float:
        num = statistics.fmean(x[i] for x in sample for i in top)
        den = statistics.fmean(x[i] for x in sample for i in bottom)
        return num / den

    rng = random.Random(0)
    boots = sorted(ratio(rng.choices(rounds, k=len(rounds))) for _ in range(2000))
    return ratio(rounds), boots[50], boots[1949]


def paired(servers: dict[str, ServerProcess], args: argparse.Namespace) -> None:
    """``off``, ``off'`` and ``1%`` loaded at once each round, ``--conns`` connections each."""
    kinds = ("off", "off'", "1%")
    ratios: dict[str, list[tuple[float, float]]] = {"off'": [], "1%": []}  # (throughput, CPU/request) vs off
    for r in range(args.rounds):
        out: dict[str, tuple[float, float, float, float, float]] = {}

        def load(kind: str, out: dict[str, tuple[float, float, float, float, float]] = out) -> None:
            out[kind] = measure(servers[kind], args.conns, args.duration)

        threads = [threading.Thread(target=load, args=(k,)) for k in kinds]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for k in ratios:
            ratios[k].append((out[k][0] / out["off"][0], (out[k][2] + out[k][4]) / out["off"][2]))
        print(
            f"round {r + 1}: "
            + ", ".join(f"{k} {out[k][0]:,.0f} req/s {out[k][2] + out[k][4]:.1f} us CPU/request" for k in kinds)
            + "; vs off: "
            + ", ".join(f"{k} {ratios[k][-1][0]:.3f}x req/s {ratios[k][-1][1]:.3f}x CPU" for k in ratios)
        )
    lines = [
        f"| vs off, same rounds | throughput: median of {args.rounds} | best | worst | "
        "CPU us/request (serving + exporter process): median | best | worst |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, v in ratios.items():
        thr, cpu = [x[0] for x in v], [x[1] for x in v]
        lines.append(
            f"| {k} | {statistics.median(thr):.3f} | {max(thr):.3f} | {min(thr):.3f} | "
            f"{statistics.median(cpu):.3f} | {min(cpu):.3f} | {max(cpu):.3f} |"
        )
    print("\n".join(lines))
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
