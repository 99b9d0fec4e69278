"""uvicorn's httptools protocol, with two changes on the request path.

1. **Writes made in one event-loop turn leave in one ``send()``.** An ASGI response is two messages, and uvicorn
   writes each at once: the status line and headers, then the body. On a small inference answer that is two system
   calls and two TCP segments where one would do, for every request, on the server and on the client. The transport
   below holds writes until the end of the current loop turn and sends them together. Closing flushes first.

2. **OIP v2 infer requests skip the ASGI layer.** ``POST /v2/models/{name}[/versions/{v}]/infer`` with a
   ``Content-Length`` within the body limit is parsed, validated and queued straight from the parser's callbacks,
   and answered from the batcher future's done-callback: no ASGI scope, no task, no event, no message dicts per
   request. That machinery costs about as much Python as the rest of the request (measured with py-spy under
   ``wrk -c64``), and the batcher already is a future. Behaviour is the ASGI route's: the same parsing, validation,
   errors, metrics, concurrency limit, deadlines and ``Connection: close`` while draining (both routes call the
   same :class:`~kubeinfer.server.app.InferenceApp` methods, match the path with the same route table,
   ``routes.py``, and are counted by the same :class:`~kubeinfer.server.dataplane.DataPlane`). Anything else --
   another route, a chunked body, an oversized one, ``Expect: 100-continue``, a query string, a request pipelined
   behind one of those -- takes uvicorn's ordinary path to the ASGI app.

3. **Pipelined infer requests run together and are answered in order** (RFC 9112 section 9.3.2). uvicorn serves a
   connection's pipelined requests one after the other; here direct requests that arrive back to back on one
   connection are all queued to the batcher at once (so they can share a batch) and their answers leave in request
   order, those ready in one loop turn in one ``send()``: a client or proxy that pipelines gets a replica that reads
   and writes once per burst instead of once per request. At most ``MAX_PIPELINE`` requests of a connection are in progress; beyond that the connection is not
   read until answers went out. While the server drains, the connection is no longer read: the requests already
   read are answered, the last of them with ``Connection: close``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from kubeinfer.server import tracing
from kubeinfer.server.errors import OutOfMemory, ServerError, internal_error

if TYPE_CHECKING:
    from kubeinfer.server.app import InferenceApp
    from kubeinfer.server.dataplane import DataPlane, ModelSlot
    from kubeinfer.server.payload_log import Tap
    from kubeinfer.server.tensors import InferRequest

__all__ = ["CoalescingHttpToolsProtocol", "InferHttpProtocol", "protocol_for"]

log = logging.getLogger("kubeinfer.server")

_PREFIX = b"/v2/models/"
_SUFFIX = b"/infer"
_JSON_500 = [(b"content-type", b"application/json")]
MAX_PIPELINE = 128  # direct requests of one connection in progress at once


class _CoalescingTransport:
    __slots__ = ("_buf", "_loop", "_real")

    def __init__(self, real: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._real = real
        self._loop = loop
        self._buf: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._buf:
            self._loop.call_soon(self._flush)
        self._buf.append(bytes(data))

    def _flush(self) -> None:
        if self._buf:
            data = self._buf[0] if len(self._buf) == 1 else b"".join(self._buf)
            self._buf.clear()
            if not self._real.is_closing():
                self._real.write(data)

    def write_now(self, data: bytes) -> None:
        """Write at once, with anything held, in one ``send()``: for a response that is already one buffer."""
        if self._buf:
            self._buf.append(data)
            self._flush()
        else:
            self._real.write(data)

    def close(self) -> None:
        self._flush()
        self._real.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_CoalescingTransport(transport, asyncio.get_running_loop()))  # type: ignore[arg-type]


class _Event:
    """What uvicorn calls on ``cycle.message_event`` when a connection is lost; a direct request has no waiter."""

    __slots__ = ()

    def set(self) -> None:
        pass


_NO_EVENT = _Event()


class _DirectCycle:
    """Stands in for uvicorn's ``RequestResponseCycle`` while a request is served directly: uvicorn reads
    ``response_complete`` and sets ``keep_alive``/``disconnected`` on it (shutdown, connection loss, pipelining)."""

    __slots__ = (
        "body",
        "disconnected",
        "head",
        "headers",
        "keep_alive",
        "payload",
        "response_complete",
        "span",  # the request's span, set only while tracing is on (server/tracing.py)
        "start",
        "tap",
        "url",
    )

    message_event = _NO_EVENT
    span: Any

    def __init__(self, url: bytes, headers: dict[bytes, bytes], keep_alive: bool) -> None:
        self.url = url
        self.headers = headers
        self.keep_alive = keep_alive
        self.response_complete = False  # written (answers leave in request order)
        self.disconnected = False
        self.body: list[bytes] = []
        self.start = time.perf_counter()
        self.head: bytes | None = None  # the answer's status line and headers, less the Connection header
        self.payload = b""
        self.tap: Tap | None = None  # the payload log's, when it samples this request (server/payload_log.py)


class InferHttpProtocol(CoalescingHttpToolsProtocol):
    """Serves OIP v2 infer requests directly (module docstring); ``app_direct`` and its ``plane`` are set by
    :func:`protocol_for`.

    Two smaller savings ride along. The ASGI scope is built only for requests that go to the ASGI app. And the
    keep-alive timeout is one timer per idle period rather than one per request: uvicorn arms a ``call_later``
    after every response and cancels it on the next request's first bytes; here the timer, when it fires, checks
    how long the connection has really been idle and re-arms for the rest (the same timeout, enforced the same).
    """

    app_direct: InferenceApp
    plane: DataPlane

    _direct: _DirectCycle | None = None
    _idle_since: float | None = None
    # Connection limits (Limits; checked here and by the server's sweep, check_limits): when the request being read
    # began (0.0: none is being read), whether its head is complete, and the head's size so far.
    _began = 0.0
    _headed = False
    _head_bytes = 0
    _head_count = 0
    _refusal: tuple[int, str] | None = None
    _refused = False
    _fresh = True  # no byte has come on this connection yet

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._queue: deque[_DirectCycle] = deque()  # direct requests not answered yet, in request order
        super().connection_made(transport)
        self._began = self.loop.time()  # the first request head must come within header_timeout
        limit = self.plane.limits.max_connections
        if len(self.server_state.connections) > limit:
            # Past the cap a connection is answered at once and closed: it holds no file descriptor for long.
            self.plane.metrics.request("", "", "http", 503, 0.0)
            self._refuse(503, f"the server has {limit} connections open, its limit (server.limits.maxConnections)")

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # the connection is closing after its refusal: what follows is not read
        self._idle_since = None
        self._fresh = False
        if not self._began:
            self._began = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError as e:
            if self._refusal is not None:
                status, message = self._refusal
            else:
                status, message = 400, f"malformed HTTP request: {e}"
            self._refuse(status, message)

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` with a JSON error and close the connection, after the answers of the requests already
        read on it (they are not lost); nothing more is read."""
        self._began = 0.0
        self._refused = True
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        payload = orjson.dumps({"error": message})
        head = b"".join(
            [STATUS_LINE[status], b"content-type: application/json\r\n"]
            + ([b"retry-after: 1\r\n"] if status == 503 else [])
            + [b"content-length: ", str(len(payload)).encode(), b"\r\n"]
        )
        self.flow.pause_reading()
        direct = self._direct
        if direct is not None:  # a direct request being read: it will never be whole
            self._direct = None
            if self._queue and self._queue[-1] is direct:
                self._queue.pop()
        if self._queue:  # answers of requests already read are still to go out: the refusal follows them
            last = _DirectCycle(b"", {}, False)
            last.head, last.payload = head, payload
            self._queue.append(last)
            self._write_ready()
            return
        cycle: Any = self.cycle
        if (
            cycle is not None
            and cycle is not direct
            and not cycle.response_complete
            and not getattr(cycle, "more_body", True)
        ):
            cycle.keep_alive = False  # an ASGI request read whole is being answered: it finishes, then the close
            return
        transport.write(head + b"connection: close\r\n\r\n" + payload)
        transport.close()

    def check_limits(self, now: float) -> None:
        """The server's sweep: a request whose head or body arrives too slowly is answered 408, and the connection
        closed (a client sending nothing, half a head, or a Content-Length larger than its body)."""
        began = self._began
        if not began:
            return
        lim = self.plane.limits
        if self._fresh and now - began > lim.header_timeout:
            self.transport.close()  # a connection that never sent a byte: closed without an answer
        elif not self._headed and now - began > lim.header_timeout:
            self._refuse(
                408,
                f"the request head did not arrive within {lim.header_timeout:g}s (server.limits.headerTimeoutSeconds)",
            )
        elif now - began > lim.body_timeout:
            self._refuse(
                408, f"the request did not arrive whole within {lim.body_timeout:g}s (server.limits.bodyTimeoutSeconds)"
            )

    def pause_writing(self) -> None:
        # The client does not read its answers (asyncio's write buffer is past its high-water mark): stop reading
        # its requests too, so that what it pipelines cannot pile answers up in memory.
        super().pause_writing()
        self.flow.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        if len(self._queue) < MAX_PIPELINE // 2 and not self.pipeline and not self.plane.draining:
            self.flow.resume_reading()

    def on_url(self, url: bytes) -> None:
        self._head_bytes += len(url)
        if self._head_bytes > self.plane.limits.max_header_bytes:
            self._refusal = (
                414,
                f"the request line is longer than {self.plane.limits.max_header_bytes} bytes "
                "(server.limits.maxHeaderBytes)",
            )
            raise ValueError  # stops the parser: data_received answers the refusal
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        self._head_count += 1
        lim = self.plane.limits
        if self._head_bytes > lim.max_header_bytes or self._head_count > lim.max_headers:
            self._refusal = (
                431,
                f"the request head is larger than the limits: {lim.max_header_bytes} bytes, "
                f"{lim.max_headers} fields (server.limits.maxHeaderBytes, maxHeaders)",
            )
            raise ValueError  # stops the parser: data_received answers the refusal
        super().on_header(name, value)

    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        if not self.flow.write_paused:
            self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self._keep_alive_check)

    def _keep_alive_check(self) -> None:
        self.timeout_keep_alive_task = None
        idle_since = self._idle_since
        if idle_since is None or self.transport.is_closing():
            return  # busy: the next response re-arms
        left = idle_since + self.timeout_keep_alive - self.loop.time()
        if left <= 0:
            self.transport.close()
        else:
            self.timeout_keep_alive_task = self.loop.call_later(left, self._keep_alive_check)

    def on_message_begin(self) -> None:
        self._direct = None
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self._began = self.loop.time()
        self._headed = False
        self._head_bytes = 0
        self._head_count = 0

    def _make_scope(self) -> None:
        """What uvicorn's ``on_message_begin`` builds, for a request that goes to the ASGI app."""
        self.scope = {  # type: ignore[typeddict-item]
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,  # type: ignore[typeddict-item]
            "root_path": self.root_path,
            "headers": self.headers,
            "state": self.app_state.copy(),
        }

    def on_headers_complete(self) -> None:
        self._headed = True
        url = self.url
        if (
            url.endswith(_SUFFIX)
            and url.startswith(_PREFIX)
            and b"%" not in url
            and self.parser.get_method() == b"POST"
            and not self.expect_100_continue
            and (self.cycle is None or self.cycle.response_complete or self._queue)
            and not self.pipeline
        ):
            headers = dict(self.headers)
            length = headers.get(b"content-length", b"")
            if length.isdigit() and int(length) <= self.plane.limits.max_body_bytes:
                keep = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
                self._direct = cycle = _DirectCycle(url, headers, keep)
                self.cycle = cycle  # type: ignore[assignment]
                self._queue.append(cycle)
                if len(self._queue) >= MAX_PIPELINE:
                    self.flow.pause_reading()
                return
        self._make_scope()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        direct = self._direct
        if direct is None:
            super().on_body(body)
        else:
            direct.body.append(body)

    def on_message_complete(self) -> None:
        self._began = 0.0
        direct = self._direct
        if direct is None:
            super().on_message_complete()
            return
        self._direct = None
        self._serve(direct)

    # -- the direct infer path --------------------------------------------------------------------------
    def _serve(self, cycle: _DirectCycle) -> None:
        app = self.app_direct
        self.plane.begin()  # the request's time counts from its head (cycle.start), in flight from here
        slot: ModelSlot | None = None
        try:
            if app.keys is not None:
                app.keys.check(cycle.headers.get(b"authorization"))
            slot = app.infer_v2_slot(cycle.url.decode("ascii"))
            body = cycle.body[0] if len(cycle.body) == 1 else b"".join(cycle.body)
            if self.plane.payload_log is not None:
                cycle.tap = self.plane.payload_log.tap("v2", cycle.headers, body)
            cycle.body = []
            if tracing.tracer is None:
                req, future = app.infer_v2_submit(slot, body, cycle.headers)
            else:
                req, future = tracing.direct_submit(cycle, app.infer_v2_submit, slot, body, cycle.headers)
        except ServerError as e:
            status, payload, headers = app.error_response(e)
            self._finish(cycle, slot, status, payload, headers)
            return
        except MemoryError:
            cycle.body = []
            status, payload, headers = app.error_response(OutOfMemory.of("reading this request"))
            self._finish(cycle, slot, status, payload, headers)
            return
        except Exception as e:  # a bug: log it, answer 500 with a message, keep serving
            self._crash(cycle, slot, e)
            return
        future.add_done_callback(lambda f: self._answer(cycle, slot, req, f))

    def _answer(self, cycle: _DirectCycle, slot: ModelSlot, req: InferRequest, future: asyncio.Future[Any]) -> None:
        app = self.app_direct
        try:
            error = future.exception()
            if error is not None:
                raise error
            if tracing.tracer is None or cycle.span is None:  # off, or this request is not sampled
                payload, headers = app.infer_v2_response(slot, req, future.result())
            else:
                payload, headers = tracing.encode(cycle.span, app.infer_v2_response, slot, req, future.result())
        except ServerError as e:
            status, payload, headers = app.error_response(e)
            self._finish(cycle, slot, status, payload, headers)
            return
        except BaseException as e:
            self._crash(cycle, slot, e)
            return
        self._finish(cycle, slot, 200, payload, headers)

    def _crash(self, cycle: _DirectCycle, slot: ModelSlot | None, e: BaseException) -> None:
        log.error("unhandled error on POST %s", cycle.url.decode("ascii", "replace"), exc_info=e)
        body = orjson.dumps({"error": internal_error(e)})
        self._finish(cycle, slot, 500, body, _JSON_500)

    def _finish(
        self,
        cycle: _DirectCycle,
        slot: ModelSlot | None,
        status: int,
        payload: bytes,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        if cycle.tap is not None:
            cycle.tap.close(slot, status, payload, headers)
        self.plane.end(cycle.start, slot, "v2", status)
        if tracing.tracer is not None:
            tracing.direct_end(cycle, slot, status)
        transport = self.transport
        if transport.is_closing():
            return
        out = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            out += [name, b": ", value, b"\r\n"]
        for name, value in headers:
            if name != b"connection":
                out += [name, b": ", value, b"\r\n"]
        out += [b"content-length: ", str(len(payload)).encode(), b"\r\n"]
        cycle.head = b"".join(out)
        cycle.payload = payload
        if self._queue and self._queue[0] is cycle:
            self._write_ready()

    def _write_ready(self) -> None:
        """Write the answers that are ready at the head of the queue, in request order."""
        queue = self._queue
        transport = self.transport
        draining = self.plane.draining
        out: list[bytes] = []
        written = 0
        keep = True
        while queue and (head := queue[0].head) is not None:
            cycle = queue.popleft()
            cycle.response_complete = True
            written += 1
            # Draining: the last answer of the queue closes the connection (no new request is read meanwhile).
            keep = cycle.keep_alive and not (draining and not queue)
            out += [head, b"\r\n"] if keep else [head, b"connection: close\r\n\r\n"]
            out.append(cycle.payload)
            if not keep:
                break
        if not written:
            return
        data = b"".join(out)
        if not keep:
            queue.clear()
            transport.write(data)
            transport.close()
            return
        if queue:
            self.server_state.total_requests += written
            transport.write(data)  # more answers may follow in this loop turn: they leave together
            if draining:
                self.flow.pause_reading()
            elif len(queue) < MAX_PIPELINE // 2 and not self.pipeline:
                self.flow.resume_reading()
        else:
            self.server_state.total_requests += written - 1  # on_response_complete counts the last
            transport.write_now(data)  # type: ignore[attr-defined]
            self.on_response_complete()


def protocol_for(app: InferenceApp) -> type[InferHttpProtocol]:
    """The protocol class uvicorn instantiates per connection, bound to ``app``."""
    return type("InferHttpProtocolFor", (InferHttpProtocol,), {"app_direct": app, "plane": app.plane})
