"""The router of ``kubeinfer up``: the one entry point in front of the replicas, HTTP/1.1 and gRPC.

It runs on the controller's event loop (uvloop) and does what a service mesh sidecar does for one service:

- **Load balancing**: power of two choices on least outstanding requests among the ready backends
  (``router_core.pick``; Envoy ``LEAST_REQUEST``, Linkerd's balancer).
- **Retries** on another backend when a try fails before any response byte reached the client: connection refused,
  reset or closed (a replica killed, or draining and closing its kept-alive connection), a response that cannot be
  parsed, or the per-try timeout (a hung replica). A ``503`` or ``429`` from a replica (its queue or concurrency
  limit is full, or it is not ready or draining: it did not run the request) is also retried elsewhere, and its body
  dropped, while another backend exists. Retries are bounded by ``max_retries`` per request and by a retry budget
  (``router_core.RetryBudget``: at most ``retry_budget_ratio`` x recent requests + 10 per second, as Finagle and
  Linkerd do) so a broken backend cannot turn into a retry storm. Once response bytes went to the client a request
  is never retried (a failure then resets the client connection). Requests are retried whatever their method:
  inference is a pure function of its input, so a try that a dying replica may have run is safe to run again.
- **Buffering** while no backend is ready (scale from zero, all replicas restarting): requests wait, up to
  ``buffer_limit`` of them for at most ``buffer_timeout`` seconds, and go out in arrival order once ``set_backends``
  names a ready one; ``on_buffered`` tells the controller (scale from zero). Beyond the bound or the timeout the
  router answers ``503`` with ``Retry-After`` and ``{"error": ...}`` saying why.
- **Its own endpoints**: ``/healthz`` (the router runs), ``/readyz`` and ``/v2/health/ready`` (at least one backend
  is ready), ``/v2/health/live``, ``/metrics`` (Prometheus text rendered at scrape time from plain counters, as
  ``server/metrics.py`` does). Every other path goes to a replica.

The HTTP hot path lives in ``_http.py`` (raw asyncio protocols, httptools, pooled upstream connections) and gRPC in
``router_grpc.py``. Time-dependent work (per-try timeouts, buffer timeouts, the budget's window) runs in one
housekeeping tick every ``TICK`` seconds, so the request path does no clock reads and arms no timers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from kubeinfer.local import _http
from kubeinfer.local.router_core import RetryBudget, pick
from kubeinfer.server.listen import stop_new_connections

__all__ = ["Backend", "BackendStats", "Router", "RouterStats"]

log = logging.getLogger("kubeinfer.local.router")

TICK = 0.05  # seconds between housekeeping passes: the precision of per-try and buffer timeouts
MAX_LOST = 1  # retries of a request after its replica connection broke once it was sent (a crash, maybe caused by it)
SWEEP = 0.5  # seconds between checks of the client connections' timeouts (ConnLimits)
RETRY_AFTER = 1  # seconds, in the Retry-After of the router's own 503s
EJECT_SECONDS = 2.0  # a backend whose try failed (refused, reset, timed out) gets no first tries for this long
IDLE_POOL = 256  # idle upstream connections kept per backend
METRICS_CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class Backend:
    """A ready replica: ``id`` names it in stats and metrics; ``grpc_port`` None when it serves no gRPC over TCP;
    ``uds`` the Unix socket it serves HTTP on, which the router then uses instead of ``host:port`` (``port`` is None
    for a replica without TCP); ``grpc_uds`` the Unix sockets it serves gRPC on (one per server process, calls spread
    among them), used instead of ``grpc_port``."""

    id: str
    host: str
    port: int | None
    grpc_port: int | None
    version: str = ""
    uds: str | None = None
    grpc_uds: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.port is None and self.uds is None:
            raise ValueError(f"backend {self.id!r} has neither a port nor a Unix socket (uds) to reach it on")

    @property
    def serves_grpc(self) -> bool:
        return self.grpc_port is not None or bool(self.grpc_uds)


@dataclass(frozen=True)
class BackendStats:
    id: str
    outstanding: int  # requests sent and not yet answered
    total: int  # tries sent to it since it was first named
    ready: bool  # in the ready set now (False: retired, finishing its in-flight requests)


@dataclass(frozen=True)
class RouterStats:
    """A snapshot of the router's counters (monotonic totals since ``start``) for the controller."""

    backends: Mapping[str, BackendStats]
    requests: int  # client requests accepted (HTTP and gRPC), router endpoints excluded
    retries: int
    buffered: int  # waiting for a ready backend now
    buffered_total: int
    rejected: int  # answered 503 because the buffer was full or the wait timed out
    rps: float  # requests accepted in the last whole second

    @property
    def outstanding(self) -> int:
        return sum(b.outstanding for b in self.backends.values())

    @property
    def concurrency(self) -> int:
        """In-flight plus buffered requests: the autoscaler's concurrency observation."""
        return self.outstanding + self.buffered


