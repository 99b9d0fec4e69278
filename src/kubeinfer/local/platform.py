"""``kubeinfer up``: one service on this machine -- router, controller and control endpoint in one process.

The router listens on ``spec.server.port`` / ``grpcPort`` (the addresses clients use, as a Kubernetes Service);
replicas listen behind it on Unix sockets in the service's private state folder (``KUBEINFER_REPLICA_TCP=1``: on
free loopback ports as well). SIGTERM or SIGINT (or ``kubeinfer down``) shuts down gracefully:
stop accepting, drain the replicas, exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kubeinfer.local.control import BadRequest, ControlError, ControlServer
from kubeinfer.local.controller import ControllerError, ServiceController
from kubeinfer.local.controller.observer import peak_window
from kubeinfer.local.controller.status import Endpoint, RouterCounters
from kubeinfer.local.dashboard import Dashboard, DashboardOptions
from kubeinfer.local.gpu import NvmlInventory
from kubeinfer.local.metrics import HttpMetricsSource
from kubeinfer.local.process import MonotonicClock, SubprocessRunner
from kubeinfer.local.resources import CgroupV2, CpuQuota
from kubeinfer.local.router import Backend, ConnLimits, Router
from kubeinfer.local.router.balance import RoutingPolicy
from kubeinfer.local.settings import LocalSettings
from kubeinfer.server import tracing
from kubeinfer.server.listen import connection_cap
from kubeinfer.spec import InferenceService, SpecError, validate_spec

__all__ = ["Platform", "RouterOptions"]


log = logging.getLogger("kubeinfer.local")


@dataclass(frozen=True, slots=True)
class RouterOptions:
    host: str = "127.0.0.1"
    port: int | None = None
    """None: spec.server.port."""
    grpc_port: int | None = None
    grpc: bool = True


class Platform:
    def __init__(
        self,
        svc: InferenceService,
        base_dir: Path,
        settings: LocalSettings,
        options: RouterOptions | None = None,
        dashboard: DashboardOptions | None = None,
    ) -> None:
        self.settings = settings
        self.options = options or RouterOptions()
        spec = svc.spec
        self.router = Router(
            per_try_timeout=settings.try_timeout,
            buffer_timeout=settings.buffer_timeout,
            max_body_bytes=spec.max_body_bytes,
            conn_limits=replace(
                ConnLimits.from_spec(spec.server.limits),
                # a proxied request holds two descriptors: the client's connection and one to a replica
                max_connections=connection_cap(
                    spec.server.limits.maxConnections,
                    per_connection=2,
                    chosen="maxConnections" in spec.server.limits.model_fields_set,
                ),
            ),
            on_buffered=self._on_buffered,
            replica_metrics=True,  # the replicas' families on the router's /metrics (docs/metrics.md)
            peak_window=peak_window(spec),  # the burst signal of the load samples (LoadSample.peak)
        )
        self.router.set_routing(RoutingPolicy.from_spec(spec))  # spec.routing: by tokens for format llm
        self.controller = ServiceController(
            svc,
            base_dir,
            settings=settings,
            runner=SubprocessRunner(),
            router=self.router,
            metrics=HttpMetricsSource(),
            gpus=NvmlInventory(),
            clock=MonotonicClock(),
            backend_factory=Backend,
            cgroups=CgroupV2(),
            cpu_quota=CpuQuota(),
        )
        self.folder = settings.service_dir(svc.name)
        self.control = ControlServer(
            self.folder,
            {
                ("GET", "/v1/status"): self._status,
                ("POST", "/v1/apply"): self._apply,
                ("POST", "/v1/scale"): self._scale,
                ("POST", "/v1/down"): self._down,
            },
        )
        # the web dashboard (local/dashboard.py) reads the same status as `kubeinfer get`
        self.dashboard = None if dashboard is None else Dashboard(lambda: self._status({}), dashboard)
        self.http_port = 0
        self.grpc_port: int | None = None
        self.created = time.time()  # wall clock, as metadata.creationTimestamp
        self._stop = asyncio.Event()
        self.exit_code = 0

    def _on_buffered(self) -> None:
        self.controller.on_buffered()

    async def _status(self, body: dict[str, Any]) -> dict[str, Any]:
        s = self.router.stats()
        st = replace(
            self.controller.snapshot(),
            endpoint=Endpoint(f"http://{self.options.host}:{self.http_port}", self.grpc_port),
            created=self.created,
            spec=self.controller.svc.spec.model_dump(mode="json", exclude_none=True),
            router=RouterCounters(s.requests, s.retries, s.buffered, s.buffered_total, s.rejected, s.rps),
        )
        return st.to_json()

    async def _apply(self, body: dict[str, Any]) -> dict[str, Any]:
        _only(body, {"spec", "source", "base_dir"})
        for key in ("source", "base_dir"):
            if key in body and type(body[key]) is not str:
                raise BadRequest(f"{key} must be a string, got {json.dumps(body[key])}")
        try:
            svc = validate_spec(body.get("spec"), str(body.get("source", "<apply>")))
        except SpecError as e:
            raise ControlError(f"invalid spec\n{e}") from None
        try:
            msg = self.controller.apply(svc, Path(str(body.get("base_dir", "."))))
        except ControllerError as e:
            raise ControlError(str(e)) from None
        self.router.set_routing(RoutingPolicy.from_spec(svc.spec))
        if peak_window(svc.spec) != self.router.stats().peak_window:
            self.router.set_peak_window(peak_window(svc.spec))
        return {"message": msg}

    async def _scale(self, body: dict[str, Any]) -> dict[str, Any]:
        _only(body, {"replicas", "min", "max"})
        for key in ("replicas", "min", "max"):
            n = body.get(key)
            # not isinstance: true is an int to Python, not a replica count
            if key in body and (type(n) is not int or n < 0):
                raise BadRequest(f"{key} must be a whole number >= 0, got {json.dumps(n)}")
        if ("replicas" in body) == ("min" in body or "max" in body):
            raise BadRequest("give replicas, or min and/or max (the autoscaling bounds)")
        try:
            if "replicas" in body:
                return {"message": self.controller.scale(body["replicas"])}
            return {"message": self.controller.scale_bounds(body.get("min"), body.get("max"))}
        except ControllerError as e:
            raise ControlError(str(e)) from None

    async def _down(self, body: dict[str, Any]) -> dict[str, Any]:
        _only(body, set())
        self._stop.set()
        return {"message": f"shutting down {self.controller.name!r}"}

    async def run(self) -> int:
        spec = self.controller.svc.spec
        port = self.options.port if self.options.port is not None else spec.server.port
        grpc_port = self.options.grpc_port if self.options.grpc_port is not None else spec.server.grpcPort
        if not self.options.grpc:
            grpc_port = None
        try:
            # The router's spans (docs/tracing.md); the replicas inherit the same OTEL_* variables.
            tracing.setup(os.environ, service=f"{self.controller.name}-router", component="router")
        except tracing.TracingError as e:
            raise ControllerError(str(e)) from None
        try:
            self.http_port, self.grpc_port = await self.router.start(self.options.host, port, grpc_port)
        except OSError as e:
            if e.strerror is None:  # the gRPC listener: its message names the address and the fix
                raise ControllerError(str(e).removeprefix("router: ")) from None
            raise ControllerError(
                f"cannot listen on {self.options.host}:{port}: {e.strerror} (set spec.server.port, or --port 0 "
                "for a free port, or stop what uses it)"
            ) from None
        extra: dict[str, Any] = {}
        if self.dashboard is not None:
            try:
                await self.dashboard.start()
            except OSError as e:
                await self.router.stop(grace=0)
                raise ControllerError(
                    f"cannot listen on 127.0.0.1:{self.dashboard.options.port} for the dashboard: {e.strerror} "
                    "(--dashboard-port 0 for a free port, or stop what uses it)"
                ) from None
            extra["dashboard"] = self.dashboard.url
        await self.control.start(
            {
                "http": self.http_port,
                "grpc": self.grpc_port,
                "host": self.options.host,
                "name": self.controller.name,
                **extra,
            }
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._stop.set)
        task = asyncio.create_task(self.controller.run(), name="kubeinfer-controller")
        task.add_done_callback(self._controller_ended)
        try:
            await self._stop.wait()
        finally:
            # Stop taking requests and finish those in flight while the replicas still run, then drain them.
            await self.router.stop(grace=spec.server.limits.drainTimeoutSeconds)
            await self.controller.shutdown()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            if self.dashboard is not None:
                await self.dashboard.stop()
            await self.control.stop()
            (self.folder / "platform.pid").unlink(missing_ok=True)
            tracing.shutdown()
        return self.exit_code

    def _controller_ended(self, task: asyncio.Task[None]) -> None:
        """The controller's loops end only at shutdown; if they end otherwise, nothing supervises the replicas any
        more: say why and stop the platform (its supervisor -- a shell, systemd -- sees it exit) rather than run on
        unsupervised."""
        if task.cancelled() or self._stop.is_set():
            return
        exc = task.exception()
        log.error("the controller stopped unexpectedly: %r; shutting down", exc, exc_info=exc)
        self.exit_code = 1
        self._stop.set()


def _only(body: dict[str, Any], keys: set[str]) -> None:
    extra = sorted(set(body) - keys)
    if extra:
        takes = ", ".join(sorted(keys)) or "no fields"
        raise BadRequest(f"unknown field {extra[0]!r}: this command takes {takes}")
