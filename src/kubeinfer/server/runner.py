"""Running one replica: load the models (``repository.py``), serve HTTP (uvicorn) and gRPC on one event loop, drain on SIGTERM.

With ``server.processes`` > 1 the replica is that many of these servers, forked and watched by one parent
(:mod:`kubeinfer.server.processes`); :func:`run` hands it what each child runs, so the import goes one way only
(runner -> processes; an import-linter contract keeps it so).

With ``--uds PATH`` HTTP is served on that Unix socket as well; with ``--no-tcp`` too (``tcp=False``) it is served there
only, and gRPC on a Unix socket next to it (:func:`~kubeinfer.server.listen.grpc_socket_path`): no TCP port at all,
which is how ``kubeinfer up`` runs its replicas, so that only its router (and the owner of the state folder) can
reach them.

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
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import uvicorn

from kubeinfer.server import logs, tracing
from kubeinfer.server.announce import announce
from kubeinfer.server.app import InferenceApp
from kubeinfer.server.auth import ApiKeys, KeyFileError
from kubeinfer.server.batcher import Batcher
from kubeinfer.server.dataplane import DataPlane, Limits, ModelSlot
from kubeinfer.server.http import protocol_for
from kubeinfer.server.listen import (
    connection_cap,
    grpc_socket_path,
    listen_tcp,
    listen_unix,
    no_tcp_needs_uds,
    stop_new_connections,
)
from kubeinfer.server.metrics import (
    Metrics,
    nvml_sampler,
    peak_horizon_from_env,
    peak_window_from_env,
    slo_from_env,
)
from kubeinfer.server.openapi import openapi_document
from kubeinfer.server.payload_log import from_spec as payload_log_from_spec
from kubeinfer.server.processes import Worker, run_processes
from kubeinfer.server.repository import Repository
from kubeinfer.server.tls import CertFiles, TlsError
from kubeinfer.spec import InferenceService
from kubeinfer.spec.service import BatchingSpec
from kubeinfer.storage import StorageError, localize

__all__ = ["build_app", "run", "run_loop", "serve"]

log = logging.getLogger("kubeinfer.server")

# Idle time after SIGTERM before the listeners close: long enough for a request already sent on a kept-alive
# connection to arrive and be served.
QUIET_SECONDS = 0.3


def build_app(svc: InferenceService, base_dir: Path | None) -> tuple[InferenceApp, Repository, ThreadPoolExecutor]:
    """The application over an empty data plane, and the repository that loads the spec's models into it."""
    spec = svc.spec
    lim = spec.server.limits
    limits = Limits(
        max_body_bytes=spec.max_body_bytes,
        max_concurrency=lim.maxConcurrency,
        request_timeout=lim.requestTimeoutMs / 1000.0,
        header_timeout=lim.headerTimeoutSeconds,
        body_timeout=lim.bodyTimeoutSeconds,
        max_connections=connection_cap(lim.maxConnections, chosen="maxConnections" in lim.model_fields_set),
        max_header_bytes=lim.maxHeaderBytes,
        max_headers=lim.maxHeaders,
    )
    metrics = Metrics(
        gpu_sampler=nvml_sampler(),
        peak_window=peak_window_from_env(),
        peak_horizon=peak_horizon_from_env(),
        slo=slo_from_env(),
    )
    app = InferenceApp(DataPlane(limits, metrics), openapi=openapi_document)
    app.keys = api_keys(svc, base_dir)
    # a remote uri (spec.model, or any entry of spec.models): downloaded into the model cache (kubeinfer.storage) first
    source, svc = svc, localize(svc, base_dir)
    # Each model version has its own batcher, which runs up to `workers` calls at once in this pool: `workers` threads
    # per spec entry (the versions of one folder share them), and one for loads. One model: as many as before.
    threads = spec.server.workers * len(spec.served_models) + 1
    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="model")
    repository = Repository(
        app.plane,
        svc,
        base_dir,
        executor,
        _batcher_factory(svc, app.plane, executor),
        None if svc is source else source,
    )
    return app, repository, executor


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers (the runner drains first, then tells it to exit), and with a sweep of
    the open connections every half second: a request whose head or body arrives too slowly gets 408 and the
    connection is closed (``InferHttpProtocol.check_limits``)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def on_tick(self, counter: int) -> bool:
        if counter % 5 == 0 and self.server_state.connections:
            now = asyncio.get_running_loop().time()
            for conn in list(self.server_state.connections):
                check = getattr(conn, "check_limits", None)
                if check is not None:
                    check(now)
        return await super().on_tick(counter)


