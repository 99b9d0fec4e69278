"""Payload logging: inference requests and responses as CloudEvents, to a file or an HTTP endpoint (``spec.logger``).

It follows KServe's logger (``pkg/logger`` of the KServe agent), so that what consumes KServe's events -- Knative's
``event_display``, a broker and its triggers, drift and outlier detectors -- reads these unchanged:

- CloudEvents 1.0 of type ``org.kubeflow.serving.inference.request`` and ``org.kubeflow.serving.inference.response``
  (KServe's types, not types of our own: a consumer that filters on them works as it does behind KServe);
- a request and its response share the event ``id``: the request's ``Ce-Id`` header when it has one, else a new UUID;
- extension attributes ``inferenceservicename``, ``namespace``, ``component`` (``predictor``), ``endpoint``
  (``default``) and ``metadata`` (the ``metadataHeaders`` of the request, as JSON ``{name: [values]}``), and kubeinfer's
  own ``modelname``, ``modelversion``, ``protocol`` (``v2``, ``v1``, ``openai``, ``grpc``) and ``replica``;
- ``mode``: ``request``, ``response`` or ``all``; as KServe, a response is logged only when it succeeded (HTTP 200, gRPC
  OK); its request is logged whatever the answer;
- over HTTP the binary content mode (``ce-*`` headers, the payload as the body) by default, as KServe sends; the
  structured mode and the batched mode of the CloudEvents HTTP binding on request.

The event's data is the payload as JSON: the body as the client sent it (or as the server answered) for JSON bodies;
the binary tensor extension's bytes and gRPC's tensors decoded into Open Inference Protocol JSON (``data`` lists), so
that a reader needs no knowledge of either; a gzip or deflate body decompressed. ``redact`` replaces the data of the
named tensors, the values of the named JSON keys and of the named headers by ``"[redacted]"``.

Cost on the request path. Off (no ``spec.logger``), an ``is None`` test where a request enters and one where it
leaves. On, a request that the sample leaves out costs one random draw; a sampled one keeps references to its request
and response bytes (already in memory) and puts one item on a bounded queue. Everything else -- decompressing,
decoding, redacting, encoding the events, writing the file or POSTing -- runs in the logger's own thread, which wakes
at most every 20 ms once its queue is empty (each wake takes the interpreter lock from the event loop). When the queue is full (``queueSize`` items or
64 MiB of payloads) new events are dropped and counted, never waited for, and a failing sink (a refused connection, a
non-2xx answer, a full disk) drops the events it could not take and counts them: a request never waits for, nor fails
because of, its log. ``kubeinfer_payload_log_events_total{outcome="logged"|"dropped"}`` counts both.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import logging
import os
import queue
import random
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlsplit

import numpy as np
import orjson

if TYPE_CHECKING:
    from kubeinfer.server.dataplane import ModelSlot
    from kubeinfer.server.metrics import Metrics
    from kubeinfer.spec.service import InferenceService, LoggerSpec

__all__ = [
    "REDACTED",
    "REQUEST_TYPE",
    "RESPONSE_TYPE",
    "FileSink",
    "HttpSink",
    "PayloadLog",
    "Tap",
    "from_spec",
]

log = logging.getLogger("kubeinfer.server.payload_log")

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
REDACTED = "[redacted]"
QUEUE_BYTES = 64 * 2**20
"""Payload bytes waiting for the sink at most (besides ``queueSize`` items): beyond, new events are dropped."""
PAUSE_SECONDS = 0.02
"""How long the logger's thread lets events gather once it has emptied its queue."""
STOP_SECONDS = 5.0
"""At shutdown, how long the events still queued may take to reach the sink."""

Headers = Mapping[bytes, bytes] | Iterable[tuple[bytes, bytes]]
Event = dict[str, Any]
"""A CloudEvent in its structured form: the context attributes, then ``data`` (JSON) or ``data_base64``."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who emits the events: the service, its namespace, the replica, and the ``source`` attribute built from them."""

    service: str
    namespace: str
    replica: str

    @property
    def source(self) -> str:
        return f"/namespaces/{self.namespace}/inferenceservices/{self.service}"


