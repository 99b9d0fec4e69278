"""The span exporter's own process: spans from a serving process (a replica's or the router's) in, OTLP out.

Why a process: encoding spans as OTLP protobuf messages takes Python CPU, and a thread doing it in the serving process
holds the interpreter lock that the event loop serving requests needs. Here that work holds this process's lock
instead. The serving process (``tracing.py``) sends finished spans as ``marshal``-ed lists of plain tuples
(:data:`RECORD`) over a Unix datagram socket it shares with this process.

This process builds OTLP's ``ExportTraceServiceRequest`` from the tuples directly with opentelemetry-proto's
generated classes (:class:`Encoder`): the SDK's own encoder would need an SDK span object rebuilt per tuple and
costs several times more CPU per span (``bench/tracing/RESULTS.md``); the message is the same, field for field, as
the SDK's encoder makes of those rebuilt spans (``tests/unit/server/test_trace_export.py``). The request is sent by
the SDK's own OTLP exporters (:class:`GrpcSender`, :class:`HttpSender`), so that every ``OTEL_EXPORTER_OTLP_*``
setting (endpoint, headers, timeout, certificates, insecure, compression) and their retries apply as the SDK
documents them. The console exporter, for a look, prints the SDK's spans rebuilt (:func:`_builder`).

Bounded throughout, the way the SDK's batch processor is: spans wait in a queue of ``max_queue`` at most while the
exporter is busy (a slow or unreachable collector blocks only this process's export thread, for the exporter's
timeout); a span that finds the queue full is dropped and counted, as is a batch the exporter fails to deliver. The
counts go back to the serving process on the same socket (:func:`report`) for its ``kubeinfer_trace_spans_total``.

Started and stopped by ``tracing.setup``/``tracing.shutdown`` (``python -m kubeinfer.server.trace_export CONFIG``,
the socket inherited as a file descriptor); an empty datagram asks it to export what it holds and exit, and it exits
by itself once the serving process is gone.
"""

from __future__ import annotations

import collections
import errno
import json
import logging
import marshal
import os
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import SpanProcessor

__all__ = [
    "COUNTS",
    "RECORD",
    "Encoder",
    "ExporterProcess",
    "Exporters",
    "Forward",
    "GrpcSender",
    "HttpSender",
    "main",
    "report",
]

log = logging.getLogger("kubeinfer.tracing")

RECORD = (
    "name",
    "trace_id",
    "span_id",
    "parent_span_id",  # 0: a root span
    "parent_is_remote",
    "tracestate",  # the W3C header form; "": none
    "kind",  # SpanKind's value
    "start",  # Unix nanoseconds
    "end",
    "attributes",  # dict
    "status",  # StatusCode's value
    "status_description",  # str or None
    "events",  # tuple of (name, Unix nanoseconds, attributes)
)
"""The fields of one span as the serving process sends it (a tuple, in this order)."""

COUNTS = struct.Struct("<QQ")
"""What this process sends back: spans exported and spans dropped so far (its own drops: queue full, export
failed)."""


NICE = 10
"""The exporter process's niceness above its serving process's."""
CHUNK = 256
"""Spans per datagram at most (a datagram of more than the socket's send buffer is split)."""
SEND_BUFFER = 1 << 22
"""The serving side's socket send buffer asked for (the kernel caps it at ``net.core.wmem_max``): what may wait in
the socket while this process is busy."""


