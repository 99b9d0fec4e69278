"""kubeinfer's generative serving side by side with LitServe, on the tiny example model, in one sitting.

    .venv/bin/python bench/llm/peers.py --install [--servers kubeinfer,litserve,...] [--streams 16] [--requests 8]
        [--max-tokens 64] [--rounds 3]

Every server serves ``examples/tiny-llm/model`` (built on first use) with Hugging Face ``transformers`` on one PyTorch
thread per model copy, behind OpenAI's ``/v1/chat/completions``:

- ``kubeinfer``: ``kubeinfer serve`` with ``format: llm`` (continuous batching, ``maxNumSeqs`` 32), the spec of
  ``bench/llm/run.py``; ``kubeinfer-ep`` the same with ``engineProcess: true``;
- ``litserve*``: ``bench/llm/litserve_chat.py`` (a ``LitAPI`` with ``OpenAISpec``, streaming, ``model.generate`` with
  a streamer) in its own virtualenv, ``bench/peers/.envs/litserve-llm`` (``--install`` creates it: the CPU wheel of
  ``torch==2.13.0`` first, as ``bench/peers/envs.py`` does, then ``litserve`` and the project's ``transformers``,
  ``tokenizers`` and ``safetensors`` versions, so that both sides run the same model code). The variants are
  LitServe's ways to stream generation (``SERVERS``): one request at a time per worker, with one worker or one per
  CPU (LitServe's advice for CPUs), and its batched streaming loop.

Each round starts each server in turn (the order rotates from round to round), alone on the machine, and:

1. checks the outputs: ``--streams`` concurrent greedy requests, one per stream (the workload's first requests);
   every server's texts must equal the first server's (same weights, same tokenizer, same chat template);
2. idle: 50 streaming requests of 8 tokens one after another (time to first token, TTFT, with nothing else running);
3. loaded: ``--streams`` clients at once, each sending ``--requests`` streaming completions back to back, the same
   workload as ``bench/llm/run.py`` (its prompts; lengths drawn, seeded, between half and one and a half times
   ``--max-tokens``, here fixed per stream and request beforehand so every server gets the same ones; greedy,
   ``ignore_eos``): generated tokens/s over the whole run, TTFT of every request, inter-token latency (the gaps between
   a stream's events that carry text) and the CPU time of the server's processes (psutil, children included).

Figures are the medians of ``--rounds`` rounds. The client (aiohttp, one process) shares the 2 CPUs with the server.
Writes ``bench/llm/PEERS.md`` (``--out``) and ``bench/llm/peers.json`` (``--json``) and prints the report.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import itertools
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil

HERE = Path(__file__).resolve().parent


def _module(name: str, path: Path) -> Any:
    """A bench script as a module (bench/llm and bench/peers are folders of scripts, each with a run.py)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


envs = _module("peer_envs", HERE.parent / "peers" / "envs.py")  # the peers' virtualenvs
llm_run = _module("llm_run", HERE / "run.py")  # the workload and the kubeinfer spec of bench/llm/run.py
EXAMPLE, PROMPTS, ROOT, _q, _run, _spec = (
    llm_run.EXAMPLE,
    llm_run.PROMPTS,
    llm_run.ROOT,
    llm_run._q,
    llm_run._run,
    llm_run._spec,
)

ENV = "litserve-llm"
# the model code must be the same on both sides: the project's versions of these, in the peer's env
SAME_AS_PROJECT = ("transformers", "tokenizers", "safetensors")
envs.VERSIONS.setdefault(ENV, ["litserve", "fastapi", "uvicorn"])
MODEL = "tiny-llm"


@dataclass(frozen=True)
class Server:
    name: str
    what: str  # one line for the report
    litserve: list[str] = field(default_factory=list)  # litserve_chat.py's options; empty: kubeinfer
    engine_process: bool = False  # kubeinfer's model.args.engineProcess


