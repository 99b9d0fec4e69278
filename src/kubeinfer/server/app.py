"""The replica's HTTP data plane as a raw ASGI application: the REST adapter of :mod:`~kubeinfer.server.dataplane`.

Routes (``routes.py``, the one table the dispatcher and the OpenAPI document come from): Open Inference Protocol v2
REST (health, metadata, infer; JSON and the binary tensor data extension; gzip and deflate bodies), KServe v1
(``/v1/models/{name}``, ``:predict``), OpenAI-style ``/v1/embeddings`` and ``/v1/models`` (OpenAI's list, with
KServe v1's ``models`` names in the same answer), Kubernetes probes (``/healthz``, ``/readyz``, ``/startupz``),
``/metrics`` and ``/openapi.json``. OIP v2 infer requests mostly arrive through ``http.py``'s direct path instead,
which calls the same methods here (:meth:`InferenceApp.infer_v2_slot`, :meth:`~InferenceApp.infer_v2_submit`,
:meth:`~InferenceApp.infer_v2_response`, :meth:`~InferenceApp.error_response`).

Why raw ASGI and not a framework: on this workload a framework route plus pydantic request models costs several
times the server's own work per request (measured: the same batcher behind FastAPI serves ~3x fewer requests than
behind a bare ASGI callable). Tensors are validated directly with numpy in ``tensors.py`` instead; the OpenAPI
document is built from the route table in ``openapi.py`` and tested against behaviour.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import operator
import zlib
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import numpy as np
import orjson

from kubeinfer.runtimes.base import ModelInfo
from kubeinfer.server import tracing
from kubeinfer.server.auth import ApiKeys
from kubeinfer.server.dataplane import DataPlane, ModelSlot
from kubeinfer.server.errors import (
    InvalidInput,
    MethodNotAllowed,
    ModelNotFound,
    OutOfMemory,
    PayloadTooLarge,
    RouteNotFound,
    ServerError,
    Unauthorized,
    UnsupportedMedia,
    http_status,
    internal_error,
)
from kubeinfer.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from kubeinfer.server.openai_generate import GenerateRoutes
from kubeinfer.server.routes import TABLE, Route
from kubeinfer.server.tensors import (
    InferRequest,
    from_json_data,
    output_json,
    parse_infer_json,
    select_outputs,
)

__all__ = ["InferenceApp"]

log = logging.getLogger("kubeinfer.server")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_JSON = [(b"content-type", b"application/json")]
_OPT = orjson.OPT_SERIALIZE_NUMPY
# Bodies are read as JSON whatever the content type says (curl -d sends form-urlencoded), except types that
# cannot be JSON; octet-stream without Inference-Header-Content-Length is a binary request missing its header.
_NOT_JSON = (
    b"multipart/",
    b"image/",
    b"audio/",
    b"video/",
    b"application/xml",
    b"text/xml",
    b"application/octet-stream",
    b"application/x-protobuf",
)


class _Call:
    """One request on its way through a route's handler."""

    __slots__ = ("method", "params", "receive", "scope", "send", "slot")

    def __init__(self, scope: Scope, receive: Receive, send: Send, slot: ModelSlot | None) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.method: str = scope["method"]
        self.slot = slot  # the model the path names; the embeddings route sets the one it chose
        self.params: Mapping[str, str] = {}  # the path's parameters


Handler = Callable[[_Call], Awaitable[int]]


