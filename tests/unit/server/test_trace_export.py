"""The span exporter process's parts (server/trace_export.py): a span's trip as a record, its OTLP encoding (the
same message as the SDK's encoder makes), the SDK's exporters sending it with the OTEL_EXPORTER_OTLP_* settings, and
the bounded export queue that counts what it drops."""

from __future__ import annotations

import marshal
import socket
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.exporter import OTLPExporterMixin
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from certs import self_signed_pem
from kubeinfer.server.trace_export import RECORD, Encoder, Exporting, Forward, GrpcSender, HttpSender, _builder
from otlp_receiver import GrpcReceiver, HttpReceiver

CONFIG = {"resource": {"service.name": "iris", "kubeinfer.component": "replica"}, "scope": ["kubeinfer", "1.2.3"]}


def test_a_span_arrives_in_the_exporter_process_as_the_sdk_made_it() -> None:
    """An SDK span (remote parent with tracestate, attributes, an event, an error status) sent as a record through
    marshal and rebuilt is the same span to an OTLP exporter: ids, parent, kind, times, attributes, events, status."""
    records: list[tuple[Any, ...]] = []
    provider = TracerProvider(resource=Resource.create(CONFIG["resource"]))
    provider.add_span_processor(Forward(records.append))
    parent = TraceContextTextMapPropagator().extract(
        {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "k=v,a=b"}
    )
    span = provider.get_tracer("kubeinfer", "1.2.3").start_span(
        "POST /v2/models/{model_name}/infer", context=parent, kind=trace.SpanKind.SERVER, attributes={"x": 1}
    )
    span.set_attribute("tags", ["a", "b"])
    span.add_event("try failed", {"kubeinfer.replica": "r1"})
    span.set_status(trace.Status(trace.StatusCode.ERROR, "boom"))
    span.end()
    (record,) = records
    assert len(record) == len(RECORD)
    got: ReadableSpan = _builder(CONFIG)(marshal.loads(marshal.dumps(record)))
    want: ReadableSpan = span  # type: ignore[assignment]
    assert got.context == want.context and got.context.trace_state.to_header() == "k=v,a=b"
    assert got.parent is not None and want.parent is not None
    assert (got.parent.span_id, got.parent.is_remote) == (want.parent.span_id, True)
    assert got.name == want.name and got.kind == trace.SpanKind.SERVER
    assert (got.start_time, got.end_time) == (want.start_time, want.end_time)
    assert dict(got.attributes or {}) == {"x": 1, "tags": ("a", "b")}
    assert [(e.name, dict(e.attributes or {}), e.timestamp) for e in got.events] == [
        (e.name, dict(e.attributes or {}), e.timestamp) for e in want.events
    ]
    assert got.status.status_code == trace.StatusCode.ERROR and got.status.description == "boom"
    assert got.resource.attributes["service.name"] == "iris"
    assert got.instrumentation_scope is not None and got.instrumentation_scope.version == "1.2.3"


def test_a_root_span_has_no_parent() -> None:
    records: list[tuple[Any, ...]] = []
    provider = TracerProvider()
    provider.add_span_processor(Forward(records.append))
    provider.get_tracer("t").start_span("root").end()
    got = _builder(CONFIG)(records[0])
    assert got.parent is None and got.kind == trace.SpanKind.INTERNAL


class Collector:
    """An export function that blocks until released, and keeps what it was given."""

    def __init__(self, ok: bool = True) -> None:
        self.ok = ok
        self.entered = threading.Event()
        self.release = threading.Event()
        self.got: list[Any] = []

    def __call__(self, batch: Sequence[Any]) -> bool:
        self.entered.set()
        self.release.wait(10)
        self.got.extend(batch)
        return self.ok


def test_a_slow_exporter_makes_the_queue_drop_and_count_instead_of_grow() -> None:
    """While an export hangs, spans beyond the queue's bound are dropped and counted; what was queued is exported
    when it is back; the counts reported are the totals."""
    export = Collector()
    reports: list[tuple[int, int]] = []
    ex = Exporting(export, max_queue=4, batch_size=2, schedule_delay=10.0, sent=lambda e, d: reports.append((e, d)))
    ex.add([1, 2])  # a batch: the export thread takes it at once
    assert export.entered.wait(5)
    ex.add([3, 4, 5, 6, 7, 8])  # room for 4
    assert ex.dropped == 2 and len(ex.queue) == 4
    export.release.set()
    ex.stop(5)
    assert export.got == [1, 2, 3, 4, 5, 6]
    assert (ex.exported, ex.dropped) == (6, 2)
    assert reports[-1] == (6, 2)


