"""Router membership: which replicas the router sends requests to, and the cold starts it waited through.

A replica joins only once its readiness probe passed and it announced where it listens, and leaves as soon as it
is no longer ready or is stopping (before its SIGTERM: the server drains with no new requests coming). While no
replica is ready the router buffers requests; the wait of the first one, from the buffering to the first replica
ready, is a cold start (Knative's activator measures the same).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubeinfer.local.controller.interfaces import EmitEvent, RouterLike
from kubeinfer.local.controller.records import Replica

__all__ = ["RouterMembership"]


class RouterMembership:
    def __init__(self, name: str, router: RouterLike, backend_factory: Callable[..., Any], emit: EmitEvent) -> None:
        self.name = name
        self.router = router
        self.backend_factory = backend_factory
        """Builds the router's backend from the replica's id, addresses and version."""
        self.emit = emit
        self.members: tuple[tuple[Any, ...], ...] = ()
        """(id, port, gRPC port, socket, gRPC sockets) of each replica the router has now."""
        self.cold_since: float | None = None
        """When the router began to buffer with no replica ready (None: it does not)."""
        self.cold_starts: list[float] = []
        """How long each cold start waited, in seconds."""

    @property
    def empty(self) -> bool:
        """No replica takes requests: the router buffers them."""
        return not self.members

    def on_buffered(self, now: float) -> None:
        """The router holds a request because no replica is ready: a cold start begins (if none has)."""
        if self.cold_since is None and self.empty:
            self.cold_since = now

    def sync(self, replicas: list[Replica], now: float) -> None:
        """Give the router the replicas that are ready now, if that changed."""
        ready = [
            r
            for r in replicas
            if r.machine.ready and r.machine.phase == "Running" and not r.machine.stopping and r.address is not None
        ]
        ids = tuple((r.id, r.http_port, r.grpc_port, r.uds, r.grpc_uds) for r in ready)
        if ids == self.members:
            return
        was_empty = self.empty
        self.members = ids
        self.router.set_backends(
            [
                self.backend_factory(
                    id=r.id,
                    host="127.0.0.1",
                    port=r.http_port,
                    grpc_port=r.grpc_port,
                    version=r.revision.version,
                    uds=r.uds,
                    grpc_uds=r.grpc_uds,
                    revision=r.revision.number,
                )
                for r in ready
            ]
        )
        if was_empty and ready and self.cold_since is not None:
            waited = now - self.cold_since
            self.cold_since = None
            self.cold_starts.append(waited)
            self.emit(
                "Normal",
                "ColdStart",
                self.name,
                f"first request after scale-from-zero waited {waited:.2f} s for a ready replica",
            )
