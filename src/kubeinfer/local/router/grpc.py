"""The router's gRPC side: every method is proxied as raw bytes, with no protobuf decoding.

A backend is reached on its gRPC port, or, for a replica without TCP (``kubeinfer up``'s default), on its Unix
socket(s) through a ``unix:PATH`` channel.

A ``grpc.aio`` generic handler answers any method path; requests and responses cross as ``bytes`` (no
deserializer), so the router needs no generated code and forwards services it does not know. The cardinality comes
from the method name: ``ModelStreamInfer`` (Triton's streaming extension of OIP v2) is stream-stream and everything
else unary-unary, which covers ``inference.GRPCInferenceService``.

Unary calls get the HTTP side's policy: the backend is chosen by power of two choices, each try has the per-try
timeout (or the client's deadline when sooner), and a try that ends ``UNAVAILABLE`` (connection refused or reset,
replica draining or its queue full) or ``DEADLINE_EXCEEDED`` because of the per-try timeout is retried on another
backend within ``max_retries`` and the retry budget. A unary response is sent only once complete, so a retry never
follows response bytes. While no backend is ready, calls wait in the router's buffer like HTTP requests.

A stream is one bidirectional call to one backend, chosen the same way: each request goes up and each response comes
back as it arrives, in order, untouched (an answer's ``error_message`` included: the stream goes on). There is no
per-try timeout (a stream may rightly stay open for long), only the client's deadline. A try that ends ``UNAVAILABLE``
before any response went back is retried on another backend like a unary call, the requests sent so far replayed
(inference is a pure function of its input, as the HTTP side assumes); after a response went back, the stream ends
with the backend's status. The client's cancellation cancels the backend's call. One task reads the client's
requests for the stream's whole life (``_Requests``) and the try in progress writes them up: a read abandoned when a
try fails could lose a request. It reads a request only once the last one was written, so HTTP/2 flow control still
holds the client back when a backend reads slowly.

``GrpcFront`` owns the server and the channels to the backends; like the HTTP front, it reaches the router through
``api.RouterApi`` only, so both count requests, tries and retries the same way (the retry budget included).

Two services are not simply proxied. ``grpc.health.v1.Health`` is answered by the router itself for the whole
service (``""`` and ``inference.GRPCInferenceService``: SERVING while any replica is ready, NOT_SERVING otherwise and
from shutdown on), which is what a load balancer or a ``grpc`` probe in front of the router asks; a model's name is
asked of a ready replica (it knows its models), and ``Watch`` streams the router's own view. Server reflection's
``ServerReflectionInfo`` is a bidirectional stream and is proxied as one, like ``ModelStreamInfer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from kubeinfer.local.router.api import BackendState, RouterApi, log_unexpected_end
from kubeinfer.server import tracing

__all__ = ["GrpcFront"]

log = logging.getLogger("kubeinfer.local.router")

_INT32_MAX = 2**31 - 1
_DROP = ("user-agent", "content-type", "te", "host")
_RETRYABLE = (grpc.StatusCode.UNAVAILABLE,)
# The codes that count against a revision (as a 5xx does over HTTP): the server failed, not the request.
_ERRORS = (
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.DEADLINE_EXCEEDED,
)
# Bidirectional streams: proxied as streams (every other method of the services behind the router is unary).
_STREAMS = ("/ModelStreamInfer", "/ServerReflectionInfo")
_SERVICE_WIDE = ("", "inference.GRPCInferenceService")
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
_HEALTH_POLL = 0.2


class _Rejected(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _GrpcWaiter:
    """A gRPC call in the router's buffer; its future resolves when a backend is ready or the wait ends."""

    __slots__ = ("enqueued", "future")

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future
        self.enqueued = 0.0

    @property
    def alive(self) -> bool:
        return not self.future.done()

    def dispatch(self) -> None:
        if not self.future.done():
            self.future.set_result(None)

    def reject(self, status: int, message: bytes, retry_after: int | None = None) -> None:
        if not self.future.done():
            self.future.set_exception(_Rejected(message.decode("utf-8", "replace")))