def test_a_failing_exporter_counts_its_spans_as_dropped_and_exporting_goes_on() -> None:
    """An export that fails, or raises, loses its batch (counted) without ending the export thread."""
    failing = Collector(ok=False)
    failing.release.set()
    ex = Exporting(failing, max_queue=10, batch_size=2, schedule_delay=10.0, sent=lambda e, d: None)
    ex.add([1, 2, 3])
    ex.stop(5)
    assert (ex.exported, ex.dropped) == (0, 3)

    calls: list[int] = []

    def flaky(batch: Sequence[Any]) -> bool:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("collector client bug")
        return True

    ex = Exporting(flaky, max_queue=10, batch_size=2, schedule_delay=10.0, sent=lambda e, d: None)
    ex.add([1, 2])
    ex.add([3, 4])
    ex.stop(5)
    assert (ex.exported, ex.dropped) == (2, 2)


# -- the OTLP encoding ------------------------------------------------------------------------------------------------
_IDS = st.integers(1, 2**64 - 1)
_SCALARS = st.one_of(
    st.text(max_size=6),
    st.booleans(),
    st.integers(-(2**64), 2**64),  # beyond int64 neither encoder can carry it: the attribute is left out
    st.floats(allow_nan=False),
    st.binary(max_size=4),
    st.none(),
)
_VALUES = st.one_of(
    _SCALARS,
    st.lists(st.text(max_size=3), max_size=3).map(tuple),
    st.lists(st.integers(-3, 3), max_size=3).map(tuple),
    st.lists(st.booleans(), max_size=3).map(tuple),
    st.lists(st.one_of(st.integers(-3, 3), st.text(max_size=2), st.booleans()), max_size=3).map(tuple),
)
_ATTRIBUTES = st.dictionaries(
    st.sampled_from(["kubeinfer.model.name", "http.response.status_code", "x", "error.type", "t"])
    | st.text(max_size=4),
    _VALUES,
    max_size=5,
)
_RECORDS = st.tuples(
    st.sampled_from(["POST /v2/models/{model_name}/infer", "queue", "batch", "model", "encode"]) | st.text(max_size=8),
    st.integers(1, 2**128 - 1),
    _IDS,
    st.one_of(st.just(0), _IDS),
    st.booleans(),
    st.sampled_from(["", "k=v", "k=v,a=b", "not a tracestate", "a=1,a=2", "k=v, x=y"]),
    st.integers(0, 4),  # SpanKind
    st.integers(0, 2**63 - 1),
    st.integers(0, 2**63 - 1),
    _ATTRIBUTES,
    st.integers(0, 2),  # StatusCode
    st.one_of(st.none(), st.text(max_size=6)),
    st.lists(st.tuples(st.text(max_size=6), st.integers(0, 2**63 - 1), _ATTRIBUTES), max_size=2).map(tuple),
)


def _same(new: Any, old: Any, path: str) -> None:
    """Field by field (recursively): the same fields set, to the same values."""
    for field in old.DESCRIPTOR.fields:
        where = f"{path}.{field.name}"
        a, b = getattr(new, field.name), getattr(old, field.name)
        if field.message_type is None:
            assert a == b, where
        elif field.is_repeated:
            assert len(a) == len(b), where
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                _same(x, y, f"{where}[{i}]")
        else:
            assert new.HasField(field.name) == old.HasField(field.name), where
            _same(a, b, where)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(_RECORDS, min_size=1, max_size=6))
def test_the_encoder_makes_the_message_the_sdks_encoder_makes(records: list[tuple[Any, ...]]) -> None:
    """For any records (as they arrive, through marshal), Encoder's ExportTraceServiceRequest equals, field by field
    and byte for byte, what the SDK's encode_spans makes of the ReadableSpans _builder rebuilds from them: resource,
    scope, ids, parent and its remoteness (flags), trace state, kind, times, attributes (those OTLP cannot carry left
    out by both), events, status (a description kept with an error only)."""
    records = marshal.loads(marshal.dumps(records))
    encoder = Encoder(CONFIG)
    new = encoder(records)
    build = _builder(CONFIG)
    old = encode_spans([build(r) for r in records])
    _same(new, old, "request")
    assert new == old
    assert new.SerializeToString(deterministic=True) == old.SerializeToString(deterministic=True)
    assert encoder(records) == old  # the second time, from the attributes cached