class ExporterProcess:
    """The serving process's side: a bounded queue of span records (:meth:`emit`, on the request path), a thread that
    sends them to the exporter process every ``schedule_delay`` seconds or ``batch_size`` spans, and the counts.

    The request path does a length test and a ``deque.append`` per finished span; the sending thread does
    ``marshal.dumps`` (C) and a non-blocking ``send`` per chunk. Nothing here waits on the exporter process: a full
    queue, a full socket or a dead exporter process drops the spans and counts them (:meth:`counts`)."""

    def __init__(
        self,
        config: dict[str, Any],
        max_queue: int,
        batch_size: int,
        schedule_delay: float,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``env``: the ``OTEL_*`` variables tracing was set up with, which the exporters read (headers, timeout,
        certificates ...): they are added to this process's environment for the exporter process."""
        self.max_queue, self.batch_size, self.delay = max_queue, batch_size, schedule_delay
        self.export_timeout: float = config["export_timeout"]
        self.queue: collections.deque[tuple[Any, ...]] = collections.deque()
        # Dropped here: by emit (queue full; the serving thread's count) and by the sending thread (socket full,
        # exporter process gone): two counters, each written by one thread.
        self.dropped_full = self.dropped = 0
        self.exported = self.dropped_there = 0  # as the exporter process last reported
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        mine.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        config = {**config, "fd": theirs.fileno(), "batch_size": batch_size, "schedule_delay": schedule_delay}
        config["max_queue"] = max_queue
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kubeinfer.server.trace_export", json.dumps(config)],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            # Its own session: a signal to the serving process's group (Ctrl-C in a terminal, a supervisor's killpg)
            # must not end it before the serving process asks it to export what it holds; it exits by itself when
            # the serving process is gone.
            start_new_session=True,
            env={**os.environ, **{k: v for k, v in (env or {}).items() if k.startswith("OTEL_")}},
        )
        theirs.close()
        mine.setblocking(False)
        self.sock = mine
        self.gone = False
        self.wake = threading.Event()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="kubeinfer-trace-send", daemon=True)
        self.thread.start()

    def emit(self, record: tuple[Any, ...]) -> None:
        """Queue one finished span (a :data:`RECORD` tuple); dropped and counted when the queue is full."""
        queue = self.queue
        if len(queue) >= self.max_queue:
            self.dropped_full += 1
            return
        queue.append(record)
        if len(queue) == self.batch_size:
            self.wake.set()

    def counts(self) -> tuple[int, int]:
        """Spans exported and spans dropped so far (here and in the exporter process)."""
        self._read_counts()
        return self.exported, self.dropped_full + self.dropped + self.dropped_there

    def _run(self) -> None:
        while not self.stopping:
            self.wake.wait(self.delay)
            self.wake.clear()
            self._flush()
            self._read_counts()

    def _flush(self) -> None:
        queue = self.queue
        while queue:
            n = min(len(queue), CHUNK)
            self._send([queue.popleft() for _ in range(n)])

    def _send(self, chunk: list[tuple[Any, ...]]) -> None:
        try:
            self.sock.send(marshal.dumps(chunk))
        except BlockingIOError:  # the exporter process is behind: the socket is full
            self.dropped += len(chunk)
        except OSError as e:
            if e.errno == errno.EMSGSIZE and len(chunk) > 1:
                half = len(chunk) // 2
                self._send(chunk[:half])
                self._send(chunk[half:])
                return
            self.dropped += len(chunk)
            if not self.gone and e.errno != errno.EMSGSIZE:
                self.gone = True
                log.warning("the span exporter process is gone (%s); spans are dropped from now on", e)
        except ValueError as e:  # a value marshal cannot write (an attribute of a type OpenTelemetry does not allow)
            log.warning("spans dropped: %s", e)
            self.dropped += len(chunk)

    def _read_counts(self) -> None:
        while True:
            try:
                data = self.sock.recv(64)
            except OSError:
                return
            if len(data) == COUNTS.size:
                self.exported, self.dropped_there = COUNTS.unpack(data)

    def stop(self, timeout: float) -> None:
        """Send what is queued, ask the exporter process to export what it holds and exit, and wait for it
        (``timeout`` seconds, then it is killed)."""
        self.stopping = True
        self.wake.set()
        self.thread.join()
        self._flush()
        try:
            self.sock.send(b"")
        except OSError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("the span exporter process did not finish in %g s; the spans it held are lost", timeout)
            self.proc.kill()
            self.proc.wait()
        self._read_counts()
        self.sock.close()


class Forward(SpanProcessor):
    """The span processor of the SDK's live spans (ASGI, gRPC, the router): each finished span goes to the exporter
    process as a record (:data:`RECORD`)."""

    def __init__(self, emit: Callable[[tuple[Any, ...]], None]) -> None:
        self.emit = emit

    def on_end(self, span: Any) -> None:
        ctx, parent, status = span.context, span.parent, span.status
        self.emit(
            (
                span.name,
                ctx.trace_id,
                ctx.span_id,
                parent.span_id if parent is not None else 0,
                bool(parent is not None and parent.is_remote),
                ctx.trace_state.to_header() if ctx.trace_state else "",
                span.kind.value,
                span.start_time,
                span.end_time,
                dict(span.attributes),
                status.status_code.value,
                status.description,
                tuple((e.name, e.timestamp, dict(e.attributes or {})) for e in span.events),
            )
        )