async def serve(
    svc: InferenceService,
    base_dir: Path | None = None,
    uds: Path | None = None,
    worker: Worker | None = None,
    tcp: bool = True,
) -> int:
    """Serve until SIGTERM or SIGINT. ``tcp`` False: HTTP on ``uds`` only and gRPC on its own Unix socket.

    About 80 lines, kept in one piece: the model's load, the drain, a multi-process replica's late join and the clean-up
    share the same listeners, servers and events (the steps themselves are the functions below)."""
    spec = svc.spec
    try:
        # In each process of a multi-process replica (after the fork: the exporter runs a thread).
        tracing.setup(os.environ, service=svc.name, component="replica")
    except tracing.TracingError as e:
        raise SystemExit(f"kubeinfer serve: {e}") from None
    try:
        app, repository, executor = build_app(svc, base_dir)
    except StorageError as e:
        raise SystemExit(f"kubeinfer serve: {e}") from None
    plane = app.plane
    plane.payload_log = payload_log_from_spec(svc, base_dir, plane.metrics, worker.index if worker else None)
    host = spec.server.host
    sockets, grpc_uds = _listeners(svc, uds, tcp, worker)
    tls = cert_files(svc, base_dir) if grpc_uds is None else None  # not on kubeinfer up's private sockets
    if worker is not None:
        plane.metrics.siblings = worker.siblings
    http_port = next((s.getsockname()[1] for s in sockets if s.family != socket.AF_UNIX), None)
    if worker is not None and worker.http_port is not None:
        http_port = worker.http_port
    config = _uvicorn_config(app, svc)
    if tls is not None:
        config.load()
        config.ssl = tls.context  # one context, reloaded in place when the files change
    server = _Server(config)
    # A process beyond the first opens its gRPC listener on the replica's port when it joins (below), as its HTTP one.
    grpc_joins_later = worker is not None and worker.index > 0 and grpc_uds is None and worker.grpc_port is not None
    grpc_server, grpc_port = (None, None) if grpc_joins_later else await _grpc(app, svc, grpc_uds, worker, tls)
    if grpc_server is None:
        grpc_uds = None

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    loaded = asyncio.Event()
    ok = False

    async def lifecycle() -> None:
        nonlocal ok
        ok = await repository.start()
        if worker is not None and (worker.index == 0 or not ok):  # a sibling serves once it joins (below)
            plane.metrics.state = "serving" if ok else "failed"
            worker.write(plane.metrics)
        plane.started = ok
        loaded.set()
        if not ok:
            log.error(
                "a model failed to load; the server stays up, reports not ready, and says why at /readyz and "
                "POST /v2/repository/index"
            )
        await stop.wait()
        await _drain(plane, svc, sockets, grpc_server)
        server.should_exit = True

    if worker is None:
        announce(svc.model_name, host, http_port, grpc_port, uds, [grpc_uds] if grpc_uds is not None else [])
    siblings = None
    if worker is not None and worker.count > 1:
        plane.waiting_for = "waiting for the other server processes of this replica to load"
        siblings = asyncio.create_task(_await_siblings(plane, worker), name="kubeinfer-siblings")
    task = asyncio.create_task(lifecycle(), name="kubeinfer-lifecycle")
    publisher = None if worker is None else asyncio.create_task(worker.publish(plane.metrics), name="kubeinfer-metrics")
    watcher = None if tls is None else asyncio.create_task(tls.watch(), name="kubeinfer-tls-reload")
    counter = (
        None
        if plane.metrics.arrivals is None
        else asyncio.create_task(_count_arrivals(plane.metrics), name="kubeinfer-arrivals-peak")
    )
    try:
        if worker is not None and worker.index > 0:
            # Join the shared listeners only with the model loaded (the first process answers probes meanwhile); one
            # whose model failed to load never joins, and the replica stays not ready (_await_siblings).
            waits = [asyncio.ensure_future(loaded.wait()), asyncio.ensure_future(stop.wait())]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
            if not ok or stop.is_set():
                if not ok:
                    log.error("process %d does not join the listeners: its model failed to load", worker.index)
                await stop.wait()
                await task
                return 0
            if grpc_joins_later:
                grpc_server, _ = await _grpc(app, svc, None, worker, tls)
        if worker is not None and worker.http_port is not None:
            # This process's own listener on the replica's port (SO_REUSEPORT), opened only now that it serves.
            sockets.insert(0, listen_tcp(host, worker.http_port, reuse_port=True))
        if worker is not None and worker.index > 0:
            plane.metrics.state = "serving"  # listening: the kernel queues connections until the loop accepts them
            worker.write(plane.metrics)
        await server.serve(sockets=sockets)
    finally:
        if plane.payload_log is not None:
            plane.payload_log.close()  # the events still queued go to the sink (for a few seconds at most)
        for side_task in (publisher, siblings):
            if side_task is not None:
                side_task.cancel()
        if watcher is not None:
            watcher.cancel()
        if counter is not None:
            counter.cancel()
        if uds is not None and worker is None:
            with contextlib.suppress(OSError):
                uds.unlink()
        if grpc_uds is not None:  # grpc removes it when it stops; not when serving ended in an error
            with contextlib.suppress(OSError):
                grpc_uds.unlink()
        if not task.done():
            task.cancel()
        executor.shutdown(wait=False, cancel_futures=True)
        tracing.shutdown()  # exports the spans still buffered
    return 0


