"""The load generator behind ``kubeinfer bench``: HTTP/1.1 keep-alive load, closed or open loop.

* **closed loop** (``--concurrency N``): N connections, each sends its next request when the last one is answered.
  It measures what a fixed number of clients get.
* **open loop** (``--rate R``): requests start on a fixed schedule (Poisson arrivals by default) whatever the
  server does, and latency is measured from the scheduled start, so a stalled server shows as latency instead of
  silently slowing the client down (coordinated omission).

It runs in its own process (``run_in_process``) so that the client's work is never counted as the server's, and
speaks raw HTTP/1.1 over asyncio protocols with httptools' C parser: a general-purpose client would cost several
times more CPU per request than the server under test on a 2-core machine. ``run_wrk`` drives ``wrk`` instead for
closed loops (the least client CPU per request).

Both engines return the same ``LoadResult``: ``statuses`` counts answers by HTTP status code (``"200"``, ``"400"``)
and transport failures by stage, with the same four kinds whichever engine ran (wrk's own error classes):
``"error:connect"`` (the connection could not be opened), ``"error:read"`` (closed or garbled before the answer),
``"error:write"`` (the request could not be sent) and ``"error:timeout"`` (no answer within the timeout).
An error is any answer outside 2xx or any transport failure; ``error_rate`` is errors over requests.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import httptools
import numpy as np

__all__ = ["ERROR_KINDS", "LoadResult", "LoadSpec", "error_key", "run_in_process", "run_load", "run_wrk"]

ERROR_KINDS: Final = ("connect", "read", "write", "timeout")
"""The transport failures both engines count, as ``statuses`` keys ``error:<kind>``."""


def error_key(kind: str) -> str:
    """The ``statuses`` key of a transport failure of this kind."""
    if kind not in ERROR_KINDS:
        raise ValueError(f"transport error kind {kind!r} is not one of {', '.join(ERROR_KINDS)}")
    return f"error:{kind}"


@dataclass(frozen=True, slots=True)
class LoadSpec:
    url: str
    body: bytes = b""
    method: str = "POST"
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)
    concurrency: int = 1
    rate: float | None = None  # requests/s: open loop; None: closed loop
    duration: float = 10.0
    warmup: float = 1.0
    timeout: float = 30.0
    max_connections: int = 1024
    poisson: bool = True
    seed: int = 0


@dataclass(slots=True)
class LoadResult:
    """One measured run; ``to_json`` is the ``kubeinfer bench -o json`` document, the same keys for both engines."""

    engine: str
    """``python`` (the built-in client) or ``wrk``."""
    mode: str
    """``closed`` (fixed concurrency) or ``open`` (fixed arrival rate)."""
    concurrency: int | None
    """Closed loop: the clients; open loop: None (connections open as the arrivals need them)."""
    rate: float | None
    """Open loop: the arrival rate in requests/s; closed loop: None."""
    duration: float
    requests: int
    """Requests answered or failed while measuring: ``ok + errors``."""
    ok: int
    errors: int
    statuses: dict[str, int]
    """Counts by HTTP status code (``"200"``) and transport failure (``"error:connect"``, see ``ERROR_KINDS``)."""
    throughput: float
    latency_ms: dict[str, float]
    late: int = 0
    """Open loop: arrivals not sent because ``max_connections`` requests were already outstanding."""
    per_second: list[float] = field(default_factory=list)
    """Successful answers in each measured second (python engine; wrk reports none)."""

    @property
    def error_rate(self) -> float:
        """Errors over requests; 0 when nothing was sent."""
        return self.errors / self.requests if self.requests else 0.0

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["error_rate"] = self.error_rate
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> LoadResult:
        return cls(**{k: v for k, v in doc.items() if k != "error_rate"})


class _Conn(asyncio.Protocol):
    __slots__ = ("_done", "_parser", "_status", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._done: asyncio.Future[int] | None = None
        self._status = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # pragma: no cover - never asked for
            pass
        except httptools.HttpParserError as e:
            if self._done is not None and not self._done.done():
                self._done.set_exception(ConnectionError(f"bad HTTP response: {e}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._done is not None and not self._done.done():
            self._done.set_exception(ConnectionError("connection closed"))

    def on_message_complete(self) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(self._parser.get_status_code())

    def request(self, payload: bytes) -> asyncio.Future[int]:
        assert self.transport is not None
        self._done = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        return self._done

    @property
    def alive(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()


class _Run:
    def __init__(self, spec: LoadSpec, progress: Callable[[float, int, int], None] | None) -> None:
        u = urlsplit(spec.url)
        if u.scheme != "http" or not u.hostname:
            raise ValueError(f"URL {spec.url!r} must be http://host:port/path")
        self.host, self.port = u.hostname, u.port or 80
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        head = [f"{spec.method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        head += [f"{k}: {v}" for k, v in spec.headers]
        if spec.method in ("POST", "PUT"):
            head.append(f"Content-Length: {len(spec.body)}")
        self.payload = ("\r\n".join(head) + "\r\n\r\n").encode() + spec.body
        self.spec = spec
        self.progress = progress
        self.lat: list[float] = []
        self.statuses: dict[str, int] = {}
        self.ok = 0
        self.errors = 0
        self.late = 0
        self.measuring = False
        self.started_at = 0.0
        self.buckets: dict[int, int] = {}

    async def connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(_Conn, self.host, self.port)
        return proto

    async def one(self, conn: _Conn | None, t0: float) -> _Conn | None:
        stage = "write"
        status = 0
        try:
            if conn is None or not conn.alive:
                stage = "connect"
                conn = await self.connect()
                stage = "write"
            answer = conn.request(self.payload)
            stage = "read"
            status = await asyncio.wait_for(answer, self.spec.timeout)
            key = str(status)
        except TimeoutError:
            key = error_key("timeout")
        except (OSError, ConnectionError):
            key = error_key(stage)
        if not status and conn is not None:
            # A connection that failed or timed out may still answer later: never reuse it.
            if conn.transport is not None:
                conn.transport.close()
            conn = None
        now = time.perf_counter()
        if self.measuring:
            self.statuses[key] = self.statuses.get(key, 0) + 1
            if 200 <= status < 300:
                self.ok += 1
                self.lat.append(now - t0)
                sec = int(now - self.started_at)
                self.buckets[sec] = self.buckets.get(sec, 0) + 1
            else:
                self.errors += 1
        return conn

    async def closed(self, stop_at: float) -> None:
        async def worker() -> None:
            conn: _Conn | None = None
            while time.perf_counter() < stop_at:
                conn = await self.one(conn, time.perf_counter())
                if conn is None:
                    await asyncio.sleep(0.001)  # connection refused: do not spin

        await asyncio.gather(*(worker() for _ in range(self.spec.concurrency)))

    async def open(self, stop_at: float) -> None:
        assert self.spec.rate is not None
        rng = random.Random(self.spec.seed)
        idle: list[_Conn] = []
        busy = 0
        tasks: set[asyncio.Task[None]] = set()

        async def fire(t0: float) -> None:
            nonlocal busy
            conn = idle.pop() if idle else None
            busy += 1
            try:
                conn = await self.one(conn, t0)
            finally:
                busy -= 1
            if conn is not None:
                idle.append(conn)

        t = time.perf_counter()
        while t < stop_at:
            gap = rng.expovariate(self.spec.rate) if self.spec.poisson else 1.0 / self.spec.rate
            t += gap
            delay = t - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if busy >= self.spec.max_connections:
                if self.measuring:
                    self.late += 1
                continue
            task = asyncio.create_task(fire(t))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=self.spec.timeout)

    async def main(self) -> LoadResult:
        spec = self.spec
        t_start = time.perf_counter()
        warm_end = t_start + spec.warmup
        stop_at = warm_end + spec.duration

        async def flip() -> None:
            await asyncio.sleep(max(0.0, warm_end - time.perf_counter()))
            self.measuring = True
            self.started_at = time.perf_counter()
            while time.perf_counter() < stop_at:
                await asyncio.sleep(1.0)
                if self.progress is not None:
                    self.progress(time.perf_counter() - self.started_at, self.ok, self.errors)

        ticker = asyncio.create_task(flip())
        await (self.open(stop_at) if spec.rate else self.closed(stop_at))
        ticker.cancel()
        elapsed = min(spec.duration, time.perf_counter() - (self.started_at or warm_end))
        lat = np.array(self.lat) * 1000.0 if self.lat else np.zeros(1)
        pct = {f"p{q}": float(np.percentile(lat, q)) for q in (50, 90, 99, 99.9)}
        pct["mean"] = float(lat.mean())
        pct["max"] = float(lat.max())
        per_sec = [float(self.buckets.get(i, 0)) for i in range(int(spec.duration))]
        return LoadResult(
            engine="python",
            mode="open" if spec.rate else "closed",
            concurrency=None if spec.rate else spec.concurrency,
            rate=spec.rate,
            duration=elapsed,
            requests=self.ok + self.errors,
            ok=self.ok,
            errors=self.errors,
            statuses=dict(sorted(self.statuses.items())),
            throughput=self.ok / elapsed if elapsed > 0 else 0.0,
            latency_ms=pct,
            late=self.late,
            per_second=per_sec,
        )


def run_load(spec: LoadSpec, progress: Callable[[float, int, int], None] | None = None) -> LoadResult:
    """Run the load in this process (on uvloop when available)."""
    run = _Run(spec, progress)
    try:
        import uvloop

        return uvloop.run(run.main())
    except ImportError:  # pragma: no cover
        return asyncio.run(run.main())


def _child(spec: LoadSpec, conn: Any) -> None:
    def progress(t: float, ok: int, errors: int) -> None:
        conn.send(("progress", t, ok, errors))

    try:
        conn.send(("result", run_load(spec, progress).to_json()))
    except Exception as e:  # reported to the parent, which prints it
        conn.send(("error", f"{type(e).__name__}: {e}"))
    finally:
        conn.close()


def run_in_process(spec: LoadSpec, progress: Callable[[float, int, int], None] | None = None) -> LoadResult:
    """Run the load in a child process, so its CPU is never the measured server's."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(spec, child), daemon=True)
    proc.start()
    child.close()
    try:
        while True:
            if not parent.poll(spec.warmup + spec.duration + spec.timeout + 30):
                raise TimeoutError("load generator did not answer")
            msg = parent.recv()
            if msg[0] == "progress" and progress is not None:
                progress(msg[1], msg[2], msg[3])
            elif msg[0] == "result":
                return LoadResult.from_json(msg[1])
            elif msg[0] == "error":
                raise RuntimeError(msg[1])
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.kill()


