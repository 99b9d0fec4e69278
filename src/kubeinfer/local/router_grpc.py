"""The router's gRPC side: every method is proxied as raw bytes, with no protobuf decoding.

A ``grpc.aio`` generic handler answers any method path; requests and responses cross as ``bytes`` (no
deserializer), so the router needs no generated code and forwards services it does not know. The cardinality comes
from the method name: ``ModelStreamInfer`` (Triton's streaming extension of OIP v2) is stream-stream and everything
else unary-unary, which covers ``inference.GRPCInferenceService``.

Unary calls get the HTTP side's policy: the backend is chosen by power of two choices, each try has the per-try
timeout (or the client's deadline when sooner), and a try that ends ``UNAVAILABLE`` (connection refused or reset,
replica draining or its queue full) or ``DEADLINE_EXCEEDED`` because of the per-try timeout is retried on another
backend within ``max_retries`` and the retry budget. A unary response is sent only once complete, so a retry never
follows response bytes. Streams are not retried: once a stream has started, messages may already have been answered.
While no backend is ready, calls wait in the router's buffer like HTTP requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    from kubeinfer.local.router import Router, _BackendState

__all__ = ["start_grpc"]

_INT32_MAX = 2**31 - 1
_DROP = ("user-agent", "content-type", "te", "host")
_RETRYABLE = (grpc.StatusCode.UNAVAILABLE,)


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


def _forwarded(metadata: Any) -> list[tuple[str, str | bytes]]:
    out: list[tuple[str, str | bytes]] = []
    for m in metadata or ():
        key = m[0]
        if key.startswith((":", "grpc-")) or key in _DROP:
            continue
        out.append((key, m[1]))
    return out


class _Proxy(grpc.GenericRpcHandler):  # type: ignore[misc]
    def __init__(self, router: Router) -> None:
        self.router = router

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method
        if method.endswith("/ModelStreamInfer"):

            def stream(request_iterator: Any, context: Any) -> AsyncIterator[bytes]:
                return self._stream(method, request_iterator, context)

            return grpc.stream_stream_rpc_method_handler(stream)

        async def unary(request: bytes, context: Any) -> bytes:
            return await self._unary(method, request, context)

        return grpc.unary_unary_rpc_method_handler(unary)

    # -- choosing a backend ------------------------------------------------------------------------------
    async def _backend(self, tried: Sequence[_BackendState], context: Any) -> _BackendState:
        router = self.router
        while True:
            st = router._choose(tried, grpc=True)
            if st is not None:
                return st
            if router._ready:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "no ready replica serves gRPC")
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            router._buffer(_GrpcWaiter(future))
            try:
                await future
            except _Rejected as e:
                await context.abort(grpc.StatusCode.UNAVAILABLE, e.message)

    def _channel(self, st: _BackendState) -> Any:
        if st.channel is None:
            opts = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
            st.channel = grpc.aio.insecure_channel(f"{st.host}:{st.backend.grpc_port}", options=opts)
        return st.channel

    # -- calls -------------------------------------------------------------------------------------------
    async def _unary(self, method: str, request: bytes, context: Any) -> bytes:
        router = self.router
        router.requests += 1
        router._budget.requests.current += 1
        metadata = _forwarded(context.invocation_metadata())
        tried: list[_BackendState] = []
        attempts = 0
        while True:
            st = await self._backend(tried, context)
            attempts += 1
            timeout = router.per_try_timeout
            remaining = context.time_remaining()
            client_bound = remaining is not None and remaining < timeout
            if client_bound:
                timeout = max(remaining, 0.001)
            st.outstanding += 1
            st.total += 1
            try:
                call = self._channel(st).unary_unary(method)
                response: bytes = await call(request, metadata=metadata, timeout=timeout)
            except grpc.aio.AioRpcError as e:
                code = e.code()
                retryable = code in _RETRYABLE or (code == grpc.StatusCode.DEADLINE_EXCEEDED and not client_bound)
                if retryable and attempts <= router.max_retries and router._budget.try_withdraw():
                    reason = "timeout" if code == grpc.StatusCode.DEADLINE_EXCEEDED else "grpc_unavailable"
                    router.retries += 1
                    router.retry_reasons[reason] = router.retry_reasons.get(reason, 0) + 1
                    tried.append(st)
                    router._eject(st)
                    continue
                st.codes[code.name] = st.codes.get(code.name, 0) + 1
                trailing = e.trailing_metadata()
                if trailing:
                    context.set_trailing_metadata(tuple(_forwarded(trailing)))
                await context.abort(code, e.details() or "")
                raise  # unreachable: abort raises
            finally:
                router._release(st)
            st.codes["OK"] = st.codes.get("OK", 0) + 1
            return response

    async def _stream(self, method: str, request_iterator: Any, context: Any) -> AsyncIterator[bytes]:
        router = self.router
        router.requests += 1
        router._budget.requests.current += 1
        st = await self._backend([], context)
        st.outstanding += 1
        st.total += 1
        remaining = context.time_remaining()
        try:
            call = self._channel(st).stream_stream(method)(
                request_iterator, metadata=_forwarded(context.invocation_metadata()), timeout=remaining
            )
            async for message in call:
                yield message
            st.codes["OK"] = st.codes.get("OK", 0) + 1
        except grpc.aio.AioRpcError as e:
            st.codes[e.code().name] = st.codes.get(e.code().name, 0) + 1
            await context.abort(e.code(), e.details() or "")
        finally:
            router._release(st)


async def start_grpc(router: Router, host: str, port: int) -> tuple[Any, int]:
    """Start the router's gRPC listener on the running loop; ``port`` 0 picks a free port."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", min(router.max_body_bytes, _INT32_MAX)),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),
        ]
    )
    server.add_generic_rpc_handlers((_Proxy(router),))
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        raise OSError(f"router: cannot listen for gRPC on {address} (choose another port, or stop what uses it)")
    await server.start()
    return server, bound