BACKLOG_SECONDS = 0.05
ARRIVALS_COUNT_SECONDS = 0.5
"""How often the arrival times the request path appends are counted into ``kubeinfer_arrivals_peak`` (a scrape counts
them too): the list of times stays half a second long between scrapes."""


async def _count_arrivals(metrics: Metrics) -> None:
    while True:
        await asyncio.sleep(ARRIVALS_COUNT_SECONDS)
        metrics.count_arrivals()


def _listeners(
    svc: InferenceService, uds: Path | None, tcp: bool, worker: Worker | None
) -> tuple[list[socket.socket], Path | None]:
    """The HTTP listening sockets, and the Unix socket gRPC listens on when it does not listen on TCP."""
    if worker is not None:
        return list(worker.sockets), worker.grpc_uds
    if not tcp:
        return [listen_unix(no_tcp_needs_uds(uds))], grpc_socket_path(no_tcp_needs_uds(uds))
    sockets = [listen_tcp(svc.spec.server.host, svc.spec.server.port)]
    if uds is not None:
        sockets.append(listen_unix(uds))
    return sockets, None


async def _await_siblings(plane: DataPlane, worker: Worker) -> None:
    """Hold this process's readiness (``plane.waiting_for``) until every other process of the replica serves; a
    sibling whose model failed to load keeps it not ready for good, with that reason."""
    while True:
        states = worker.sibling_states()
        failed = [i for i, state in states.items() if state == "failed"]
        if failed:
            plane.waiting_for = (
                f"server process {failed[0]} of this replica failed to load its model (its log says why); the replica "
                "is ready only with all of its spec.server.processes serving"
            )
            plane.changed()
            return
        waiting = [i for i, state in states.items() if state != "serving"]
        if not waiting:
            plane.waiting_for = ""
            plane.changed()
            return
        plane.waiting_for = f"waiting for server process(es) {', '.join(map(str, waiting))} of this replica to load"
        await asyncio.sleep(0.05)


async def _grpc(
    app: InferenceApp, svc: InferenceService, grpc_uds: Path | None, worker: Worker | None, tls: CertFiles | None
) -> tuple[Any, int | None]:
    """Start the gRPC server where the spec (and, in a multi-process replica, the parent) says; ``(None, None)``
    when gRPC is off. Returns it and its TCP port (``None`` on a Unix socket)."""
    server = svc.spec.server
    if server.grpcPort is None:
        return None, None
    from kubeinfer.server.grpc_service import start_grpc

    plane, keys = app.plane, app.keys
    creds = None if tls is None else tls.grpc_credentials()
    if grpc_uds is not None:
        grpc_server, _ = await start_grpc(plane, server.host, 0, unix=grpc_uds, keys=keys)
        return grpc_server, None
    if worker is None:
        return await start_grpc(plane, server.host, server.grpcPort, keys=keys, credentials=creds)
    if worker.grpc_port is not None:
        return await start_grpc(plane, server.host, worker.grpc_port, reuse_port=True, keys=keys, credentials=creds)
    return None, None


def _spec_path(raw: str, base_dir: Path | None) -> Path:
    path = Path(raw).expanduser()
    return path if path.is_absolute() or base_dir is None else base_dir / path


def cert_files(svc: InferenceService, base_dir: Path | None) -> CertFiles | None:
    """The certificate and key of ``server.tls``, loaded, or ``None``; files that do not load stop the start."""
    tls = svc.spec.server.tls
    if tls.certFile is None or tls.keyFile is None:
        if tls.secretName is not None:
            log.warning(
                "spec.server.tls.secretName %r is mounted only on Kubernetes: this server speaks plain HTTP and gRPC "
                "(give spec.server.tls.certFile and keyFile to serve TLS on this machine)",
                tls.secretName,
            )
        return None
    try:
        return CertFiles(_spec_path(tls.certFile, base_dir), _spec_path(tls.keyFile, base_dir))
    except TlsError as e:
        raise SystemExit(f"kubeinfer serve: {e}") from None


