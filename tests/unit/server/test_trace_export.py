"""The span exporter process's parts (server/trace_export.py): a span's trip as a record, and the bounded export
queue that counts what it drops."""

from __future__ import annotations

import marshal
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from kubeinfer.server.trace_export import RECORD, Exporting, Forward, _builder

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
