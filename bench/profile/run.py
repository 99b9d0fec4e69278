"""Where a replica's time goes: py-spy samples of ``kubeinfer serve`` under wrk load, summarized.

    .venv/bin/python bench/profile/run.py [--spec examples/tabular64/service.yaml] [--concurrency 64] [--seconds 8]

Starts the example as shipped, drives it with wrk (one thread, closed loop, the peers benchmark's body), records
every thread of the server with py-spy (``--native``: C frames too, so time in the kernel's socket calls and in ONNX
Runtime shows as such) and writes ``bench/profile/RESULTS.md``: the CPU the server spent per request (from /proc),
the share of samples by part of the request path (inclusive), and the hottest functions (own time).
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from kubeinfer.bench.loadgen import LoadSpec, run_wrk  # noqa: E402
from kubeinfer.testing import ServerProcess  # noqa: E402

HERE = Path(__file__).resolve().parent
BODIES = ROOT / "bench" / "peers" / "bodies"

# Parts of the request path, matched against each sample's stack (first match from the leaf up wins).
PARTS = (
    ("socket writes (write/send syscalls)", ("write (libc", "send (libc", "sendmsg (libc", "writev (libc")),
    ("socket reads (read/recv syscalls)", ("read (libc", "recv (libc", "readv (libc")),
    ("model call (ONNX Runtime / model code)", ("onnxruntime", "kubeinfer/runtimes/")),
    ("HTTP parse and direct path (httptools, server/http.py)", ("httptools", "llhttp", "kubeinfer/server/http.py")),
    ("request decoding, validation, response encoding (server/tensors.py, orjson)", ("tensors.py", "orjson")),
    ("batcher", ("batcher.py",)),
    ("metrics", ("metrics.py",)),
    ("app.py (infer helpers shared by both paths) and uvicorn", ("kubeinfer/server/app.py", "uvicorn/")),
)
# A thread parked on a lock or in epoll is not using CPU: those samples are left out of the shares.
IDLE = ("_queue_SimpleQueue_get", "epoll_wait", "epoll_pwait", "sem_wait", "pthread_cond_wait")


def classify(stack: list[str]) -> str:
    if any(k in stack[-1] or k in f for f in stack[-4:] for k in IDLE):
        return "idle"
    for frame in reversed(stack):
        for part, keys in PARTS:
            if any(k in frame for k in keys):
                return part
    return "other (interpreter, event loop, libc)"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", default=str(ROOT / "examples" / "tabular64" / "service.yaml"))
    ap.add_argument("--model", default="tabular64")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    args = ap.parse_args()
    body = (BODIES / f"kubeinfer.{args.model}.json").read_bytes()
    spy = ROOT / ".venv" / "bin" / "py-spy"
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(args.spec, grpc=False) as server:
        url = f"{server.url}/v2/models/{args.model}/infer"
        run_wrk(LoadSpec(url=url, body=body, concurrency=args.concurrency, duration=2, warmup=0, timeout=10))
        proc = psutil.Process(server.pid)
        procs = [proc, *proc.children(recursive=True)]
        raw = Path(tmp) / "profile.txt"
        spec = LoadSpec(url=url, body=body, concurrency=args.concurrency, duration=args.seconds, warmup=0)
        # An unsampled window first: native sampling pauses the process, so the CPU figure comes from this one.
        cpu0 = sum(sum(p.cpu_times()[:2]) for p in procs)
        res = run_wrk(spec)
        cpu1 = sum(sum(p.cpu_times()[:2]) for p in procs)
        spec = LoadSpec(url=url, body=body, concurrency=args.concurrency, duration=args.seconds + 2, warmup=0)
        # The sampled window: load from a thread while py-spy records (its figures are not used).
        t = threading.Thread(target=run_wrk, args=(spec,))
        t.start()
        time.sleep(1)
        cmd = [str(spy), "record", "--pid", str(server.pid), "--duration", str(int(args.seconds)), "--rate", "250"]
        cmd += ["--native", "--format", "raw", "-o", str(raw)]
        subprocess.run(cmd, check=False, capture_output=True)
        t.join()
        if not raw.exists():
            sys.exit("py-spy could not attach (it needs ptrace permission)")
        parts: Counter[str] = Counter()
        own: Counter[str] = Counter()
        total = 0
        for line in raw.read_text().splitlines():
            stack_s, _, count = line.rpartition(" ")
            n = int(count)
            stack = stack_s.split(";")
            part = classify(stack)
            if part == "idle":
                continue
            total += n
            parts[part] += n
            own[stack[-1]] += n
    requests, secs = res.requests, res.duration
    cpu_us = 1e6 * (cpu1 - cpu0) / max(1, requests)
    lines = [
        "# Where a replica's time goes (py-spy)",
        "",
        f"Command: `.venv/bin/python bench/profile/run.py --spec {Path(args.spec).relative_to(ROOT)} "
        f"--model {args.model} --concurrency {args.concurrency} --seconds {args.seconds:g}`",
        "",
        f"Machine: {platform.platform()}, {psutil.cpu_count()} CPUs. Load: wrk c={args.concurrency}, one request "
        f"body of `bench/peers/bodies/kubeinfer.{args.model}.json`; py-spy {args.seconds:g} s at 250 Hz, native "
        "frames included, every thread of the server.",
        "",
        f"Unsampled window of {args.seconds:g} s: {requests / secs:,.0f} req/s, server CPU {cpu_us:.0f} µs per request "
        "(user + system, all threads). The samples come from a second window under the same load (sampling native "
        "stacks pauses the process, which slows it, but the shares of where the time goes hold).",
        "",
        "Shares are of the samples where a thread was running (threads parked on a lock or in epoll left out).",
        "",
        "| part of the request path (inclusive, first match from the leaf) | share of samples |",
        "|---|---:|",
        *[f"| {k} | {100 * v / total:.1f}% |" for k, v in parts.most_common()],
        "",
        "Hottest functions (own time):",
        "",
        "```",
        *[f"{100 * v / total:5.1f}%  {k}" for k, v in own.most_common(25)],
        "```",
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
