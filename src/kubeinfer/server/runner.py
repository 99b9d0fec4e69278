"""Running one replica: load the model, serve HTTP (uvicorn) and gRPC on one event loop, drain on SIGTERM.

With ``server.processes`` > 1 the replica is that many server processes forked from one parent, which binds the
listeners first: they share the HTTP socket (and the Unix socket) and bind the gRPC port with ``SO_REUSEPORT``, so
the kernel spreads connections among them. Each loads its own copy of the model with an equal share of the replica's
CPU threads -- for runtimes that hold the GIL around the model call (tokenizers, pooling) this runs more of the
request path in parallel than threads can. A process beyond the first joins the listeners only once its model is
loaded; ``/metrics`` counts the whole replica (see :mod:`kubeinfer.server.metrics`). The parent forwards SIGTERM and
SIGINT, exits with the children, and if a child dies unexpectedly stops the others and exits 1, so that whatever
supervises the replica (the local controller, the kubelet) restarts it whole.

Shutdown follows what Kubernetes expects of a pod: on SIGTERM readiness turns false at once, requests that are in
flight or queued finish (requests that still arrive meanwhile are served with ``Connection: close``), and once the
server has been idle for a moment, or the grace period (``limits.drainTimeoutSeconds``) ends, the listeners close and
the process exits 0. Signal handling lives here, in the shell, not in the application.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import uvicorn

from kubeinfer.runtimes import create_model
from kubeinfer.server.app import InferenceApp, Limits, ModelSlot, load_slot
from kubeinfer.server.batcher import Batcher
from kubeinfer.server.http import protocol_for
from kubeinfer.server.metrics import Metrics, nvml_sampler
from kubeinfer.server.openapi import openapi_document
from kubeinfer.spec import InferenceService

__all__ = ["build_app", "run", "serve"]

log = logging.getLogger("kubeinfer.server")

# Idle time after SIGTERM before the listeners close: long enough for a request already sent on a kept-alive
# connection to arrive and be served.
QUIET_SECONDS = 0.3


def build_app(svc: InferenceService, base_dir: Path | None) -> tuple[InferenceApp, ModelSlot, ThreadPoolExecutor]:
    spec = svc.spec
    lim = spec.server.limits
    limits = Limits(
        max_body_bytes=lim.max_body_bytes,
        max_concurrency=lim.maxConcurrency,
        request_timeout=lim.requestTimeoutMs / 1000.0,
    )
    metrics = Metrics(gpu_sampler=nvml_sampler())
    app = InferenceApp(limits, metrics, openapi=openapi_document)
    model = create_model(svc, base_dir)
    slot = ModelSlot(model=model, name=svc.model_name, version=spec.model.version)
    app.add(slot)
    executor = ThreadPoolExecutor(max_workers=spec.server.workers + 1, thread_name_prefix="model")
    return app, slot, executor


def _bind(host: str, port: int, what: str, flag: str, *, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise SystemExit(
            f"kubeinfer serve: cannot listen{what} on {host}:{port}: {e.strerror} "
            f"(choose another {flag}, or stop what uses it)"
        ) from None
    return sock


def _listen(host: str, port: int) -> socket.socket:
    sock = _bind(host, port, "", "--port")
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _listen_unix(path: Path) -> socket.socket:
    """A Unix-domain listener (user-only permissions): the local router's path to its replicas, which spares both
    ends the loopback TCP stack on every request."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o600)
    except OSError as e:
        sock.close()
        raise SystemExit(f"kubeinfer serve: cannot listen on {path}: {e.strerror or e}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the runner drains first, then tells it to exit."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(frozen=True)
class Worker:
    """One of a replica's server processes: its index, the listeners its parent bound, the gRPC port its parent
    reserved, and the directory where the processes leave their metrics snapshots for each other."""

    index: int
    count: int
    sockets: list[socket.socket]
    grpc_port: int | None
    state_dir: Path

    SNAPSHOT_SECONDS = 0.5

    def siblings(self) -> list[dict[str, Any]]:
        out = []
        for i in range(self.count):
            if i == self.index:
                continue
            with contextlib.suppress(OSError, orjson.JSONDecodeError):
                out.append(orjson.loads((self.state_dir / f"{i}.json").read_bytes()))
        return out

    async def publish(self, metrics: Metrics) -> None:
        path, tmp = self.state_dir / f"{self.index}.json", self.state_dir / f".{self.index}.json"
        while True:
            with contextlib.suppress(OSError):
                tmp.write_bytes(orjson.dumps(metrics.snapshot()))
                os.replace(tmp, path)
            await asyncio.sleep(self.SNAPSHOT_SECONDS)


async def serve(
    svc: InferenceService, base_dir: Path | None = None, uds: Path | None = None, worker: Worker | None = None
) -> int:
    spec = svc.spec
    app, slot, executor = build_app(svc, base_dir)
    batching = spec.batching
    workers = spec.server.workers

    def make_batcher(s: ModelSlot) -> Batcher:
        assert s.info is not None
        return Batcher(
            s.model,
            s.info,
            executor,
            max_batch_size=batching.maxBatchSize,
            max_delay=batching.maxDelayMs / 1000.0,
            workers=workers,
            max_queue=spec.server.limits.maxQueueSize,
            enabled=batching.enabled,
            on_batch=lambda items, rows, compute, queued: app.metrics.batch(s.name, items, rows, compute, queued),
        )

    host = spec.server.host
    if worker is None:
        sockets = [_listen(host, spec.server.port)]
        if uds is not None:
            sockets.append(_listen_unix(uds))
    else:
        sockets = worker.sockets
        app.metrics.siblings = worker.siblings
    http_port = sockets[0].getsockname()[1]
    config = uvicorn.Config(
        app,
        loop="none",
        http=protocol_for(app),
        lifespan="off",
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        date_header=False,
        timeout_graceful_shutdown=max(1, int(spec.server.limits.drainTimeoutSeconds)),
        backlog=2048,
        timeout_keep_alive=75,
    )
    server = _Server(config)
    grpc_server: Any = None
    grpc_port: int | None = None
    if spec.server.grpcPort is not None:
        from kubeinfer.server.grpc_service import start_grpc

        if worker is None:
            grpc_server, grpc_port = await start_grpc(app, host, spec.server.grpcPort)
        elif worker.grpc_port is not None:
            grpc_server, grpc_port = await start_grpc(app, host, worker.grpc_port, reuse_port=True)

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    loaded = asyncio.Event()

    async def lifecycle() -> None:
        await load_slot(app, slot, make_batcher, executor)
        app.started = slot.ready
        loaded.set()
        if not slot.ready:
            log.error(
                "model failed to load; the server stays up, reports not ready, and says why at /v2/models/%s", slot.name
            )
        await stop.wait()
        app.draining = True
        log.info("draining: readiness is false; finishing in-flight requests")
        deadline = time.monotonic() + spec.server.limits.drainTimeoutSeconds
        idle_since: float | None = None
        while time.monotonic() < deadline:
            now = time.monotonic()
            if app.in_flight == 0 and app.queued == 0:
                idle_since = idle_since or now
                if now - idle_since >= QUIET_SECONDS:
                    break
            else:
                idle_since = None
            await asyncio.sleep(0.02)
        if grpc_server is not None:
            await grpc_server.stop(max(0.0, deadline - time.monotonic()))
        server.should_exit = True

    if worker is None:
        _announce(slot.name, host, http_port, grpc_port, uds)
    task = asyncio.create_task(lifecycle(), name="kubeinfer-lifecycle")
    publisher = None if worker is None else asyncio.create_task(worker.publish(app.metrics), name="kubeinfer-metrics")
    try:
        if worker is not None and worker.index > 0:
            # Join the shared listeners only with the model loaded (the first process answers probes meanwhile); one
            # whose model failed to load never joins, and its siblings serve on.
            waits = [asyncio.ensure_future(loaded.wait()), asyncio.ensure_future(stop.wait())]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
            if not slot.ready or stop.is_set():
                if not slot.ready:
                    log.error("process %d does not join the listeners: its model failed to load", worker.index)
                await stop.wait()
                await task
                return 0
        await server.serve(sockets=sockets)
    finally:
        if publisher is not None:
            publisher.cancel()
        if uds is not None and worker is None:
            with contextlib.suppress(OSError):
                uds.unlink()
        if not task.done():
            task.cancel()
        executor.shutdown(wait=False, cancel_futures=True)
    return 0


def _announce(name: str, host: str, http_port: int, grpc_port: int | None, uds: Path | None) -> None:
    """The lines a supervisor waits for: where the replica listens (the local controller parses the second)."""
    announce: dict[str, Any] = {"http": http_port, "grpc": grpc_port, "pid": os.getpid(), "model": name}
    if uds is not None:
        announce["uds"] = str(uds)
    print(
        f"kubeinfer serving {name!r} on http://{host}:{http_port}"
        + (f" and grpc {host}:{grpc_port}" if grpc_port else ""),
        flush=True,
    )
    print("KUBEINFER_LISTENING " + orjson.dumps(announce).decode(), flush=True)


def _event_loop_run(main: Any) -> int:
    try:
        import uvloop

        return int(uvloop.run(main))
    except ImportError:  # pragma: no cover - uvloop is a core dependency on Linux/macOS
        return int(asyncio.run(main))


def run(svc: InferenceService, base_dir: Path | None = None, uds: Path | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if svc.spec.server.processes > 1:
        return _run_processes(svc, base_dir, uds)
    return _event_loop_run(serve(svc, base_dir, uds))


def threads_per_process(processes: int, env: dict[str, str] | None = None) -> int:
    """Each process's share of the replica's CPU threads: ``OMP_NUM_THREADS`` (what the local controller derives
    from the CPU limit) or else the CPUs this process may run on, divided among the processes, at least 1."""
    raw = (os.environ if env is None else env).get("OMP_NUM_THREADS", "")
    if raw.isdigit() and int(raw) > 0:
        total = int(raw)
    elif hasattr(os, "sched_getaffinity"):
        total = len(os.sched_getaffinity(0))
    else:  # pragma: no cover - macOS has no CPU affinity
        total = os.cpu_count() or 1
    return max(1, total // processes)


def _die_with_parent() -> None:
    """Linux: SIGTERM this process when its parent dies, so a SIGKILLed parent leaves no server behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _run_processes(svc: InferenceService, base_dir: Path | None, uds: Path | None) -> int:
    spec = svc.spec
    n, host = spec.server.processes, spec.server.host
    sockets = [_listen(host, spec.server.port)]
    if uds is not None:
        sockets.append(_listen_unix(uds))
    reserved = None
    if spec.server.grpcPort is not None:
        # Bound, never listening: it holds the port (and settles port 0) for the children's SO_REUSEPORT listeners.
        reserved = _bind(host, spec.server.grpcPort, " for gRPC", "--grpc-port", reuse_port=True)
    grpc_port = None if reserved is None else reserved.getsockname()[1]
    state_dir = Path(tempfile.mkdtemp(prefix="kubeinfer-serve-"))
    threads = str(threads_per_process(n))
    children: dict[int, int] = {}
    for index in range(n):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child; the multi-process tests see its behaviour
            code = 1
            try:
                _die_with_parent()
                os.environ["OMP_NUM_THREADS"] = threads
                worker = Worker(index, n, sockets, grpc_port, state_dir)
                code = _event_loop_run(serve(svc, base_dir, uds, worker))
            except SystemExit as e:
                print(e, file=sys.stderr, flush=True)
            except BaseException:
                log.exception("server process %d failed", index)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = index
    http_port = sockets[0].getsockname()[1]
    for sock in sockets:
        sock.close()
    _announce(svc.model_name, host, http_port, grpc_port, uds)
    log.info("serving with %d processes of %s thread(s) each", n, threads)
    return _supervise(children, reserved, state_dir, uds)


def hang_seconds() -> float:
    """How long a ready server process may go without running its event loop (no metrics snapshot written) before
    its parent kills it: ``KUBEINFER_PROCESS_HANG_SECONDS``, default 30 (Kubernetes' default liveness probe gives
    up after 3 failures 10 s apart). A probe reaches only one of the processes, so the parent watches them all."""
    raw = os.environ.get("KUBEINFER_PROCESS_HANG_SECONDS", "")
    try:
        value = float(raw) if raw else 30.0
    except ValueError:
        value = 30.0
    return value if value > 0 else 30.0


class _Watchdog:
    """Finds a child that stopped running its event loop: its snapshot (rewritten every half second while the loop
    runs) has not changed for ``limit`` seconds of the parent's own running time, after the child once reported its
    model ready (loading may hold the interpreter for long). Time during which the parent did not run either (the
    whole replica stopped, the machine asleep) does not count."""

    def __init__(self, state_dir: Path, limit: float) -> None:
        self.state_dir = state_dir
        self.limit = limit
        self.ready: set[int] = set()
        self.seen: dict[int, tuple[float, float]] = {}  # index -> (snapshot mtime, monotonic time it was first seen)
        self.last_check = time.monotonic()

    def hung(self, indexes: list[int]) -> dict[int, float]:
        now = time.monotonic()
        if now - self.last_check > 1.0:  # the parent itself was not running: start the clocks again
            self.seen = {i: (m, now) for i, (m, _) in self.seen.items()}
        self.last_check = now
        out: dict[int, float] = {}
        for index in indexes:
            path = self.state_dir / f"{index}.json"
            try:
                mtime = path.stat().st_mtime
                if index not in self.ready:
                    if all(orjson.loads(path.read_bytes()).get("ready", {}).values() or [False]):
                        self.ready.add(index)
                        self.seen[index] = (mtime, now)
                    continue
            except (OSError, orjson.JSONDecodeError):
                continue
            last_mtime, since = self.seen.get(index, (mtime, now))
            if mtime != last_mtime:
                since = now
            self.seen[index] = (mtime, since)
            if now - since > self.limit:
                out[index] = now - since
        return out


def _supervise(children: dict[int, int], reserved: socket.socket | None, state_dir: Path, uds: Path | None) -> int:
    """Forward SIGTERM/SIGINT to the children and wait for them all; a child that dies, or hangs (see
    :class:`_Watchdog`), while nobody asked the replica to stop takes the others down (SIGTERM: they drain) and the
    parent exits 1."""
    stopping = False
    code = 0
    watchdog = _Watchdog(state_dir, hang_seconds())

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    handled = (signal.SIGTERM, signal.SIGINT)
    for sig in handled:
        signal.signal(sig, forward)
    try:
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                if not stopping:
                    pids = {number: child for child, number in children.items()}
                    for number, age in watchdog.hung(list(pids)).items():
                        log.error(
                            "server process %d (pid %d) has not run its event loop for %.0f s: killing it",
                            number,
                            pids[number],
                            age,
                        )
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pids[number], signal.SIGKILL)
                time.sleep(0.2)
                continue
            index = children.pop(pid, None)
            if index is None:
                continue
            child_code = os.waitstatus_to_exitcode(status)
            if not stopping:
                log.error(
                    "server process %d (pid %d) exited with %d; stopping the replica so that it is restarted whole",
                    index,
                    pid,
                    child_code,
                )
                code = 1
                forward(signal.SIGTERM, None)
            elif child_code != 0:
                code = code or (child_code if child_code > 0 else 1)
    finally:
        # The exit code is decided: a SIGTERM from the supervisor now (it sees the listeners gone) must not turn it
        # into "killed by SIGTERM".
        for sig in handled:
            signal.signal(sig, signal.SIG_IGN)
        if reserved is not None:
            reserved.close()
        shutil.rmtree(state_dir, ignore_errors=True)
        if uds is not None:
            with contextlib.suppress(OSError):
                uds.unlink()
    return code
