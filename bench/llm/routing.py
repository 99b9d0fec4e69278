"""Request-count against token-aware balancing for a generative service: two replicas behind ``kubeinfer up``.

    .venv/bin/python bench/llm/routing.py [--requests 120] [--rate 6] [--repeats 3]

Two platforms of ``examples/tiny-llm`` (its model built on first use) run side by side, each with two replicas
(``maxNumSeqs`` 8, so that a replica holding too many long generations makes new requests wait): one with
``spec.routing.balance: requests`` (power of two choices on least outstanding requests, what every service had) and
one with ``balance: tokens`` (the same on least outstanding tokens: prompt estimate plus ``max_tokens``).

The workload is a window of the public Azure LLM inference trace (conversation service, 2023;
``/work/shared/data/azure_llm_inference_2023_conv.csv``, its ``ContextTokens`` and ``GeneratedTokens`` columns and its
arrival times, compressed to ``--rate`` requests per second), scaled to the tiny model's 512-token context: a request
asks for ``min(GeneratedTokens, 400)`` tokens (``ignore_eos``, so it generates exactly that: the trace's mix of short
answers and 400-token ones) after a prompt of ``min(ContextTokens / 32, 32)`` words (about 80 tokens at most). Every request is a streaming
completion sent open-loop at its arrival time. Per run: time to first token (client side, request sent to the first
event with text) p50 and p99, and generated tokens/s (all tokens over first send to last end). Each repeat replays
the same window (``--seed``) against both platforms, one after the other (the order alternates); the figures are
medians of ``--repeats``.

Writes the "Routing" section of bench/llm/RESULTS.md (between its markers, the rest of the file kept) and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from run import _one  # one streaming completion, measured as bench/llm/run.py measures it

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "tiny-llm"
TRACE = ROOT.parent / "shared" / "data" / "azure_llm_inference_2023_conv.csv"
BEGIN, END = "<!-- routing:begin -->", "<!-- routing:end -->"
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "the",
    "lazy",
    "dog",
    "a",
    "model",
    "server",
    "answers",
    "requests",
    "for",
    "generated",
    "text",
]
POLICIES = ("requests", "tokens")


def _spec(folder: Path, name: str, balance: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\n"
        f"metadata: {{name: {name}}}\n"
        f"spec:\n  model: {{format: llm, uri: '{EXAMPLE / 'model'}', "
        "args: {maxNumSeqs: 8, maxNumBatchedTokens: 2048, intraOpThreads: 1}}\n"
        "  autoscaling: {policy: none}\n  replicas: 2\n"
        f"  routing: {{balance: {balance}}}\n"
        "  server: {grpcPort: null, limits: {requestTimeoutMs: 600000}}\n"
    )
    return path


def load_trace(path: Path) -> list[tuple[float, int, int]]:
    """(arrival seconds from the first, context tokens, generated tokens) of every row."""
    rows = []
    with path.open() as f:
        for r in csv.DictReader(f):
            t = datetime.fromisoformat(r["TIMESTAMP"][:26]).timestamp()
            rows.append((t, int(r["ContextTokens"]), int(r["GeneratedTokens"])))
    t0 = rows[0][0]
    return [(t - t0, c, g) for t, c, g in rows]


def workload(trace: list[tuple[float, int, int]], n: int, rate: float, seed: int) -> list[tuple[float, str, int]]:
    """A window of ``n`` consecutive requests, arrivals compressed to ``rate`` per second: (at, prompt, max_tokens)."""
    rng = random.Random(seed)
    start = rng.randrange(len(trace) - n)
    window = trace[start : start + n]
    span = window[-1][0] - window[0][0]
    scale = (n / rate) / span if span > 0 else 0.0
    out = []
    for t, ctx, gen in window:
        words = max(1, min(32, ctx // 32))
        prompt = " ".join(rng.choice(WORDS) for _ in range(words))
        out.append(((t - window[0][0]) * scale, prompt, max(1, min(gen, 400))))
    return out


async def replay(url: str, reqs: list[tuple[float, str, int]]) -> dict[str, float]:
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=600)
    ) as session:
        t0 = time.perf_counter()

        async def at(offset: float, prompt: str, n: int) -> tuple[float, int, float]:
            await asyncio.sleep(max(0.0, t0 + offset - time.perf_counter()))
            return await _one(session, url, prompt, n)

        results = await asyncio.gather(*(at(*r) for r in reqs))
    ttfts = [r[0] for r in results]
    wall = max(r[2] for r in results) - t0
    return {
        "ttft_p50": _q(ttfts, 0.5),
        "ttft_p99": _q(ttfts, 0.99),
        "tokens_per_s": sum(r[1] for r in results) / wall,
    }


def _q(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Up:
    """``kubeinfer up -d`` of one spec in a state folder of its own; ``down`` on exit."""

    def __init__(self, spec: Path, name: str, home: Path) -> None:
        self.spec, self.name, self.home = spec, name, home
        self.env = {**os.environ, "KUBEINFER_HOME": str(home), "KUBEINFER_TRY_TIMEOUT": "600"}

    def __enter__(self) -> str:
        cmd = [sys.executable, "-m", "kubeinfer", "up", str(self.spec), "-d", "--port", "0", "--no-grpc"]
        subprocess.run([*cmd, "--timeout", "300"], env=self.env, check=True, capture_output=True)
        sys.path.insert(0, str(ROOT / "src"))
        from kubeinfer.local.control import ControlClient

        status = ControlClient(self.name, self.home / self.name).call("GET", "/v1/status")
        return f"{status['endpoint']['http']}/v1/completions"

    def __exit__(self, *exc: object) -> None:
        subprocess.run(
            [sys.executable, "-m", "kubeinfer", "down", self.name], env=self.env, capture_output=True, timeout=120
        )


def _run(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def section(args: argparse.Namespace, runs: dict[str, list[dict[str, float]]], load: float) -> str:
    med = {p: {k: statistics.median(r[k] for r in runs[p]) for k in runs[p][0]} for p in POLICIES}
    lines = [
        BEGIN,
        "# Routing: request counts vs tokens",
        "",
        "`bench/llm/routing.py`: two `kubeinfer up` platforms of the tiny example model, two replicas each "
        "(`maxNumSeqs` 8), one balancing requests (power of two choices on least outstanding requests) and one "
        "balancing tokens (the same on least outstanding tokens: prompt estimate plus `max_tokens`). Workload: "
        f"{args.requests} streaming completions per run from a window of the Azure LLM inference trace 2023 "
        "(conversation; its arrival times compressed to "
        f"{args.rate:g} requests/s, `GeneratedTokens` capped at 400 as `max_tokens` with `ignore_eos`, prompts of "
        "`ContextTokens`/32 words, up to 32), sent open-loop; each repeat replays the same window "
        f"(seed {args.seed}) against both, alternating which goes first. "
        f"Medians of {args.repeats} runs. {platform.machine()}, {os.cpu_count()} CPUs shared by the four replicas, "
        f"the routers and the client; load average {load:.1f} at the end.",
        "",
        "| balance | TTFT p50 | TTFT p99 | tokens/s |",
        "|---|---:|---:|---:|",
    ]
    for p in POLICIES:
        m = med[p]
        lines.append(
            f"| {p} | {m['ttft_p50'] * 1000:.0f} ms | {m['ttft_p99'] * 1000:.0f} ms | {m['tokens_per_s']:.0f} |"
        )
    lines += ["", "Per run (TTFT p50 / p99 ms, tokens/s):", ""]
    for p in POLICIES:
        per = "; ".join(
            f"{r['ttft_p50'] * 1000:.0f} / {r['ttft_p99'] * 1000:.0f}, {r['tokens_per_s']:.0f}" for r in runs[p]
        )
        lines.append(f"- {p}: {per}")
    lines += ["", END]
    return "\n".join(lines) + "\n"


def write_section(out: Path, text: str) -> None:
    old = out.read_text() if out.exists() else ""
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        new = head + text + (("\n" + tail) if tail else "")
    else:
        new = old.rstrip("\n") + ("\n\n" if old else "") + text
    out.write_text(new)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=120, help="requests per run")
    ap.add_argument("--rate", type=float, default=6.0, help="arrivals per second (the trace's, compressed)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0, help="which window of the trace")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = ap.parse_args()
    if not (EXAMPLE / "model" / "config.json").exists():
        subprocess.run([sys.executable, str(EXAMPLE / "build.py")], check=True)
    trace = load_trace(TRACE)
    runs: dict[str, list[dict[str, float]]] = {p: [] for p in POLICIES}
    with tempfile.TemporaryDirectory(prefix="ki-route-") as tmp:
        folder = Path(tmp)
        ups = {p: Up(_spec(folder, f"route-{p}", p), f"route-{p}", folder / "home") for p in POLICIES}
        urls = {p: ups[p].__enter__() for p in POLICIES}
        try:
            for p in POLICIES:  # warm-up: both replicas of each platform answer once
                _run(replay(urls[p], workload(trace, 8, 8.0, 999)))
            reqs = workload(trace, args.requests, args.rate, args.seed)
            for rep in range(args.repeats):
                for p in POLICIES if rep % 2 == 0 else reversed(POLICIES):
                    r = _run(replay(urls[p], reqs))
                    runs[p].append(r)
                    print(f"repeat {rep + 1} {p}: {json.dumps({k: round(v, 4) for k, v in r.items()})}", flush=True)
        finally:
            for p in POLICIES:
                ups[p].__exit__()
    text = section(args, runs, os.getloadavg()[0])
    write_section(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