class Exporting:
    """The queue between the socket and the exporter, the export thread, and the counts."""

    def __init__(
        self,
        export: Callable[[Sequence[Any]], bool],
        max_queue: int,
        batch_size: int,
        schedule_delay: float,
        sent: Callable[[int, int], None],
    ) -> None:
        self.export, self.max_queue, self.batch_size, self.delay = export, max_queue, batch_size, schedule_delay
        self.sent = sent
        self.queue: collections.deque[Any] = collections.deque()
        self.exported = self.dropped = 0
        self.wake = threading.Event()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="kubeinfer-trace-export", daemon=True)
        self.thread.start()

    def add(self, spans: Sequence[Any]) -> None:
        room = self.max_queue - len(self.queue)
        if room < len(spans):
            self.dropped += len(spans) - max(room, 0)
            spans = spans[: max(room, 0)]
            self.sent(self.exported, self.dropped)
        self.queue.extend(spans)
        if len(self.queue) >= self.batch_size:
            self.wake.set()

    def _run(self) -> None:
        while True:
            self.wake.wait(self.delay)
            self.wake.clear()
            stopping = self.stopping
            while self.queue:
                n = min(len(self.queue), self.batch_size)
                batch = [self.queue.popleft() for _ in range(n)]
                try:
                    ok = self.export(batch)
                except Exception:  # an exporter's bug must not end exporting
                    log.exception("exporting %d spans failed", n)
                    ok = False
                if ok:
                    self.exported += n
                else:
                    self.dropped += n
                self.sent(self.exported, self.dropped)
                if len(self.queue) < self.batch_size and not stopping:
                    break
            if stopping:
                return

    def stop(self, timeout: float) -> None:
        """Export what is queued (for ``timeout`` seconds at most) and end the export thread."""
        self.stopping = True
        self.wake.set()
        self.thread.join(timeout)


def report(sock: socket.socket, exported: int, dropped: int) -> None:
    """Send the counts to the serving process; skipped when its receive buffer is full (the next report repeats them:
    they are totals)."""
    try:
        sock.send(COUNTS.pack(exported, dropped), socket.MSG_DONTWAIT)
    except OSError:
        pass


class Encoder:
    """Records (:data:`RECORD`) to OTLP's ``ExportTraceServiceRequest``, built with opentelemetry-proto's generated
    classes directly: the message that the SDK's ``encode_spans`` makes of the ``ReadableSpan`` :func:`_builder`
    rebuilds from the same records, field for field (``tests/unit/server/test_trace_export.py`` holds the two equal),
    for a fraction of the CPU (``bench/tracing/RESULTS.md``).

    Where the CPU went and what is done instead: the SDK makes a span object per span and a ``KeyValue`` message per
    attribute, then copies them into the request. Here each span is added in place, and each attribute comes from a
    cache of its serialized ``Span.attributes`` entry (keyed by name, type and value: a span's attributes repeat --
    the model's name, the route, the status code), merged into the span with ``MergeFromString``, which appends
    repeated fields as protobuf defines it (parsing bytes in C costs less than copying messages in Python).

    One resource (``Resource.create`` of the configured attributes, so that ``OTEL_RESOURCE_ATTRIBUTES`` and
    ``OTEL_SERVICE_NAME`` apply as in the SDK) and one instrumentation scope: every span of a serving process has the
    same."""

    CACHE = 4096
    """Encoded attributes kept at most (beyond, an attribute is encoded each time it comes)."""

    def __init__(self, config: dict[str, Any]) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
        from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
        from opentelemetry.proto.resource.v1.resource_pb2 import Resource
        from opentelemetry.proto.trace.v1.trace_pb2 import Span, SpanFlags
        from opentelemetry.sdk.resources import Resource as SDKResource

        self.span = Span
        self.cache: dict[tuple[str, type, Any], bytes] = {}
        self.states: dict[str, str] = {}
        self.request = ExportTraceServiceRequest
        resource = SDKResource.create(config["resource"])
        self.resource = Resource(attributes=_key_values(resource.attributes))
        self.resource_schema = resource.schema_url
        name, version = config["scope"]
        self.scope = InstrumentationScope(name=name, version=version)
        # the SDK's _span_flags: "has is_remote", and "is remote" for a remote parent (the trace flags are not set)
        self.flags = (
            SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK,
            SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK | SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK,
        )

    def __call__(self, records: Sequence[tuple[Any, ...]]) -> Any:
        """One request of the records' spans, in their order."""
        req = self.request()
        rs = req.resource_spans.add(resource=self.resource, schema_url=self.resource_schema)
        add = rs.scope_spans.add(scope=self.scope).spans.add
        flags, attributes = self.flags, self.attributes
        for name, trace_id, span_id, parent_id, remote, ts, kind, start, end, attrs, code, why, events in records:
            span = add(
                trace_id=trace_id.to_bytes(16, "big"),
                span_id=span_id.to_bytes(8, "big"),
                name=name,
                kind=kind + 1,  # SpanKind.INTERNAL is 0, OTLP's SPAN_KIND_INTERNAL 1 (0: unspecified)
                start_time_unix_nano=start,
                end_time_unix_nano=end,
                flags=flags[bool(parent_id and remote)],
            )
            if ts:
                span.trace_state = self._state(ts)
            if parent_id:
                span.parent_span_id = parent_id.to_bytes(8, "big")
            status = span.status  # present in every span the SDK encodes, UNSET included
            status.code = code
            if code == 2 and why and isinstance(why, str):  # the API's Status keeps a description with an error only
                status.message = why
            if attrs:
                span.MergeFromString(attributes(attrs))
            for n, t, a in events:  # rare (the router's failed tries): not cached
                span.events.add(name=n, time_unix_nano=t, attributes=_key_values(a))
        return req

    def _state(self, header: str) -> str:
        """A ``tracestate`` header as the SDK encodes it: parsed (an invalid one is empty) and written back."""
        state = self.states.get(header)
        if state is None:
            from opentelemetry.trace import TraceState

            state = ",".join(f"{k}={v}" for k, v in TraceState.from_header([header]).items())
            if len(self.states) < 64:
                self.states[header] = state
        return state

    def attributes(self, attributes: Mapping[str, Any]) -> bytes:
        """The serialized ``attributes`` field of a span, as the SDK's ``_encode_attributes`` makes it: an attribute
        whose value OTLP cannot carry is left out, and logged."""
        out = []
        cache = self.cache
        for key, value in attributes.items():
            cls = type(value)
            cacheable = cls is str or cls is int or cls is bool or cls is float  # True == 1: the type is in the key
            if cacheable:
                data = cache.get((key, cls, value))
                if data is not None:
                    out.append(data)
                    continue
            try:
                data = self.span(attributes=[_key_value(key, value)]).SerializeToString()
            except Exception:  # as the SDK: the span goes without this attribute
                log.exception("attribute %r of a span: value %r cannot be encoded", key, value)
                continue
            if cacheable and len(cache) < self.CACHE:
                cache[(key, cls, value)] = data
            out.append(data)
        return b"".join(out)