_WRK_LUA = """
wrk.method = "{method}"
local f = io.open("{body}", "rb")
wrk.body = f:read("*all")
f:close()
{headers}
-- Answers by status code, counted in each thread's Lua state and gathered in done (about 2% of wrk's throughput).
local threads = {{}}
setup = function(thread) table.insert(threads, thread) end
init = function(args) statuses = {{}} end
response = function(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
done = function(summary, latency, requests)
  local e = summary.errors
  local codes = {{}}
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("statuses")) do table.insert(codes, string.format('"%d":%d', code, n)) end
  end
  io.write(string.format(
    'KUBEINFER_WRK {{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,'
    .. '"p50":%f,"p90":%f,"p99":%f,"p999":%f,"mean":%f,"max":%f,"codes":{{%s}}}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.mean, latency.max, table.concat(codes, ",")))
end
"""


def wrk_available() -> bool:
    import shutil

    return shutil.which("wrk") is not None


def run_wrk(spec: LoadSpec) -> LoadResult:
    """Closed-loop load with ``wrk`` (C, one thread): the client whose figures the benchmarks quote, as it costs the
    machine the least CPU per request. ``spec.warmup`` runs as a separate, discarded wrk run."""
    import json
    import subprocess
    import tempfile
    from pathlib import Path

    if spec.rate is not None:
        raise ValueError("wrk runs closed loops only; use the python engine for --rate")
    with tempfile.TemporaryDirectory(prefix="kubeinfer-wrk-") as tmp:
        body = Path(tmp) / "body"
        body.write_bytes(spec.body)
        headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in spec.headers)
        script = Path(tmp) / "load.lua"
        script.write_text(_WRK_LUA.format(method=spec.method, body=body, headers=headers))
        base = ["wrk", "-t1", f"-c{spec.concurrency}", f"--timeout={max(1, int(spec.timeout))}s", "-s", str(script)]
        if spec.warmup > 0:
            subprocess.run([*base, f"-d{max(1, round(spec.warmup))}s", spec.url], capture_output=True, check=False)
        done = subprocess.run(
            [*base, f"-d{max(1, round(spec.duration))}s", spec.url], capture_output=True, text=True, check=False
        )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("KUBEINFER_WRK ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {done.stderr.strip() or done.stdout.strip()}")
    d = json.loads(line.removeprefix("KUBEINFER_WRK "))
    secs = d["duration_us"] / 1e6
    statuses: dict[str, int] = {str(code): n for code, n in d["codes"].items()}
    statuses.update({error_key(kind): d[kind] for kind in ERROR_KINDS if d[kind]})
    ok = sum(n for code, n in d["codes"].items() if 200 <= int(code) < 300)
    errors = sum(statuses.values()) - ok
    return LoadResult(
        engine="wrk",
        mode="closed",
        concurrency=spec.concurrency,
        rate=None,
        duration=secs,
        requests=ok + errors,
        ok=ok,
        errors=errors,
        statuses=dict(sorted(statuses.items())),
        throughput=ok / secs if secs else 0.0,
        latency_ms={
            "p50": d["p50"] / 1000,
            "p90": d["p90"] / 1000,
            "p99": d["p99"] / 1000,
            "p99.9": d["p999"] / 1000,
            "mean": d["mean"] / 1000,
            "max": d["max"] / 1000,
        },
    )
