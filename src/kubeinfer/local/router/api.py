"""The router's declared inside: what its HTTP and gRPC fronts may call (``RouterApi``) and the types they share.

The fronts (``http.py``, ``grpc.py``) speak their protocol and nothing else; every decision and every counter that
the two have in common is the router's (``router.py``), reached through ``RouterApi`` only:

- a client request is counted once, by ``request_accepted`` (which deposits into the retry budget);
- a try's backend is chosen, and the try counted on it, by ``begin_try`` (power of two choices, ``core.pick``; for a
  generative service on the request's estimated tokens and with affinity, ``balance.choose``, the request's
  ``balance.Work`` coming from ``request_work``); its end by ``end_try``;
- a retry is granted or refused by ``may_retry`` (the per-request try bound, then ``core.RetryBudget``), which
  counts the retry and its reason when granted;
- a backend whose try failed is taken out of rotation for a while by ``eject``;
- with a traffic split (a canary), a request pinned to a revision (header ``x-kubeinfer-revision``) is resolved by
  ``resolve_pin``, each response is counted on its revision (``BackendState.rev``), and a canary's error is retried on the
  stable revision when ``failover`` grants it;
- a request that finds no backend waits in the router's buffer (``buffer``, a ``Waiting``).

This module imports neither front nor the router, so that both fronts depend on it and on nothing above it (the
import-linter contract "Router package" in ``pyproject.toml`` keeps it so).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kubeinfer.local.router.balance import Work
from kubeinfer.local.router.core import RevisionCounts

__all__ = ["Backend", "BackendState", "ConnLimits", "OwnRoute", "RouterApi", "Waiting", "log_unexpected_end"]

log = logging.getLogger("kubeinfer.local.router")

OwnRoute = Callable[[], tuple[int, bytes, bytes]]
"""One of the router's own endpoints: () -> (status, body, content type)."""


@dataclass(frozen=True)
class Backend:
    """A ready replica: ``id`` names it in stats and metrics; ``grpc_port`` None when it serves no gRPC over TCP;
    ``uds`` the Unix socket it serves HTTP on, which the router then uses instead of ``host:port`` (``port`` is None
    for a replica without TCP); ``grpc_uds`` the Unix sockets it serves gRPC on (one per server process, calls spread
    among them), used instead of ``grpc_port``; ``revision`` the service revision it runs (the traffic split and the
    per-revision counters are by revision)."""

    id: str
    host: str
    port: int | None
    grpc_port: int | None
    version: str = ""
    uds: str | None = None
    grpc_uds: tuple[str, ...] = ()
    revision: int = 0

    def __post_init__(self) -> None:
        if self.port is None and self.uds is None:
            raise ValueError(f"backend {self.id!r} has neither a port nor a Unix socket (uds) to reach it on")

    @property
    def serves_grpc(self) -> bool:
        return self.grpc_port is not None or bool(self.grpc_uds)


@dataclass(frozen=True, slots=True)
class ConnLimits:
    """What one client connection may hold of the router (the spec's ``server.limits``, the same as a replica's)."""

    header_timeout: float = 10.0
    """Seconds from a request's first byte to the end of its head; 408 and close beyond."""
    body_timeout: float = 60.0
    """Seconds from a request's first byte to its last; 408 and close beyond (a ``Content-Length`` larger than the
    body sent ends here)."""
    idle_timeout: float = 75.0
    """A keep-alive connection with no request for this long is closed."""
    max_connections: int = 10_000
    """Client connections at once; the next one is answered 503 with ``Retry-After`` and closed."""
    max_header_bytes: int = 65_536
    max_headers: int = 100

    @classmethod
    def from_spec(cls, limits: Any) -> ConnLimits:
        return cls(
            header_timeout=limits.headerTimeoutSeconds,
            body_timeout=limits.bodyTimeoutSeconds,
            idle_timeout=limits.idleTimeoutSeconds,
            max_connections=limits.maxConnections,
            max_header_bytes=limits.maxHeaderBytes,
            max_headers=limits.maxHeaders,
        )