def test_the_resource_carries_the_configured_attributes_and_otel_resource_attributes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test,host.name=h1")
    (rs,) = Encoder(CONFIG)([("s", 1, 2, 0, False, "", 0, 1, 2, {}, 0, None, ())]).resource_spans
    attributes = {kv.key: kv.value.string_value for kv in rs.resource.attributes}
    assert attributes["service.name"] == "iris" and attributes["kubeinfer.component"] == "replica"
    assert attributes["deployment.environment"] == "test" and attributes["host.name"] == "h1"
    assert attributes["telemetry.sdk.name"] == "opentelemetry"
    (ss,) = rs.scope_spans
    assert (ss.scope.name, ss.scope.version) == ("kubeinfer", "1.2.3")


# -- sending an encoded request with the SDK's exporters ------------------------------------------------------------
RECORDS = [
    (
        "POST /v2/models/{model_name}/infer",
        7,
        8,
        9,
        True,
        "k=v",
        1,
        10,
        20,
        {"http.response.status_code": 200},
        0,
        None,
        (),
    ),
    ("queue", 7, 10, 8, False, "k=v", 0, 11, 12, {}, 0, None, ()),
]


@pytest.fixture
def grpc_receiver() -> Iterator[GrpcReceiver]:
    r = GrpcReceiver()
    yield r
    r.close()


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    r = HttpReceiver()
    yield r
    r.close()


def test_the_sdks_grpc_exporter_still_encodes_through_the_hooks_the_sender_overrides() -> None:
    """GrpcSender overrides the SDK mixin's _translate_data and _count_data: they must still be the abstract methods
    its export goes through (a renamed hook would make the SDK encode the request as spans, and fail)."""
    assert {"_translate_data", "_count_data"} <= OTLPExporterMixin.__abstractmethods__


def test_an_encoded_request_goes_over_grpc_with_the_otlp_variables(
    grpc_receiver: GrpcReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OTLP/gRPC: the endpoint (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), headers (_TRACES_HEADERS over _HEADERS) and
    compression variables apply; the request arrives as encoded."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", grpc_receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key=general")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "api-key=s3cret,x-tenant=t1")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    sender = GrpcSender(None)
    try:
        request = Encoder(CONFIG)(RECORDS)
        assert sender.export(request)
    finally:
        sender.shutdown()
    assert grpc_receiver.raw == [request]
    assert grpc_receiver.headers[0]["api-key"] == "s3cret" and grpc_receiver.headers[0]["x-tenant"] == "t1"


def test_an_encoded_request_goes_over_grpc_tls_with_the_certificate_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An https:// endpoint is TLS, verified against OTEL_EXPORTER_OTLP_CERTIFICATE."""
    cert, key = self_signed_pem("otlp")
    (tmp_path / "ca.pem").write_bytes(cert)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(tmp_path / "ca.pem"))
    receiver = GrpcReceiver(tls=(cert, key))
    sender = GrpcSender(receiver.endpoint.replace("127.0.0.1", "localhost"))
    try:
        request = Encoder(CONFIG)(RECORDS)
        assert sender.export(request)
    finally:
        sender.shutdown()
        receiver.close()
    assert receiver.raw == [request]


def test_an_encoded_request_goes_over_http_with_the_otlp_variables(
    http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OTLP/HTTP: the endpoint (OTEL_EXPORTER_OTLP_ENDPOINT plus /v1/traces), headers and compression variables
    apply through the SDK exporter's client (HttpSender reaches it by a private name: this pins it)."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", http_receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "api-key=s3cret")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip")
    sender = HttpSender(None)
    try:
        request = Encoder(CONFIG)(RECORDS)
        assert sender.export(request)
    finally:
        sender.shutdown()
    assert http_receiver.raw == [request]
    (headers,) = http_receiver.headers
    assert headers["api-key"] == "s3cret" and headers["content-encoding"] == "gzip"
    assert headers["content-type"] == "application/x-protobuf"


def test_an_http_export_to_nothing_fails_within_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing listens: the export reports failure (the spans are counted as dropped) after OTEL_EXPORTER_OTLP_TIMEOUT
    at most."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    sender = HttpSender(f"http://127.0.0.1:{port}/v1/traces")
    try:
        assert not sender.export(Encoder(CONFIG)(RECORDS))
    finally:
        sender.shutdown()
