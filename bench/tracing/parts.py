"""Tracing's cost per request, part by part, measured in one process where a shared machine's noise is small.

    .venv/bin/python bench/tracing/parts.py [--requests 20000] [--repeats 7]

``run.py`` measures whole replicas under wrk; on a machine shared with other work its rounds move by more than the
few percent at stake at 1% sampling. This measures the parts instead, each as CPU time (``time.process_time``: all
threads of this process, the span sender included; the exporter process's from ``/proc``):

* ``hooks``: what tracing adds to an unsampled request of the direct REST path, the hooks called as ``http.py`` and
  the batcher call them (``direct_submit``, ``current``, ``batch``, ``direct_end``), tracing on at ratio 0;
* ``sampled``: the same with every request sampled (ratio 1): its request span and ``queue``, ``batch``, ``model``,
  ``encode`` spans made and handed to the sender thread, which sends them to the exporter process;
* ``exporter``: the exporter process's CPU per span, from receiving to OTLP/gRPC export to a receiver (``run.py``'s,
  in a process of its own);
* ``encoding``: the exporter process's encoding alone, side by side in this process on the same records (those the
  hooks above made): ``trace_export.Encoder`` (OTLP messages built from the records) against the SDK's way (each
  record rebuilt as a ``ReadableSpan`` by ``trace_export._builder``, then ``encode_spans``), both serialized.

From these, the CPU a request costs at ratio ``r`` is ``hooks + r * (sampled - hooks) + r * 5 * exporter``, printed
for 1% and 100% (``hooks``: the interleaved measurement, whose traced and untraced loops run back to back). Medians
over ``--repeats``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench" / "tracing"))

from run import Sink, _thread_cpu, env  # noqa: E402

from kubeinfer.server import tracing  # noqa: E402

SPANS = 5  # per sampled request on the direct REST path: request, queue, batch, model, encode
SLOT = SimpleNamespace(name="tabular64", version="1")


def one_request(traced: bool = True) -> None:
    """A direct REST request's tracing hooks, in the order ``http.py`` and the batcher call them (``traced`` False:
    the same stand-in objects and calls without the hooks, the baseline subtracted)."""
    cycle = SimpleNamespace(
        headers={b"host": b"x", b"content-type": b"application/json"},
        url=b"/v2/models/tabular64/infer",
        start=time.perf_counter(),
        span=None,
    )
    item = SimpleNamespace(span=None, enqueued=time.monotonic(), req=SimpleNamespace(rows=1))
    items, results = [item], [None]  # the batcher's, whether tracing is on or not

    def submit() -> None:
        if traced:
            item.span = tracing.current()

    if not traced:
        submit()
        time.monotonic()
        return
    tracing.direct_submit(cycle, submit)
    now = time.monotonic()
    tracing.batch("tabular64", items, results, now, 0.0001, (now, 0.00005), True)
    if cycle.span is not None:
        tracing.encode(cycle.span, lambda: None)
    tracing.direct_end(cycle, SLOT, 200)


def per_request(ratio: str, endpoint: str, n: int) -> tuple[float, float]:
    """CPU us per request in this process (hooks, spans, sender thread), and the exporter process's CPU us per span
    (0 when nothing is sampled)."""
    settings = {**env("100%", endpoint), "OTEL_TRACES_SAMPLER_ARG": ratio, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    settings["OTEL_BSP_MAX_QUEUE_SIZE"] = str(4 * n * SPANS)  # this measures cost, not drops
    assert tracing.setup(settings, service="bench", component="replica")
    exporter: Any = tracing._exporter
    try:
        for _ in range(200):  # warm-up
            one_request()
        while tracing.span_counts()[0] < (200 * SPANS if ratio != "0" else 0):
            time.sleep(0.05)
        base = tracing.span_counts()[0]
        kid0 = child_cpu(exporter.proc.pid)
        t0 = time.process_time()
        for _ in range(n):
            one_request()
        want = base + (n * SPANS if ratio != "0" else 0)
        while tracing.span_counts()[0] < want:  # sent and exported: the sender's work is in process_time
            time.sleep(0.01)
        cpu = time.process_time() - t0
        kid = child_cpu(exporter.proc.pid) - kid0
        if tracing.span_counts()[1]:
            raise RuntimeError(f"spans dropped: {tracing.span_counts()}")
    finally:
        tracing.shutdown()
    spans = want - base
    return cpu / n * 1e6, (kid / spans * 1e6 if spans else 0.0)


def records(endpoint: str, n: int) -> list[tuple[Any, ...]]:
    """The records ``n`` sampled requests make (taken from the queue before they are sent)."""
    settings = {**env("100%", endpoint), "OTEL_BSP_SCHEDULE_DELAY": "600000"}
    settings["OTEL_BSP_MAX_QUEUE_SIZE"] = settings["OTEL_BSP_MAX_EXPORT_BATCH_SIZE"] = str(2 * n * SPANS)
    assert tracing.setup(settings, service="bench", component="replica")
    try:
        for _ in range(n):
            one_request()
        exporter: Any = tracing._exporter
        out = list(exporter.queue)
        exporter.queue.clear()
    finally:
        tracing.shutdown()
    return out


def encoding(batch: list[tuple[Any, ...]], rounds: int) -> tuple[float, float]:
    """CPU us per span to encode and serialize ``batch``: trace_export.Encoder, and the SDK's encoder on the
    ReadableSpans rebuilt from the records (as the exporter process did before)."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from kubeinfer.server.trace_export import Encoder, _builder

    config = {"resource": {"service.name": "bench", "kubeinfer.component": "replica"}, "scope": ["kubeinfer", "0"]}
    encoder, build = Encoder(config), _builder(config)
    t0 = time.process_time()
    for _ in range(rounds):
        encoder(batch).SerializeToString()
    direct = time.process_time() - t0
    t0 = time.process_time()
    for _ in range(rounds):
        encode_spans([build(r) for r in batch]).SerializeToString()
    sdk = time.process_time() - t0
    return direct / rounds / len(batch) * 1e6, sdk / rounds / len(batch) * 1e6


