"""OpenTelemetry tracing of the data plane: the replica's requests (REST and gRPC), their queue wait, batch, model call
and encoding, and the local router's proxied requests, exported over OTLP (``docs/tracing.md``).

Off unless asked for, and then free: :data:`tracer` is ``None`` until :func:`setup` turns tracing on, and every hook
on the request path (``http.py``, ``app.py``, ``grpc_service.py``, ``batcher.py``, the router's ``http.py`` and
``grpc.py``) is one test of that attribute before anything else, so a replica without tracing runs the same code as
before plus that test. The OpenTelemetry SDK is imported only by :func:`setup`, from the ``tracing`` extra; the core
install does not need it.

Switched on the way OpenTelemetry SDKs are configured, by the standard ``OTEL_*`` variables, read once from a mapping
(:meth:`TracingSettings.from_env`) -- with one difference: an unset ``OTEL_TRACES_EXPORTER`` means *off* (the
specification's default is ``otlp``), so that a replica never sends spans nobody asked for. The OTLP exporters read
their own connection settings (``OTEL_EXPORTER_OTLP_HEADERS``, ``_TIMEOUT``, ``_CERTIFICATE``, ``_COMPRESSION``, and
the ``_TRACES_`` forms) from the environment, as the SDK documents them.

Context travels as W3C Trace Context (``traceparent``/``tracestate``), in HTTP headers and gRPC metadata alike. The
spans follow OpenTelemetry's semantic conventions for HTTP and RPC servers (``http.request.method``, ``http.route``,
``http.response.status_code``, ``rpc.system`` ...), with ``kubeinfer.*`` attributes for the model and the batch.

Sampling is decided first, from the ``traceparent`` alone (:func:`_sampler`, the semantics of ``OTEL_TRACES_SAMPLER``),
and a request that is not sampled gets no span object at all: at 1% the other 99% cost a header lookup and a random
number, not the SDK's id generation and span objects. The SDK's own sampler is then ``always_on`` for the spans made.

Spans inside a batch: one batch serves requests of many traces, so each sampled request gets its own ``queue``,
``batch`` and ``model`` spans in its own trace (the batch's size and request count as attributes), made after the batch
from the times the batcher measured anyway, rather than live spans around the shared model call.

Spans are exported by a process of their own (``trace_export.py``), started by :func:`setup` and stopped by
:func:`shutdown`: a finished span leaves this process as a tuple of plain values on a bounded queue, so OTLP's
protobuf encoding and client never hold this process's interpreter lock. The direct REST path's spans are made as
such tuples outright (a request without ``traceparent`` that is not sampled costs one random draw and a header test);
the SDK's live spans (ASGI, gRPC, the router) are turned into one when they end.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kubeinfer import __version__
from kubeinfer.server import routes

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

__all__ = [
    "TracingError",
    "TracingSettings",
    "current",
    "setup",
    "shutdown",
    "tracer",
]

log = logging.getLogger("kubeinfer.tracing")

tracer: Tracer | None = None
"""The tracer while tracing is on; ``None`` (the default) is the one test the request path makes."""

_provider: Any = None
_current: contextvars.ContextVar[Span | None] = contextvars.ContextVar("kubeinfer_span", default=None)
# Clock offsets (nanoseconds) from time.monotonic and time.perf_counter to the Unix epoch, taken at setup: the
# batcher and the HTTP protocol time requests with those clocks, spans need wall-clock nanoseconds.
_mono_ns = 0
_perf_ns = 0
_sample: Callable[[str | None], bool] = lambda traceparent: False  # noqa: E731 - set by setup
_sample_new: Callable[[], bool] = lambda: False  # noqa: E731 - _sample(None), a request without traceparent (most): set by setup
# The same decision as one comparison, for the direct REST path: a new trace is sampled when random() < _new_ratio
# (random() is in [0, 1): 1.0 always, 0.0 never). Set by setup.
_new_ratio = 0.0
_random = random.random
# What the spans need of the API, bound by setup (the request path does no import statement).
_api: Any = None
_propagator: Any = None
# Finished spans go to the exporter process (trace_export.py) as plain tuples (trace_export.RECORD): the child spans
# (queue, batch, model, encode) and the direct REST path's request span are made as such tuples, without an SDK span
# object; the SDK's live spans (ASGI, gRPC, router) are turned into one at their end (_Forward). Bound by setup.
_exporter: Any = None  # trace_export.ExporterProcess
_emit: Callable[[tuple[Any, ...]], None] = lambda record: None  # noqa: E731 - _exporter.emit
_context: Any = None  # SpanContext
_flags: Any = None  # TraceFlags: sampled
_unset: Any = None  # Status: unset
_INTERNAL, _SERVER = 0, 1  # opentelemetry.trace.SpanKind values (OTLP adds 1)
_getrandbits = random.getrandbits

EXPORTERS = ("otlp", "console", "none")
PROTOCOLS = ("grpc", "http/protobuf")
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
_TRUE = ("true", "1", "yes", "on")


class TracingError(ValueError):
    """An ``OTEL_*`` variable has a value tracing cannot use; the message names the variable and what it takes."""


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """What the ``OTEL_*`` variables ask for (validated)."""

    exporters: tuple[str, ...]
    """``otlp`` and/or ``console`` (``OTEL_TRACES_EXPORTER``, comma-separated)."""
    protocol: str
    """``grpc`` or ``http/protobuf`` (``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL``, else ``OTEL_EXPORTER_OTLP_PROTOCOL``)."""
    endpoint: str | None
    """Where OTLP goes: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` as is, else ``OTEL_EXPORTER_OTLP_ENDPOINT`` (plus
    ``/v1/traces`` over HTTP); ``None``: the exporter's default (``localhost:4317`` / ``:4318``)."""
    sampler: str
    """``OTEL_TRACES_SAMPLER`` (default ``parentbased_always_on``)."""
    ratio: float
    """``OTEL_TRACES_SAMPLER_ARG`` for the ratio samplers (default 1.0)."""
    service_name: str | None
    """``OTEL_SERVICE_NAME``; ``None``: the caller's default (the service's name)."""
    schedule_delay: float = 5.0
    """Seconds between exports (``OTEL_BSP_SCHEDULE_DELAY``, milliseconds, default 5000)."""
    max_queue: int = 2048
    """Spans waiting to be exported at most, in the serving process and in the exporter process each; more are
    dropped and counted (``OTEL_BSP_MAX_QUEUE_SIZE``, default 2048)."""
    batch_size: int = 512
    """Spans per export at most (``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``, default 512)."""
    export_timeout: float = 30.0
    """Seconds the exporter process is given at shutdown to export what it holds (``OTEL_BSP_EXPORT_TIMEOUT``,
    milliseconds, default 30000)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TracingSettings | None:
        """The settings, or ``None`` when tracing is off (``OTEL_TRACES_EXPORTER`` unset or ``none``, or
        ``OTEL_SDK_DISABLED=true``). Raises :class:`TracingError` for a value it cannot use."""
        if env.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
            return None
        raw = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
        names = tuple(n.strip() for n in raw.split(",") if n.strip())
        for name in names:
            if name not in EXPORTERS:
                raise TracingError(
                    f"OTEL_TRACES_EXPORTER={raw!r}: {name!r} is not an exporter kubeinfer has; use "
                    f"{', '.join(EXPORTERS)} (comma-separated)"
                )
        exporters = tuple(n for n in names if n != "none")
        if not exporters:
            return None
        protocol = (
            env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
        ).strip()
        if protocol not in PROTOCOLS:
            raise TracingError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported: use grpc or http/protobuf")
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip() or None
        if endpoint is None and (base := env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()):
            endpoint = base if protocol == "grpc" else base.rstrip("/") + "/v1/traces"
        if endpoint is not None and not endpoint.startswith(("http://", "https://")):
            raise TracingError(f"OTLP endpoint {endpoint!r} must be a URL: http://HOST:PORT or https://HOST:PORT")
        sampler = env.get("OTEL_TRACES_SAMPLER", "").strip().lower() or "parentbased_always_on"
        if sampler not in SAMPLERS:
            raise TracingError(f"OTEL_TRACES_SAMPLER={sampler!r} is not a sampler: use one of {', '.join(SAMPLERS)}")
        arg = env.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
        ratio = 1.0
        if arg and sampler.endswith("traceidratio"):
            try:
                ratio = float(arg)
            except ValueError:
                ratio = -1.0
            if not 0.0 <= ratio <= 1.0:
                raise TracingError(
                    f"OTEL_TRACES_SAMPLER_ARG={arg!r} is not a sampling ratio: use a number from 0 to 1 (0.01: 1%)"
                )
        service = env.get("OTEL_SERVICE_NAME", "").strip() or None
        delay = _positive(env, "OTEL_BSP_SCHEDULE_DELAY", 5000) / 1000
        queue = int(_positive(env, "OTEL_BSP_MAX_QUEUE_SIZE", 2048))
        batch = int(_positive(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512))
        if batch > queue:
            raise TracingError(
                f"OTEL_BSP_MAX_EXPORT_BATCH_SIZE={batch} is more than OTEL_BSP_MAX_QUEUE_SIZE={queue}: it must be at "
                "most the queue's size"
            )
        timeout = _positive(env, "OTEL_BSP_EXPORT_TIMEOUT", 30000) / 1000
        return cls(exporters, protocol, endpoint, sampler, ratio, service, delay, queue, batch, timeout)


def _positive(env: Mapping[str, str], name: str, default: int) -> float:
    """An ``OTEL_BSP_*`` variable: a whole number above 0 (the specification's type for them)."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) <= 0:
        raise TracingError(f"{name}={raw!r} is not a whole number above 0 (default {default})")
    return int(raw)


def setup(env: Mapping[str, str], *, service: str, component: str) -> bool:
    """Turn tracing on in this process when ``env`` asks for it, and start its exporter process; True when it is on.

    ``service``: the ``service.name`` unless ``OTEL_SERVICE_NAME`` is set; ``component``: ``replica`` or ``router``
    (the ``kubeinfer.component`` resource attribute). Raises :class:`TracingError` for a variable tracing cannot use;
    without the ``tracing`` extra it logs a warning that says what to install and leaves tracing off."""
    global tracer, _provider, _mono_ns, _perf_ns, _sample, _sample_new, _new_ratio, _api, _propagator
    global _exporter, _emit, _context, _flags, _unset
    settings = TracingSettings.from_env(env)
    if settings is None:
        return False
    try:
        import opentelemetry.trace as api
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider, sampling
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        if "otlp" in settings.exporters:  # imported by the exporter process only; here: is it installed?
            _otlp_installed(settings.protocol)
    except ImportError as e:
        log.warning(
            "OTEL_TRACES_EXPORTER asks for traces, but %s is not installed: install kubeinfer[tracing] "
            "(pip install 'kubeinfer[tracing]'); serving without tracing",
            e.name or "the OpenTelemetry SDK",
        )
        return False
    from kubeinfer.server.trace_export import ExporterProcess, Forward

    shutdown()
    attributes = {
        "service.name": settings.service_name or service,
        "service.version": __version__,
        "kubeinfer.component": component,
    }
    # The sampling decision is taken before a span is made (_sampler); what is made is recorded.
    provider = TracerProvider(resource=Resource.create(attributes), sampler=sampling.ALWAYS_ON)
    exporter = ExporterProcess(
        {
            "exporters": list(settings.exporters),
            "protocol": settings.protocol,
            "endpoint": settings.endpoint,
            "resource": attributes,
            "scope": ["kubeinfer", __version__],  # the tracer's, below
            "export_timeout": settings.export_timeout,
        },
        max_queue=settings.max_queue,
        batch_size=settings.batch_size,
        schedule_delay=settings.schedule_delay,
        env=env,
    )
    provider.add_span_processor(Forward(exporter.emit))
    _exporter, _emit = exporter, exporter.emit
    _context = api.SpanContext
    _flags, _unset = api.TraceFlags(api.TraceFlags.SAMPLED), api.Status(api.StatusCode.UNSET)
    _mono_ns = time.time_ns() - time.monotonic_ns()
    _perf_ns = time.time_ns() - time.perf_counter_ns()
    _sample = _sampler(settings.sampler, settings.ratio)
    _sample_new = _new_trace_sampler(settings.sampler, settings.ratio)
    _new_ratio = _new_trace_ratio(settings.sampler, settings.ratio)
    _api = api
    _propagator = TraceContextTextMapPropagator()
    _provider = provider
    tracer = provider.get_tracer("kubeinfer", __version__)
    log.info(
        "tracing on: %s (%s) to %s, sampler %s%s; exporter process %d",
        ", ".join(settings.exporters),
        settings.protocol,
        settings.endpoint or "the exporter's default endpoint",
        settings.sampler,
        f" {settings.ratio:g}" if settings.sampler.endswith("ratio") else "",
        exporter.proc.pid,
    )
    return True


def shutdown() -> None:
    """Turn tracing off and stop the exporter process, after it exports what it holds (at the end of serving)."""
    global tracer, _provider, _exporter, _emit
    provider, _provider, tracer = _provider, None, None
    exporter, _exporter = _exporter, None
    _emit = _drop
    if provider is not None:
        provider.shutdown()
    if exporter is not None:
        exporter.stop(exporter.export_timeout + 5.0)


def span_counts() -> tuple[int, int]:
    """Spans exported and spans dropped so far (queue full, exporter process behind or gone, export failed), for the
    replica's ``kubeinfer_trace_spans_total``; (0, 0) while tracing is off."""
    exporter = _exporter
    return exporter.counts() if exporter is not None else (0, 0)


def _drop(record: tuple[Any, ...]) -> None:
    pass


def _otlp_installed(protocol: str) -> None:
    """Raise ImportError (naming the module) when the OTLP exporter for ``protocol`` is not installed."""
    import importlib.util

    name = "opentelemetry.exporter.otlp.proto." + ("grpc" if protocol == "grpc" else "http")
    if importlib.util.find_spec(name) is None:
        raise ImportError(name=name)


# W3C Trace Context: version-traceid-parentid-flags; version ff, and all-zero ids, are invalid.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_LOW64 = (1 << 64) - 1


def _parse(traceparent: str | None) -> tuple[int, int] | None:
    """The trace id and flags of a valid ``traceparent``, else None (the request starts a new trace)."""
    if not traceparent:
        return None
    m = _TRACEPARENT.fullmatch(traceparent.strip())
    if m is None or m[1] == "ff" or (m[1] == "00" and m[5]):
        return None
    trace_id, span_id = int(m[2], 16), int(m[3], 16)
    if not trace_id or not span_id:
        return None
    return trace_id, int(m[4], 16)


def _sampler(name: str, ratio: float) -> Callable[[str | None], bool]:
    """Whether to sample a request with this ``traceparent``, as ``OTEL_TRACES_SAMPLER`` says: ``parentbased_*``
    follows a valid parent's sampled flag; ``traceidratio`` decides on the trace id as the SDK's
    ``TraceIdRatioBased`` does (its lower 64 bits below ``ratio * 2**64``), and for a new trace, whose id is random,
    at random with the same probability."""
    parent_based = name.startswith("parentbased_")
    root = name.removeprefix("parentbased_")
    bound = round(ratio * (_LOW64 + 1))
    draw = random.random
    fixed = root == "always_on"

    def sample(traceparent: str | None) -> bool:
        if traceparent:  # most requests have none: that case first, without a call
            parent = _parse(traceparent)
            if parent is not None:
                if parent_based:
                    return bool(parent[1] & 1)
                if root == "traceidratio":
                    return (parent[0] & _LOW64) < bound
                return fixed
        if root == "traceidratio":
            return draw() < ratio
        return fixed

    return sample


def _new_trace_sampler(name: str, ratio: float) -> Callable[[], bool]:
    """``_sampler(name, ratio)(None)`` as the cheapest call there is: the decision for a request without
    ``traceparent`` (a new trace), taken on every request the replica serves."""
    root = name.removeprefix("parentbased_")
    if root == "traceidratio" and 0.0 < ratio < 1.0:
        draw = random.random
        return lambda: draw() < ratio
    if root == "always_on" or (root == "traceidratio" and ratio >= 1.0):
        return lambda: True
    return lambda: False


def _new_trace_ratio(name: str, ratio: float) -> float:
    """The probability that ``_sampler(name, ratio)`` samples a new trace: ``_sample_new()`` is ``random() <`` it."""
    root = name.removeprefix("parentbased_")
    if root == "traceidratio":
        return min(max(ratio, 0.0), 1.0)
    return 1.0 if root == "always_on" else 0.0


def _unsampled(traceparent: str | None) -> str:
    """The ``traceparent`` that tells the next hop a request is not sampled: the caller's when it sent a valid one,
    else a new trace's with the sampled flag off."""
    if _parse(traceparent) is not None:
        return traceparent.strip()  # type: ignore[union-attr]
    return f"00-{random.getrandbits(128) or 1:032x}-{random.getrandbits(64) or 1:016x}-00"


# -- context ---------------------------------------------------------------------------------------------------
current: Callable[[], Span | None] = _current.get
"""The request span the running code belongs to (what the batcher files a queued request under): the context
variable's own ``get``, called on every request the batcher queues while tracing is on (no Python frame)."""


def _parent(traceparent: str | None, tracestate: str | None) -> Any:
    """The OpenTelemetry context of an incoming ``traceparent``/``tracestate`` (None: a new trace)."""
    if traceparent is None:
        return None
    carrier = {"traceparent": traceparent}
    if tracestate is not None:
        carrier["tracestate"] = tracestate
    return _propagator.extract(carrier)


def traceparent(span: Span) -> tuple[str, str]:
    """The ``traceparent`` and ``tracestate`` (``""``: none) that make ``span`` the parent downstream."""
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}", ctx.trace_state.to_header()


def _ns_mono(t: float) -> int:
    return int(t * 1e9) + _mono_ns


def _ns_perf(t: float) -> int:
    return int(t * 1e9) + _perf_ns


def _child(parent: Any, name: str, start: int, end: int, attributes: dict[str, Any]) -> None:
    """A finished INTERNAL span, child of the span whose ``SpanContext`` is ``parent``, sent to the exporter process."""
    state = parent.trace_state
    _emit(
        (
            name,
            parent.trace_id,
            _getrandbits(64) or 1,
            parent.span_id,
            parent.is_remote,
            state.to_header() if state else "",
            _INTERNAL,
            start,
            max(end, start),
            attributes,
            0,
            None,
            (),
        )
    )


def _header(headers: Mapping[bytes, bytes], name: bytes) -> str | None:
    value = headers.get(name)
    return value.decode("latin-1") if value is not None else None


# -- the replica: HTTP --------------------------------------------------------------------------------------------
def _route(path: str) -> tuple[str | None, str, Mapping[str, str]]:
    """The route template, the ``kubeinfer.protocol`` and the path's parameters of a replica path."""
    found = routes.TABLE.match(path)
    if found is None:
        return None, "", {}
    return found[0].path, found[0].protocol, found[1]


def _http_attributes(
    method: str, path: str, route: str | None, protocol: str, params: Mapping[str, str]
) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "url.path": path,
        "url.scheme": "http",
        "network.protocol.version": "1.1",
    }
    if route is not None:
        attributes["http.route"] = route
    if protocol:
        attributes["kubeinfer.protocol"] = protocol
    if "model_name" in params:
        attributes["kubeinfer.model.name"] = params["model_name"]
    if "model_version" in params:
        attributes["kubeinfer.model.version"] = params["model_version"]
    return attributes


def _http_span(
    method: str,
    path: str,
    tp: str | None,
    ts: str | None,
    start: int | None,
    found: tuple[str | None, str, Mapping[str, str]] | None = None,
) -> Span:
    """A SERVER span for an HTTP request, named ``METHOD ROUTE`` (HTTP semantic conventions); ``found``: what
    :func:`_route` answered for ``path`` already."""
    assert tracer is not None
    route, protocol, params = found if found is not None else _route(path)
    attributes = _http_attributes(method, path, route, protocol, params)
    name = f"{method} {route}" if route is not None else method
    return tracer.start_span(
        name, context=_parent(tp, ts), kind=_api.SpanKind.SERVER, attributes=attributes, start_time=start
    )


def _end_http(span: Span, status: int, model: Any = None) -> None:
    span.set_attribute("http.response.status_code", status)
    if model is not None:
        span.set_attribute("kubeinfer.model.name", model.name)
        span.set_attribute("kubeinfer.model.version", model.version)
    if status >= 500:  # a server span is in error on a 5xx only (a 4xx is the client's)
        span.set_attribute("error.type", str(status))
        span.set_status(_api.Status(_api.StatusCode.ERROR))
    span.end()


# The direct REST path's span name and starting attributes by URL path (a few: one per model and route), each a
# route match and a dictionary built once.
_direct_paths: dict[str, tuple[str, dict[str, Any]]] = {}


def _direct_span(cycle: Any, drawn: bool = False) -> Span | None:
    """The direct REST path's request span when the request is sampled, else None (``drawn``: a request without
    ``traceparent`` already drawn as sampled)."""
    raw = cycle.headers.get(b"traceparent")
    if raw is None:
        if not drawn and not _sample_new():
            return None
        tp = None
    else:
        tp = raw.decode("latin-1")
        if not _sample(tp):
            return None
    path = cycle.url.decode("ascii", "replace")
    known = _direct_paths.get(path)
    if known is None:
        route, protocol, params = _route(path)
        known = (
            f"POST {route}" if route is not None else "POST",
            _http_attributes("POST", path, route, protocol, params),
        )
        if len(_direct_paths) < 256:
            _direct_paths[path] = known
    name, attributes = known[0], known[1].copy()
    parent = None
    if tp is not None:
        parent = _api.get_current_span(_parent(tp, _header(cycle.headers, b"tracestate"))).get_span_context()
        if not parent.is_valid:
            parent = None
    if parent is not None:
        context = _context(parent.trace_id, _getrandbits(64) or 1, False, _flags, parent.trace_state)
    else:
        context = _context(_getrandbits(128) or 1, _getrandbits(64) or 1, False, _flags)
    return _Live(name, context, parent, _ns_perf(cycle.start), attributes)  # type: ignore[return-value]


class _Live:
    """The direct REST path's request span: what of the SDK's ``Span`` the hooks use (its context, attributes set,
    status, end), sent to the exporter process as a record at its end, as the child spans are (:func:`_child`)."""

    __slots__ = ("attributes", "context", "name", "parent", "start", "status")

    def __init__(self, name: str, context: Any, parent: Any, start: int, attributes: dict[str, Any]) -> None:
        self.name, self.context, self.parent, self.start, self.attributes = name, context, parent, start, attributes
        self.status = _unset

    def get_span_context(self) -> Any:
        return self.context

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def set_status(self, status: Any) -> None:
        self.status = status

    def end(self) -> None:
        ctx, parent, status = self.context, self.parent, self.status
        _emit(
            (
                self.name,
                ctx.trace_id,
                ctx.span_id,
                parent.span_id if parent is not None else 0,
                parent is not None and parent.is_remote,
                ctx.trace_state.to_header() if ctx.trace_state else "",
                _SERVER,
                self.start,
                max(time.time_ns(), self.start),
                self.attributes,
                status.status_code.value,
                status.description,
                (),
            )
        )


def direct_submit(cycle: Any, submit: Callable[..., Any], *args: Any) -> Any:
    """``http.py``'s direct infer path: decide whether the request is sampled and, if it is, open its span (from
    when its head arrived) and queue the request (``submit(*args)``) as its child. ``cycle.span`` is set either way
    (None: not sampled) for :func:`direct_end`. Not sampled, the request costs a dictionary lookup and a random
    number here: no context variable is set, nothing is allocated."""
    if b"traceparent" not in cycle.headers:  # most requests: a new trace, decided by one comparison
        if _random() >= _new_ratio:
            cycle.span = None
            return submit(*args)
        span = cycle.span = _direct_span(cycle, drawn=True)
    else:
        span = cycle.span = _direct_span(cycle)
    if span is None:
        return submit(*args)
    token = _current.set(span)
    try:
        return submit(*args)
    finally:
        _current.reset(token)


def direct_end(cycle: Any, slot: Any, status: int) -> None:
    """``http.py``'s direct infer path: the answer is written (a request refused before it was queued is sampled and
    gets its span here)."""
    span = getattr(cycle, "span", cycle)  # cycle: never reached direct_submit
    if span is None:  # most requests: not sampled
        return
    if span is cycle:
        span = _direct_span(cycle)
    cycle.span = None
    if span is not None:
        _end_http(span, status, slot)


async def asgi(app: Callable[..., Awaitable[None]], scope: Any, receive: Any, send: Any) -> None:
    """Serve one ASGI HTTP request under its span, when it is sampled. Only the routes that serve a model's protocol
    are traced (those ``kubeinfer_requests_total`` counts): not probes, metadata, ``/metrics``."""
    found = _route(scope["path"])
    headers = dict(scope["headers"])
    tp = _header(headers, b"traceparent")
    if not found[1] or not _sample(tp):
        await app(scope, receive, send)
        return
    span = _http_span(scope["method"], scope["path"], tp, _header(headers, b"tracestate"), None, found)
    status = 500

    async def traced_send(message: Any) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    token = _current.set(span)
    try:
        await app(scope, receive, traced_send)
    finally:
        _current.reset(token)
        _end_http(span, status)


def encode(parent: Span | None, fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn`` (the answer's encoding) under an ``encode`` span, child of ``parent`` (default: the current span;
    none: not sampled)."""
    if parent is None:
        parent = _current.get()
        if parent is None:
            return fn(*args)
    start = time.time_ns()
    try:
        return fn(*args)
    finally:
        _child(parent.get_span_context(), "encode", start, time.time_ns(), {})


# -- the replica: gRPC ----------------------------------------------------------------------------------------------
_GRPC_ERRORS = frozenset({"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"})


def _metadata_trace(metadata: Sequence[tuple[str, Any]] | None) -> tuple[str | None, str | None]:
    tp = ts = None
    for key, value in metadata or ():
        if key == "traceparent":
            tp = value if isinstance(value, str) else value.decode("latin-1")
        elif key == "tracestate":
            ts = value if isinstance(value, str) else value.decode("latin-1")
    return tp, ts


def _rpc_span(service: str, method: str, tp: str | None, ts: str | None, attributes: dict[str, Any]) -> Span:
    assert tracer is not None
    attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method, **attributes}
    return tracer.start_span(
        f"{service}/{method}", context=_parent(tp, ts), kind=_api.SpanKind.SERVER, attributes=attributes
    )


def _end_rpc(span: Span, code: Any) -> None:
    """End an RPC span with a ``grpc.StatusCode``: ``rpc.grpc.status_code``, and the error status for the codes the
    RPC conventions count as a server's error."""
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code.name in _GRPC_ERRORS:
        span.set_attribute("error.type", code.name)
        span.set_status(_api.Status(_api.StatusCode.ERROR))
    span.end()


async def grpc_infer(
    method: str, request: Any, context: Any, infer: Callable[[Any, float | None], Awaitable[Any]]
) -> Any:
    """One ``ModelInfer`` (or one request of a ``ModelStreamInfer``) under its span, when it is sampled."""
    import grpc

    from kubeinfer.server.errors import ServerError, grpc_code

    tp, ts = _metadata_trace(context.invocation_metadata())
    if not _sample(tp):
        return await infer(request, context.time_remaining())
    attributes = {"kubeinfer.model.name": request.model_name, "kubeinfer.protocol": "grpc"}
    if request.model_version:
        attributes["kubeinfer.model.version"] = request.model_version
    span = _rpc_span("inference.GRPCInferenceService", method, tp, ts, attributes)
    code = grpc.StatusCode.OK
    token = _current.set(span)
    try:
        return await infer(request, context.time_remaining())
    except ServerError as e:
        code = grpc_code(e)
        raise
    except BaseException as e:
        code = grpc.StatusCode.CANCELLED if isinstance(e, asyncio.CancelledError) else grpc.StatusCode.INTERNAL
        raise
    finally:
        _current.reset(token)
        _end_rpc(span, code)


# -- the replica: the batch -----------------------------------------------------------------------------------------
def batch(
    model: str,
    items: Sequence[Any],
    results: Sequence[Any],
    started: float,
    compute: float,
    ran: tuple[float, float],
    inline: bool,
) -> None:
    """After a batch: ``queue``, ``batch`` and ``model`` spans for each of its requests that is sampled.

    ``items``: the batcher's items (``span``: set at submit while tracing is on, None when not sampled; ``enqueued``;
    ``req.rows``); ``started``/``compute``: when the batch was dispatched and how long until its results were back;
    ``ran``: when the model call began and how long it took (monotonic seconds)."""
    for it in items:  # mostly none is sampled: a plain loop to find out
        if it.span is not None:
            break
    else:
        return
    sampled = [(it, res) for it, res in zip(items, results, strict=True) if it.span is not None]
    rows = sum(it.req.rows for it in items)
    b0, b1 = _ns_mono(started), _ns_mono(started + compute)
    m0, m1 = _ns_mono(ran[0]), _ns_mono(ran[0] + ran[1])
    batch_attributes = {
        "kubeinfer.model.name": model,
        "kubeinfer.batch.size": rows,
        "kubeinfer.batch.requests": len(items),
        "kubeinfer.batch.inline": inline,
    }
    # Attributes on the batch span only (its children are read under it). The records are made here rather than by
    # _child: the request's context read once, and the batch span's id kept for its model span without a SpanContext.
    for it, res in sampled:
        ctx = it.span.get_span_context()
        trace_id, parent_id, remote, state = ctx.trace_id, ctx.span_id, ctx.is_remote, ctx.trace_state
        ts = state.to_header() if state else ""
        q0 = _ns_mono(it.enqueued)
        batch_id = _getrandbits(64) or 1
        error = {"error.type": type(res).__name__} if isinstance(res, BaseException) else {}
        _emit(
            (
                "queue",
                trace_id,
                _getrandbits(64) or 1,
                parent_id,
                remote,
                ts,
                _INTERNAL,
                q0,
                max(b0, q0),
                {},
                0,
                None,
                (),
            )
        )
        _emit(
            (
                "batch",
                trace_id,
                batch_id,
                parent_id,
                remote,
                ts,
                _INTERNAL,
                b0,
                max(b1, b0),
                batch_attributes,
                0,
                None,
                (),
            )
        )
        _emit(
            (
                "model",
                trace_id,
                _getrandbits(64) or 1,
                batch_id,
                False,
                ts,
                _INTERNAL,
                m0,
                max(m1, m0),
                error,
                0,
                None,
                (),
            )
        )


# -- the router ----------------------------------------------------------------------------------------------------
def router_http(req: Any, headers: list[bytes], method: bytes, url: bytes, body: list[bytes]) -> None:
    """A proxied HTTP request enters the router. Sampled (and a model's protocol route): its SERVER span (child of the client's ``traceparent``),
    which the replica gets as its parent instead. Not sampled: the replica is told so (the client's ``traceparent``
    passes as it came; without one, one with the sampled flag off is added). ``req.span`` is set (None: not sampled)
    and ``req.data`` rebuilt where the head changes."""
    tp = ts = None
    kept: list[bytes] = []
    for line in headers:
        low = line[:12].lower()
        if low == b"traceparent:":
            tp = line[12:].strip().decode("latin-1")
        elif low[:11] == b"tracestate:":
            ts = line[11:].strip().decode("latin-1")
        else:
            kept.append(line)
    if not _sample(tp):
        req.span = None
        if tp is not None and _parse(tp) is not None:
            return  # the head as it came: the replica follows the caller's decision
        extra = [b"traceparent: %s\r\n" % _unsampled(None).encode()]
    else:
        assert tracer is not None
        path = url.split(b"?", 1)[0].decode("latin-1")
        verb = method.decode("ascii")
        route, protocol, _ = _route(path)
        if not protocol:  # probes, metadata, metrics: not traced (as on the replica), the head passes as it came
            req.span = None
            return
        attributes: dict[str, Any] = {"http.request.method": verb, "url.path": path, "url.scheme": "http"}
        if route is not None:
            attributes["http.route"] = route
        span = req.span = tracer.start_span(
            f"{verb} {route}" if route is not None else verb,
            context=_parent(tp, ts),
            kind=_api.SpanKind.SERVER,
            attributes=attributes,
        )
        parent, state = traceparent(span)
        extra = [b"traceparent: %s\r\n" % parent.encode()]
        if state:
            extra.append(b"tracestate: %s\r\n" % state.encode())
    req.data = b"".join([method, b" ", url, b" HTTP/1.1\r\n", *kept, *extra, b"\r\n", *body])


def router_try(req: Any, replica: str, status: int | None, reason: str = "") -> None:
    """A try of a proxied HTTP request ended on ``replica``: answered ``status`` (the request ends), or failed
    (``reason``: why; ``status``: the 503/429 retried elsewhere, or None for a connection's failure)."""
    span = getattr(req, "span", None)
    if span is None:
        return
    if reason:
        attributes: dict[str, Any] = {"kubeinfer.replica": replica, "kubeinfer.router.reason": reason}
        if status is not None:
            attributes["http.response.status_code"] = status
        span.add_event("try failed", attributes)
        return
    req.span = None
    span.set_attribute("kubeinfer.replica", replica)
    span.set_attribute("kubeinfer.router.attempts", req.attempts)
    _end_http(span, status or 502)


def router_finish(req: Any, payload: bytes) -> None:
    """The router answered a proxied request itself (an error: no replica, out of tries, a bad pin)."""
    span = getattr(req, "span", None)
    if span is None:
        return
    req.span = None
    span.set_attribute("kubeinfer.router.attempts", req.attempts)
    if req.backend is not None:
        span.set_attribute("kubeinfer.replica", req.backend.id)
    _end_http(span, int(payload[9:12]) if payload[9:12].isdigit() else 500)


def router_grpc(method: str, metadata: list[tuple[str, str | bytes]]) -> Span | None:
    """A proxied gRPC call enters the router: its SERVER span when sampled (None: not), and ``metadata`` (what goes
    to the replica) gets the ``traceparent`` that makes the router's span the replica's parent, or that says the
    call is not sampled. Only inference is traced, as on the replica: ``ModelInfer``, and ``ModelStreamInfer``, whose
    one span covers the stream (each streamed request's spans on the replica are its children); other calls pass as
    they came."""
    if not method.endswith(("/ModelInfer", "/ModelStreamInfer")):
        return None
    tp, ts = _metadata_trace(metadata)
    if not _sample(tp):
        if tp is None or _parse(tp) is None:
            metadata[:] = [m for m in metadata if m[0] != "traceparent"]
            metadata.append(("traceparent", _unsampled(None)))
        return None
    service, _, name = method.lstrip("/").rpartition("/")
    span = _rpc_span(service, name, tp, ts, {})
    metadata[:] = [m for m in metadata if m[0] not in ("traceparent", "tracestate")]
    parent, state = traceparent(span)
    metadata.append(("traceparent", parent))
    if state:
        metadata.append(("tracestate", state))
    return span


def router_grpc_try(span: Span, replica: str, code: Any = None) -> None:
    """A try of a proxied gRPC call on ``replica`` ended: answered (``code`` None), or failed with ``code`` (retried,
    failed over or passed on: an event)."""
    span.set_attribute("kubeinfer.replica", replica)
    if code is not None:
        span.add_event("try failed", {"kubeinfer.replica": replica, "rpc.grpc.status_code": code.value[0]})


def router_grpc_end(span: Span, code: Any) -> None:
    """A proxied gRPC call ends with ``code`` (a ``grpc.StatusCode``)."""
    _end_rpc(span, code)