def _pin_header(metadata: Sequence[tuple[str, str | bytes]]) -> bytes | None:
    for key, value in metadata:
        if key == "x-kubeinfer-revision":
            return value if isinstance(value, bytes) else value.encode()
    return None


def _forwarded(metadata: Any) -> list[tuple[str, str | bytes]]:
    out: list[tuple[str, str | bytes]] = []
    for m in metadata or ():
        key = m[0]
        if key.startswith((":", "grpc-")) or key in _DROP:
            continue
        out.append((key, m[1]))
    return out


class GrpcFront:
    """The router's gRPC side: its server, a channel (or one per Unix socket) to each backend that serves gRPC."""

    def __init__(self, router: RouterApi) -> None:
        self.router = router
        self.channels: dict[BackendState, _Channels] = {}
        self.server: Any = None
        self.proxy = _Proxy(self)
        self.health = _RouterHealth(self)
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self, host: str, port: int) -> int:
        """Start the gRPC listener on the running loop; ``port`` 0 picks a free port. Returns the port."""
        self._loop = asyncio.get_running_loop()
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", min(self.router.max_body_bytes, _INT32_MAX)),
                ("grpc.max_send_message_length", -1),
                ("grpc.so_reuseport", 0),
            ]
        )
        # health first: the proxy answers any method path, so whatever is added after it is never reached
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        server.add_generic_rpc_handlers((self.proxy,))
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError:
            bound = 0
        if not bound:
            raise OSError(f"router: cannot listen for gRPC on {address} (choose another port, or stop what uses it)")
        await server.start()
        await self.health.start()
        self.server = server
        return int(bound)

    async def stop(self, grace: float) -> None:
        await self.health.close()
        if self.server is not None:
            await self.server.stop(grace)

    def channel(self, st: BackendState) -> Any:
        """A channel to the backend: its TCP gRPC port, or in turn one of its gRPC Unix sockets (one per server
        process of a replica without TCP; a TCP port is shared by them and the kernel spreads the connections)."""
        chans = self.channels.get(st)
        if chans is None:
            opts = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
            b = st.backend
            targets = [f"unix:{path}" for path in b.grpc_uds] or [f"{st.host}:{b.grpc_port}"]
            chans = self.channels[st] = _Channels([grpc.aio.insecure_channel(t, options=opts) for t in targets])
        return chans.next()

    def backend_closed(self, st: BackendState) -> None:
        """``st`` is gone: close its channels (a call still on one is cancelled)."""
        chans = self.channels.pop(st, None)
        loop = self._loop
        if chans is None or loop is None or loop.is_closed():
            return
        for ch in chans.all:
            task = loop.create_task(ch.close(), name=f"kubeinfer-router-close-channel-{st.id}")
            task.add_done_callback(log_unexpected_end)