def _key_values(attributes: Mapping[str, Any]) -> list[Any]:
    """The ``KeyValue`` messages of attributes (a resource's, an event's), as the SDK's ``_encode_attributes``."""
    out = []
    for key, value in attributes.items():
        try:
            out.append(_key_value(key, value))
        except Exception:  # as the SDK: left out
            log.exception("attribute %r: value %r cannot be encoded", key, value)
    return out


def _key_value(key: str, value: Any) -> Any:
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue

    return KeyValue(key=key, value=_any_value(value))


def _any_value(value: Any) -> Any:
    """OTLP's ``AnyValue`` of an attribute's value, by the SDK's ``_encode_value``'s rules (``bool`` before ``int``; a
    sequence other than ``str`` and ``bytes`` an array, a mapping a key-value list)."""
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValueList

    if value is None:
        return AnyValue()
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, Sequence):
        return AnyValue(array_value=ArrayValue(values=[_any_value(v) for v in value]))
    if isinstance(value, Mapping):
        return AnyValue(kvlist_value=KeyValueList(values=[_key_value(str(k), v) for k, v in value.items()]))
    raise TypeError(f"invalid type {type(value).__name__} of value {value!r}")


class GrpcSender:
    """OTLP/gRPC for an encoded request: the SDK's ``OTLPSpanExporter`` (gRPC), whose channel, credentials,
    headers, compression, timeout and retries apply as the SDK documents them (every ``OTEL_EXPORTER_OTLP_*``
    variable), told that what it exports is the request already.

    The SDK's exporter encodes in ``_translate_data`` (and counts in ``_count_data``), the two abstract methods of
    its ``OTLPExporterMixin`` that each signal's exporter implements; they are overridden here
    (``test_trace_export.py`` fails if the mixin stops calling them)."""

    def __init__(self, endpoint: str | None) -> None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        class Exporter(OTLPSpanExporter):
            def _translate_data(self, data: Any) -> Any:
                return data  # an ExportTraceServiceRequest (Encoder)

            def _count_data(self, data: Any) -> int:
                return sum(len(ss.spans) for rs in data.resource_spans for ss in rs.scope_spans)

        self.exporter = Exporter(endpoint=endpoint)

    def export(self, request: Any) -> bool:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return bool(self.exporter.export(request) == SpanExportResult.SUCCESS)

    def shutdown(self) -> None:
        self.exporter.shutdown()