SERVERS = {
    s.name: s
    for s in [
        Server("kubeinfer", "`kubeinfer serve`, `format: llm`: continuous batching, maxNumSeqs 32, 1 PyTorch thread"),
        Server(
            "kubeinfer-ep",
            "the same with `engineProcess: true` (the engine in a process of its own, not a thread of the server's)",
            engine_process=True,
        ),
        Server(
            "litserve",
            "LitServe OpenAISpec, streaming, one request at a time (max_batch_size 1), 1 worker, 1 PyTorch thread",
            ["--workers", "1"],
        ),
        Server(
            "litserve-w2",
            "the same with 2 workers (LitServe's advice on CPUs: a worker per core), 1 PyTorch thread each",
            ["--workers", "2"],
        ),
        Server(
            "litserve-batched",
            "LitServe batched streaming (max_batch_size 16, batch_timeout 10 ms: static batches), 1 worker,"
            " 1 PyTorch thread",
            ["--workers", "1", "--max-batch-size", "16", "--batch-timeout", "0.01"],
        ),
        Server(
            "litserve-batched-zmq",
            "litserve-batched with LitServe's ZeroMQ transport (fast_queue, advised above 100 requests/s)",
            ["--workers", "1", "--max-batch-size", "16", "--batch-timeout", "0.01", "--fast-queue"],
        ),
        Server(
            "litserve-batched-w2",
            "the same with 2 workers (each takes its own batches from the same queue)",
            ["--workers", "2", "--max-batch-size", "16", "--batch-timeout", "0.01"],
        ),
    ]
}

# the sitting's servers unless --servers says otherwise (litserve-batched-w2 was below litserve-batched in every trial)
DEFAULT = ["kubeinfer", "kubeinfer-ep", "litserve", "litserve-w2", "litserve-batched", "litserve-batched-zmq"]


# -- the peer's env ----------------------------------------------------------------------------------------
def install(log: Path) -> tuple[bool, str]:
    """Create the env (when missing) and install torch (CPU wheel), LitServe and the project's transformers."""
    if all(envs.has(ENV, d) for d in ("torch", "litserve", "transformers")):
        return True, "present"
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with log.open("a") as f:
        run = envs.logged(f)
        failed = envs.create_with_torch(ENV, run)
        if failed:
            return False, f"{failed} (see {log})"
        pip = envs.pip_install(ENV)
        if run([*pip, "litserve", *(f"{p}=={version(p)}" for p in SAME_AS_PROJECT)]) != 0:
            return False, f"litserve failed to install (see {log})"
    return True, f"installed in {time.monotonic() - t0:.0f}s"


# -- servers -------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def start(server: Server, folder: Path, log: Path) -> Iterator[tuple[str, int]]:
    """Run one server; yields (base URL, pid of its root process)."""
    if not server.litserve:
        sys.path.insert(0, str(ROOT / "src"))
        from kubeinfer.testing import ServerProcess

        spec = _spec(folder, MODEL, 32, server.engine_process)
        with ServerProcess(spec, grpc=False, start_timeout=120) as proc:
            yield proc.url, proc.pid
        return
    port = _free_port()
    cmd = [str(envs.python(ENV)), str(HERE / "litserve_chat.py"), str(EXAMPLE / "model"), "--port", str(port)]
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*cmd, "--ignore-eos", "--threads", "1", *server.litserve],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its workers and API servers in a process group of their own, stopped together
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{server.name} exited with {proc.returncode}: see {log}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{server.name} was not ready in 120 s: see {log}")
                with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/health", timeout=1) as r:
                    if r.status == 200:
                        break
                time.sleep(0.5)
            yield url, proc.pid
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _cpu_seconds(pid: int) -> float:
    root = psutil.Process(pid)
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


# -- the client --------------------------------------------------------------------------------------------
@dataclass
class Reply:
    ttft: float
    tokens: int
    gaps: list[float]
    tpot: float | None  # time per output token after the first: (last event - first) / (events - 1)
    text: str | None