class SinkError(OSError):
    """A sink delivered the first ``delivered`` events of a batch, and not the rest."""

    def __init__(self, delivered: int, message: str) -> None:
        super().__init__(message)
        self.delivered = delivered


class Sink(Protocol):
    """Where events go; called from the logger's thread only. Raises ``OSError`` (or ``ValueError``) when the events
    could not be delivered, :class:`SinkError` when only the first ones were."""

    def write(self, events: list[Event]) -> None: ...

    def close(self) -> None: ...


class Tap:
    """One sampled request on its way through the server: what its events are made of, kept until it is answered."""

    __slots__ = ("body", "headers", "log", "protocol", "received")

    def __init__(self, log: PayloadLog, protocol: str, headers: Headers | None, body: Any) -> None:
        self.log = log
        self.protocol = protocol
        self.headers = headers
        self.body = body
        self.received = time.time()

    def close(self, slot: ModelSlot | None, status: int, body: Any, headers: Headers | None = None) -> None:
        """The request was answered with ``status`` (HTTP, or 200 for gRPC OK) and ``body`` (bytes, or the gRPC
        response message): queue its events."""
        self.log.enqueue(self, slot, status, body, headers)


class AsgiTap(Tap):
    """A tap on an ASGI request (``app.py``): it keeps the body as it is received and the answer as it is sent."""

    __slots__ = ("chunks", "out", "out_headers", "receive", "send")

    def __init__(self, log: PayloadLog, scope: Any, receive: Any, send: Any) -> None:
        super().__init__(log, "", scope["headers"], b"")
        self.chunks: list[bytes] = []
        self.out: list[bytes] = []
        self.out_headers: list[tuple[bytes, bytes]] = []
        self.receive = receive
        self.send = send

    async def tapped_receive(self) -> MutableMapping[str, Any]:
        msg = await self.receive()
        if msg["type"] == "http.request":
            self.chunks.append(msg.get("body", b""))
        return msg  # type: ignore[no-any-return]

    async def tapped_send(self, msg: MutableMapping[str, Any]) -> None:
        kind = msg["type"]
        if kind == "http.response.start":
            self.out_headers = list(msg.get("headers", ()))
        elif kind == "http.response.body":
            self.out.append(msg.get("body", b""))
        await self.send(msg)

    def finish(self, slot: ModelSlot | None, protocol: str, status: int) -> None:
        """The ASGI request ended: log it if it was an inference (a route with a ``protocol`` label)."""
        if protocol:
            self.protocol = protocol
            self.body = b"".join(self.chunks)
            self.log.enqueue(self, slot, status, b"".join(self.out), self.out_headers)


