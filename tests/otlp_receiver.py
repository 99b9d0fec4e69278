"""OTLP trace receivers for tests: a gRPC ``TraceService`` and an HTTP ``/v1/traces`` endpoint on 127.0.0.1, built on
the collector's own protobuf definitions (``opentelemetry-proto``), that keep every span they are sent."""

from __future__ import annotations

import gzip
import http.server
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    attributes: dict[str, Any]
    resource: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    status_code: int


def _value(v: Any) -> Any:
    which = v.WhichOneof("value")
    return getattr(v, which) if which is not None else None


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


class _Store:
    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self.raw: list[Any] = []  # the ExportTraceServiceRequest messages as received
        self.headers: list[dict[str, str]] = []  # each request's headers (gRPC: its metadata), names in lower case
        self.lock = threading.Lock()

    def add(self, req: Any, headers: dict[str, str] | None = None) -> None:
        found = []
        for rs in req.resource_spans:
            resource = _attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    found.append(
                        ReceivedSpan(
                            name=s.name,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_id=s.parent_span_id.hex(),
                            kind=s.kind,
                            attributes=_attrs(s.attributes),
                            resource=resource,
                            events=[(e.name, _attrs(e.attributes)) for e in s.events],
                            status_code=s.status.code,
                        )
                    )
        with self.lock:
            self.requests += 1
            self.spans.extend(found)
            self.raw.append(req)
            self.headers.append(headers or {})

    def wait_for(self, ok: Callable[[list[ReceivedSpan]], bool], timeout: float = 20.0) -> list[ReceivedSpan]:
        """The spans received, once ``ok`` holds of them (AssertionError with what came, after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                spans = list(self.spans)
            if ok(spans):
                return spans
            if time.monotonic() > deadline:
                raise AssertionError(f"the spans expected did not arrive; received: {[s.name for s in spans]}")
            time.sleep(0.05)


class GrpcReceiver(_Store, trace_service_pb2_grpc.TraceServiceServicer):
    """``opentelemetry.proto.collector.trace.v1.TraceService`` on a free 127.0.0.1 port (``endpoint``); with ``tls``
    (a PEM certificate and key), over TLS."""

    def __init__(self, tls: tuple[bytes, bytes] | None = None) -> None:
        super().__init__()
        self.server = grpc.server(ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self.server)
        if tls is None:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        else:
            credentials = grpc.ssl_server_credentials([(tls[1], tls[0])])
            self.port = self.server.add_secure_port("127.0.0.1:0", credentials)
        self.scheme = "http" if tls is None else "https"
        self.server.start()

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def Export(self, request: Any, context: Any) -> Any:
        self.add(request, {k.lower(): v for k, v in context.invocation_metadata() if isinstance(v, str)})
        return trace_service_pb2.ExportTraceServiceResponse()

    def close(self) -> None:
        self.server.stop(0)


class HttpReceiver(_Store):
    """OTLP/HTTP (protobuf) ``POST /v1/traces`` on a free 127.0.0.1 port (``endpoint`` is the base URL); a body in
    ``gzip`` or ``deflate`` content encoding is decompressed, as OTLP/HTTP receivers do."""

    def __init__(self) -> None:
        super().__init__()
        store = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path != "/v1/traces" or self.headers.get("content-type") != "application/x-protobuf":
                    self.send_response(404)
                    self.end_headers()
                    return
                encoding = self.headers.get("content-encoding")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                headers = {k.lower(): v for k, v in self.headers.items()}
                store.add(trace_service_pb2.ExportTraceServiceRequest.FromString(body), headers)
                payload = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="otlp-http")
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