class Waiting(Protocol):
    """A request waiting in the buffer (HTTP or gRPC)."""

    enqueued: float

    @property
    def alive(self) -> bool: ...

    def dispatch(self) -> None: ...

    def reject(self, status: int, message: bytes, retry_after: int | None = None) -> None: ...


class _BackendState:
    """The router's mutable view of one backend: load counters and its pool of upstream connections."""

    __slots__ = (
        "backend",
        "channels",
        "codes",
        "conns",
        "ejected_until",
        "host",
        "id",
        "idle",
        "outstanding",
        "port",
        "retired",
        "total",
        "turn",
        "uds",
    )

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.id = backend.id
        self.host = backend.host
        self.port = backend.port
        self.uds = backend.uds
        self.outstanding = 0
        self.total = 0
        self.codes: dict[int | str, int] = {}  # HTTP status, or gRPC status name, -> responses
        self.idle: list[_http.UpstreamProtocol] = []
        self.conns: set[_http.UpstreamProtocol] = set()
        self.retired = False
        self.ejected_until = 0.0
        self.channels: list[Any] = []  # grpc.aio channels (one per gRPC socket), made on first use
        self.turn = 0  # the channel of the next call, in turn

    def forget(self, up: _http.UpstreamProtocol) -> None:
        self.conns.discard(up)
        with contextlib.suppress(ValueError):
            self.idle.remove(up)

    def close_idle(self) -> None:
        idle, self.idle = self.idle, []
        for up in idle:
            up.close()