class PayloadLog:
    """The logger of one server process: samples requests (:meth:`tap`), queues their events, and writes them to
    ``sink`` from its own thread (module docstring)."""

    def __init__(
        self,
        spec: LoggerSpec,
        sink: Sink,
        identity: Identity,
        metrics: Metrics | None = None,
    ) -> None:
        self.spec = spec
        self.sink = sink
        self.identity = identity
        self.rate = spec.sampleRate
        self.requests = spec.mode in ("all", "request")
        self.responses = spec.mode in ("all", "response")
        self.redact = frozenset(spec.redact)
        self.redact_headers = frozenset(n.lower() for n in spec.redact)
        self.metadata_headers = tuple(h.lower().encode() for h in spec.metadataHeaders)
        self._queue: queue.Queue[tuple[Tap, ModelSlot | None, int, Any, Any, float, int] | None] = queue.Queue(
            spec.queueSize
        )
        self._bytes = 0  # payload bytes queued; changed under _lock (the loop adds, the thread takes away)
        self._lock = threading.Lock()
        self.logged = 0  # changed by the thread only
        self.dropped_full = 0  # by the event loop only
        self.dropped_failed = 0  # by the thread only
        self._warned = 0.0
        if metrics is not None:
            metrics.payload_log = self.counts
        self._thread = threading.Thread(target=self._run, name="kubeinfer-payload-log", daemon=True)
        self._thread.start()

    # -- the request path ----------------------------------------------------------------------------------
    def tap(self, protocol: str, headers: Headers | None, body: Any) -> Tap | None:
        """A tap on a request (its body and headers as received), or ``None`` when the sample leaves it out."""
        rate = self.rate
        if rate < 1.0 and random.random() >= rate:
            return None
        return Tap(self, protocol, headers, body)

    def asgi(self, scope: Any, receive: Any, send: Any) -> tuple[AsgiTap | None, Any, Any]:
        """A tap on an ASGI request, and the ``receive`` and ``send`` to serve it with (the same ones, untapped, for a
        request that cannot be an inference or that the sample leaves out)."""
        rate = self.rate
        if scope["method"] != "POST" or (rate < 1.0 and random.random() >= rate):
            return None, receive, send
        t = AsgiTap(self, scope, receive, send)
        return t, t.tapped_receive, t.tapped_send

    def enqueue(self, tap: Tap, slot: ModelSlot | None, status: int, body: Any, headers: Any) -> None:
        n = int(self.requests) + int(self.responses and _ok(status))
        if not n:
            return
        size = _size(tap.body) + _size(body)
        with self._lock:
            full = self._bytes + size > QUEUE_BYTES
            if not full:
                self._bytes += size
        if not full:
            try:
                self._queue.put_nowait((tap, slot, status, body, headers, time.time(), size))
                return
            except queue.Full:
                with self._lock:
                    self._bytes -= size
        self.dropped_full += n
        self._warn("the payload log's queue is full (spec.logger.queueSize, or 64Mi of payloads): events dropped")

    def counts(self) -> tuple[int, int]:
        """(logged, dropped) events so far."""
        return self.logged, self.dropped_full + self.dropped_failed

    def close(self, timeout: float = STOP_SECONDS) -> None:
        """Write what is queued (for at most ``timeout`` seconds), then stop the thread and close the sink."""
        deadline = time.monotonic() + timeout
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(max(0.0, deadline - time.monotonic()))

    # -- the logger's thread -------------------------------------------------------------------------------
    def _run(self) -> None:
        batch_size = self.spec.batchSize
        try:
            while True:
                item = self._queue.get()
                items = [item]
                while item is not None and len(items) < batch_size:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    items.append(item)
                events: list[Event] = []
                with self._lock:
                    self._bytes -= sum(it[6] for it in items if it is not None)
                for it in items:
                    if it is None:
                        continue
                    try:
                        events += self.events(*it[:6])
                    except Exception as e:  # a payload that cannot be read must not stop the logger
                        self.dropped_failed += int(self.requests) + int(self.responses and _ok(it[2]))
                        self._warn(f"a payload could not be logged: {type(e).__name__}: {e}")
                if events:
                    try:
                        self.sink.write(events)
                        self.logged += len(events)
                    except (OSError, ValueError, http.client.HTTPException) as e:
                        delivered = e.delivered if isinstance(e, SinkError) else 0
                        self.logged += delivered
                        self.dropped_failed += len(events) - delivered
                        self._warn(f"the payload log's sink failed, {len(events) - delivered} event(s) dropped: {e}")
                if items[-1] is None:
                    return
                if len(items) < batch_size:
                    # The queue is drained: let events gather for a moment rather than wake for each one (each wake
                    # takes the interpreter lock from the event loop serving requests).
                    time.sleep(PAUSE_SECONDS)
        finally:
            with contextlib.suppress(Exception):
                self.sink.close()

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._warned >= 10.0:  # at most one line per 10 s, whatever the rate of failures
            self._warned = now
            log.warning("%s (dropped so far: %d)", message, self.counts()[1])

    def events(
        self, tap: Tap, slot: ModelSlot | None, status: int, body: Any, headers: Any, answered: float | None = None
    ) -> list[Event]:
        """The CloudEvents of one request answered at ``answered`` (Unix time; default now), in the logger's
        thread."""
        req_headers = _header_map(tap.headers)
        event_id = req_headers.get(b"ce-id", b"").decode("ascii", "replace") or str(uuid.uuid4())
        common: Event = {
            "specversion": "1.0",
            "id": event_id,
            "source": self.identity.source,
            "inferenceservicename": self.identity.service,
            "namespace": self.identity.namespace,
            "component": "predictor",
            "endpoint": "default",
            "modelname": slot.name if slot is not None else "",
            "modelversion": slot.version if slot is not None else "",
            "protocol": tap.protocol,
            "replica": self.identity.replica,
            "metadata": orjson.dumps(self._metadata(req_headers)).decode() if self.metadata_headers else "{}",
        }
        out: list[Event] = []
        # A body the server read as JSON and answered 200 is valid JSON: without redaction it goes into the event
        # as it is (an orjson Fragment), neither parsed nor serialized again.
        raw = _ok(status) and not self.redact
        if self.requests:
            out.append(self._event(common, REQUEST_TYPE, tap.received, tap.body, req_headers, "inputs", raw=raw))
        if self.responses and _ok(status):
            headers = _header_map(headers)
            at = time.time() if answered is None else answered
            out.append(self._event(common, RESPONSE_TYPE, at, body, headers, "outputs", slot, raw=raw))
        return out

    def _metadata(self, headers: Mapping[bytes, bytes]) -> dict[str, list[str]]:
        meta: dict[str, list[str]] = {}
        for name in self.metadata_headers:
            value = headers.get(name)
            if value is not None:
                key = name.decode()
                meta[key] = [REDACTED if key in self.redact_headers else value.decode("latin-1")]
        return meta

    def _event(
        self,
        common: Event,
        kind: str,
        at: float,
        body: Any,
        headers: Mapping[bytes, bytes],
        tensors: str,
        slot: ModelSlot | None = None,
        raw: bool = False,
    ) -> Event:
        event = dict(common)
        event["type"] = kind
        event["time"] = _rfc3339(at)
        if not isinstance(body, bytes | bytearray | memoryview):
            if isinstance(body, tuple) and slot is not None:  # a gRPC answer, (request, result): encoded as the
                from kubeinfer.server.grpc_service import encode_response  # server did, here in the logger's thread

                body = encode_response(slot, *body)
            event["datacontenttype"] = "application/json"
            event["data"] = self._redacted(_grpc_doc(body, tensors))
            return event
        data = bytes(body)
        enc = headers.get(b"content-encoding")
        if enc in (b"gzip", b"deflate"):
            data = zlib.decompress(data, (16 if enc == b"gzip" else 0) + zlib.MAX_WBITS)
        ctype = headers.get(b"content-type", b"application/json").decode("latin-1")
        hlen = headers.get(b"inference-header-content-length")
        try:
            if hlen is not None:
                n = int(hlen)
                doc = _binary_doc(orjson.loads(data[:n]), memoryview(data)[n:], tensors)
                ctype = "application/json"
            elif ctype.startswith("text/event-stream"):
                event["datacontenttype"] = ctype
                event["data"] = data.decode("utf-8", "replace")
                return event
            elif raw and ctype.startswith("application/json"):
                event["datacontenttype"] = "application/json"
                event["data"] = orjson.Fragment(data)
                return event
            else:
                doc = orjson.loads(data)
        except (orjson.JSONDecodeError, ValueError):
            event["datacontenttype"] = ctype
            event["data_base64"] = _b64(data)
            return event
        event["datacontenttype"] = "application/json"
        event["data"] = self._redacted(doc)
        return event

    def _redacted(self, doc: Any) -> Any:
        if not self.redact:
            return doc
        return _redact(doc, self.redact)


