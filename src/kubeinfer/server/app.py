"""The replica's HTTP data plane as a raw ASGI application.

Routes: Open Inference Protocol v2 REST (health, metadata, infer; JSON and the binary tensor data extension; gzip
and deflate bodies), KServe v1 (``/v1/models/{name}``, ``:predict``), OpenAI-style ``/v1/embeddings`` and
``/v1/models`` (OpenAI's list, with KServe v1's ``models`` names in the same answer), Kubernetes
probes (``/healthz``, ``/readyz``, ``/startupz``), ``/metrics`` and ``/openapi.json``.

Why raw ASGI and not a framework: on this workload a framework route plus pydantic request models costs several
times the server's own work per request (measured: the same batcher behind FastAPI serves ~3x fewer requests than
behind a bare ASGI callable). Tensors are validated directly with numpy in ``tensors.py`` instead; the OpenAPI
document is written by hand in ``openapi.py`` and tested against behaviour.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from kubeinfer import __version__
from kubeinfer.runtimes.base import Model, ModelInfo
from kubeinfer.server.batcher import Batcher
from kubeinfer.server.errors import (
    InvalidInput,
    MethodNotAllowed,
    ModelNotFound,
    OutOfMemory,
    PayloadTooLarge,
    RouteNotFound,
    ServerError,
    TooManyRequests,
    Unavailable,
    UnsupportedMedia,
    http_status,
    internal_error,
)
from kubeinfer.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from kubeinfer.server.metrics import Metrics
from kubeinfer.server.tensors import (
    InferRequest,
    from_json_data,
    output_json,
    parse_infer_json,
    select_outputs,
    validate_inputs,
)

__all__ = ["InferenceApp", "Limits", "ModelSlot"]

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
EXTENSIONS = ["binary_tensor_data", "model_repository_health", "kserve_v1", "openai_embeddings", "statistics"]


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int = 64 * 2**20
    max_concurrency: int = 4096
    request_timeout: float | None = 30.0
    # What one connection may hold (server/http.py; the spec's server.limits, the router's ConnLimits alike).
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_connections: int = 10_000
    max_header_bytes: int = 65_536
    max_headers: int = 100


@dataclass(slots=True)
class ModelSlot:
    """One served model: its runtime, metadata and batcher; ``ready`` once loaded and warmed."""

    model: Model
    name: str
    version: str
    info: ModelInfo | None = None
    batcher: Batcher | None = None
    ready: bool = False
    error: str | None = None
    stats: dict[str, int] = field(default_factory=dict)
    # When the model was added, in Unix seconds: the ``created`` field of OpenAI's model list.
    created: int = field(default_factory=lambda: int(time.time()))

    def metadata(self) -> dict[str, Any]:
        info = self.info
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": info.platform if info else "",
            "inputs": [s.to_json() for s in info.inputs] if info else [],
            "outputs": [s.to_json() for s in info.outputs] if info else [],
        }


class InferenceApp:
    def __init__(
        self,
        limits: Limits | None = None,
        metrics: Metrics | None = None,
        openapi: Callable[[list[tuple[str, str]]], dict[str, Any]] | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.metrics = metrics or Metrics()
        self.models: dict[str, ModelSlot] = {}
        self._draining = False
        self._started = False  # all models loaded (startup probe)
        self._openapi = openapi  # called with the served models' (name, version) pairs
        self._openapi_body: bytes | None = None
        self._watchers: list[Callable[[], None]] = []

    # -- state -----------------------------------------------------------------------------------------
    def watch(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the event loop) whenever readiness may have changed: a model loaded or failed,
        the server started or began to drain. The gRPC health service follows the server this way."""
        self._watchers.append(callback)

    def changed(self) -> None:
        """Tell the watchers that readiness may have changed."""
        for callback in self._watchers:
            callback()

    @property
    def draining(self) -> bool:
        return self._draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self._draining = value
        self.changed()

    @property
    def started(self) -> bool:
        return self._started

    @started.setter
    def started(self, value: bool) -> None:
        self._started = value
        self.changed()

    @property
    def in_flight(self) -> int:
        """Requests inside the server (every protocol): the ``kubeinfer_requests_in_flight`` gauge itself."""
        return self.metrics.in_flight

    @in_flight.setter
    def in_flight(self, n: int) -> None:
        self.metrics.in_flight = n

    def add(self, slot: ModelSlot) -> None:
        self.models[slot.name] = slot
        self.metrics.ready[slot.name] = lambda s=slot: s.ready  # type: ignore[misc]
        self.metrics.queue_depth[slot.name] = lambda s=slot: s.batcher.queue_depth if s.batcher else 0  # type: ignore[misc]

    @property
    def ready(self) -> bool:
        return self.started and not self.draining and all(s.ready for s in self.models.values())

    @property
    def queued(self) -> int:
        return sum(s.batcher.queue_depth + s.batcher.busy for s in self.models.values() if s.batcher)

    # -- ASGI ------------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        path: str = scope["path"]
        method: str = scope["method"]
        parts = path.split("/")
        model_label, proto = "", "rest"
        status = 200
        self.in_flight += 1
        try:
            # Fast path first: POST /v2/models/{name}[/versions/{v}]/infer
            if (
                method == "POST"
                and len(parts) >= 5
                and parts[1] == "v2"
                and parts[2] == "models"
                and parts[-1] == "infer"
            ):
                proto = "v2"
                slot = self.v2_slot(parts)
                model_label = slot.name
                status = await self._infer_v2(slot, scope, receive, send)
            else:
                status, model_label, proto = await self._route(method, parts, scope, receive, send)
        except ServerError as e:
            status = await self._error(send, e)
        except MemoryError:
            status = await self._error(send, OutOfMemory.of("reading this request"))
        except Exception as e:  # a bug: log it, answer 500 with a message, keep serving
            log.exception("unhandled error on %s %s", method, path)
            status = 500
            await _send(send, 500, orjson.dumps({"error": internal_error(e)}), _JSON)
        finally:
            self.in_flight -= 1
        if proto != "rest" or model_label:
            self.metrics.request(model_label, proto, status, time.perf_counter() - start)

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
        if e.retry_after is not None and status in (429, 503, 507):
            headers.append((b"retry-after", str(max(1, round(e.retry_after))).encode()))
        if self.draining or isinstance(e, PayloadTooLarge):
            # Too large: the body was not read, so the connection cannot carry another request.
            headers.append((b"connection", b"close"))
        return status, orjson.dumps({"error": str(e)}), headers

    def slot(self, name: str, version: str | None) -> ModelSlot:
        slot = self.models.get(name)
        if slot is None:
            known = ", ".join(repr(n) for n in self.models) or "none"
            raise ModelNotFound(f"unknown model {name!r}: this server serves {known}")
        if version is not None and version != slot.version:
            raise ModelNotFound(f"model {name!r} has no version {version!r}: it serves version {slot.version!r}")
        return slot

    def v2_slot(self, parts: list[str]) -> ModelSlot:
        """The slot of ``/v2/models/{name}[/versions/{v}]/...``, from the path split on ``/``."""
        return self.slot(parts[3], parts[5] if len(parts) == 7 and parts[4] == "versions" else None)

    def live_slot(self, slot: ModelSlot) -> tuple[Batcher, ModelInfo]:
        # While draining, requests that still arrive (a router or Service that has not yet seen the readiness
        # change) are served, with Connection: close, rather than refused: refusing would drop them.
        if not slot.ready or slot.batcher is None or slot.info is None:
            why = f": {slot.error}" if slot.error else " yet (loading)"
            raise Unavailable(f"model {slot.name!r} is not ready{why}")
        if self.in_flight > self.limits.max_concurrency:
            raise TooManyRequests(f"server is at its concurrency limit ({self.limits.max_concurrency}); retry later")
        return slot.batcher, slot.info

    async def _read_body(self, scope: Scope, receive: Receive, decode: bool = True) -> tuple[bytes, dict[bytes, bytes]]:
        headers = dict(scope["headers"])
        limit = self.limits.max_body_bytes
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

    def submit(
        self, batcher: Batcher, req: InferRequest, time_remaining: float | None = None
    ) -> asyncio.Future[dict[str, np.ndarray[Any, Any]]]:
        """Queue ``req`` with the per-request deadline: ``limits.request_timeout``, or the client's own
        ``time_remaining`` (a gRPC deadline) where that is sooner."""
        timeout = self.limits.request_timeout
        if time_remaining is not None:
            timeout = min(timeout, time_remaining) if timeout else time_remaining
        return batcher.submit(req, time.monotonic() + timeout if timeout else None)

    # -- OIP v2 infer ----------------------------------------------------------------------------------
    async def _infer_v2(self, slot: ModelSlot, scope: Scope, receive: Receive, send: Send) -> int:
        self.live_slot(slot)  # refuse before reading a body that would not be served
        body, headers = await self._read_body(scope, receive, decode=False)
        req, future = self.infer_v2_submit(slot, body, headers)
        result = await future
        payload, hdrs = self.infer_v2_response(slot, req, result)
        await _send(send, 200, payload, hdrs)
        return 200

    def infer_v2_submit(
        self, slot: ModelSlot, body: bytes, headers: dict[bytes, bytes]
    ) -> tuple[InferRequest, asyncio.Future[dict[str, np.ndarray[Any, Any]]]]:
        """Parse, validate and queue an OIP v2 infer body (JSON, or the binary extension); raises ``ServerError``.

        ``headers`` are the request's, lower-case names; the body is read whole (and within the size limit)."""
        batcher, info = self.live_slot(slot)
        enc = headers.get(b"content-encoding")
        if enc is not None and enc not in (b"identity", b""):
            body = _decompress(body, enc, self.limits.max_body_bytes)
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
        validate_inputs(req, info, slot.name)
        return req, self.submit(batcher, req)

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
        extra = [(b"connection", b"close")] if self.draining else []
        if chunks:
            hdrs = [
                (b"content-type", b"application/octet-stream"),
                (b"inference-header-content-length", str(len(payload)).encode()),
                *extra,
            ]
            return b"".join([payload, *chunks]), hdrs
        return payload, (_JSON + extra if extra else _JSON)

    # -- everything else -------------------------------------------------------------------------------
    async def _route(
        self, method: str, parts: list[str], scope: Scope, receive: Receive, send: Send
    ) -> tuple[int, str, str]:
        n = len(parts)
        if n >= 2 and parts[1] == "v2":
            return await self._route_v2(method, parts, send)
        if n >= 2 and parts[1] == "v1":
            return await self._route_v1(method, parts, scope, receive, send)
        tail = parts[1] if n == 2 else ""
        if tail in ("healthz", "livez") or parts[1:] == ["health", "live"]:
            _get(method)
            await _send(send, 200, b'{"live":true}', _JSON)
        elif tail == "readyz" or parts[1:] == ["health", "ready"]:
            _get(method)
            await self._bool(send, "ready", self.ready)
        elif tail == "startupz" or parts[1:] == ["health", "startup"]:
            _get(method)
            await self._bool(send, "started", self.started)
        elif tail == "metrics":
            _get(method)
            await _send(send, 200, self.metrics.render(), [(b"content-type", METRICS_CONTENT_TYPE.encode())])
        elif tail == "openapi.json":
            _get(method)
            if self._openapi_body is None:
                served = [(slot.name, slot.version) for slot in self.models.values()]
                self._openapi_body = orjson.dumps(self._openapi(served) if self._openapi else {})
            await _send(send, 200, self._openapi_body, _JSON)
        else:
            raise RouteNotFound(f"no route {method} {'/'.join(parts)}: see /openapi.json for the endpoints")
        return 200, "", "rest"

    async def _bool(self, send: Send, key: str, value: bool) -> None:
        doc: dict[str, Any] = {key: value}
        if not value:
            doc["reason"] = self.not_ready_reason()
        await _send(send, 200 if value else 503, orjson.dumps(doc), _JSON)

    def not_ready_reason(self) -> str:
        """Why readiness is false, for probes and ``kubeinfer describe`` (a supervisor sees it without the logs)."""
        if self.draining:
            return "draining (SIGTERM)"
        failed = [f"model {s.name!r} failed to load: {s.error}" for s in self.models.values() if s.error]
        if failed:
            return "; ".join(failed)[:500]
        return "loading the model"

    async def _route_v2(self, method: str, parts: list[str], send: Send) -> tuple[int, str, str]:
        rest = parts[2:]
        if rest in ([], [""]):
            _get(method)
            body = orjson.dumps({"name": "kubeinfer", "version": __version__, "extensions": EXTENSIONS})
            await _send(send, 200, body, _JSON)
        elif rest == ["health", "live"]:
            _get(method)
            await _send(send, 200, b'{"live":true}', _JSON)
        elif rest == ["health", "ready"]:
            _get(method)
            await self._bool(send, "ready", self.ready)
        elif rest == ["repository", "index"]:
            if method != "POST":
                raise MethodNotAllowed("use POST for /v2/repository/index", "POST")
            index = [
                {
                    "name": s.name,
                    "version": s.version,
                    "state": "READY" if s.ready else "UNAVAILABLE",
                    "reason": s.error or "",
                }
                for s in self.models.values()
            ]
            await _send(send, 200, orjson.dumps(index), _JSON)
        elif len(rest) >= 2 and rest[0] == "models":
            version = rest[3] if len(rest) >= 4 and rest[2] == "versions" else None
            tail = rest[4:] if version is not None else rest[2:]
            slot = self.slot(rest[1], version)
            if tail in ([], [""]):
                _get(method)
                await _send(send, 200, orjson.dumps(slot.metadata()), _JSON)
            elif tail == ["ready"]:
                _get(method)
                ready = slot.ready and not self.draining
                body = orjson.dumps({"name": slot.name, "ready": ready})
                await _send(send, 200 if ready else 503, body, _JSON)
            elif tail == ["infer"]:
                raise MethodNotAllowed("use POST for inference", "POST")
            elif tail == ["stats"]:
                _get(method)
                await _send(send, 200, orjson.dumps(self._stats(slot)), _JSON)
            else:
                raise RouteNotFound(f"no route {method} /v2/{'/'.join(rest)}")
        else:
            raise RouteNotFound(f"no route {method} /v2/{'/'.join(rest)}: see /openapi.json for the endpoints")
        return 200, "", "rest"

    def _stats(self, slot: ModelSlot) -> dict[str, Any]:
        m = self.metrics
        return {
            "model_stats": [
                {
                    "name": slot.name,
                    "version": slot.version,
                    "inference_count": m.rows.get(slot.name, 0),
                    "execution_count": m.executions.get(slot.name, 0),
                    "queue_depth": slot.batcher.queue_depth if slot.batcher else 0,
                }
            ]
        }

    async def _route_v1(
        self, method: str, parts: list[str], scope: Scope, receive: Receive, send: Send
    ) -> tuple[int, str, str]:
        rest = parts[2:]
        if rest == ["models"]:
            _get(method)
            await _send(send, 200, orjson.dumps(self.model_list()), _JSON)
            return 200, "", "rest"
        if rest == ["embeddings"]:
            if method != "POST":
                raise MethodNotAllowed("use POST for /v1/embeddings", "POST")
            name = await self._embeddings(scope, receive, send)
            return 200, name, "openai"
        if len(rest) == 2 and rest[0] == "models":
            name, _, verb = rest[1].partition(":")
            slot = self.slot(name, None)
            if verb == "":
                _get(method)
                ready = slot.ready and not self.draining
                await _send(send, 200 if ready else 503, orjson.dumps({"name": slot.name, "ready": ready}), _JSON)
                return 200, "", "rest"
            if verb == "predict":
                if method != "POST":
                    raise MethodNotAllowed("use POST for :predict", "POST")
                await self._predict_v1(slot, scope, receive, send)
                return 200, slot.name, "v1"
        raise RouteNotFound(f"no route {method} /v1/{'/'.join(rest)}: see /openapi.json for the endpoints")

    def model_list(self) -> dict[str, Any]:
        """``GET /v1/models``: OpenAI's model list (``object``, ``data``), which OpenAI clients read from
        ``{base_url}/models``, and KServe v1's (``models``, the names) in the same object, so both kinds of client
        read the route they already call."""
        data = [
            {"id": s.name, "object": "model", "created": s.created, "owned_by": "kubeinfer"}
            for s in self.models.values()
        ]
        return {"object": "list", "data": data, "models": list(self.models)}

    def _json_body(self, body: bytes) -> Any:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise InvalidInput(f"request body is not valid JSON: {e}") from None

    async def _predict_v1(self, slot: ModelSlot, scope: Scope, receive: Receive, send: Send) -> None:
        batcher, info = self.live_slot(slot)
        body, _ = await self._read_body(scope, receive)
        doc = self._json_body(body)
        if not isinstance(doc, dict):
            raise InvalidInput('body must be a JSON object: {"instances": [...]}')
        instances = doc.get("instances", doc.get("inputs"))
        if not isinstance(instances, list) or not instances:
            raise InvalidInput('"instances" must be a non-empty list (one entry per row)')
        if not info.inputs:
            raise InvalidInput(f"model {slot.name!r} declares no inputs: use the v2 protocol")
        req = InferRequest(inputs=_v1_inputs(instances, info), rows=0)
        validate_inputs(req, info, slot.name)
        result = await self.submit(batcher, req)
        if "predict" in result:
            preds: Any = _v1_list(result["predict"])
        elif len(result) == 1:
            preds = _v1_list(next(iter(result.values())))
        else:
            cols = {k: _v1_list(v) for k, v in result.items()}
            preds = [{k: v[i] for k, v in cols.items()} for i in range(req.rows)]
        await _send(send, 200, orjson.dumps({"predictions": preds}, option=_OPT), _JSON)

    async def _embeddings(self, scope: Scope, receive: Receive, send: Send) -> str:
        body, _ = await self._read_body(scope, receive)
        doc = self._json_body(body)
        if not isinstance(doc, dict):
            raise InvalidInput('body must be a JSON object: {"model": ..., "input": "text" | ["text", ...]}')
        candidates = [s for s in self.models.values() if s.info is None or _is_embedder(s.info)]
        name = doc.get("model")
        if name is not None:
            if not isinstance(name, str):
                raise InvalidInput('"model" must be a string')
            slot = self.slot(name, None)
        elif len(candidates) == 1:
            slot = candidates[0]
        elif not candidates:
            raise ModelNotFound("this server serves no embedding model")
        else:
            raise InvalidInput('"model" is required: name the embedding model')
        batcher, info = self.live_slot(slot)
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
        result = await self.submit(batcher, req)
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
        await _send(send, 200, orjson.dumps(resp, option=_OPT), _JSON)
        return slot.name


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


def _get(method: str) -> None:
    if method not in ("GET", "HEAD"):
        raise MethodNotAllowed(f"method {method} is not allowed here: use GET")


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


async def load_slot(
    app: InferenceApp, slot: ModelSlot, make_batcher: Callable[[ModelSlot], Batcher], executor: Any, warmup: bool = True
) -> None:
    """Load and warm a model in a worker thread, then mark it ready; a failure is kept as the slot's error."""
    from kubeinfer.runtimes.base import sample_batch

    loop = asyncio.get_running_loop()
    try:
        slot.info = await loop.run_in_executor(executor, slot.model.load)
        if warmup and slot.info.inputs:
            batch = sample_batch(slot.info.inputs, rows=1)
            await loop.run_in_executor(executor, slot.model.predict, batch, None)
        slot.batcher = make_batcher(slot)
        slot.ready = True
        log.info("model %s version %s ready", slot.name, slot.version)
    except Exception as e:
        slot.error = f"{type(e).__name__}: {e}"
        log.error("model %s failed to load: %s", slot.name, slot.error)
    app.changed()
