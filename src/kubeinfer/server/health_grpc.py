"""gRPC's standard health service (``grpc.health.v1.Health``) and server reflection for a replica.

Health follows the server's own readiness, which is what gRPC load balancers, Kubernetes' ``grpc`` probes and
``grpc-health-probe`` ask: the service ``""`` (the whole server) and ``inference.GRPCInferenceService`` are SERVING
while the server is ready (every model loaded, not draining), and each model, by its name, is SERVING while that model
is loaded and the server is not draining; NOT_SERVING while loading, after a failed load and from SIGTERM on. An unknown
name is NOT_FOUND on ``Check`` and SERVICE_UNKNOWN on ``Watch`` (the protocol's rules); ``List`` gives every name. The servicer is
``grpcio-health-checking``'s own asyncio one: this module only feeds it the server's state when that changes
(:meth:`~kubeinfer.server.dataplane.DataPlane.watch`), from one task so that updates cannot land out of order, and ends
open ``Watch`` streams when the server stops (they would otherwise hold the gRPC server's shutdown for its whole grace
period).

Reflection (``grpcio-reflection``) lets ``grpcurl``, ``grpcui`` and ``evans`` list and call the services without the
``.proto`` files. Its descriptors come from a pool built here of the three services' files: the inference messages
live in a private pool (``_proto``), not in the default one that the reflection service reads by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Iterable
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from kubeinfer.server._proto import grpc_predict_v2_pb2 as pb
from kubeinfer.server.dataplane import DataPlane

__all__ = ["HEALTH_SERVICE", "REFLECTION_SERVICE", "Health", "add_health_and_reflection", "watch_until"]

log = logging.getLogger("kubeinfer.server.grpc")

HEALTH_SERVICE: str = health.SERVICE_NAME
REFLECTION_SERVICE: str = reflection.SERVICE_NAME
INFERENCE_SERVICE: str = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Health(health.aio.HealthServicer):  # type: ignore[misc]
    """``grpc.health.v1.Health`` over one :class:`DataPlane`; :meth:`start` before serving, :meth:`close` before
    the gRPC server stops."""

    def __init__(self, plane: DataPlane) -> None:
        super().__init__()
        self._plane = plane
        self._dirty = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def statuses(self) -> dict[str, Any]:
        """What each service name reports now."""
        plane = self._plane
        overall = SERVING if plane.ready else NOT_SERVING
        out: dict[str, Any] = {"": overall, INFERENCE_SERVICE: overall}
        for slot in plane.models.values():
            out[slot.name] = SERVING if plane.model_ready(slot) else NOT_SERVING
        for name in plane.unavailable:  # a model of the repository that is not loaded (unloaded, or its load failed)
            out[name] = NOT_SERVING
        return out

    async def start(self) -> None:
        """Publish the current state, then follow the server's changes."""
        await self._publish()
        self._plane.watch(self._dirty.set)
        self._task = asyncio.create_task(self._follow(), name="kubeinfer-grpc-health")
        self._task.add_done_callback(_log_death)

    async def _follow(self) -> None:
        # One task publishes, and reads the state only after clearing the flag: a change made while it publishes
        # sets the flag again, so the last state is always the one published.
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await self._publish()

    async def _publish(self) -> None:
        if self._plane.draining:
            await self.enter_graceful_shutdown()  # every name NOT_SERVING, for good
            return
        for name, status in self.statuses().items():
            await self.set(name, status)

    async def Watch(self, request: Any, context: Any) -> None:
        """The library's ``Watch``, ended (status OK) when the server stops."""
        await watch_until(super().Watch(request, context), self._closing)

    async def List(self, request: Any, context: Any) -> Any:
        """Every name and its status (the protocol's newer RPC, which the library's servicer leaves unimplemented)."""
        check = health_pb2.HealthCheckResponse
        return health_pb2.HealthListResponse(
            statuses={name: check(status=status) for name, status in self._server_status.items()}
        )

    async def close(self) -> None:
        """Report NOT_SERVING everywhere and end the open ``Watch`` streams."""
        await self.enter_graceful_shutdown()
        self._closing.set()
        if self._task is not None:
            self._task.cancel()
        await asyncio.sleep(0)  # let the watchers see the event and finish


async def watch_until(watch: Coroutine[Any, Any, None], closing: asyncio.Event) -> None:
    """Run a ``Watch`` stream until it ends or ``closing`` is set, then cancel it: the library's ``Watch`` loops until
    its client goes, and an open stream would hold the gRPC server's shutdown for its whole grace period."""
    task = asyncio.ensure_future(watch)
    stop = asyncio.ensure_future(closing.wait())
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (task, stop):
            t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _log_death(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the gRPC health service stopped following the server", exc_info=task.exception())


def _files(*files: FileDescriptor) -> Iterable[descriptor_pb2.FileDescriptorProto]:
    for f in files:
        proto = descriptor_pb2.FileDescriptorProto()
        f.CopyToProto(proto)
        yield proto


def reflection_pool() -> descriptor_pool.DescriptorPool:
    """A pool holding the files of the inference, health and reflection services (none imports another file)."""
    pool = descriptor_pool.DescriptorPool()
    for proto in _files(pb.DESCRIPTOR, health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR):
        pool.Add(proto)
    return pool


async def add_health_and_reflection(server: grpc.aio.Server, plane: DataPlane) -> Health:
    """Register ``grpc.health.v1.Health`` and server reflection on ``server`` (before it starts); returns the health
    servicer, already following ``plane``."""
    servicer = Health(plane)
    await servicer.start()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    names = (INFERENCE_SERVICE, HEALTH_SERVICE, REFLECTION_SERVICE)
    reflection.enable_server_reflection(names, server, pool=reflection_pool())
    return servicer