class HttpSender:
    """OTLP/HTTP (protobuf) for an encoded request: the SDK's ``OTLPSpanExporter`` (HTTP) resolves the endpoint,
    headers, compression, timeout and TLS settings (every ``OTEL_EXPORTER_OTLP_*`` variable) and builds its HTTP
    client; the serialized request goes through that client (compression, retries with back-off, ``Retry-After``).

    The exporter's ``export`` takes SDK spans only and encodes them itself; its client (``_client``, with
    ``export(bytes)``) has no public name, so ``test_trace_export.py`` pins it: a request sent here arrives at a
    receiver with the variables' headers and compression."""

    def __init__(self, endpoint: str | None) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        self.exporter: Any = OTLPSpanExporter(endpoint=endpoint)
        self.client = self.exporter._client

    def export(self, request: Any) -> bool:
        return bool(self.client.export(request.SerializePartialToString()).success)

    def shutdown(self) -> None:
        self.exporter.shutdown()


class Exporters:
    """The configured exporters as one export function (``OTEL_TRACES_EXPORTER``): OTLP sends :class:`Encoder`'s
    request; the console (for a look, not for speed) prints the SDK's spans (:func:`_builder`) with the SDK's
    ``ConsoleSpanExporter``."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.senders: list[GrpcSender | HttpSender] = []
        self.console: Any = None
        for name in config["exporters"]:
            if name == "otlp":
                sender = GrpcSender if config["protocol"] == "grpc" else HttpSender
                self.senders.append(sender(config["endpoint"]))
            elif name == "console":
                from opentelemetry.sdk.trace.export import ConsoleSpanExporter

                self.console = ConsoleSpanExporter()
        self.encode = Encoder(config) if self.senders else None
        self.build = _builder(config) if self.console is not None else None

    def __call__(self, records: Sequence[tuple[Any, ...]]) -> bool:
        """Export one batch of records; True when every exporter succeeded."""
        ok = True
        if self.encode is not None:
            request = self.encode(records)
            for sender in self.senders:
                ok = sender.export(request) and ok
        if self.build is not None:
            from opentelemetry.sdk.trace.export import SpanExportResult

            spans = [self.build(r) for r in records]
            ok = self.console.export(spans) == SpanExportResult.SUCCESS and ok
        return ok

    def shutdown(self) -> None:
        for sender in self.senders:
            sender.shutdown()
        if self.console is not None:
            self.console.shutdown()


def _builder(config: dict[str, Any]) -> Callable[[tuple[Any, ...]], Any]:
    """A function from one received tuple to the SDK's finished ``ReadableSpan`` (for the console exporter, and the
    reference :class:`Encoder` is held to)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

    resource = Resource.create(config["resource"])
    scope = InstrumentationScope(*config["scope"])
    sampled = TraceFlags(TraceFlags.SAMPLED)
    kinds = {k.value: k for k in SpanKind}
    codes = {c.value: c for c in StatusCode}
    states: dict[str, Any] = {"": TraceState()}

    def build(r: tuple[Any, ...]) -> Any:
        name, trace_id, span_id, parent_id, remote, ts, kind, start, end, attributes, status, why, events = r
        state = states.get(ts)
        if state is None:
            state = TraceState.from_header([ts])
            if len(states) < 64:
                states[ts] = state
        context = SpanContext(trace_id, span_id, False, sampled, state)
        parent = SpanContext(trace_id, parent_id, remote, sampled, state) if parent_id else None
        return ReadableSpan(
            name,
            context,
            parent,
            resource,
            attributes,
            tuple(Event(n, a, t) for n, t, a in events),
            (),
            kinds[kind],
            None,
            Status(codes[status], why),
            start,
            end,
            scope,
        )

    return build


def main(argv: Sequence[str]) -> int:
    config = json.loads(argv[0])
    # Background work: under CPU contention the serving process goes first (spans wait, and past the queue's bound
    # are dropped and counted), so that exporting does not take CPU from requests on a busy machine.
    os.nice(NICE)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sock = socket.socket(fileno=config["fd"])
    parent = os.getppid()
    export = Exporters(config)
    exporting = Exporting(
        export, config["max_queue"], config["batch_size"], config["schedule_delay"], lambda e, d: report(sock, e, d)
    )
    sock.settimeout(1.0)
    while True:
        try:
            data = sock.recv(1 << 20)
        except TimeoutError:
            if os.getppid() != parent:  # the serving process is gone without a word
                break
            continue
        except OSError:
            break
        if not data:  # the serving process stops
            break
        try:
            exporting.add(marshal.loads(data))  # noqa: S302 - from the serving process, over a socketpair only it holds
        except (EOFError, ValueError, TypeError):
            log.warning("a datagram of %d bytes is not a list of spans; ignored", len(data))
    exporting.stop(config["export_timeout"])
    export.shutdown()
    report(sock, exporting.exported, exporting.dropped)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