def api_keys(svc: InferenceService, base_dir: Path | None) -> ApiKeys | None:
    """The API keys of ``server.auth.apiKeysFile``, or ``None``; an unreadable or invalid file stops the start with a
    message naming the file and line."""
    raw = svc.spec.server.auth.apiKeysFile
    if raw is None:
        if svc.spec.server.auth.apiKeysSecret is not None:
            log.warning(
                "spec.server.auth.apiKeysSecret is mounted only on Kubernetes: this server takes requests without an "
                "API key (give spec.server.auth.apiKeysFile to require keys on this machine)"
            )
        return None
    try:
        return ApiKeys(_spec_path(raw, base_dir))
    except KeyFileError as e:
        raise SystemExit(f"kubeinfer serve: {e}") from None


def _batcher_factory(
    svc: InferenceService, plane: DataPlane, executor: Any
) -> Callable[[ModelSlot, BatchingSpec], Batcher]:
    """What makes a loaded model's batcher, with its batching settings and the spec's queue settings."""
    spec = svc.spec

    def make_batcher(s: ModelSlot, batching: BatchingSpec) -> Batcher:
        assert s.info is not None
        return Batcher(
            s.model,
            s.info,
            executor,
            max_batch_size=batching.maxBatchSize,
            max_delay=batching.maxDelayMs / 1000.0,
            workers=spec.server.workers,
            max_queue=spec.server.limits.maxQueueSize,
            enabled=batching.enabled,
            on_batch=lambda items, rows, compute, queued: plane.metrics.batch(s.name, items, rows, compute, queued),
        )

    return make_batcher


def _uvicorn_config(app: InferenceApp, svc: InferenceService) -> uvicorn.Config:
    limits = svc.spec.server.limits
    return uvicorn.Config(
        app,
        loop="none",
        http=protocol_for(app),
        lifespan="off",
        log_level="warning",
        log_config=None,  # uvicorn's loggers propagate to the root handler and its rate limit (logs.setup)
        access_log=False,
        proxy_headers=False,
        server_header=False,
        date_header=False,
        timeout_graceful_shutdown=max(1, int(limits.drainTimeoutSeconds)),
        backlog=2048,
        timeout_keep_alive=max(1, round(limits.idleTimeoutSeconds)),
    )


async def _drain(plane: DataPlane, svc: InferenceService, sockets: list[socket.socket], grpc_server: Any) -> None:
    """After SIGTERM: readiness false at once, keep serving through the drain delay, stop accepting, wait until the
    server has been idle for a moment (or the grace period ends), then stop gRPC."""
    limits = svc.spec.server.limits
    plane.draining = True
    log.info("draining: readiness is false; finishing in-flight requests")
    deadline = time.monotonic() + limits.drainTimeoutSeconds
    delay = min(limits.drainDelaySeconds, limits.drainTimeoutSeconds)
    if delay > 0:
        # Routers and endpoints see readiness go false only after a while: keep taking what they still send.
        await asyncio.sleep(delay)
    if stop_new_connections(sockets):
        # Connections that completed their handshake before the filter sit in the backlog: let them be
        # accepted (and their requests answered, with Connection: close) before the listener closes.
        await asyncio.sleep(BACKLOG_SECONDS)
    idle_since: float | None = None
    while time.monotonic() < deadline:
        now = time.monotonic()
        if plane.in_flight == 0 and plane.queued == 0:
            idle_since = idle_since or now
            if now - idle_since >= QUIET_SECONDS:
                break
        else:
            idle_since = None
        await asyncio.sleep(0.02)
    if grpc_server is not None:
        await grpc_server.stop(max(0.0, deadline - time.monotonic()))


def run_loop(main: Any) -> int:
    try:
        import uvloop

        return int(uvloop.run(main))
    except ImportError:  # pragma: no cover - uvloop is a core dependency on Linux/macOS
        return int(asyncio.run(main))


def run(svc: InferenceService, base_dir: Path | None = None, uds: Path | None = None, tcp: bool = True) -> int:
    logs.setup(logging.INFO, sys.stderr)
    if not tcp:
        no_tcp_needs_uds(uds)
    if svc.spec.server.processes > 1:
        return run_processes(svc, uds, tcp, lambda worker: run_loop(serve(svc, base_dir, uds, worker)))
    return run_loop(serve(svc, base_dir, uds, tcp=tcp))