# -- payloads -------------------------------------------------------------------------------------------------
def _ok(status: int) -> bool:
    return status == 200


def _size(body: Any) -> int:
    if isinstance(body, bytes | bytearray | memoryview):
        return len(body)
    if isinstance(body, tuple):  # a gRPC answer's (request, result): the result's arrays
        return sum(a.nbytes for a in (body[1] or {}).values())
    size = getattr(body, "ByteSize", None)  # a gRPC message
    return int(size()) if callable(size) else 0


def _header_map(headers: Any) -> dict[bytes, bytes]:
    if headers is None:
        return {}
    if isinstance(headers, dict):
        return headers
    return {bytes(k).lower(): bytes(v) for k, v in headers}


_SECOND: list[Any] = [-1, ""]  # the last whole second formatted, and its text (the logger's thread only)


def _rfc3339(t: float) -> str:
    second = int(t)
    if second != _SECOND[0]:
        _SECOND[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    return f"{_SECOND[1]}.{int((t - second) * 1e6):06d}Z"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _plain(arr: np.ndarray[Any, Any]) -> list[Any]:
    """A tensor's values as a flat JSON list (BYTES as text)."""
    flat = arr.reshape(-1)
    if flat.dtype.kind in ("O", "S"):
        return [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in flat]
    return list(flat.tolist())


def _binary_doc(doc: Any, rest: memoryview, tensors: str) -> Any:
    """An OIP v2 body of the binary tensor extension as plain JSON: each tensor's bytes decoded into ``data``."""
    from kubeinfer.server.tensors import decode_raw

    pos = 0
    for t in doc.get(tensors, ()) if isinstance(doc, dict) else ():
        params = t.get("parameters") or {}
        size = params.get("binary_data_size")
        if size is None:
            continue
        buf = rest[pos : pos + int(size)]
        pos += int(size)
        t["data"] = _plain(decode_raw(t["datatype"], tuple(t["shape"]), buf, t.get("name", "")))
        params.pop("binary_data_size", None)
        if not params:
            t.pop("parameters", None)
    return doc


def _grpc_doc(msg: Any, tensors: str) -> dict[str, Any]:
    """A ``ModelInferRequest`` or ``ModelInferResponse`` as OIP v2 JSON (typed or raw contents decoded into ``data``)."""
    from kubeinfer.server.tensors import decode_raw

    doc: dict[str, Any] = {"model_name": msg.model_name}
    if msg.model_version:
        doc["model_version"] = msg.model_version
    if msg.id:
        doc["id"] = msg.id
    raws = msg.raw_input_contents if tensors == "inputs" else msg.raw_output_contents
    out = []
    for i, t in enumerate(getattr(msg, tensors)):
        entry: dict[str, Any] = {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
        if i < len(raws):
            entry["data"] = _plain(decode_raw(t.datatype, tuple(t.shape), raws[i], t.name))
        elif t.HasField("contents"):
            fields = t.contents.ListFields()
            if fields:
                values = list(fields[0][1])
                entry["data"] = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in values]
        out.append(entry)
    doc[tensors] = out
    if tensors == "inputs" and msg.outputs:
        doc["outputs"] = [{"name": o.name} for o in msg.outputs]
    return doc


def _redact(doc: Any, names: frozenset[str]) -> Any:
    """``doc`` with the data of the tensors named in ``names`` (objects with ``name`` and ``data``, OIP v2) and the
    values of the keys in ``names`` replaced by :data:`REDACTED`; lists of numbers are not walked."""
    if isinstance(doc, dict):
        tensor = doc.get("name") in names and ("data" in doc or "datatype" in doc)
        out: dict[str, Any] = {}
        for k, v in doc.items():
            if k in names or (tensor and k == "data"):
                out[k] = REDACTED
            else:
                out[k] = _redact(v, names)
        if tensor and "data" not in out:
            out["data"] = REDACTED
        return out
    if isinstance(doc, list) and doc and isinstance(doc[0], dict | list):
        return [_redact(v, names) for v in doc]
    return doc


# -- sinks ----------------------------------------------------------------------------------------------------
class FileSink:
    """Events appended to ``path`` as JSON lines (structured CloudEvents); past ``max_bytes`` the file is rotated:
    ``NAME.1`` is the previous part, up to ``NAME.{keep}`` (``logging.handlers.RotatingFileHandler``'s scheme)."""

    def __init__(self, path: Path, max_bytes: int, keep: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self._file: Any = None
        self._size = 0

    def open(self) -> Any:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._file = os.fdopen(fd, "ab")
            self._size = self._file.tell()
        return self._file

    def write(self, events: list[Event]) -> None:
        data = b"".join(orjson.dumps(e) + b"\n" for e in events)
        try:
            f = self.open()
            if self._size and self._size + len(data) > self.max_bytes:
                self._rotate()
                f = self.open()
            f.write(data)
            f.flush()
            self._size += len(data)
        except OSError:
            self.close()  # reopened by the next write (the disk may have room again)
            raise

    def _rotate(self) -> None:
        self.close()
        for i in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))

    def close(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()


# What a ce- header carries as it is (the HTTP binding percent-encodes space, '"', '%' and all but printable ASCII).
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')


class HttpSink:
    """Events POSTed to ``url`` over one kept-alive connection (``http.client``, in the logger's thread): one event
    per POST in the ``binary`` and ``structured`` modes of the CloudEvents HTTP binding, up to a batch per POST in
    the ``batch`` mode. A refused connection, a timeout or an answer other than 2xx fails the event being sent and the
    rest of its batch (:class:`SinkError` says how many went before)."""

    def __init__(self, url: str, encoding: str, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"spec.logger.url {url!r} is not an http:// or https:// address")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.encoding = encoding
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            self._conn = cls(self.host, self.port, timeout=self.timeout)
        return self._conn

    def _post(self, body: bytes, headers: dict[str, str]) -> None:
        conn = self._connection()
        try:
            conn.request("POST", self.path, body, headers)
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if resp.will_close:
            self.close()
        if not 200 <= resp.status < 300:
            raise OSError(f"{self.host} answered {resp.status} {resp.reason}")

    def write(self, events: list[Event]) -> None:
        if self.encoding == "batch":
            self._post(orjson.dumps(events), {"content-type": "application/cloudevents-batch+json"})
            return
        for i, e in enumerate(events):
            try:
                if self.encoding == "structured":
                    self._post(orjson.dumps(e), {"content-type": "application/cloudevents+json"})
                else:
                    self._post(*_binary(e))
            except (OSError, http.client.HTTPException) as err:
                # The rest of the batch is not tried: a sink that does not answer would hold the thread for
                # timeoutSeconds per event. The next batch tries again.
                raise SinkError(i, f"{len(events) - i} of {len(events)} event(s) not delivered: {err}") from err

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _binary(event: Event) -> tuple[bytes, dict[str, str]]:
    """An event in the binary content mode: the data as the body, each attribute as a ``ce-`` header
    (percent-encoded where the HTTP binding asks)."""
    headers = {"content-type": event.get("datacontenttype", "application/json")}
    for key, value in event.items():
        if key in ("data", "data_base64", "datacontenttype"):
            continue
        headers[f"ce-{key}"] = quote(str(value), safe=_HEADER_SAFE)
    if "data_base64" in event:
        return base64.b64decode(event["data_base64"]), headers
    data = event.get("data")
    body = data.encode() if isinstance(data, str) else orjson.dumps(data)  # a Fragment: its bytes as they are
    return body, headers


# -- configuration --------------------------------------------------------------------------------------------
def file_path(raw: str, base_dir: Path | None, env: Mapping[str, str], process: int | None) -> Path:
    """Where this process writes ``spec.logger.file``: relative to the spec's folder, and one file per replica of
    ``kubeinfer up`` (``KUBEINFER_REPLICA``) and per server process (``server.processes``), so that no two writers
    share (and rotate) one file: ``payload.jsonl`` -> ``payload.iris-r1-0.jsonl``, ``payload.p1.jsonl``."""
    path = Path(raw).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    tags = [t for t in (env.get("KUBEINFER_REPLICA", ""), f"p{process}" if process else "") if t]
    if tags:
        path = path.with_name(f"{path.stem}.{'.'.join(tags)}{path.suffix}")
    return path


def from_spec(
    svc: InferenceService,
    base_dir: Path | None,
    metrics: Metrics | None,
    process: int | None = None,
    env: Mapping[str, str] | None = None,
) -> PayloadLog | None:
    """The payload logger ``spec.logger`` asks for, started, or ``None`` when there is none."""
    spec = svc.spec.logger
    if spec is None:
        return None
    env = os.environ if env is None else env
    sink: Sink
    if spec.file is not None:
        path = file_path(spec.file, base_dir, env, process)
        sink = FileSink(path, spec.max_file_bytes, spec.maxFiles)
        try:
            sink.open()
        except OSError as e:
            raise SystemExit(f"kubeinfer serve: spec.logger.file: cannot write {path}: {e.strerror or e}") from None
    else:
        sink = HttpSink(spec.url or "", spec.encoding, spec.timeoutSeconds)
    replica = env.get("KUBEINFER_REPLICA") or env.get("POD_NAME") or socket.gethostname()
    if process:
        replica = f"{replica}/p{process}"
    identity = Identity(svc.metadata.name, svc.metadata.namespace, replica)
    return PayloadLog(spec, sink, identity, metrics)