class _RouterHealth(health.aio.HealthServicer):  # type: ignore[misc]
    """``grpc.health.v1.Health`` as the router sees the service (see the module's docstring)."""

    def __init__(self, front: GrpcFront) -> None:
        super().__init__()
        self.front = front
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def status(self) -> Any:
        return _SERVING if self.front.router.has_ready() else _NOT_SERVING

    async def start(self) -> None:
        await self._publish()
        self._task = asyncio.create_task(self._follow(), name="kubeinfer-router-grpc-health")
        self._task.add_done_callback(log_unexpected_end)

    async def _follow(self) -> None:
        # Readiness changes with probes and scaling, a few times a second at most: a poll is simpler than wiring a
        # notification through every path that changes the ready set, and a watcher sees the change within 0.2 s.
        while True:
            await asyncio.sleep(_HEALTH_POLL)
            await self._publish()

    async def _publish(self) -> None:
        status = self.status()
        for name in _SERVICE_WIDE:
            if self._server_status.get(name) != status:
                await self.set(name, status)

    async def Check(self, request: Any, context: Any) -> Any:
        if request.service in _SERVICE_WIDE or self._gracefully_shutting_down:
            return await super().Check(request, context)
        # A model's name: its replicas know whether it is loaded. While none is ready the call waits in the
        # router's buffer like any other (bounded by the client's deadline and the buffer's timeout).
        raw = await self.front.proxy.unary("/grpc.health.v1.Health/Check", request.SerializeToString(), context)
        return health_pb2.HealthCheckResponse.FromString(raw)

    async def Watch(self, request: Any, context: Any) -> None:
        """The library's ``Watch`` of the router's own view, ended (status OK) when the router stops."""
        from kubeinfer.server.health_grpc import watch_until

        await watch_until(super().Watch(request, context), self._closing)

    async def close(self) -> None:
        """NOT_SERVING everywhere, for good, and the open ``Watch`` streams ended."""
        if self._task is not None:
            self._task.cancel()
        await self.enter_graceful_shutdown()
        self._closing.set()
        await asyncio.sleep(0)


class _Channels:
    """A backend's gRPC channels, handed out in turn."""

    __slots__ = ("all", "turn")

    def __init__(self, channels: list[Any]) -> None:
        self.all = channels
        self.turn = 0

    def next(self) -> Any:
        if len(self.all) == 1:
            return self.all[0]
        self.turn += 1
        return self.all[self.turn % len(self.all)]


