"""The replica's gRPC data plane: Open Inference Protocol v2 (``inference.GRPCInferenceService``).

The wire contract is KServe's ``grpc_predict_v2.proto`` plus the parts of Triton's extension of it that
``tritonclient.grpc`` uses (``ModelStreamInfer``, and the model repository extension: ``RepositoryIndex``,
``RepositoryModelLoad``, ``RepositoryModelUnload``, as ``repository.py`` describes); see ``_proto/grpc_predict_v2.proto``. So
``tritonclient.grpc`` and KServe's and MLServer's clients work unchanged.

Why grpc.aio on the HTTP server's event loop, and not a second server in a thread: the batcher is one asyncio object
per model, and requests from both protocols must land in the same batches and the same in-flight count (the drain on
SIGTERM waits for both). grpc.aio (grpcio >= 1.32) runs on any asyncio loop, uvloop included: its completion queue
is polled in a thread of grpc's own that hands events to the loop, so nothing here depends on the loop's type
(``tests/integration/test_grpc.py`` runs it under ``uvloop.run`` as the runner does).

The handlers are registered with a generic handler built here rather than through the generated ``*_pb2_grpc``
module, whose generated code sets a floor on the grpcio version equal to the grpcio-tools that generated it.

Requests take the same path as REST, through the same :class:`~kubeinfer.server.dataplane.DataPlane`: the model and
version are looked up, tensors are decoded (``raw_input_contents`` through ``tensors.decode_raw``, or the typed
``contents`` fields), then validated and submitted to the model's batcher by the data plane. Outputs always go back as ``raw_output_contents``, which is what
``tritonclient.grpc`` reads. Errors are ``errors.ServerError`` mapped to status codes by ``errors.grpc_code``.
Metrics: ``kubeinfer_requests_total{protocol="grpc"}``, whose ``status`` label holds the gRPC status code number
(0 is OK, 3 INVALID_ARGUMENT, 5 NOT_FOUND, 14 UNAVAILABLE ...).

The same server also answers ``grpc.health.v1.Health`` and server reflection (``health_grpc.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from google.protobuf.message import Message

from kubeinfer.runtimes.base import DATATYPES, datatype_of
from kubeinfer.server import tracing
from kubeinfer.server._proto import grpc_predict_v2_pb2 as pb
from kubeinfer.server.auth import ApiKeys, grpc_interceptor
from kubeinfer.server.dataplane import DataPlane, ModelSlot
from kubeinfer.server.errors import InvalidInput, OutOfMemory, ServerError, grpc_code, internal_error
from kubeinfer.server.health_grpc import Health, add_health_and_reflection
from kubeinfer.server.tensors import (
    InferRequest,
    RequestedOutput,
    decode_raw,
    encode_raw,
    select_outputs,
)

__all__ = ["SERVICE", "GrpcServer", "decode_request", "encode_response", "start_grpc"]

log = logging.getLogger("kubeinfer.server.grpc")

SERVICE = "inference.GRPCInferenceService"

# The typed contents field that holds each datatype (FP16 has none: it travels as raw contents only).
CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_ALL_FIELDS = tuple(sorted(set(CONTENTS_FIELD.values())))
_INT32_MAX = 2**31 - 1
_OK = grpc.StatusCode.OK


# -- tensors <-> protobuf ----------------------------------------------------------------------------------
def _parameters(params: Any) -> dict[str, Any]:
    """A protobuf ``map<string, InferParameter>`` as a plain dict of Python values."""
    out: dict[str, Any] = {}
    for key, p in params.items():
        which = p.WhichOneof("parameter_choice")
        out[key] = getattr(p, which) if which is not None else None
    return out


def _from_contents(t: Any, datatype: str, shape: tuple[int, ...], where: str) -> np.ndarray[Any, Any]:
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidInput(f"{where}: {datatype} has no typed contents field; send it in raw_input_contents")
    values = getattr(t.contents, field)
    count = math.prod(shape)
    if len(values) != count:
        hint = ""
        if not values:
            used = [f for f in _ALL_FIELDS if f != field and len(getattr(t.contents, f))]
            if used:
                hint = f" (the data is in contents.{used[0]}, but datatype {datatype} is read from contents.{field})"
        raise InvalidInput(
            f"{where}: shape {list(shape)} needs {count} elements in contents.{field}, got {len(values)}{hint}"
        )
    if datatype == "BYTES":
        arr = np.empty(count, dtype=object)
        arr[:] = list(values)
        return arr.reshape(shape)
    try:
        return np.fromiter(values, dtype=DATATYPES[datatype], count=count).reshape(shape)
    except (OverflowError, ValueError) as e:
        raise InvalidInput(f"{where}: contents.{field} does not fit datatype {datatype}: {e}") from None


def decode_request(msg: Any) -> InferRequest:
    """Decode a ``ModelInferRequest`` into an ``InferRequest`` (not yet validated against the model)."""
    raw = msg.raw_input_contents
    n_raw = len(raw)
    if n_raw and n_raw != len(msg.inputs):
        raise InvalidInput(
            f"raw_input_contents has {n_raw} entries but the request has {len(msg.inputs)} inputs: "
            "send one entry per input, in the order of the inputs"
        )
    if not msg.inputs:
        raise InvalidInput("the request has no inputs: send at least one tensor (name, datatype, shape, data)")
    inputs: dict[str, np.ndarray[Any, Any]] = {}
    for i, t in enumerate(msg.inputs):
        name = t.name
        if not name:
            raise InvalidInput(f"inputs[{i}].name must be a non-empty string")
        where = f"input {name!r}"
        if name in inputs:
            raise InvalidInput(f"{where} is given twice")
        datatype = t.datatype
        if datatype not in DATATYPES:
            raise InvalidInput(f"{where}: datatype {datatype!r} is not one of {', '.join(DATATYPES)}")
        shape = tuple(t.shape)
        if any(d < 0 for d in shape):
            raise InvalidInput(f"{where}: shape {list(shape)} must be a list of non-negative integers")
        if n_raw:
            if t.HasField("contents") and t.contents.ByteSize():
                raise InvalidInput(
                    f"{where} has typed contents but the request also has raw_input_contents: use one or the other"
                )
            inputs[name] = decode_raw(datatype, shape, raw[i], where)
        else:
            inputs[name] = _from_contents(t, datatype, shape, where)
    outputs = None
    if msg.outputs:
        for j, o in enumerate(msg.outputs):
            if not o.name:
                raise InvalidInput(f"outputs[{j}].name must be a non-empty string")
        outputs = tuple(RequestedOutput(o.name) for o in msg.outputs)
    return InferRequest(
        inputs=inputs,
        rows=0,
        id=msg.id or None,
        outputs=outputs,
        parameters=_parameters(msg.parameters) if msg.parameters else {},
    )


def encode_response(slot: ModelSlot, req: InferRequest, result: dict[str, np.ndarray[Any, Any]]) -> Any:
    """The ``ModelInferResponse`` for a result: every output as raw contents, in the order requested."""
    tensor = pb.ModelInferResponse.InferOutputTensor
    outputs = []
    raws = []
    for name, arr, _ in select_outputs(result, req):
        outputs.append(tensor(name=name, datatype=datatype_of(arr), shape=arr.shape))
        raws.append(encode_raw(arr))
    return pb.ModelInferResponse(
        model_name=slot.name,
        model_version=slot.version,
        id=req.id or "",
        outputs=outputs,
        raw_output_contents=raws,
    )


# -- the service -------------------------------------------------------------------------------------------
class InferenceServicer:
    """The RPCs of ``inference.GRPCInferenceService`` over one :class:`DataPlane`."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return pb.ServerReadyResponse(ready=self.plane.ready)

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if request.name in self.plane.unavailable:  # a model of the repository, not loaded: not ready (Triton)
            return pb.ModelReadyResponse(ready=False)
        slot = await self._slot(request.name, request.version, context)
        return pb.ModelReadyResponse(ready=self.plane.model_ready(slot))

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return pb.ServerMetadataResponse(**self.plane.server_metadata())

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        slot = await self._slot(request.name, request.version, context)
        meta = pb.ModelMetadataResponse.TensorMetadata
        info = slot.info
        return pb.ModelMetadataResponse(
            name=slot.name,
            versions=self.plane.model_metadata(slot)["versions"],
            platform=info.platform if info else "",
            inputs=[meta(name=s.name, datatype=s.datatype, shape=s.shape) for s in info.inputs] if info else [],
            outputs=[meta(name=s.name, datatype=s.datatype, shape=s.shape) for s in info.outputs] if info else [],
        )

    async def RepositoryIndex(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        index = pb.RepositoryIndexResponse.ModelIndex
        models = [index(**entry) for entry in self.plane.repository_index(ready_only=request.ready)]
        return pb.RepositoryIndexResponse(models=models)

    async def RepositoryModelLoad(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await self._repository(self.plane.load, request, context)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await self._repository(self.plane.unload, request, context)
        return pb.RepositoryModelUnloadResponse()

    async def _repository(
        self,
        action: Callable[[str, dict[str, Any]], Awaitable[None]],
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        params: dict[str, Any] = {}
        for key, p in request.parameters.items():
            which = p.WhichOneof("parameter_choice")
            params[key] = getattr(p, which) if which is not None else None
        try:
            await action(request.model_name, params)
        except ServerError as e:
            await context.abort(grpc_code(e), str(e))

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            if tracing.tracer is None:
                return await self.infer(request, context.time_remaining())
            return await tracing.grpc_infer("ModelInfer", request, context, self.infer)
        except ServerError as e:
            await context.abort(grpc_code(e), str(e))
        except MemoryError:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(OutOfMemory.of("reading this request")))
        except Exception as e:  # a bug: log it, answer INTERNAL with a message, keep serving
            log.exception("unhandled error in ModelInfer for model %r", request.model_name)
            await context.abort(grpc.StatusCode.INTERNAL, internal_error(e))

    async def ModelStreamInfer(
        self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        """Requests on one stream run concurrently (so they batch); each answer goes back as soon as it is ready."""
        answers: asyncio.Queue[Any] = asyncio.Queue()
        pending: set[asyncio.Task[None]] = set()
        end = object()

        async def one(request: Any) -> None:
            try:
                if tracing.tracer is None:
                    resp = await self.infer(request, context.time_remaining())
                else:
                    resp = await tracing.grpc_infer("ModelStreamInfer", request, context, self.infer)
                answers.put_nowait(pb.ModelStreamInferResponse(infer_response=resp))
            except Exception as e:
                if not isinstance(e, ServerError):
                    log.exception("unhandled error in ModelStreamInfer for model %r", request.model_name)
                error = str(e) if isinstance(e, ServerError) else internal_error(e)
                echo = pb.ModelInferResponse(
                    model_name=request.model_name, model_version=request.model_version, id=request.id
                )
                answers.put_nowait(pb.ModelStreamInferResponse(error_message=error, infer_response=echo))

        async def read() -> None:
            try:
                async for request in requests:
                    task = asyncio.create_task(one(request), name="kubeinfer-grpc-stream-infer")
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                while pending:
                    await asyncio.wait(set(pending))
            finally:
                answers.put_nowait(end)

        reader = asyncio.create_task(read(), name="kubeinfer-grpc-stream-reader")
        try:
            while (answer := await answers.get()) is not end:
                yield answer
        finally:
            reader.cancel()
            for task in list(pending):
                task.cancel()

    # -- helpers ---------------------------------------------------------------------------------------
    async def _slot(self, name: str, version: str, context: grpc.aio.ServicerContext[Any, Any]) -> ModelSlot:
        try:
            return self.plane.model(name, version or None)
        except ServerError as e:
            await context.abort(grpc_code(e), str(e))
            raise  # not reached: abort raises

    async def infer(self, request: Any, time_remaining: float | None) -> Any:
        """One inference with in-flight accounting and metrics. Raises ``ServerError`` for the client's errors."""
        plane = self.plane
        start = plane.begin()
        tap = plane.payload_log.tap("grpc", None, request) if plane.payload_log is not None else None
        slot: ModelSlot | None = None  # set only once the name is known to be served (bounded label cardinality)
        req: InferRequest | None = None
        result: dict[str, np.ndarray[Any, Any]] | None = None
        code = _OK
        try:
            slot = plane.model(request.model_name, request.model_version or None)
            live = plane.live_model(slot)  # refuse before decoding tensors that would not be served
            req = decode_request(request)
            result = await plane.submit(slot, req, time_remaining, live=live)
            if tracing.tracer is None:
                return encode_response(slot, req, result)
            return tracing.encode(None, encode_response, slot, req, result)
        except ServerError as e:
            code = grpc_code(e)
            raise
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception:
            code = grpc.StatusCode.INTERNAL
            raise
        finally:
            plane.end(start, slot, "grpc", code.value[0])
            if tap is not None:  # the payload log encodes the response again from (req, result), in its thread
                tap.close(slot, 200 if code is _OK else code.value[0], (req, result))


Handler = Callable[[Any, Any], Awaitable[Any]]

_UNARY: dict[str, tuple[type[Message], type[Message]]] = {
    "ServerLive": (pb.ServerLiveRequest, pb.ServerLiveResponse),
    "ServerReady": (pb.ServerReadyRequest, pb.ServerReadyResponse),
    "ModelReady": (pb.ModelReadyRequest, pb.ModelReadyResponse),
    "ServerMetadata": (pb.ServerMetadataRequest, pb.ServerMetadataResponse),
    "ModelMetadata": (pb.ModelMetadataRequest, pb.ModelMetadataResponse),
    "ModelInfer": (pb.ModelInferRequest, pb.ModelInferResponse),
    "RepositoryIndex": (pb.RepositoryIndexRequest, pb.RepositoryIndexResponse),
    "RepositoryModelLoad": (pb.RepositoryModelLoadRequest, pb.RepositoryModelLoadResponse),
    "RepositoryModelUnload": (pb.RepositoryModelUnloadRequest, pb.RepositoryModelUnloadResponse),
}


def handlers(plane: DataPlane) -> grpc.GenericRpcHandler:
    """The generic handler that serves ``inference.GRPCInferenceService`` for ``plane``."""
    servicer = InferenceServicer(plane)
    table: dict[str, grpc.RpcMethodHandler] = {
        name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, name), request_deserializer=req.FromString, response_serializer=resp.SerializeToString
        )
        for name, (req, resp) in _UNARY.items()
    }
    table["ModelStreamInfer"] = grpc.stream_stream_rpc_method_handler(
        servicer.ModelStreamInfer,
        request_deserializer=pb.ModelInferRequest.FromString,
        response_serializer=pb.ModelStreamInferResponse.SerializeToString,
    )
    return grpc.method_handlers_generic_handler(SERVICE, table)


class GrpcServer:
    """The running gRPC server and its health service: :meth:`stop` ends the health ``Watch`` streams first (they
    are open for as long as their clients like, and would hold the shutdown for the whole grace period)."""

    def __init__(self, server: grpc.aio.Server, health: Health) -> None:
        self.server = server
        self.health = health

    async def stop(self, grace: float | None) -> None:
        await self.health.close()
        await self.server.stop(grace)


async def start_grpc(
    plane: DataPlane,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    unix: Path | None = None,
    keys: ApiKeys | None = None,
    credentials: grpc.ServerCredentials | None = None,
) -> tuple[GrpcServer, int]:
    """Start the gRPC server on the running event loop; ``port`` 0 picks a free port. Returns it and the port.
    Besides ``inference.GRPCInferenceService`` it serves ``grpc.health.v1.Health`` and server reflection
    (:mod:`~kubeinfer.server.health_grpc`).
    ``reuse_port`` is for the processes of one replica, whose parent holds the port (see ``server.processes``).
    ``unix``: listen on that Unix socket instead of ``host:port`` (user-only permissions; the port returned is 0).
    ``keys``: calls need an API key in their ``authorization`` metadata (:mod:`~kubeinfer.server.auth`).
    ``credentials``: serve TLS on ``host:port`` (:mod:`~kubeinfer.server.tls`)."""
    limit = min(plane.limits.max_body_bytes, _INT32_MAX)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", -1),
            # grpc turns SO_REUSEPORT on by default, which lets two servers bind one port without an error.
            ("grpc.so_reuseport", int(reuse_port)),
        ],
        interceptors=[grpc_interceptor(keys)] if keys is not None else None,
    )
    server.add_generic_rpc_handlers((handlers(plane),))
    if unix is not None:
        # grpc replaces a stale socket at the path but refuses any other file; it binds here, so the mode is set
        # before the first connection can be accepted (the socket is made 0777 less the umask: not user-only).
        with contextlib.suppress(FileNotFoundError):
            unix.unlink()
        unix.parent.mkdir(parents=True, exist_ok=True)
        address = f"unix:{unix}"
    else:
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        if credentials is not None and unix is None:
            bound = server.add_secure_port(address, credentials)
        else:
            bound = server.add_insecure_port(address)
        if unix is not None:
            os.chmod(unix, 0o600)
    except (RuntimeError, OSError):  # newer grpcio raises where older ones returned 0
        bound = 0
    if not bound:
        flag = "--uds" if unix is not None else "--grpc-port"
        raise SystemExit(
            f"kubeinfer serve: cannot listen for gRPC on {address} (choose another {flag}, or stop what uses it)"
        )
    health = await add_health_and_reflection(server, plane)
    await server.start()
    return GrpcServer(server, health), 0 if unix is not None else bound