class Router:
    """See the module docstring. All methods must be called on the event loop that ``start`` ran on."""

    def __init__(
        self,
        *,
        per_try_timeout: float = 10.0,
        max_retries: int = 2,
        retry_budget_ratio: float = 0.2,
        buffer_limit: int = 1024,
        buffer_timeout: float = 30.0,
        max_body_bytes: int = 64 * 2**20,
        conn_limits: _http.ConnLimits | None = None,
        on_buffered: Callable[[], None] | None = None,
    ) -> None:
        if per_try_timeout <= 0:
            raise ValueError(f"per_try_timeout must be > 0 seconds, got {per_try_timeout}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0, got {max_retries}")
        if buffer_limit < 0:
            raise ValueError(f"buffer_limit must be an integer >= 0, got {buffer_limit}")
        if buffer_timeout < 0:
            raise ValueError(f"buffer_timeout must be >= 0 seconds, got {buffer_timeout}")
        if max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be an integer >= 1, got {max_body_bytes}")
        self.per_try_timeout = per_try_timeout
        self.max_retries = max_retries
        self.buffer_limit = buffer_limit
        self.buffer_timeout = buffer_timeout
        self.max_body_bytes = max_body_bytes
        self.conn_limits = conn_limits or _http.ConnLimits()
        self.refused_connections = 0
        self.poison_guarded = 0
        self._next_sweep = 0.0
        self.on_buffered = on_buffered
        self._now = 0.0
        self._budget = RetryBudget(retry_budget_ratio, 0.0)
        self._states: dict[Backend, _BackendState] = {}
        self._retired: dict[int, _BackendState] = {}  # id() -> state, while requests are still in flight
        self._all: list[_BackendState] = []  # the ready set, as last given to set_backends
        self._ready: list[_BackendState] = []  # the ready set less ejected backends (all of it if all are ejected)
        self._waiting: deque[Waiting] = deque()
        self._busy: set[_http.UpstreamProtocol] = set()
        self._clients: set[_http.ClientProtocol] = set()
        self.requests = 0
        self.retries = 0
        self.retry_reasons: dict[str, int] = {}
        self.buffered_total = 0
        self.rejected = 0
        self.ejections = 0
        self.local_codes: dict[int, int] = {}
        self._server: asyncio.AbstractServer | None = None
        self._grpc: Any = None
        self._tick_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rng = random.random
        self._own_routes: dict[bytes, _http.OwnRoute] = {
            b"/healthz": lambda: (200, b'{"live":true}', b"application/json"),
            b"/v2/health/live": lambda: (200, b'{"live":true}', b"application/json"),
            b"/readyz": self._readyz,
            b"/v2/health/ready": self._readyz,
            b"/metrics": self._metrics,
        }
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_Collector(self))

    # -- public API --------------------------------------------------------------------------------------
    def set_backends(self, ready: Sequence[Backend]) -> None:
        """Replace the ready set. Backends left out get no new request; their in-flight requests finish."""
        states: dict[Backend, _BackendState] = {}
        for b in ready:
            st = self._states.get(b) or states.get(b)
            if st is None:
                retired = [s for s in self._retired.values() if s.backend == b]
                st = retired[0] if retired else _BackendState(b)
                self._retired.pop(id(st), None)
                st.retired = False
            states[b] = st
        for b, st in self._states.items():
            if b not in states:
                st.retired = True
                st.close_idle()
                if st.outstanding > 0:
                    self._retired[id(st)] = st
                else:
                    self._close_state(st)
        self._states = states
        self._all = list(states.values())
        self._rebuild_live()
        while self._ready and self._waiting:
            w = self._waiting.popleft()
            if w.alive:
                w.dispatch()

    async def start(self, host: str, port: int, grpc_port: int | None) -> tuple[int, int | None]:
        """Listen for HTTP on ``host:port`` and, unless ``grpc_port`` is None, gRPC; 0 picks a free port."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._now = loop.time()
        self._budget = RetryBudget(self._budget.ratio, self._now)
        self._server = await loop.create_server(
            lambda: _http.ClientProtocol(self), host, port, backlog=2048, reuse_address=True
        )
        http_port = int(self._server.sockets[0].getsockname()[1])
        bound_grpc: int | None = None
        if grpc_port is not None:
            from kubeinfer.local.router_grpc import start_grpc

            self._grpc, bound_grpc = await start_grpc(self, host, grpc_port)
        self._tick_task = loop.create_task(self._tick_forever(), name="kubeinfer-router-tick")
        self._tick_task.add_done_callback(_log_unexpected_end)
        return http_port, bound_grpc

    async def stop(self, grace: float = 5.0) -> None:
        """Stop listening, let in-flight requests finish for up to ``grace`` seconds, then close everything."""
        if self._server is not None:
            if stop_new_connections(getattr(self._server, "sockets", ())):
                await asyncio.sleep(0.05)  # accept what completed its handshake before: closing would reset it
            self._server.close()
        if self._grpc is not None:
            await self._grpc.stop(grace)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while any(c.current is not None for c in self._clients) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        while self._waiting:
            w = self._waiting.popleft()
            if w.alive:
                w.reject(503, b"the router is shutting down", RETRY_AFTER)
        for c in list(self._clients):
            if c.transport is not None:
                c.transport.close()
        for st in [*self._states.values(), *self._retired.values()]:
            self._close_state(st)
        if self._tick_task is not None:
            self._tick_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick_task
        self._tick_task = None
        self._server = None
        self._grpc = None

    def stats(self) -> RouterStats:
        backends = {
            st.id: BackendStats(st.id, st.outstanding, st.total, not st.retired)
            for st in [*self._retired.values(), *self._states.values()]
        }
        return RouterStats(
            backends=backends,
            requests=self.requests,
            retries=self.retries,
            buffered=len(self._waiting),
            buffered_total=self.buffered_total,
            rejected=self.rejected,
            rps=float(self._budget.requests.last_second()),
        )

    # -- request path (called from _http and router_grpc) ------------------------------------------------
    def _accept(self, req: _http.Request) -> None:
        self.requests += 1
        self._budget.requests.current += 1
        self._send(req)

    def _send(self, req: _http.Request) -> None:
        ready = self._ready
        if not ready:
            self._buffer(req)
            return
        b = ready[0] if len(ready) == 1 else pick(ready, self._rng, req.tried)
        assert b is not None
        req.attempts += 1
        req.backend = b
        b.outstanding += 1
        b.total += 1
        deadline = self._now + self.per_try_timeout
        idle = b.idle
        while idle:
            up = idle.pop()
            if not up.closed:
                up.send(req, deadline)
                break
        else:
            up = _http.connect(self, b, req, deadline)
            b.conns.add(up)
        req.upstream = up
        self._busy.add(up)

    def _buffer(self, w: Waiting) -> None:
        if len(self._waiting) >= self.buffer_limit:
            self.rejected += 1
            w.reject(
                503,
                b"no replica is ready and the router's buffer is full (%d requests waiting); retry later"
                % self.buffer_limit,
                RETRY_AFTER,
            )
            return
        w.enqueued = self._now
        self._waiting.append(w)
        self.buffered_total += 1
        if self.on_buffered is not None:
            try:
                self.on_buffered()
            except Exception:
                log.exception("on_buffered callback failed")

    def _end_try(self, up: _http.UpstreamProtocol, req: _http.Request) -> _BackendState:
        self._busy.discard(up)
        up.req = None
        req.upstream = None
        b = up.backend
        b.outstanding -= 1
        if b.retired and b.outstanding == 0:
            self._release_retired(b)
        return b

    def _release(self, st: _BackendState) -> None:
        st.outstanding -= 1
        if st.retired and st.outstanding == 0:
            self._release_retired(st)

    def _release_retired(self, st: _BackendState) -> None:
        if self._retired.pop(id(st), None) is not None:
            self._close_state(st)

    def _try_done(self, up: _http.UpstreamProtocol, req: _http.Request) -> None:
        b = self._end_try(up, req)
        if up.reusable() and not b.retired and len(b.idle) < IDLE_POOL:
            b.idle.append(up)
        else:
            up.close()
        if up.discard:  # a 503/429 answered by a backend; the retry was granted when its head arrived
            req.tried.append(b)
            if req.client is not None:
                self._send(req)
            return
        codes = b.codes
        status = up.status
        codes[status] = codes.get(status, 0) + 1
        client = req.client
        if client is not None:
            client.done(req)

    def _try_failed(
        self, up: _http.UpstreamProtocol, req: _http.Request, reason: str, force_no_retry: bool = False
    ) -> None:
        if up in self._busy or up.req is req:
            b = self._end_try(up, req)
        else:  # the try never counted (a connect that failed after the request was already settled)
            return
        if up.committed or force_no_retry:
            b.codes["aborted"] = b.codes.get("aborted", 0) + 1
            if req.client is not None:
                client = req.client
                req.client = None
                client.abort()
            return
        if req.client is None:
            return
        req.tried.append(b)
        self._eject(b)
        if reason in ("reset", "closed"):
            req.lost += 1
            if req.lost > MAX_LOST:
                # The poison-request guard: a request whose replica connection broke twice after it was sent may
                # be what breaks them (a body that exhausts a replica's memory). Retrying it would take the next
                # replica down too.
                self.poison_guarded += 1
                req.reject(
                    502,
                    b"the connection to replica %s broke after the request was sent, as it did on %d replica(s) "
                    b"before: not retried, so that it cannot take down the others" % (b.id.encode(), req.lost - 1),
                )
                return
        self._retry(req, reason)

    def _retry(self, req: _http.Request, reason: str) -> None:
        if req.attempts > self.max_retries or not self._budget.try_withdraw():
            why = "tries" if req.attempts > self.max_retries else "retry budget"
            if reason == "timeout":
                msg = b"no response from replica %s within the per-try timeout of %gs (%d tries; out of %s)" % (
                    req.backend.id.encode() if req.backend else b"?",
                    self.per_try_timeout,
                    req.attempts,
                    why.encode(),
                )
                req.reject(504, msg)
            else:
                msg = b"replica %s failed before answering (%s; %d tries; out of %s)" % (
                    req.backend.id.encode() if req.backend else b"?",
                    reason.encode(),
                    req.attempts,
                    why.encode(),
                )
                req.reject(502, msg)
            return
        self.retries += 1
        self.retry_reasons[reason] = self.retry_reasons.get(reason, 0) + 1
        self._send(req)

    def _retry_on_status(self, up: _http.UpstreamProtocol, req: _http.Request) -> bool:
        """At the head of a 503/429: retry elsewhere (True, the response is dropped) or pass it on (False)."""
        if req.client is None or req.attempts > self.max_retries:
            return False
        if not any(s is not up.backend for s in self._ready):
            return False
        if not self._budget.try_withdraw():
            return False
        self.retries += 1
        key = f"status_{up.status}"
        self.retry_reasons[key] = self.retry_reasons.get(key, 0) + 1
        return True

    def _eject(self, st: _BackendState) -> None:
        """Passive health checking (Envoy's outlier detection, Linkerd's failure accrual, reduced to one rule): a
        backend that refused, reset or timed out a try gets no first tries for ``EJECT_SECONDS``. Without it, least
        outstanding requests would favour a dead backend (it answers instantly, with errors) until the prober
        removes it, and every request would spend a retry on it."""
        if st.retired or st.ejected_until > self._now:
            return
        st.ejected_until = self._now + EJECT_SECONDS
        self.ejections += 1
        log.info("router: backend %s ejected for %.0fs after a failed try", st.id, EJECT_SECONDS)
        self._rebuild_live()

    def _rebuild_live(self) -> None:
        now = self._now
        live = [s for s in self._all if s.ejected_until <= now]
        self._ready = live or list(self._all)  # all ejected: try them all rather than fail or buffer

    def _count_local(self, status: int) -> None:
        self.local_codes[status] = self.local_codes.get(status, 0) + 1

    # -- gRPC helpers (router_grpc) ----------------------------------------------------------------------
    def _choose(self, tried: Sequence[_BackendState], grpc: bool) -> _BackendState | None:
        ready = [s for s in self._ready if s.backend.serves_grpc] if grpc else self._ready
        return pick(ready, self._rng, tried)

    # -- housekeeping ------------------------------------------------------------------------------------
    async def _tick_forever(self) -> None:
        assert self._loop is not None
        while True:
            await asyncio.sleep(TICK)
            try:
                self._tick(self._loop.time())
            except Exception:  # timeouts must keep being enforced: log (rate-limited) and go on
                log.exception("router housekeeping failed; it goes on")

    def _tick(self, now: float) -> None:
        self._now = now
        self._budget.advance(now)
        if len(self._ready) < len(self._all) and any(0.0 < s.ejected_until <= now for s in self._all):
            self._rebuild_live()
        if self._busy:
            late = [up for up in self._busy if up.deadline <= now]
            for up in late:
                req = up.req
                up.upstream_keep_alive = False
                up.close()
                if req is not None:
                    self._try_failed(up, req, "timeout")
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP
            for c in list(self._clients):
                c.check_limits(now)
        waiting = self._waiting
        limit = now - self.buffer_timeout
        while waiting and (waiting[0].enqueued <= limit or not waiting[0].alive):
            w = waiting.popleft()
            if w.alive:
                self.rejected += 1
                w.reject(
                    503,
                    b"no replica became ready within the router's buffer timeout of %gs; retry later"
                    % self.buffer_timeout,
                    RETRY_AFTER,
                )

    def _close_state(self, st: _BackendState) -> None:
        st.close_idle()
        for up in list(st.conns):
            if up.req is None:
                up.close()
        channels, st.channels = st.channels, []
        for ch in channels:
            if self._loop is not None and not self._loop.is_closed():
                task = self._loop.create_task(ch.close(), name=f"kubeinfer-router-close-channel-{st.id}")
                task.add_done_callback(_log_unexpected_end)

    # -- own endpoints -----------------------------------------------------------------------------------
    def _readyz(self) -> tuple[int, bytes, bytes]:
        n = len(self._all)
        return (200 if n else 503), b'{"ready":%s,"backends":%d}' % (b"true" if n else b"false", n), b"application/json"

    def _metrics(self) -> tuple[int, bytes, bytes]:
        return 200, generate_latest(self._registry), METRICS_CONTENT_TYPE


def _log_unexpected_end(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("router task %s ended unexpectedly", task.get_name(), exc_info=exc)


class _Collector(Collector):
    """Turns the router's counters into Prometheus families at scrape time."""

    def __init__(self, router: Router) -> None:
        self.r = router

    def collect(self) -> Iterator[Any]:
        r = self.r
        states = [*r._retired.values(), *r._states.values()]
        out = GaugeMetricFamily(
            "kubeinfer_router_backend_outstanding",
            "Requests sent to a backend and not answered yet.",
            labels=["backend"],
        )
        ready = GaugeMetricFamily(
            "kubeinfer_router_backend_ready", "1 while the backend is in the ready set.", labels=["backend"]
        )
        sent = CounterMetricFamily("kubeinfer_router_backend_tries", "Tries sent to a backend.", labels=["backend"])
        reqs = CounterMetricFamily(
            "kubeinfer_router_requests",
            "Responses by the backend that gave them and status (HTTP code, gRPC code name or 'aborted'); "
            "backend '' for the router's own.",
            labels=["backend", "code"],
        )
        for st in states:
            out.add_metric([st.id], st.outstanding)
            ready.add_metric([st.id], 0.0 if st.retired else 1.0)
            sent.add_metric([st.id], st.total)
            for code, n in sorted(st.codes.items(), key=lambda kv: str(kv[0])):
                reqs.add_metric([st.id, str(code)], n)
        for code, n in sorted(r.local_codes.items()):
            reqs.add_metric(["", str(code)], n)
        yield out
        yield ready
        yield sent
        yield reqs
        retries = CounterMetricFamily("kubeinfer_router_retries", "Retries by reason.", labels=["reason"])
        for reason, n in sorted(r.retry_reasons.items()):
            retries.add_metric([reason], n)
        yield retries
        yield CounterMetricFamily("kubeinfer_router_accepted_requests", "Client requests accepted.", value=r.requests)
        yield GaugeMetricFamily(
            "kubeinfer_router_buffered", "Requests waiting for a ready backend.", value=len(r._waiting)
        )
        yield CounterMetricFamily(
            "kubeinfer_router_buffered_requests", "Requests that waited for a ready backend.", value=r.buffered_total
        )
        yield CounterMetricFamily(
            "kubeinfer_router_rejected_requests",
            "Requests answered 503 because the buffer was full or the wait timed out.",
            value=r.rejected,
        )
        yield GaugeMetricFamily("kubeinfer_router_ready_backends", "Backends in the ready set.", value=len(r._all))
        yield CounterMetricFamily(
            "kubeinfer_router_ejections", "Backends taken out of rotation after a failed try.", value=r.ejections
        )
