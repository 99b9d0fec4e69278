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
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httptools
import orjson

if TYPE_CHECKING:
    from kubeinfer.local.router import Router, _BackendState

log = logging.getLogger("kubeinfer.local.router")

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
        "tried",
        "upstream",
    )

    def __init__(self, client: ClientProtocol, data: bytes, keep_alive: bool, http10: bool, head_only: bool) -> None:
        self.client: ClientProtocol | None = client
        self.data = data
        self.keep_alive = keep_alive
        self.http10 = http10
        self.head_only = head_only
        self.attempts = 0
        self.tried: list[_BackendState] = []
        self.backend: _BackendState | None = None
        self.upstream: UpstreamProtocol | None = None
        self.enqueued = 0.0
        self.lost = 0  # tries whose replica connection broke after the request was sent (router: crash guard)
        self.own: OwnRoute | None = None

    # The router's buffer calls these two on every kind of waiting request (HTTP here, gRPC in router_grpc).
    def dispatch(self) -> None:
        if self.client is not None:
            self.client.router._send(self)

    def reject(self, status: int, message: bytes, retry_after: int | None = None) -> None:
        if self.client is not None:
            self.client.finish_with(self, status, message, retry_after)

    @property
    def alive(self) -> bool:
        return self.client is not None


OwnRoute = Callable[[], tuple[int, bytes, bytes]]


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


def _error_route(status: int, message: bytes) -> OwnRoute:
    body = orjson.dumps({"error": message.decode("utf-8", "replace")})
    return lambda: (status, body, b"application/json")


class ClientProtocol(asyncio.Protocol):
    """A downstream (client) connection. Requests on one connection are proxied one at a time, in order."""

    def __init__(self, router: Router) -> None:
        self.router = router
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

    # -- asyncio callbacks -----------------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        router = self.router
        if len(router._clients) >= router.conn_limits.max_connections:
            router._count_local(503)
            router.refused_connections += 1
            body = b'{"error":"the router has %d client connections, its limit (server.limits.maxConnections)"}' % (
                len(router._clients)
            )
            transport.write(simple_response(503, body, extra=b"retry-after: 1\r\n", close=True))
            transport.close()
            self.transport = None
            return
        self.idle_since = router._now
        router._clients.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.router._clients.discard(self)
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
        self.began = self.router._now or 1e-9
        self.headed = False
        self.head_bytes = 0
        self.head_count = 0
        self.declared = -1

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
        own = self.router._own_routes.get(url) if method in (b"GET", b"HEAD") else None
        if own is not None:
            req = Request(self, b"", keep_alive, http10, method == b"HEAD")
            req.own = own
        else:
            headers = self.headers
            if self.chunked:
                headers.append(b"content-length: %d\r\n" % self.body_size)
            data = b"".join([method, b" ", url, b" HTTP/1.1\r\n", *headers, b"\r\n", *self.body])
            req = Request(self, data, keep_alive, http10, method == b"HEAD")
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
            self.router._accept(req)

    def finish_raw(self, req: Request, payload: bytes) -> None:
        """Send a whole response the router made itself, and end ``req``."""
        t = self.transport
        if t is None or req is not self.current:
            return
        if req.head_only:
            payload = payload[: payload.find(b"\r\n\r\n") + 4]
        t.write(payload)
        self.done(req)

    def finish_with(self, req: Request, status: int, message: bytes, retry_after: int | None) -> None:
        """End ``req`` with an error of the router's own: a JSON body ``{"error": message}``."""
        self.router._count_local(status)
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
            self.idle_since = self.router._now
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
        self.router._count_local(status)
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
        "head",
        "headed",
        "parser",
        "req",
        "router",
        "status",
        "transport",
        "upstream_keep_alive",
    )

    def __init__(self, router: Router, backend: _BackendState) -> None:
        self.router = router
        self.backend = backend
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
        self.backend.forget(self)
        req = self.req
        if req is not None and not self.complete:
            self.req = None
            self.router._try_failed(self, req, "reset" if exc else "closed")

    def eof_received(self) -> bool:
        return False

    def data_received(self, data: bytes) -> None:
        req = self.req
        if req is None:  # nothing asked: a confused server; this connection cannot be trusted
            self.close()
            return
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
            self.router._try_done(self, req)

    # -- httptools callbacks ---------------------------------------------------------------------------
    def on_headers_complete(self) -> None:
        self.headed = True
        p = self.parser
        self.status = status = p.get_status_code()
        self.upstream_keep_alive = p.should_keep_alive()
        req = self.req
        if req is not None:
            if status == 503 or status == 429:
                self.discard = self.router._retry_on_status(self, req)
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
        self.router._try_failed(self, req, "protocol", force_no_retry=self.committed)


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


def connect(router: Router, backend: _BackendState, req: Request, deadline: float) -> UpstreamProtocol:
    """Open a new upstream connection for ``req``; the request is written as soon as it connects."""
    loop = asyncio.get_running_loop()
    proto = UpstreamProtocol(router, backend)
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
            backend.forget(proto)
            r = proto.req
            if r is not None:
                proto.req = None
                router._try_failed(proto, r, "connect")

    task.add_done_callback(connected)
    return proto