class InferenceApp:
    """The ASGI application over one :class:`DataPlane`; ``openapi`` is called with the served models' (name,
    version) pairs to build ``/openapi.json`` (once, on its first request)."""

    def __init__(
        self,
        plane: DataPlane | None = None,
        openapi: Callable[[list[tuple[str, str]]], dict[str, Any]] | None = None,
    ) -> None:
        self.plane = plane or DataPlane()
        self._openapi = openapi
        self._openapi_body: bytes | None = None
        self.keys: ApiKeys | None = None  # server.auth.apiKeysFile (server/auth.py); None: no key is asked for
        # Every route's handler, bound once (a route naming a method that does not exist fails here, at start).
        # The text generation routes' handlers (server/openai_generate.py), named "generate.<method>" in the table.
        self.generate = GenerateRoutes(self)
        self._handlers: dict[str, Handler] = {name: operator.attrgetter(name)(self) for name in TABLE.handlers()}

    # -- ASGI ------------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if tracing.tracer is None:
                await self._http(scope, receive, send)
            else:
                await tracing.asgi(self._http, scope, receive, send)
        elif kind == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        plane = self.plane
        start = plane.begin(arrival=False)  # probes and scrapes are no arrivals: counted once the route is known
        tap = None
        if plane.payload_log is not None:  # a tap on the request's body and answer, when it is sampled
            tap, receive, send = plane.payload_log.asgi(scope, receive, send)
        route: Route | None = None
        call: _Call | None = None
        try:
            route, call = self._resolve(scope, receive, send)
            if route.protocol and plane.metrics.arrival is not None:
                plane.metrics.arrival(start)  # a request kubeinfer_requests_total counts: kubeinfer_arrivals_peak too
            status = await self._handlers[route.handler](call)
        except ServerError as e:
            status = await self._error(send, e)
        except MemoryError:
            status = await self._error(send, OutOfMemory.of("reading this request"))
        except Exception as e:  # a bug: log it, answer 500 with a message, keep serving
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            status = 500
            await _send(send, 500, orjson.dumps({"error": internal_error(e)}), _JSON)
        except BaseException:
            plane.end(start, None, "", 0)  # cancelled: it leaves, uncounted
            raise
        slot = call.slot if call is not None else None
        protocol = route.protocol if route is not None else ""
        plane.end(start, slot, protocol, status)
        if tap is not None:
            tap.finish(slot, protocol, status)

    def _resolve(self, scope: Scope, receive: Receive, send: Send) -> tuple[Route, _Call]:
        """The route of the request and the model its path names: 404 for an unknown route or model, then 405 for
        a method the route does not take."""
        method: str = scope["method"]
        path: str = scope["path"]
        found = TABLE.match(path)
        if found is None:
            raise RouteNotFound(f"no route {method} {path}: see /openapi.json for the endpoints")
        route, params = found
        if self.keys is not None and not route.public:
            self.keys.check(_header(scope, b"authorization"))
        slot = None
        name = params.get("model_name")
        if name is not None and route.served:
            slot = self.plane.model(name, params.get("model_version"))
        call = _Call(scope, receive, send, slot)
        call.params = params
        if not route.accepts(method):
            raise MethodNotAllowed(route.refuse or f"method {method} is not allowed here: use GET", route.allow())
        return route, call

    async def _error(self, send: Send, e: ServerError) -> int:
        status, body, headers = self.error_response(e)
        await _send(send, status, body, headers)
        return status

    def error_response(self, e: ServerError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """Status, JSON body and headers for an error (``Allow``, ``Retry-After``, ``Connection: close`` as due)."""
        status = int(http_status(e))
        headers = list(_JSON)
        if isinstance(e, MethodNotAllowed):
            headers.append((b"allow", e.allow.encode()))
        elif isinstance(e, Unauthorized):
            headers.append((b"www-authenticate", b'Bearer realm="kubeinfer"'))
        if e.retry_after is not None and status in (429, 503, 507):
            headers.append((b"retry-after", str(max(1, round(e.retry_after))).encode()))
        if self.plane.draining or isinstance(e, PayloadTooLarge):
            # Too large: the body was not read, so the connection cannot carry another request.
            headers.append((b"connection", b"close"))
        return status, orjson.dumps({"error": str(e)}), headers

    async def _read_body(self, scope: Scope, receive: Receive, decode: bool = True) -> tuple[bytes, dict[bytes, bytes]]:
        headers = dict(scope["headers"])
        limit = self.plane.limits.max_body_bytes
        cl = headers.get(b"content-length")
        if cl is not None:
            try:
                declared = int(cl)
            except ValueError:
                raise InvalidInput("Content-Length is not a number") from None
            if declared > limit:
                raise PayloadTooLarge(
                    f"request body of {declared} bytes is larger than the limit of {limit} bytes "
                    "(spec.server.limits.maxBodySize)"
                )
        msg = await receive()
        body: bytes = msg.get("body", b"")
        if msg.get("more_body"):
            chunks = [body]
            size = len(body)
            while msg.get("more_body"):
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    raise InvalidInput("client disconnected before sending the whole body")
                chunk = msg.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(
                        f"request body is larger than the limit of {limit} bytes (spec.server.limits.maxBodySize)"
                    )
                chunks.append(chunk)
            body = b"".join(chunks)
        enc = headers.get(b"content-encoding")
        if decode and enc is not None and enc not in (b"identity", b""):
            body = _decompress(body, enc, limit)
        return body, headers

    # -- OIP v2 infer (this route and http.py's direct path) ---------------------------------------------
    async def infer_v2(self, call: _Call) -> int:
        slot = _named(call)
        self.plane.live_model(slot)  # refuse before reading a body that would not be served
        body, headers = await self._read_body(call.scope, call.receive, decode=False)
        req, future = self.infer_v2_submit(slot, body, headers)
        result = await future
        if tracing.tracer is None:
            payload, hdrs = self.infer_v2_response(slot, req, result)
        else:
            payload, hdrs = tracing.encode(None, self.infer_v2_response, slot, req, result)
        await _send(call.send, 200, payload, hdrs)
        return 200

    def infer_v2_slot(self, path: str) -> ModelSlot:
        """The model of an OIP v2 infer path (``/v2/models/{name}[/versions/{v}]/infer``); 404 for another path."""
        found = TABLE.match(path)
        if found is None or found[0].handler != "infer_v2":
            raise RouteNotFound(f"no route POST {path}: see /openapi.json for the endpoints")
        params = found[1]
        return self.plane.model(params["model_name"], params.get("model_version"))

    def infer_v2_submit(
        self, slot: ModelSlot, body: bytes, headers: dict[bytes, bytes]
    ) -> tuple[InferRequest, asyncio.Future[dict[str, np.ndarray[Any, Any]]]]:
        """Parse, validate and queue an OIP v2 infer body (JSON, or the binary extension); raises ``ServerError``.

        ``headers`` are the request's, lower-case names; the body is read whole (and within the size limit)."""
        plane = self.plane
        live = plane.live_model(slot)  # refuse before parsing a body that would not be served
        enc = headers.get(b"content-encoding")
        if enc is not None and enc not in (b"identity", b""):
            body = _decompress(body, enc, plane.limits.max_body_bytes)
        hlen = headers.get(b"inference-header-content-length")
        if hlen is not None:
            try:
                n = int(hlen)
            except ValueError:
                raise InvalidInput("Inference-Header-Content-Length is not a number") from None
            if n < 0 or n > len(body):
                raise InvalidInput(f"Inference-Header-Content-Length {n} is outside the body of {len(body)} bytes")
            mv = memoryview(body)
            req = parse_infer_json(mv[:n], mv[n:])
        else:
            ctype = headers.get(b"content-type", b"application/json")
            if ctype.startswith(_NOT_JSON):
                raise UnsupportedMedia(
                    f"content type {ctype.decode(errors='replace')!r} is not supported: "
                    "send application/json, or the binary extension with "
                    "Inference-Header-Content-Length"
                )
            req = parse_infer_json(body)
        return req, plane.submit(slot, req, live=live)

    def infer_v2_response(
        self, slot: ModelSlot, req: InferRequest, result: dict[str, np.ndarray[Any, Any]]
    ) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        """The 200 answer to an OIP v2 infer: body and headers (binary outputs appended where asked for)."""
        chunks: list[bytes] = []
        outputs = [output_json(n, a, b, chunks) for n, a, b in select_outputs(result, req)]
        resp: dict[str, Any] = {"model_name": slot.name, "model_version": slot.version, "outputs": outputs}
        if req.id is not None:
            resp["id"] = req.id
        payload = orjson.dumps(resp, option=_OPT)
        extra = [(b"connection", b"close")] if self.plane.draining else []
        if chunks:
            hdrs = [
                (b"content-type", b"application/octet-stream"),
                (b"inference-header-content-length", str(len(payload)).encode()),
                *extra,
            ]
            return b"".join([payload, *chunks]), hdrs
        return payload, (_JSON + extra if extra else _JSON)

    # -- health, metadata, metrics ---------------------------------------------------------------------
    async def live(self, call: _Call) -> int:
        return await _json(call, 200, b'{"live":true}')

    async def ready(self, call: _Call) -> int:
        return await self._bool(call, "ready", self.plane.ready)

    async def started(self, call: _Call) -> int:
        return await self._bool(call, "started", self.plane.started)

    async def _bool(self, call: _Call, key: str, value: bool) -> int:
        doc: dict[str, Any] = {key: value}
        if not value:
            doc["reason"] = self.plane.not_ready_reason()
        return await _json(call, 200 if value else 503, orjson.dumps(doc))

    async def server_metadata(self, call: _Call) -> int:
        return await _json(call, 200, orjson.dumps(self.plane.server_metadata()))

    async def model_metadata(self, call: _Call) -> int:
        return await _json(call, 200, orjson.dumps(self.plane.model_metadata(_named(call))))

    async def model_ready(self, call: _Call) -> int:
        slot = _named(call)
        ready = self.plane.model_ready(slot)
        return await _json(call, 200 if ready else 503, orjson.dumps({"name": slot.name, "ready": ready}))

    async def model_stats(self, call: _Call) -> int:
        return await _json(call, 200, orjson.dumps({"model_stats": [self.plane.model_stats(_named(call))]}))

    # -- the model repository extension (Triton's; repository.py) --------------------------------------------------
    async def _repository_body(self, call: _Call) -> dict[str, Any]:
        """The optional JSON object of a repository request (tritonclient sends one, curl often none)."""
        body, _ = await self._read_body(call.scope, call.receive)
        if not body.strip():
            return {}
        doc = self._json_body(body)
        if not isinstance(doc, dict):
            raise InvalidInput("body must be a JSON object (or empty)")
        return doc

    async def repository_index(self, call: _Call) -> int:
        doc = await self._repository_body(call)
        ready = doc.get("ready", False)
        if not isinstance(ready, bool):
            raise InvalidInput('"ready" must be true or false')
        if not isinstance(doc.get("repository_name", ""), str):
            raise InvalidInput('"repository_name" must be a string')
        return await _json(call, 200, orjson.dumps(self.plane.repository_index(ready_only=ready)))

    async def _repository_parameters(self, call: _Call) -> dict[str, Any]:
        params = (await self._repository_body(call)).get("parameters", {})
        if not isinstance(params, dict):
            raise InvalidInput('"parameters" must be a JSON object')
        return params

    async def repository_load(self, call: _Call) -> int:
        await self.plane.load(call.params["model_name"], await self._repository_parameters(call))
        return await _json(call, 200, b"{}")

    async def repository_unload(self, call: _Call) -> int:
        await self.plane.unload(call.params["model_name"], await self._repository_parameters(call))
        return await _json(call, 200, b"{}")

    async def metrics(self, call: _Call) -> int:
        body = self.plane.metrics.render()
        await _send(call.send, 200, body, [(b"content-type", METRICS_CONTENT_TYPE.encode())])
        return 200

    async def openapi(self, call: _Call) -> int:
        if self._openapi_body is None:
            served = [(slot.name, slot.version) for slot in self.plane.models.values()]
            self._openapi_body = orjson.dumps(self._openapi(served) if self._openapi else {})
        return await _json(call, 200, self._openapi_body)

    # -- KServe v1 and OpenAI --------------------------------------------------------------------------
    async def model_list(self, call: _Call) -> int:
        """``GET /v1/models``: OpenAI's model list (``object``, ``data``), which OpenAI clients read from
        ``{base_url}/models``, and KServe v1's (``models``, the names) in the same object, so both kinds of client
        read the route they already call."""
        models = self.plane.models
        data = [
            {"id": s.name, "object": "model", "created": s.created, "owned_by": "kubeinfer"} for s in models.values()
        ]
        return await _json(call, 200, orjson.dumps({"object": "list", "data": data, "models": list(models)}))

    def _json_body(self, body: bytes) -> Any:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise InvalidInput(f"request body is not valid JSON: {e}") from None

    async def predict_v1(self, call: _Call) -> int:
        slot = _named(call)
        live = self.plane.live_model(slot)
        info = live[1]
        body, _ = await self._read_body(call.scope, call.receive)
        doc = self._json_body(body)
        if not isinstance(doc, dict):
            raise InvalidInput('body must be a JSON object: {"instances": [...]}')
        instances = doc.get("instances", doc.get("inputs"))
        if not isinstance(instances, list) or not instances:
            raise InvalidInput('"instances" must be a non-empty list (one entry per row)')
        if not info.inputs:
            raise InvalidInput(f"model {slot.name!r} declares no inputs: use the v2 protocol")
        req = InferRequest(inputs=_v1_inputs(instances, info), rows=0)
        result = await self.plane.submit(slot, req, live=live)
        if "predict" in result:
            preds: Any = _v1_list(result["predict"])
        elif len(result) == 1:
            preds = _v1_list(next(iter(result.values())))
        else:
            cols = {k: _v1_list(v) for k, v in result.items()}
            preds = [{k: v[i] for k, v in cols.items()} for i in range(req.rows)]
        return await _json(call, 200, orjson.dumps({"predictions": preds}, option=_OPT))

    def _embedder(self, doc: dict[str, Any]) -> ModelSlot:
        """The model an embeddings request names, or the one embedding model served."""
        name = doc.get("model")
        if name is not None:
            if not isinstance(name, str):
                raise InvalidInput('"model" must be a string')
            return self.plane.model(name, None)
        candidates = [s for s in self.plane.models.values() if s.info is None or _is_embedder(s.info)]
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            raise ModelNotFound("this server serves no embedding model")
        raise InvalidInput('"model" is required: name the embedding model')

    async def embeddings(self, call: _Call) -> int:
        body, _ = await self._read_body(call.scope, call.receive)
        doc = self._json_body(body)
        if not isinstance(doc, dict):
            raise InvalidInput('body must be a JSON object: {"model": ..., "input": "text" | ["text", ...]}')
        slot = self._embedder(doc)
        live = self.plane.live_model(slot)
        info = live[1]
        if not _is_embedder(info):
            raise InvalidInput(f"model {slot.name!r} is not an embedding model (it takes no BYTES text input)")
        raw = doc.get("input")
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise InvalidInput(
                '"input" must be a string or a non-empty list of strings (token arrays are not supported)'
            )
        fmt = doc.get("encoding_format", "float")
        if fmt not in ("float", "base64"):
            raise InvalidInput('"encoding_format" must be "float" or "base64"')
        arr = np.empty(len(texts), dtype=object)
        arr[:] = [t.encode() for t in texts]
        req = InferRequest(inputs={info.inputs[0].name: arr}, rows=len(texts))
        result = await self.plane.submit(slot, req, validate=False, live=live)  # built from the model's own input
        call.slot = slot  # counted under this model from here on
        emb = result.get("embedding", next(iter(result.values())))
        data = []
        for i in range(len(texts)):
            vec = np.ascontiguousarray(emb[i], dtype=np.float32)
            value: Any = base64.b64encode(vec.tobytes()).decode() if fmt == "base64" else vec
            data.append({"object": "embedding", "index": i, "embedding": value})
        counter = getattr(slot.model, "count_tokens", None)
        tokens = int(counter(texts)) if callable(counter) else sum(len(t.split()) for t in texts)
        resp = {
            "object": "list",
            "data": data,
            "model": slot.name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return await _json(call, 200, orjson.dumps(resp, option=_OPT))


def _named(call: _Call) -> ModelSlot:
    """The model of a route whose path names one (the dispatcher looked it up)."""
    slot = call.slot
    if slot is None:  # a route table entry without {model_name} pointing at a model handler
        raise RouteNotFound("this route names no model")
    return slot


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value  # type: ignore[no-any-return]
    return None


async def _json(call: _Call, status: int, body: bytes) -> int:
    await _send(call.send, status, body, _JSON)
    return status


def _is_embedder(info: ModelInfo) -> bool:
    return bool(info.inputs) and info.inputs[0].datatype == "BYTES"


def _v1_inputs(instances: list[Any], info: ModelInfo) -> dict[str, np.ndarray[Any, Any]]:
    """KServe v1 ``instances`` as model inputs: rows of values for the first input, or one object per row whose keys
    are the inputs' names (or the columns of a table model), as KServe's and MLServer's servers take DataFrames."""
    if not all(type(row) is dict for row in instances):
        if any(type(row) is dict for row in instances):
            raise InvalidInput('"instances" must be all objects (one per row, keyed by column) or all lists')
        first = info.inputs[0]
        shape = _v1_shape(instances, first.datatype)
        return {first.name: from_json_data(instances, first.datatype, shape, '"instances"')}
    keys = list(instances[0])
    if not keys:
        raise InvalidInput('"instances" objects must name at least one column')
    for i, row in enumerate(instances):
        if list(row) != keys and set(row) != set(keys):
            raise InvalidInput(f'"instances"[{i}] has keys {sorted(row)} but "instances"[0] has {sorted(keys)}')
    table_type = info.inputs[0].datatype if info.columns else None
    out: dict[str, np.ndarray[Any, Any]] = {}
    for key in keys:
        spec = info.input_index.get(key)
        values = [row[key] for row in instances]
        if spec is not None:
            datatype = spec.datatype
        elif table_type is not None and key in info.columns:
            datatype = table_type
        else:
            accepted = info.columns or tuple(s.name for s in info.inputs)
            raise InvalidInput(
                f'"instances" key {key!r} is not an input of the model: it takes {", ".join(map(repr, accepted))}'
            )
        shape = _v1_shape(values, datatype)
        out[key] = from_json_data(values, datatype, shape, f'"instances" key {key!r}')
    return out


def _v1_list(arr: np.ndarray[Any, Any]) -> list[Any]:
    if arr.dtype.kind in ("O", "S"):
        return [x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in arr.tolist()]
    return arr.tolist()  # type: ignore[no-any-return]


def _v1_shape(instances: list[Any], datatype: str) -> tuple[int, ...]:
    try:
        arr = np.asarray(instances, dtype=object if datatype == "BYTES" else None)
    except (ValueError, TypeError):
        raise InvalidInput('"instances" must be a rectangular list (every row the same length)') from None
    if arr.dtype == object and datatype != "BYTES":
        raise InvalidInput('"instances" must be a rectangular list of numbers (every row the same length)')
    return tuple(arr.shape)


def _decompress(body: bytes, encoding: bytes, limit: int) -> bytes:
    if encoding == b"gzip":
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == b"deflate":
        d = zlib.decompressobj()
    else:
        raise UnsupportedMedia(
            f"content encoding {encoding.decode(errors='replace')!r} is not supported: use gzip, deflate or none"
        )
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as e:
        raise InvalidInput(f"body is not valid {encoding.decode()} data: {e}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed body is larger than the limit of {limit} bytes")
    return out


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