async def _one(session: aiohttp.ClientSession, url: str, prompt: str, max_tokens: int, keep_text: bool) -> Reply:
    """One streaming chat completion. Only the events that carry text are timed (a byte test; the client shares the
    CPUs with the server), and parsed only with ``keep_text``."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    times: list[float] = []
    parts: list[str] = []
    tokens = 0
    async with session.post(url, json=body) as resp:
        resp.raise_for_status()
        async for line in resp.content:
            if not line.startswith(b"data: {"):
                continue
            i = line.find(b'"content":"')
            if i >= 0 and line[i + 11 : i + 12] != b'"':
                times.append(time.perf_counter())
                if keep_text:
                    parts.extend(c["delta"].get("content") or "" for c in orjson.loads(line[6:])["choices"])
            if b'"usage":{' in line:
                tokens = orjson.loads(line[6:])["usage"]["completion_tokens"]
    ttft = (times[0] if times else time.perf_counter()) - start
    gaps = [b - a for a, b in itertools.pairwise(times)]
    tpot = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else None
    return Reply(ttft, tokens, gaps, tpot, "".join(parts) if keep_text else None)


def plan(streams: int, requests: int, max_tokens: int) -> list[list[tuple[str, int]]]:
    """(prompt, max_tokens) of each stream's requests: bench/llm/run.py's prompts and length range (seeded), drawn
    beforehand so that every server gets the same requests in the same places."""
    lengths = random.Random(0)
    return [
        [
            (PROMPTS[(i + j) % len(PROMPTS)], lengths.randint(max_tokens // 2, max_tokens * 3 // 2))
            for j in range(requests)
        ]
        for i in range(streams)
    ]


async def _load(url: str, work: list[list[tuple[str, int]]], keep_text: bool = False) -> dict[str, Any]:
    replies: dict[tuple[int, int], Reply] = {}

    async def client(i: int) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
            for j, (prompt, n) in enumerate(work[i]):
                replies[i, j] = await _one(session, url, prompt, n, keep_text)

    start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(len(work))))
    wall = time.perf_counter() - start
    ttfts = [r.ttft for r in replies.values()]
    gaps = [g for r in replies.values() for g in r.gaps]
    tpots = [r.tpot for r in replies.values() if r.tpot is not None]
    wrong = sum(r.tokens != work[i][j][1] for (i, j), r in replies.items())
    total = sum(r.tokens for r in replies.values())
    return {
        "tokens_per_s": total / wall,
        "ttft_p50": _q(ttfts, 0.5),
        "ttft_p99": _q(ttfts, 0.99),
        "itl_p50": _q(gaps, 0.5),
        "itl_p99": _q(gaps, 0.99),
        "tpot_p50": _q(tpots, 0.5),
        "tokens": total,
        "wall_s": wall,
        "wrong_lengths": wrong,
        "texts": {f"{i}": r.text for (i, _), r in replies.items()} if keep_text else None,
    }


async def _idle(url: str, requests: int, max_tokens: int) -> dict[str, Any]:
    ttfts = []
    async with aiohttp.ClientSession() as session:
        for j in range(requests):
            ttfts.append((await _one(session, url, PROMPTS[j % len(PROMPTS)], max_tokens, False)).ttft)
    return {"idle_ttft_p50": _q(ttfts, 0.5), "idle_ttft_p99": _q(ttfts, 0.99)}


def measure(url: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    chat = f"{url}/v1/chat/completions"
    work = plan(args.streams, args.requests, args.max_tokens)
    check = _run(_load(chat, [w[:1] for w in work], keep_text=True))  # also the warm-up
    idle = _run(_idle(chat, 50, 8))
    cpu0, t0 = _cpu_seconds(pid), time.perf_counter()
    loaded = _run(_load(chat, work))
    cpu, wall = _cpu_seconds(pid) - cpu0, time.perf_counter() - t0
    del loaded["texts"]
    return {
        **loaded,
        **idle,
        "server_cpu_cores": cpu / wall,
        "server_cpu_ms_per_token": 1000 * cpu / max(1, loaded["tokens"]),
        "load_1m": os.getloadavg()[0],  # the machine's, this run's own server and client included
        "check_texts": check["texts"],
        "check_wrong_lengths": check["wrong_lengths"],
    }


# -- the sitting -------------------------------------------------------------------------------------------
KEYS = [
    "tokens_per_s",
    "ttft_p50",
    "ttft_p99",
    "itl_p50",
    "itl_p99",
    "tpot_p50",
    "idle_ttft_p50",
    "idle_ttft_p99",
    "server_cpu_cores",
    "server_cpu_ms_per_token",
]


def sitting(names: list[str], args: argparse.Namespace) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    logs = ROOT / "bench" / "out" / "llm-peers"
    logs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                with start(SERVERS[name], Path(tmp), logs / f"{name}.log") as (url, pid):
                    result = measure(url, pid, args)
                runs[name].append(result)
                print(
                    f"round {r + 1} {name}: {result['tokens_per_s']:.0f} tokens/s, TTFT p50"
                    f" {result['ttft_p50'] * 1000:.1f} ms p99 {result['ttft_p99'] * 1000:.1f} ms, ITL p50"
                    f" {result['itl_p50'] * 1000:.2f} ms, server CPU {result['server_cpu_cores']:.2f}",
                    flush=True,
                )
    reference = runs[names[0]][0]["check_texts"]
    out: dict[str, Any] = {}
    for name, rs in runs.items():
        same = [r["check_texts"] == reference for r in rs]
        differ = sorted({k for r in rs for k, v in r["check_texts"].items() if v != reference.get(k)}, key=int)
        out[name] = {key: statistics.median(r[key] for r in rs) for key in KEYS} | {
            "outputs_identical": all(same),
            "outputs_differ_streams": differ,
            "wrong_lengths": sum(r["wrong_lengths"] + r["check_wrong_lengths"] for r in rs),
            "runs": [{k: v for k, v in r.items() if k != "check_texts"} for r in rs],
        }
    out["_reference_texts"] = reference
    return out


NOTES = """\
Where the differences come from. One request at a time (litserve, litserve-w2), a sequence decodes alone and fast
(TPOT 2-4 ms) but the other streams wait in LitServe's queue: TTFT is the queue, over a second. Static batches
(litserve-batched) decode up to 16 sequences per `generate` step, but a request that arrives while a batch runs waits for
the batch's longest sequence (TTFT p50 about 0.3 s), and the finished rows of a batch keep being computed until then.
kubeinfer's engine lets sequences join and leave at every step (a joining prompt's first token goes out before the
step's decode pass), and its server spends about 3.4x less CPU per generated token; where LitServe's CPU goes was not
profiled (candidates: `generate`'s per-step work, the streamer's queue, and each token's message from the worker
process to the API process). An ITL p50 near 0 means that events reach the client in bursts (several read at once).

