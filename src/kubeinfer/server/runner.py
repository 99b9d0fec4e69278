"""Running one replica: load the model, serve HTTP (uvicorn) and gRPC on one event loop, drain on SIGTERM.

Shutdown follows what Kubernetes expects of a pod: on SIGTERM readiness turns false at once, requests that are in
flight or queued finish (requests that still arrive meanwhile are served with ``Connection: close``), and once the
server has been idle for a moment, or the grace period (``limits.drainTimeoutSeconds``) ends, the listeners close and
the process exits 0. Signal handling lives here, in the shell, not in the application.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise SystemExit(
            f"kubeinfer serve: cannot listen on {host}:{port}: {e.strerror} "
            "(choose another --port, or stop what uses it)"
        ) from None
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


async def serve(svc: InferenceService, base_dir: Path | None = None, uds: Path | None = None) -> int:
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
    sock = _listen(host, spec.server.port)
    http_port = sock.getsockname()[1]
    sockets = [sock]
    if uds is not None:
        sockets.append(_listen_unix(uds))
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

        grpc_server, grpc_port = await start_grpc(app, host, spec.server.grpcPort)

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def lifecycle() -> None:
        await load_slot(app, slot, make_batcher, executor)
        app.started = slot.ready
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

    announce = {"http": http_port, "grpc": grpc_port, "pid": os.getpid(), "model": slot.name}
    if uds is not None:
        announce["uds"] = str(uds)
    print(
        f"kubeinfer serving {slot.name!r} on http://{host}:{http_port}"
        + (f" and grpc {host}:{grpc_port}" if grpc_port else ""),
        flush=True,
    )
    print("KUBEINFER_LISTENING " + orjson.dumps(announce).decode(), flush=True)
    task = asyncio.create_task(lifecycle(), name="kubeinfer-lifecycle")
    try:
        await server.serve(sockets=sockets)
    finally:
        if uds is not None:
            with contextlib.suppress(OSError):
                uds.unlink()
        if not task.done():
            task.cancel()
        executor.shutdown(wait=False, cancel_futures=True)
    return 0


def run(svc: InferenceService, base_dir: Path | None = None, uds: Path | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop

        return uvloop.run(serve(svc, base_dir, uds))
    except ImportError:  # pragma: no cover - uvloop is a core dependency on Linux/macOS
        return asyncio.run(serve(svc, base_dir, uds))
