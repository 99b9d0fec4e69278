"""HTTP/1.1 proxying on raw asyncio protocols: the router's hot path.

Why not aiohttp or httpx: on a two-core machine the router shares the CPU with the replicas it fronts, so every
microsecond it spends per request is taken from inference. A request here costs one ``data_received`` on the client
connection (httptools parses the head; the body is kept as bytes, never decoded), one ``transport.write`` of the
whole request to a pooled keep-alive upstream connection, one ``data_received`` upstream (httptools only finds the
end of the response) and one ``transport.write`` of the response bytes, unchanged, to the client. No task, no
future, no timer per request: per-try timeouts are checked by the router's housekeeping tick.

Requests are read whole before they are sent (bounded by ``max_body_bytes``) so that a failed try can be replayed on
another backend. Responses are streamed: once the first byte of a response went to the client the request is
committed and is never retried. The request head is rebuilt from the parsed parts without hop-by-hop headers
(``Connection``, ``Keep-Alive``, ``Transfer-Encoding``, ``Expect``, ``Upgrade``, ``TE``, ``Trailer``,
``Proxy-Connection``); a chunked request body is sent with a ``Content-Length``. The response passes through
byte for byte unless the client connection and the upstream one disagree about keep-alive, when the head is
rewritten (an upstream ``Connection: close`` from a draining replica concerns the router's connection, not the
client's).

``HttpFront`` owns the listener, the client connections, the upstream pools and the tries in flight; it reaches the
router through ``api.RouterApi`` only (backend choice, request/try/retry bookkeeping, ejection, the buffer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

import httptools
import orjson

from kubeinfer.local.router.api import BackendState, OwnRoute, RouterApi
from kubeinfer.local.router.balance import Work
from kubeinfer.local.router.core import http_error
from kubeinfer.server import tracing
from kubeinfer.server.listen import stop_new_connections

__all__ = ["ClientProtocol", "HttpFront", "Request", "UpstreamProtocol", "simple_response"]

log = logging.getLogger("kubeinfer.local.router")

MAX_LOST = 1  # retries of a request after its replica connection broke once it was sent (a crash, maybe caused by it)
SWEEP = 0.5  # seconds between checks of the client connections' timeouts (ConnLimits)
IDLE_POOL = 256  # idle upstream connections kept per backend

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
        b"expect",
    }
)
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_REASONS = {
    400: b"Bad Request",
    404: b"Not Found",
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    413: b"Payload Too Large",
    500: b"Internal Server Error",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
    200: b"OK",
}


def simple_response(
    status: int, body: bytes, content_type: bytes = b"application/json", extra: bytes = b"", close: bool = False
) -> bytes:
    """A whole response: status line, headers and body, as one bytes object."""
    reason = _REASONS.get(status, b"Unknown")
    conn = b"connection: close\r\n" if close else b""
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n" % (status, reason, content_type, len(body)),
            extra,
            conn,
            b"\r\n",
            body,
        ]
    )


class Request:
    """One client request: its bytes as sent upstream, and the state of its tries."""

    __slots__ = (
        "attempts",
        "backend",
        "client",
        "data",
        "enqueued",
        "head_only",
        "http10",
        "keep_alive",
        "lost",
        "own",
        "pin",
        "sent",
        "span",  # its span, set only while tracing is on (server/tracing.py)
        "tried",
        "upstream",
        "work",
    )

    def __init__(self, client: ClientProtocol, data: bytes, keep_alive: bool, http10: bool, head_only: bool) -> None:
        self.client: ClientProtocol | None = client
        self.data = data
        self.keep_alive = keep_alive
        self.http10 = http10
        self.head_only = head_only
        self.attempts = 0
        self.tried: list[BackendState] = []
        self.backend: BackendState | None = None
        self.upstream: UpstreamProtocol | None = None
        self.enqueued = 0.0
        self.lost = 0  # tries whose replica connection broke after the request was sent (router: crash guard)
        self.own: OwnRoute | None = None
        self.pin: int | None = None  # the revision the request asked for (None: any, by the traffic split)
        self.sent = 0.0  # when its current try was sent (monotonic), for its revision's latency
        self.work: Work | None = None  # its weight and affinity key, when the service balances by them

    # The router's buffer calls these two on every kind of waiting request (HTTP here, gRPC in grpc.py).
    def dispatch(self) -> None:
        if self.client is not None:
            self.client.front.send(self)

    def reject(self, status: int, message: bytes, retry_after: int | None = None) -> None:
        if self.client is not None:
            self.client.finish_with(self, status, message, retry_after)

    @property
    def alive(self) -> bool:
        return self.client is not None


def _oip_version(url: bytes) -> bytes | None:
    """The model version of an OIP path (``/v2/models/NAME/versions/V/...``), or None."""
    parts = url.split(b"?", 1)[0].split(b"/")
    if len(parts) > 5 and parts[1] == b"v2" and parts[2] == b"models" and parts[4] == b"versions":
        return parts[5]
    return None


def _error_route(status: int, message: bytes) -> OwnRoute:
    body = orjson.dumps({"error": message.decode("utf-8", "replace")})
    return lambda: (status, body, b"application/json")


class ClientProtocol(asyncio.Protocol):
    """A downstream (client) connection. Requests on one connection are proxied one at a time, in order."""

    def __init__(self, front: HttpFront) -> None:
        self.front = front
        self.router = front.router
        self.transport: Any = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list[bytes] = []
        self.body: list[bytes] = []
        self.body_size = 0
        self.chunked = False
        self.too_large = False
        self.current: Request | None = None
        self.pending: deque[Request] = deque()
        # Connection limits (checked by the router's sweep, ConnLimits): when the request being read began (0: none
        # is), whether its head is complete, the head's size so far, and when the connection last had work.
        self.began = 0.0
        self.headed = False
        self.head_bytes = 0
        self.head_count = 0
        self.declared = -1
        self.head_error = b""
        self.idle_since = 0.0
        self.pin_header: bytes | None = None  # x-kubeinfer-revision of the request being read

    # -- asyncio callbacks -----------------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        router = self.router
        clients = self.front.clients
        if len(clients) >= router.conn_limits.max_connections:
            router.count_local(503)
            self.front.refused_connections += 1
            body = b'{"error":"the router has %d client connections, its limit (server.limits.maxConnections)"}' % (
                len(clients)
            )
            transport.write(simple_response(503, body, extra=b"retry-after: 1\r\n", close=True))
            transport.close()
            self.transport = None
            return
        self.idle_since = router.now
        clients.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.front.clients.discard(self)
        self.transport = None
        if self.current is not None:
            self.current.client = None  # its upstream try finishes; the response is dropped
            self.current = None
        for r in self.pending:
            r.client = None
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, b"protocol upgrades (WebSocket, h2c) are not supported by the router")
            return
        except httptools.HttpParserError as e:
            if self.head_error:
                self._fail(431, self.head_error)
            elif self.too_large:
                self._fail(413, self._too_large_message())
            else:
                self._fail(400, b"malformed HTTP request: " + str(e).encode())
            return
        if self.too_large:
            self._fail(413, self._too_large_message())

    def _too_large_message(self) -> bytes:
        size = b" (Content-Length %d)" % self.declared if self.declared > self.router.max_body_bytes else b""
        return b"request body is larger than the router's limit of %d bytes%s" % (self.router.max_body_bytes, size)

    def eof_received(self) -> bool:
        # Half-closed by the client: finish what is in flight, then close (True keeps the transport open).
        if self.current is None:
            return False
        self.current.keep_alive = False
        for r in self.pending:
            r.keep_alive = False
        return True

    def pause_writing(self) -> None:
        up = self.current.upstream if self.current is not None else None
        if up is not None and up.transport is not None:
            up.transport.pause_reading()

    def resume_writing(self) -> None:
        up = self.current.upstream if self.current is not None else None
        if up is not None and up.transport is not None:
            up.transport.resume_reading()

    # -- httptools callbacks ---------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.body = []
        self.body_size = 0
        self.chunked = False
        self.began = self.router.now or 1e-9
        self.headed = False
        self.head_bytes = 0
        self.head_count = 0
        self.declared = -1
        self.pin_header = None

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_bytes += len(url)
        if self.head_bytes > self.router.conn_limits.max_header_bytes:
            self.head_error = (
                b"the request line is longer than the router's limit of %d bytes "
                % (self.router.conn_limits.max_header_bytes)
                + b"(server.limits.maxHeaderBytes)"
            )
            raise ValueError  # httptools stops parsing: data_received answers 431

    def on_header(self, name: bytes, value: bytes) -> None:
        lim = self.router.conn_limits
        self.head_bytes += len(name) + len(value) + 4
        self.head_count += 1
        if self.head_bytes > lim.max_header_bytes or self.head_count > lim.max_headers:
            self.head_error = (
                b"the request head is larger than the router's limits: %d bytes, %d fields "
                b"(server.limits.maxHeaderBytes, maxHeaders)" % (lim.max_header_bytes, lim.max_headers)
            )
            raise ValueError  # httptools stops parsing: data_received answers 431
        low = name.lower()
        if low == b"content-length" and value.isdigit():
            self.declared = int(value)
        elif low == b"x-kubeinfer-revision":
            self.pin_header = value
        if low in HOP_BY_HOP:
            if low == b"transfer-encoding":
                self.chunked = True
            elif low == b"expect" and value.lower() == b"100-continue" and self.transport is not None:
                self.transport.write(_CONTINUE)
            return
        self.headers.append(b"%s: %s\r\n" % (name, value))

    def on_headers_complete(self) -> None:
        self.headed = True
        if self.declared > self.router.max_body_bytes:
            # Refused on the declaration, before any of the body is read (not after waiting for all of it).
            self.too_large = True
            raise ValueError  # httptools stops parsing: data_received answers 413

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > self.router.max_body_bytes:
            self.too_large = True
            self.body = []
        elif not self.too_large:
            self.body.append(body)

    def on_message_complete(self) -> None:
        self.began = 0.0
        if self.too_large:
            return
        p = self.parser
        method = p.get_method()
        keep_alive = p.should_keep_alive()
        http10 = p.get_http_version() == "1.0"
        url = self.url
        own = self.router.own_routes.get(url) if method in (b"GET", b"HEAD") else None
        if own is not None:
            req = Request(self, b"", keep_alive, http10, method == b"HEAD")
            req.own = own
        else:
            headers = self.headers
            if self.chunked:
                headers.append(b"content-length: %d\r\n" % self.body_size)
            data = b"".join([method, b" ", url, b" HTTP/1.1\r\n", *headers, b"\r\n", *self.body])
            req = Request(self, data, keep_alive, http10, method == b"HEAD")
            if tracing.tracer is not None:
                tracing.router_http(req, headers, method, url, self.body)
            req.work = self.router.request_work(url, data, self.body_size)
            if self.pin_header is not None or (self.router.split_active and b"/versions/" in url):
                pin = self.router.resolve_pin(self.pin_header, _oip_version(url))
                if isinstance(pin, bytes):
                    req.own = _error_route(404, pin)
                else:
                    req.pin = pin
        if self.current is None:
            self._start(req)
        else:
            self.pending.append(req)
            self.transport.pause_reading()

    # -- request life ----------------------------------------------------------------------------------
    def _start(self, req: Request) -> None:
        self.current = req
        if req.own is not None:
            status, body, ctype = req.own()
            self.finish_raw(req, simple_response(status, body, ctype, close=not req.keep_alive))
        else:
            self.router.request_accepted()
            self.front.send(req)

    def finish_raw(self, req: Request, payload: bytes) -> None:
        """Send a whole response the router made itself, and end ``req``."""
        if tracing.tracer is not None:
            tracing.router_finish(req, payload)
        t = self.transport
        if t is None or req is not self.current:
            return
        if req.head_only:
            payload = payload[: payload.find(b"\r\n\r\n") + 4]
        t.write(payload)
        self.done(req)

    def finish_with(self, req: Request, status: int, message: bytes, retry_after: int | None) -> None:
        """End ``req`` with an error of the router's own: a JSON body ``{"error": message}``."""
        self.router.count_local(status)
        extra = b"retry-after: %d\r\n" % retry_after if retry_after is not None else b""
        body = orjson.dumps({"error": message.decode("utf-8", "replace")})
        self.finish_raw(req, simple_response(status, body, extra=extra, close=not req.keep_alive))

    def done(self, req: Request) -> None:
        """``req``'s response is complete: close, or go on with the next pipelined request."""
        if req is not self.current:
            return
        req.client = None
        self.current = None
        t = self.transport
        if t is None:
            return
        if not req.keep_alive:
            t.close()
            self.transport = None
            return
        if self.pending:
            self._start(self.pending.popleft())
        elif self.current is None:
            self.idle_since = self.router.now
            t.resume_reading()

    def abort(self) -> None:
        """The response started and cannot be completed: reset the connection so the client sees a failure."""
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, status: int, message: bytes) -> None:
        """The connection cannot go on (a malformed or oversized request): answer ``status`` and close -- after the
        requests already read on it are answered, in order, so that none of them is lost."""
        t = self.transport
        if t is None:
            return
        self.router.count_local(status)
        self.began = 0.0
        if self.current is not None:
            req = Request(self, b"", False, False, False)
            req.own = _error_route(status, message)
            self.pending.append(req)
            t.pause_reading()
            self.parser = httptools.HttpRequestParser(self)  # nothing more is read on this connection
            return
        t.write(simple_response(status, orjson.dumps({"error": message.decode("utf-8", "replace")}), close=True))
        t.close()
        self.connection_lost(None)

    def check_limits(self, now: float) -> None:
        """The router's sweep: a request read too slowly gets 408, an idle keep-alive connection is closed."""
        lim = self.router.conn_limits
        if self.began:
            if not self.headed and now - self.began > lim.header_timeout:
                self._fail(
                    408,
                    b"the request head did not arrive within %gs (server.limits.headerTimeoutSeconds)"
                    % (lim.header_timeout),
                )
            elif now - self.began > lim.body_timeout:
                self._fail(
                    408,
                    b"the request body did not arrive within %gs (server.limits.bodyTimeoutSeconds): "
                    b"%d of %s bytes came"
                    % (lim.body_timeout, self.body_size, str(self.declared).encode() if self.declared >= 0 else b"?"),
                )
        elif self.current is None and not self.pending and now - self.idle_since > lim.idle_timeout:
            t = self.transport
            if t is not None:
                t.close()
                self.connection_lost(None)