class _Proxy(grpc.GenericRpcHandler):  # type: ignore[misc]
    def __init__(self, front: GrpcFront) -> None:
        self.front = front
        self.router = front.router

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method
        if method.endswith(_STREAMS):
            # An async generator function, not a function returning one: grpc.aio tells a handler's kind by
            # inspecting the function, and iterates anything else as a sync generator in a thread.
            async def stream(request_iterator: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
                async with contextlib.aclosing(self._stream(method, request_iterator, context)) as messages:
                    async for message in messages:
                        yield message

            return grpc.stream_stream_rpc_method_handler(stream)

        async def unary(request: bytes, context: Any) -> bytes:
            return await self._unary(method, request, context)

        return grpc.unary_unary_rpc_method_handler(unary)

    async def unary(self, method: str, request: bytes, context: Any) -> bytes:
        """Proxy one unary call (what the router's own services pass on to a replica)."""
        return await self._unary(method, request, context)

    # -- choosing a backend ------------------------------------------------------------------------------
    async def _backend(self, tried: Sequence[BackendState], context: Any, pin: int | None = None) -> BackendState:
        """The backend for the next try, the try counted on it (``end_try`` ends it); waits in the router's buffer
        while no backend is ready."""
        router = self.router
        while True:
            st = router.begin_try(tried, grpc=True, pin=pin)
            if st is not None:
                return st
            if router.has_ready():
                await context.abort(grpc.StatusCode.UNAVAILABLE, "no ready replica serves gRPC")
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            router.buffer(_GrpcWaiter(future))
            try:
                await future
            except _Rejected as e:
                await context.abort(grpc.StatusCode.UNAVAILABLE, e.message)

    def _retrying(self, st: BackendState, tried: list[BackendState]) -> None:
        """A try on ``st`` failed in a way worth another replica, and the router granted a retry: keep ``st`` out of
        the next choice."""
        tried.append(st)
        self.router.eject(st)

    # -- calls -------------------------------------------------------------------------------------------
    async def _pin(self, metadata: Sequence[tuple[str, str | bytes]], context: Any) -> int | None:
        """The revision the call pins with ``x-kubeinfer-revision`` metadata (aborts NOT_FOUND on one that is not
        served). The ``model_version`` field of a ModelInferRequest is not read: the proxy passes bytes through."""
        header = _pin_header(metadata)
        if header is None:
            return None
        pin = self.router.resolve_pin(header, None)
        if isinstance(pin, bytes):
            await context.abort(grpc.StatusCode.NOT_FOUND, pin.decode("utf-8", "replace"))
        return pin if isinstance(pin, int) else None

    async def _unary(self, method: str, request: bytes, context: Any) -> bytes:
        self.router.request_accepted()
        metadata = _forwarded(context.invocation_metadata())
        if tracing.tracer is None:
            return await self._proxy_unary(method, request, context, metadata, None)
        span = tracing.router_grpc(method, metadata)  # the replica gets the router's span as its parent
        if span is None:  # not sampled
            return await self._proxy_unary(method, request, context, metadata, None)
        code: Any = grpc.StatusCode.OK
        try:
            return await self._proxy_unary(method, request, context, metadata, span)
        except BaseException:
            code = context.code() or grpc.StatusCode.UNKNOWN  # what abort set (the replica's status, passed on)
            raise
        finally:
            tracing.router_grpc_end(span, code)

    async def _proxy_unary(
        self, method: str, request: bytes, context: Any, metadata: list[tuple[str, str | bytes]], span: Any
    ) -> bytes:
        router = self.router
        pin = await self._pin(metadata, context)
        tried: list[BackendState] = []
        attempts = 0
        while True:
            st = await self._backend(tried, context, pin)
            sent = time.monotonic()
            attempts += 1
            timeout = router.per_try_timeout
            remaining = context.time_remaining()
            client_bound = remaining is not None and remaining < timeout
            if client_bound:
                timeout = max(remaining, 0.001)
            try:
                call = self.front.channel(st).unary_unary(method)
                response: bytes = await call(request, metadata=metadata, timeout=timeout)
            except grpc.aio.AioRpcError as e:
                code = e.code()
                error = code in _ERRORS
                st.rev.record(error, time.monotonic() - sent)
                retryable = code in _RETRYABLE or (code == grpc.StatusCode.DEADLINE_EXCEEDED and not client_bound)
                reason = "timeout" if code == grpc.StatusCode.DEADLINE_EXCEEDED else "grpc_unavailable"
                if span is not None:
                    tracing.router_grpc_try(span, st.id, code)
                if retryable and router.may_retry(attempts, reason):
                    self._retrying(st, tried)
                    continue
                if error and pin is None and router.failover(st, attempts):
                    tried.append(st)  # a canary's error: the stable revision answers instead
                    continue
                await _pass_on(st, e, context)
                raise  # unreachable: abort raises
            finally:
                router.end_try(st)
            st.rev.record(False, time.monotonic() - sent)
            st.count("OK")
            if span is not None:
                tracing.router_grpc_try(span, st.id)
            return response

    async def _stream(self, method: str, requests: AsyncIterator[bytes], context: Any) -> AsyncGenerator[bytes, None]:
        router = self.router
        router.request_accepted()
        metadata = _forwarded(context.invocation_metadata())
        inbox = _Requests(requests)
        upstream: _Try | None = None

        def end(_: Any = None) -> None:
            # Also on the call's end: a client's cancellation may come while this generator is parked at a yield,
            # where no exception reaches it until it is garbage collected.
            inbox.close()
            if upstream is not None:
                upstream.end()

        context.add_done_callback(end)
        # one span for the whole stream (sampled calls only); the replica's spans of each request are its children
        span = None if tracing.tracer is None else tracing.router_grpc(method, metadata)
        status: Any = grpc.StatusCode.OK
        pin = await self._pin(metadata, context)
        tried: list[BackendState] = []
        attempts = 0
        try:
            while True:
                st = await self._backend(tried, context, pin)
                attempts += 1
                call = self.front.channel(st).stream_stream(method)(metadata=metadata, timeout=context.time_remaining())
                upstream = _Try(router, st, call, inbox)
                try:
                    async for message in call:
                        inbox.commit()
                        yield message
                except grpc.aio.AioRpcError as e:
                    code = e.code()
                    if span is not None:
                        tracing.router_grpc_try(span, st.id, code)
                    if code in _RETRYABLE and not inbox.committed and router.may_retry(attempts, "grpc_unavailable"):
                        self._retrying(st, tried)
                        continue
                    await _pass_on(st, e, context)
                finally:
                    upstream.end()
                if span is not None:
                    tracing.router_grpc_try(span, st.id)
                st.count("OK")
                return
        except BaseException:
            status = context.code() or grpc.StatusCode.CANCELLED  # what abort set, or the client went away
            raise
        finally:
            end()
            if span is not None:
                tracing.router_grpc_end(span, status)


class _Requests:
    """The client's requests on one stream: read by one task, written to the backend by the try in progress.

    Until the first response goes back (``commit``) every request is kept so that a retry can replay them; after it,
    each is dropped once written. The reader takes the next request only once the try has written the last.
    """

    def __init__(self, source: AsyncIterator[bytes]) -> None:
        self.log: list[bytes] = []  # the requests kept, in order; those from ``written`` on are not written yet
        self.written = 0
        self.committed = False
        self.ended = False  # the client half-closed (or its side broke)
        self._arrived = asyncio.Event()
        self._taken = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(
            self._read(source), name="kubeinfer-router-grpc-stream-reader"
        )
        self.task.add_done_callback(log_unexpected_end)

    async def _read(self, source: AsyncIterator[bytes]) -> None:
        try:
            async for message in source:
                self.log.append(message)
                self._arrived.set()
                while self.written < len(self.log):
                    self._taken.clear()
                    await self._taken.wait()
        except Exception as e:  # the client's side broke (grpc raises its own kinds): the call ends, end() comes
            log.debug("router: reading a gRPC stream's requests ended: %r", e)
        finally:
            self.ended = True
            self._arrived.set()

    def commit(self) -> None:
        """A response is going back: the stream can no longer be retried, so written requests need not be kept."""
        if not self.committed:
            self.committed = True
            self._arrived.set()  # the writer drops what it wrote

    async def write_to(self, call: Any) -> None:
        """Write every request to ``call``, those kept first, then each as it arrives; half-close after the client."""
        self.written = 0
        while True:
            if self.committed and self.written:
                del self.log[: self.written]
                self.written = 0
            if self.written < len(self.log):
                await call.write(self.log[self.written])
                self.written += 1
                self._taken.set()
            elif self.ended:
                await call.done_writing()
                return
            else:
                self._arrived.clear()
                await self._arrived.wait()

    def close(self) -> None:
        self.task.cancel()


class _Try:
    """One try of a stream on one backend: its call, the task writing the requests to it, and its share of the
    backend's load, all ended once by ``end``."""

    __slots__ = ("call", "ended", "router", "st", "writer")

    def __init__(self, router: RouterApi, st: BackendState, call: Any, inbox: _Requests) -> None:
        self.router = router
        self.st = st
        self.call = call
        self.ended = False
        self.writer = asyncio.get_running_loop().create_task(
            self._write(inbox), name=f"kubeinfer-router-grpc-stream-writer-{st.id}"
        )
        self.writer.add_done_callback(log_unexpected_end)

    async def _write(self, inbox: _Requests) -> None:
        # A failed write means the call ended: reading its responses raises its status, which decides what follows.
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError, asyncio.CancelledError):
            await inbox.write_to(self.call)

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        self.writer.cancel()
        self.call.cancel()  # no-op once the call is done
        self.router.end_try(self.st)


async def _pass_on(st: BackendState, e: grpc.aio.AioRpcError, context: Any) -> None:
    """End the client's call with the replica's status, details and trailing metadata (abort raises)."""
    code = e.code()
    st.count(code.name)
    trailing = e.trailing_metadata()
    if trailing:
        context.set_trailing_metadata(tuple(_forwarded(trailing)))
    await context.abort(code, e.details() or "")