The machine is shared, and the tokens/s ratio depends on how much CPU the others leave: a kubeinfer replica
(`kubeinfer`) is one process whose engine thread and event loop share one interpreter lock (at most about one core),
while LitServe runs an API process and worker processes and so takes a larger share of a contended machine. A
sitting under heavier load (1-minute load average 6 to 9 throughout) measured kubeinfer 1647 tokens/s against 1382
for litserve-batched-zmq (1.19x; server CPU 0.47 against 1.13 cores), with the CPU per token where it is above (0.35
against 0.90 ms). `kubeinfer-ep` (the engine in a process of its own) takes more CPU when it is contended, and is
ahead of `kubeinfer` there. The CPU per token is the figure that holds from one sitting to the next.

Outputs: every round, the 16 concurrent first requests of every server (the same prompts and lengths, greedy) gave
the same texts as kubeinfer's, token counts equal to `max_tokens` (LitServe loads the model with transformers'
default attention, SDPA; kubeinfer with eager attention)."""

RAY = """\
Ray Serve LLM was not run: `ray.serve.llm` serves models through vLLM (or SGLang); it has no `transformers` engine,
so it could not run the same engine, and the vLLM wheels on PyPI are CUDA builds (vLLM on CPU is built from source;
without a GPU its platform detection finds no device). This machine has no GPU."""

LITSERVE = """\
What LitServe offers for streaming generation (litserve {litserve}; read in its documentation and source):
`OpenAISpec` is `/v1/chat/completions` only (no `/v1/completions`), so every server here is driven through chat
completions with the model's chat template. A streaming `predict` is a generator; with `max_batch_size` 1 a worker
runs one request at a time (`StreamingLoop`), and `workers_per_device` adds worker processes (each a copy of the
model; LitServe's docstring advises one per core on CPUs). With `max_batch_size` > 1 and streaming, LitServe's
`BatchedStreamingLoop` hands `predict` up to `max_batch_size` requests collected within `batch_timeout` and sends each
step's list of outputs to their streams; the batch is static: new requests wait until every sequence of the running
batch has ended (here one `model.generate` over the left-padded prompts, to the longest `max_tokens`). LitServe also
ships a `ContinuousBatchingLoop` (`loop=`), which is a scheduling hook: the `LitAPI` must implement `step()` over its
own batch state (KV cache, joining and leaving rows), that is, write the continuous-batching engine itself; it is not
something LitServe does for a `transformers` model, and it is not used here. `ChatCompletionRequest` drops unknown
fields, so `ignore_eos` is a server option of `litserve_chat.py` (`--ignore-eos`), on for every LitServe run here."""


def report(results: dict[str, Any], names: list[str], args: argparse.Namespace, elapsed: float) -> str:
    loads = [x["load_1m"] for n in names for x in results[n]["runs"]]
    v = envs.versions(ENV)
    peers = [n for n in names if SERVERS[n].litserve]
    ours = [n for n in names if not SERVERS[n].litserve]
    lines = [
        "# Generation: kubeinfer beside LitServe",
        "",
        f"`bench/llm/peers.py --streams {args.streams} --requests {args.requests} --max-tokens {args.max_tokens}"
        f" --rounds {args.rounds}`: the tiny example model (examples/tiny-llm: 2-layer Llama, hidden 64, random"
        f" weights) on `transformers` {version('transformers')} / torch {version('torch')} (CPU) in every server;"
        f" litserve {v.get('litserve', '?')} (its env: transformers {v.get('transformers', '?')}, torch"
        f" {v.get('torch', '?')}). {args.streams} concurrent streams x {args.requests} streaming chat completions of"
        f" {args.max_tokens // 2}-{args.max_tokens * 3 // 2} tokens (seeded; greedy; `ignore_eos`); TTFT measured by"
        f" the client (request sent to the first event with text); TPOT: a request's time per output token after the"
        " first ((last event with text - first) / (events - 1)), median over requests; ITL: the gaps between a"
        " stream's events with text as the client reads them (events that arrive together have gaps near 0)."
        f" Medians of {args.rounds} rounds, servers one at a time, their order rotated each round. {platform.machine()},"
        f" {os.cpu_count()} CPUs shared with the client, Python {platform.python_version()}; the sitting took"
        f" {elapsed / 60:.1f} min; 1-minute load average after each run {min(loads):.1f} to {max(loads):.1f} (the"
        " machine is shared; the server and the client make about 2 of it).",
        "",
        "| server | tokens/s | TTFT p50 | TTFT p99 | TPOT p50 | ITL p50 | ITL p99 | TTFT p50 idle | server CPU (cores) |"
        " server CPU ms / token | outputs = kubeinfer's |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for n in names:
        r = results[n]
        same = "yes" if r["outputs_identical"] else f"no (streams {', '.join(r['outputs_differ_streams'])})"
        if r["wrong_lengths"]:
            same += f"; {r['wrong_lengths']} replies of the wrong length"
        lines.append(
            f"| {n} | {r['tokens_per_s']:.0f} | {r['ttft_p50'] * 1000:.1f} ms | {r['ttft_p99'] * 1000:.1f} ms |"
            f" {r['tpot_p50'] * 1000:.2f} ms | {r['itl_p50'] * 1000:.2f} ms | {r['itl_p99'] * 1000:.1f} ms |"
            f" {r['idle_ttft_p50'] * 1000:.1f} ms |"
            f" {r['server_cpu_cores']:.2f} | {r['server_cpu_ms_per_token']:.2f} | {same} |"
        )
    lines.append("")
    if ours and peers:
        best = max(peers, key=lambda n: results[n]["tokens_per_s"])
        bp = results[best]
        for n in ours:
            ki = results[n]
            lines.append(
                f"- tokens/s at {args.streams} streams, {n} / best peer ({best}):"
                f" **{ki['tokens_per_s'] / bp['tokens_per_s']:.2f}x** (target >= 1.5x); TTFT p50"
                f" {ki['ttft_p50'] * 1000:.1f} vs {bp['ttft_p50'] * 1000:.1f} ms, p99 {ki['ttft_p99'] * 1000:.1f} vs"
                f" {bp['ttft_p99'] * 1000:.1f} ms; server CPU per token {ki['server_cpu_ms_per_token']:.2f} vs"
                f" {bp['server_cpu_ms_per_token']:.2f} ms ({bp['server_cpu_ms_per_token'] / ki['server_cpu_ms_per_token']:.1f}x"
                " less)"
            )
    lines += ["", "Servers:", ""] + [f"- {n}: {SERVERS[n].what}" for n in names]
    lines += ["", "Per round (tokens/s; TTFT p50 / p99 ms; load average after the run):", ""]
    for n in names:
        per = "; ".join(
            f"{x['tokens_per_s']:.0f}, {x['ttft_p50'] * 1000:.1f} / {x['ttft_p99'] * 1000:.1f}, {x['load_1m']:.1f}"
            for x in results[n]["runs"]
        )
        lines.append(f"- {n}: {per}")
    lines += ["", NOTES, "", LITSERVE.format(litserve=v.get("litserve", "?")), "", RAY]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default=",".join(DEFAULT), help=f"comma-separated, of {', '.join(SERVERS)}")
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--requests", type=int, default=8, help="requests per stream")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--install", action="store_true", help=f"create bench/peers/.envs/{ENV} when missing")
    ap.add_argument("--out", type=Path, default=HERE / "PEERS.md")
    ap.add_argument("--json", type=Path, default=HERE / "peers.json")
    ap.add_argument("--report", action="store_true", help="rewrite --out from --json (no measuring)")
    args = ap.parse_args()
    if args.report:
        doc = json.loads(args.json.read_text())
        meta = doc["meta"]
        for key in ("streams", "requests", "max_tokens", "rounds"):
            setattr(args, key, meta[key])
        names = meta.get("servers") or [n for n in doc["servers"] if not n.startswith("_")]
        text = report(doc["servers"], names, args, meta["elapsed_s"])
        args.out.write_text(text)
        print(text)
        return 0
    names = [n for n in args.servers.split(",") if n]
    unknown = [n for n in names if n not in SERVERS]
    if unknown:
        ap.error(f"--servers: unknown {', '.join(unknown)}; choose from {', '.join(SERVERS)}")
    if any(SERVERS[n].litserve for n in names):
        if args.install:
            ok, msg = install(ROOT / "bench" / "peers" / "out" / "install" / f"{ENV}.log")
            print(f"{ENV}: {msg}", flush=True)
            if not ok:
                return 1
        elif not envs.has(ENV, "litserve"):
            ap.error(f"LitServe's env bench/peers/.envs/{ENV} is missing: run with --install")
    if not (EXAMPLE / "model" / "config.json").exists():
        subprocess.run([sys.executable, str(EXAMPLE / "build.py")], check=True)
    t0 = time.monotonic()
    results = sitting(names, args)
    meta = {
        "command": " ".join(sys.argv[1:]),
        "servers": names,
        "streams": args.streams,
        "requests": args.requests,
        "max_tokens": args.max_tokens,
        "rounds": args.rounds,
        "elapsed_s": round(time.monotonic() - t0, 1),
        "versions": {"kubeinfer-env": {d: version(d) for d in ("torch", "transformers")}, ENV: envs.versions(ENV)},
    }
    args.json.write_text(json.dumps({"meta": meta, "servers": results}, indent=1) + "\n")
    text = report(results, names, args, meta["elapsed_s"])
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