class UpstreamProtocol(asyncio.Protocol):
    """One pooled keep-alive connection to a backend, carrying one request at a time."""

    __slots__ = (
        "backend",
        "closed",
        "committed",
        "complete",
        "deadline",
        "discard",
        "front",
        "head",
        "headed",
        "parser",
        "pool",
        "req",
        "status",
        "transport",
        "upstream_keep_alive",
    )

    def __init__(self, front: HttpFront, backend: BackendState, pool: Pool) -> None:
        self.front = front
        self.backend = backend
        self.pool = pool
        self.transport: Any = None
        self.parser = httptools.HttpResponseParser(self)
        self.req: Request | None = None
        self.closed = False
        self.deadline = 0.0
        self._reset()

    def _reset(self) -> None:
        self.head = b""  # raw response bytes held until the head is complete
        self.headed = False
        self.committed = False  # bytes went to the client: no retry from here on
        self.complete = False
        self.discard = False  # a 503 being retried elsewhere: drop the rest of it
        self.status = 0
        self.upstream_keep_alive = True

    # -- asyncio callbacks -----------------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        req = self.req
        if self.closed or req is None:  # the try ended (timed out) while connecting
            transport.close()
            return
        transport.write(req.data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        self.pool.forget(self)
        req = self.req
        if req is not None and not self.complete:
            self.req = None
            self.front.try_failed(self, req, "reset" if exc else "closed")

    def eof_received(self) -> bool:
        return False

    def data_received(self, data: bytes) -> None:
        req = self.req
        if req is None:  # nothing asked: a confused server; this connection cannot be trusted
            self.close()
            return
        if self.committed:  # a response on its way (a generation's stream): the per-try timeout is now an idle one
            self.deadline = self.front.router.now + self.front.router.per_try_timeout
        if self.headed:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                self._broken(req)
                return
            if not self.discard:
                client = req.client
                if client is not None and client.transport is not None:
                    client.transport.write(data)
        else:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                self._broken(req)
                return
            if not self.headed:
                self.head += data
                return
            if self.discard:
                pass
            else:
                if self.head:
                    data = self.head + data
                    self.head = b""
                self.committed = True
                client = req.client
                if client is not None and client.transport is not None:
                    if not (self.upstream_keep_alive and req.keep_alive and not req.http10):
                        data = _rewrite_head(data, req.keep_alive, req.http10)
                    client.transport.write(data)
        if self.complete:
            self.front.try_done(self, req)

    # -- httptools callbacks ---------------------------------------------------------------------------
    def on_headers_complete(self) -> None:
        self.headed = True
        p = self.parser
        self.status = status = p.get_status_code()
        self.upstream_keep_alive = p.should_keep_alive()
        req = self.req
        if req is not None:
            if status == 503 or status == 429:
                self.discard = self.front.retry_on_status(self, req)
            elif status >= 500:
                self.discard = self.front.failover(self, req)
            if req.head_only:
                self.complete = True
                self.upstream_keep_alive = False  # httptools cannot be told that a HEAD response has no body

    def on_message_complete(self) -> None:
        self.complete = True

    # -- life --------------------------------------------------------------------------------------------
    def send(self, req: Request, deadline: float) -> None:
        self.req = req
        self.deadline = deadline
        self._reset()
        self.transport.write(req.data)

    def reusable(self) -> bool:
        return not self.closed and self.upstream_keep_alive and self.complete

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _broken(self, req: Request) -> None:
        self.upstream_keep_alive = False
        self.complete = True
        self.close()
        self.front.try_failed(self, req, "protocol", force_no_retry=self.committed)


def _rewrite_head(data: bytes, keep_alive: bool, http10: bool) -> bytes:
    """Replace the response's Connection headers by the ones the client connection needs."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return data
    lines = data[:end].split(b"\r\n")
    kept = [ln for ln in lines[1:] if ln.split(b":", 1)[0].strip().lower() not in (b"connection", b"keep-alive")]
    if not keep_alive:
        kept.append(b"connection: close")
    elif http10:
        kept.append(b"connection: keep-alive")
    return b"\r\n".join([lines[0], *kept]) + data[end:]


def connect(front: HttpFront, backend: BackendState, pool: Pool, req: Request, deadline: float) -> UpstreamProtocol:
    """Open a new upstream connection for ``req``; the request is written as soon as it connects."""
    loop = asyncio.get_running_loop()
    proto = UpstreamProtocol(front, backend, pool)
    proto.req = req
    proto.deadline = deadline
    if backend.uds is not None:
        task = loop.create_task(loop.create_unix_connection(lambda: proto, backend.uds))
    else:
        assert backend.port is not None  # a Backend has a port or a Unix socket (Backend.__post_init__)
        task = loop.create_task(loop.create_connection(lambda: proto, backend.host, backend.port))

    def connected(t: asyncio.Task[Any]) -> None:
        if t.cancelled():
            exc: BaseException | None = ConnectionAbortedError("connect cancelled")
        else:
            exc = t.exception()
        if exc is not None:
            proto.closed = True
            pool.forget(proto)
            r = proto.req
            if r is not None:
                proto.req = None
                front.try_failed(proto, r, "connect")

    task.add_done_callback(connected)
    return proto


class Pool:
    """The upstream connections to one backend: all of them, and the idle ones ready for the next request."""

    __slots__ = ("conns", "idle")

    def __init__(self) -> None:
        self.idle: list[UpstreamProtocol] = []
        self.conns: set[UpstreamProtocol] = set()

    def forget(self, up: UpstreamProtocol) -> None:
        self.conns.discard(up)
        with contextlib.suppress(ValueError):
            self.idle.remove(up)

    def close_idle(self) -> None:
        idle, self.idle = self.idle, []
        for up in idle:
            up.close()


class HttpFront:
    """The router's HTTP side: its listener, client connections, upstream pools and the tries in flight.

    A try's life: ``send`` (a backend from ``RouterApi.begin_try``, a pooled or new connection), then ``try_done`` (the
    response went to the client, or a 503/429 is retried elsewhere) or ``try_failed`` (refused, reset, closed,
    unparsable or timed out: retried elsewhere while ``RouterApi.may_retry`` allows). ``tick`` runs in the router's
    housekeeping pass: per-try timeouts and the client connections' limits.
    """

    def __init__(self, router: RouterApi) -> None:
        self.router = router
        self.clients: set[ClientProtocol] = set()
        self.busy: set[UpstreamProtocol] = set()  # connections carrying a try now
        self.pools: dict[BackendState, Pool] = {}
        self.refused_connections = 0
        self.poison_guarded = 0
        self.server: asyncio.AbstractServer | None = None
        self._next_sweep = 0.0

    # -- listener ----------------------------------------------------------------------------------------
    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0 picks a free port); returns the port."""
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: ClientProtocol(self), host, port, backlog=2048, reuse_address=True
        )
        return int(self.server.sockets[0].getsockname()[1])

    async def stop_listening(self) -> None:
        if self.server is not None:
            if stop_new_connections(getattr(self.server, "sockets", ())):
                await asyncio.sleep(0.05)  # accept what completed its handshake before: closing would reset it
            self.server.close()

    async def drain(self, deadline: float) -> None:
        """Wait until no client connection has a request in flight, or the loop time ``deadline``."""
        loop = asyncio.get_running_loop()
        while any(c.current is not None for c in self.clients) and loop.time() < deadline:
            await asyncio.sleep(0.02)

    def close(self) -> None:
        """Close every client connection (after ``drain``)."""
        for c in list(self.clients):
            if c.transport is not None:
                c.transport.close()
        self.server = None

    # -- backends ----------------------------------------------------------------------------------------
    def backend_retired(self, st: BackendState) -> None:
        """``st`` left the ready set: its idle connections go; those in flight finish."""
        pool = self.pools.get(st)
        if pool is not None:
            pool.close_idle()

    def backend_closed(self, st: BackendState) -> None:
        """``st`` is gone (retired with nothing in flight, or the router stops): close its connections at rest."""
        pool = self.pools.pop(st, None)
        if pool is None:
            return
        pool.close_idle()
        for up in list(pool.conns):
            if up.req is None:
                up.close()

    # -- request path ------------------------------------------------------------------------------------
    def send(self, req: Request) -> None:
        """Start a try of ``req`` on the backend the router chooses, or leave it in the router's buffer."""
        router = self.router
        b = router.begin_try(req.tried, pin=req.pin, work=req.work)
        if b is None:
            router.buffer(req)
            return
        req.attempts += 1
        req.backend = b
        req.sent = time.monotonic()
        deadline = router.now + router.per_try_timeout
        pool = self.pools.get(b)
        if pool is None:
            pool = self.pools[b] = Pool()
        idle = pool.idle
        while idle:
            up = idle.pop()
            if not up.closed:
                up.send(req, deadline)
                break
        else:
            up = connect(self, b, pool, req, deadline)
            pool.conns.add(up)
        req.upstream = up
        self.busy.add(up)

    def _end_try(self, up: UpstreamProtocol, req: Request) -> BackendState:
        self.busy.discard(up)
        up.req = None
        req.upstream = None
        b = up.backend
        self.router.end_try(b, req.work)
        return b

    def try_done(self, up: UpstreamProtocol, req: Request) -> None:
        b = self._end_try(up, req)
        b.rev.record(http_error(up.status), time.monotonic() - req.sent)
        if up.reusable() and not b.retired and len(up.pool.idle) < IDLE_POOL:
            up.pool.idle.append(up)
        else:
            up.close()
        if tracing.tracer is not None:
            tracing.router_try(req, b.id, up.status, "status" if up.discard else "")
        if up.discard:  # a 503/429 answered by a backend; the retry was granted when its head arrived
            req.tried.append(b)
            if req.client is not None:
                self.send(req)
            return
        b.count(up.status)
        client = req.client
        if client is not None:
            client.done(req)

    def try_failed(self, up: UpstreamProtocol, req: Request, reason: str, force_no_retry: bool = False) -> None:
        if up in self.busy or up.req is req:
            b = self._end_try(up, req)
        else:  # the try never counted (a connect that failed after the request was already settled)
            return
        b.rev.record(True, time.monotonic() - req.sent)
        if tracing.tracer is not None:
            committed = up.committed or force_no_retry
            tracing.router_try(req, b.id, 502 if committed else None, "" if committed else reason)
        if up.committed or force_no_retry:
            b.count("aborted")
            if req.client is not None:
                client = req.client
                req.client = None
                client.abort()
            return
        if req.client is None:
            return
        req.tried.append(b)
        self.router.eject(b)
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

    def _retry(self, req: Request, reason: str) -> None:
        router = self.router
        if not router.may_retry(req.attempts, reason):
            why = "tries" if req.attempts > router.max_retries else "retry budget"
            if reason == "timeout":
                msg = b"no response from replica %s within the per-try timeout of %gs (%d tries; out of %s)" % (
                    req.backend.id.encode() if req.backend else b"?",
                    router.per_try_timeout,
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
        self.send(req)

    def failover(self, up: UpstreamProtocol, req: Request) -> bool:
        """At the head of an error from a canary: retry on the stable revision (True, the response is dropped)."""
        return req.client is not None and req.pin is None and self.router.failover(up.backend, req.attempts)

    def retry_on_status(self, up: UpstreamProtocol, req: Request) -> bool:
        """At the head of a 503/429: retry elsewhere (True, the response is dropped) or pass it on (False)."""
        if req.client is None or not self.router.has_ready_besides(up.backend):
            return False
        return self.router.may_retry(req.attempts, f"status_{up.status}")

    # -- housekeeping ------------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """The router's housekeeping pass: end tries past their per-try timeout, sweep the client connections."""
        if self.busy:
            late = [up for up in self.busy if up.deadline <= now]
            for up in late:
                req = up.req
                up.upstream_keep_alive = False
                up.close()
                if req is not None:
                    self.try_failed(up, req, "timeout")
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP
            for c in list(self.clients):
                c.check_limits(now)