class BackendState:
    """The router's mutable view of one backend: its load counters and responses by code. The fronts keep their
    connections to it (HTTP pools, gRPC channels) themselves, keyed by this object (hashed by identity)."""

    __slots__ = (
        "backend",
        "codes",
        "ejected_until",
        "host",
        "id",
        "outstanding",
        "port",
        "retired",
        "rev",
        "revision",
        "tokens",
        "total",
        "uds",
    )

    def __init__(self, backend: Backend, rev: RevisionCounts | None = None) -> None:
        self.backend = backend
        self.revision = backend.revision
        self.rev = rev if rev is not None else RevisionCounts()
        """Its revision's counters (shared by the backends of one revision)."""
        self.id = backend.id
        self.host = backend.host
        self.port = backend.port
        self.uds = backend.uds
        self.outstanding = 0  # tries sent and not yet ended
        self.tokens = 0  # the estimated tokens of those tries (balance.Work), for a service balanced by tokens
        self.total = 0  # tries sent since it was first named
        self.codes: dict[int | str, int] = {}  # HTTP status, or gRPC status name, or "aborted" -> responses
        self.retired = False  # out of the ready set, finishing its in-flight requests
        self.ejected_until = 0.0

    def count(self, code: int | str) -> None:
        """One response from this backend with ``code`` (metrics' ``kubeinfer_router_requests``)."""
        self.codes[code] = self.codes.get(code, 0) + 1


class Waiting(Protocol):
    """A request waiting in the router's buffer (HTTP or gRPC)."""

    enqueued: float

    @property
    def alive(self) -> bool: ...

    def dispatch(self) -> None: ...

    def reject(self, status: int, message: bytes, retry_after: int | None = None) -> None: ...


class RouterApi(Protocol):
    """What the HTTP and gRPC fronts call of the router: the whole of it. ``router.Router`` implements it."""

    @property
    def now(self) -> float:
        """The loop time of the last housekeeping tick (the request path reads no clock)."""

    @property
    def per_try_timeout(self) -> float: ...

    @property
    def max_retries(self) -> int: ...

    @property
    def max_body_bytes(self) -> int: ...

    @property
    def conn_limits(self) -> ConnLimits: ...

    @property
    def own_routes(self) -> Mapping[bytes, OwnRoute]:
        """The router's own endpoints by path (GET and HEAD only)."""

    def request_accepted(self) -> None:
        """Count one client request (HTTP or gRPC) and deposit it into the retry budget."""

    def request_work(self, url: bytes, data: bytes, body_size: int) -> Work | None:
        """What an HTTP request weighs and its affinity key (``balance.estimate``; ``data`` is the request as sent
        upstream, its last ``body_size`` bytes the body), or None when the service balances plain requests."""

    def begin_try(
        self, tried: Sequence[BackendState], grpc: bool = False, pin: int | None = None, work: Work | None = None
    ) -> BackendState | None:
        """Choose the backend for the next try, avoiding ``tried`` while possible, and count the try in its load
        (``work``'s tokens too, when given); None (nothing counted) when no backend (serving gRPC, with ``grpc``; of
        revision ``pin``, if given) is ready. With a traffic split the revision is drawn by weight first; a retry
        after a canary's try goes to the stable revision."""

    @property
    def split_active(self) -> bool:
        """Whether a traffic split is set (the fronts only look for revision pins then)."""

    def resolve_pin(self, header: bytes | None, version: bytes | None) -> int | bytes | None:
        """The revision a request asks for: ``header`` (``x-kubeinfer-revision``: a revision number, ``stable`` or
        ``canary``) or the model ``version`` of its OIP path (``/v2/models/NAME/versions/V/...``: the revision
        serving that model version, if one does). None: not pinned (a version no revision serves is left to the
        replica, which may serve several); bytes: why the header cannot be honoured (answered 404)."""

    def failover(self, st: BackendState, attempts: int) -> bool:
        """A try on ``st`` got an error response: whether to retry it on the stable revision (``st`` is the
        canary's, a stable backend is ready, and the retry bound and budget allow it; counted when granted)."""

    def has_ready(self) -> bool:
        """Whether any backend is in the ready set (gRPC or not)."""

    def has_ready_besides(self, st: BackendState) -> bool:
        """Whether a backend other than ``st`` would get a first try now."""

    def end_try(self, st: BackendState, work: Work | None = None) -> None:
        """A try on ``st`` ended (answered, failed or abandoned; ``work`` as given to ``begin_try``); a retired
        backend is closed after its last."""

    def may_retry(self, attempts: int, reason: str) -> bool:
        """Whether a request that made ``attempts`` tries may make another; counted under ``reason`` when so."""

    def eject(self, st: BackendState) -> None:
        """A try on ``st`` failed (refused, reset, timed out): no first tries on it for a while."""

    def buffer(self, w: Waiting) -> None:
        """Hold ``w`` until a backend is ready (``w.dispatch``) or the bound or timeout is reached (``w.reject``)."""

    def count_local(self, status: int) -> None:
        """One response made by the router itself, with HTTP ``status``."""


def log_unexpected_end(task: asyncio.Task[Any]) -> None:
    """A done-callback for the router's background tasks: log one that ended other than by cancellation."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("router task %s ended unexpectedly", task.get_name(), exc_info=exc)