def child_cpu(pid: int) -> float:
    """Seconds on a CPU of a process's threads (run.py's schedstat reading: nanoseconds, not 10 ms ticks)."""
    return sum(_thread_cpu(task) for task in Path(f"/proc/{pid}/task").iterdir())


def empty(n: int) -> float:
    """CPU us per iteration of the same loop without the hooks (the stand-in objects' own cost)."""
    t0 = time.process_time()
    for _ in range(n):
        one_request(traced=False)
    return (time.process_time() - t0) / n * 1e6


def hooks_interleaved(endpoint: str, n: int, repeats: int) -> list[float]:
    """The unsampled hooks' cost again, each repeat's traced loop and untraced loop run back to back (tracing on at
    ratio 0 throughout): less moved by a neighbour's load than ``hooks``, whose baseline is taken apart from it."""
    settings = {**env("100%", endpoint), "OTEL_TRACES_SAMPLER_ARG": "0"}
    assert tracing.setup(settings, service="bench", component="replica")
    out = []
    try:
        for _ in range(repeats):
            t0 = time.process_time()
            for _ in range(n):
                one_request()
            t1 = time.process_time()
            for _ in range(n):
                one_request(traced=False)
            t2 = time.process_time()
            out.append(((t1 - t0) - (t2 - t1)) / n * 1e6)
    finally:
        tracing.shutdown()
    return out


def sink_process() -> tuple[subprocess.Popen[str], str]:
    """The OTLP receiver (run.py's Sink) in a process of its own, so that its CPU is not this process's."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--sink"], stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, f"http://127.0.0.1:{int(proc.stdout.readline())}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sink:
        sink = Sink()
        print(sink.port, flush=True)
        sys.stdin.read()  # until the parent closes it
        print(f"OTLP received: {sink.exports} export requests, {sink.bytes / 1e6:.1f} MB", flush=True)
        return
    proc, endpoint = sink_process()
    rows: dict[str, list[float]] = {
        "loop": [],
        "hooks": [],
        "sampled": [],
        "exporter": [],
        "encoder": [],
        "sdk": [],
        "ratio": [],
    }
    batch = records(endpoint, 512 // SPANS + 1)[:512]  # one export batch (OTEL_BSP_MAX_EXPORT_BATCH_SIZE's default)
    for r in range(args.repeats):
        direct, sdk = encoding(batch, 10)
        rows["encoder"].append(direct)
        rows["sdk"].append(sdk)
        rows["ratio"].append(direct / sdk)
        rows["loop"].append(empty(args.requests))
        rows["hooks"].append(per_request("0", endpoint, args.requests)[0] - rows["loop"][-1])
        sampled, exporter = per_request("1", endpoint, args.requests // 10)
        rows["sampled"].append(sampled - rows["loop"][-1])
        rows["exporter"].append(exporter)
        print(
            f"repeat {r + 1}: hooks {rows['hooks'][-1]:.2f} us/request, sampled {rows['sampled'][-1]:.1f} "
            f"us/request, exporter process {rows['exporter'][-1]:.1f} us/span; encoding {direct:.1f} us/span (the SDK's "
            f"way {sdk:.1f})",
            flush=True,
        )
    rows["hooks, interleaved"] = hooks_interleaved(endpoint, args.requests, 3 * args.repeats)
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(
        f"| part | median of {args.repeats} | best | worst |\n|---|---|---|---|\n"
        f"| not sampled: the hooks (serving process) | {med['hooks']:.2f} us/request | {min(rows['hooks']):.2f} | "
        f"{max(rows['hooks']):.2f} |\n"
        f"| not sampled: the hooks, traced and untraced loops back to back ({3 * args.repeats} repeats) | "
        f"{med['hooks, interleaved']:.2f} us/request | {min(rows['hooks, interleaved']):.2f} | "
        f"{max(rows['hooks, interleaved']):.2f} |\n"
        f"| sampled: 5 spans made and sent (serving process) | {med['sampled']:.1f} us/request | "
        f"{min(rows['sampled']):.1f} | {max(rows['sampled']):.1f} |\n"
        f"| exporter process | {med['exporter']:.1f} us/span | {min(rows['exporter']):.1f} | "
        f"{max(rows['exporter']):.1f} |\n"
        f"| encoding alone: trace_export.Encoder | {med['encoder']:.1f} us/span | {min(rows['encoder']):.1f} | "
        f"{max(rows['encoder']):.1f} |\n"
        f"| encoding alone: the SDK's (ReadableSpan + encode_spans) | {med['sdk']:.1f} us/span | "
        f"{min(rows['sdk']):.1f} | {max(rows['sdk']):.1f} |\n"
        f"| encoding: Encoder / the SDK's, same repeat | {med['ratio']:.3f} | {min(rows['ratio']):.3f} | "
        f"{max(rows['ratio']):.3f} |"
    )
    for ratio in (0.01, 1.0):
        hooks = med["hooks, interleaved"]
        serving = hooks + ratio * (med["sampled"] - hooks)
        other = ratio * SPANS * med["exporter"]
        print(
            f"at {ratio:.0%}: {serving:.2f} us/request in the serving process + {other:.2f} in the exporter process "
            f"= {serving + other:.2f} us of CPU per request"
        )
    out, _ = proc.communicate()
    print(out.strip())


if __name__ == "__main__":
    main()
