"""Tracing's configuration from the standard OTEL_* variables (server/tracing.py)."""

from __future__ import annotations

import logging
import sys
import time
from types import SimpleNamespace
from typing import Any

import pytest

from kubeinfer.server import tracing
from kubeinfer.server.tracing import TracingError, TracingSettings


@pytest.mark.parametrize(
    "env",
    [{}, {"OTEL_TRACES_EXPORTER": "none"}, {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}],
)
def test_tracing_is_off_unless_an_exporter_is_asked_for(env: dict[str, str]) -> None:
    assert TracingSettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", **env}) is None
    assert tracing.setup(env, service="s", component="replica") is False
    assert tracing.tracer is None


def test_defaults_follow_the_specification() -> None:
    s = TracingSettings.from_env({"OTEL_TRACES_EXPORTER": "otlp"})
    assert s == TracingSettings(("otlp",), "http/protobuf", None, "parentbased_always_on", 1.0, None)


def test_endpoints_per_protocol() -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT is a base URL (HTTP appends /v1/traces); the _TRACES_ form is used as is."""
    base = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}
    assert TracingSettings.from_env(base).endpoint == "http://c:4318/v1/traces"  # type: ignore[union-attr]
    grpc = {**base, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}
    assert TracingSettings.from_env(grpc).endpoint == "http://c:4317"  # type: ignore[union-attr]
    traces = {
        **base,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://t:1/x",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
    }
    s = TracingSettings.from_env(traces)
    assert s is not None and s.endpoint == "https://t:1/x" and s.protocol == "grpc"


def test_sampler_ratio_and_service_name() -> None:
    env = {
        "OTEL_TRACES_EXPORTER": "otlp,console",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.01",
        "OTEL_SERVICE_NAME": "fraud",
    }
    s = TracingSettings.from_env(env)
    assert s is not None and s.exporters == ("otlp", "console") and s.ratio == 0.01 and s.service_name == "fraud"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "'jaeger' is not an exporter kubeinfer has"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL='http/json' is not supported"),
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER='sometimes' is not a sampler"),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "5%"}, "OTEL_TRACES_SAMPLER_ARG='5%'"),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"}, "from 0 to 1"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"}, "must be a URL"),
        ({"OTEL_BSP_SCHEDULE_DELAY": "0"}, "OTEL_BSP_SCHEDULE_DELAY='0' is not a whole number above 0"),
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "lots"}, "OTEL_BSP_MAX_QUEUE_SIZE='lots' is not a whole number above 0"),
        (
            {"OTEL_BSP_MAX_QUEUE_SIZE": "8", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "16"},
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=16 is more than OTEL_BSP_MAX_QUEUE_SIZE=8",
        ),
    ],
)
def test_unusable_values_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(TracingError, match=message.replace("(", r"\(")):
        TracingSettings.from_env({"OTEL_TRACES_EXPORTER": "otlp", **env})


def test_without_the_extra_tracing_stays_off_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Asking for traces without opentelemetry-sdk installed: a warning naming the extra, and serving goes on."""
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # import fails as if not installed
    with caplog.at_level(logging.WARNING, logger="kubeinfer.tracing"):
        assert tracing.setup({"OTEL_TRACES_EXPORTER": "otlp"}, service="s", component="replica") is False
    assert tracing.tracer is None
    assert "kubeinfer[tracing]" in caplog.text


def test_batch_settings_follow_the_specification() -> None:
    """OTEL_BSP_* as the SDK's batch processor reads them (milliseconds for the delay and the timeout)."""
    s = TracingSettings.from_env({"OTEL_TRACES_EXPORTER": "otlp"})
    assert (s.schedule_delay, s.max_queue, s.batch_size, s.export_timeout) == (5.0, 2048, 512, 30.0)  # type: ignore[union-attr]
    env = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_BSP_MAX_QUEUE_SIZE": "100",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "10",
        "OTEL_BSP_EXPORT_TIMEOUT": "1500",
    }
    s = TracingSettings.from_env(env)
    assert (s.schedule_delay, s.max_queue, s.batch_size, s.export_timeout) == (0.05, 100, 10, 1.5)  # type: ignore[union-attr]


def test_setup_then_shutdown_turns_tracing_on_and_off() -> None:
    env = {"OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER": "always_off"}
    try:
        assert tracing.setup(env, service="s", component="replica") is True
        assert tracing.tracer is not None
    finally:
        tracing.shutdown()
    assert tracing.tracer is None


SAMPLED = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
UNSAMPLED = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"


@pytest.mark.parametrize(
    ("sampler", "ratio", "traceparent", "expected"),
    [
        ("parentbased_always_on", 1.0, SAMPLED, True),
        ("parentbased_always_on", 1.0, UNSAMPLED, False),  # the caller's decision is followed
        ("parentbased_always_on", 1.0, None, True),
        ("parentbased_always_off", 1.0, SAMPLED, True),
        ("parentbased_always_off", 1.0, None, False),
        ("parentbased_traceidratio", 0.0, SAMPLED, True),
        ("parentbased_traceidratio", 0.0, None, False),
        ("parentbased_traceidratio", 1.0, "00-00000000000000000000000000000000-00f067aa0ba902b7-00", True),  # invalid
        ("parentbased_traceidratio", 1.0, "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", True),  # invalid
        ("always_off", 1.0, SAMPLED, False),
        ("always_on", 1.0, UNSAMPLED, True),
        # traceidratio decides on the lower 64 bits of the trace id, as the SDK's TraceIdRatioBased
        ("traceidratio", 0.5, "00-ffffffffffffffff0000000000000001-00f067aa0ba902b7-00", True),
        ("traceidratio", 0.5, "00-0000000000000001ffffffffffffffff-00f067aa0ba902b7-01", False),
    ],
)
def test_sampling_decision(sampler: str, ratio: float, traceparent: str | None, expected: bool) -> None:
    assert tracing._sampler(sampler, ratio)(traceparent) is expected


@pytest.mark.parametrize("sampler", tracing.SAMPLERS)
@pytest.mark.parametrize("ratio", [0.0, 0.25, 1.0])
def test_new_trace_sampler_decides_as_the_sampler_does_without_traceparent(sampler: str, ratio: float) -> None:
    """The direct REST path decides a request without ``traceparent`` with ``_new_trace_sampler``: the same decision
    as ``_sampler(...)(None)`` (for a ratio strictly between 0 and 1, the same share of requests)."""
    fast, full = tracing._new_trace_sampler(sampler, ratio), tracing._sampler(sampler, ratio)
    n = 4000
    got, want = sum(fast() for _ in range(n)), sum(full(None) for _ in range(n))
    if ratio in (0.0, 1.0) or not sampler.endswith("traceidratio"):
        assert got == want and got in (0, n)
    else:
        assert 0.2 * n < got < 0.3 * n and 0.2 * n < want < 0.3 * n


@pytest.mark.parametrize("sampler", tracing.SAMPLERS)
@pytest.mark.parametrize("ratio", [0.0, 0.25, 1.0])
def test_new_trace_ratio_is_the_new_trace_samplers_probability(sampler: str, ratio: float) -> None:
    """``direct_submit`` samples a request without ``traceparent`` when ``random() < _new_trace_ratio(...)``: always
    and never where the sampler says so, else the ratio."""
    p = tracing._new_trace_ratio(sampler, ratio)
    fast = tracing._new_trace_sampler(sampler, ratio)
    if ratio in (0.0, 1.0) or not sampler.endswith("traceidratio"):
        assert p == (1.0 if fast() else 0.0)
    else:
        assert p == ratio


def test_the_direct_paths_sampling_decision() -> None:
    """The direct REST path (``direct_submit``): without ``traceparent``, a share of requests as the ratio says (one
    draw per request, not two); with one, the caller's sampled flag (parentbased); an unsampled request's submit runs
    with no span, a sampled one's under its span, in the caller's trace when there is one."""
    env = {
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
        "OTEL_BSP_SCHEDULE_DELAY": "600000",  # nothing sent during the test: the records stay queued here
        "OTEL_BSP_MAX_QUEUE_SIZE": "100000",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "100000",
    }
    assert tracing.setup(env, service="s", component="replica")
    try:

        def run(headers: dict[bytes, bytes]) -> tuple[Any, Any]:
            cycle = SimpleNamespace(headers=headers, url=b"/v2/models/m/infer", start=time.perf_counter(), span=None)
            seen = tracing.direct_submit(cycle, tracing.current)
            return cycle.span, seen

        n = 4000
        spans = [run({b"host": b"x"}) for _ in range(n)]
        sampled = [s for s, seen in spans if s is not None]
        assert all(seen is s for s, seen in spans)
        assert 0.2 * n < len(sampled) < 0.3 * n
        assert all(run({b"traceparent": SAMPLED.encode()})[0] is not None for _ in range(50))
        assert all(run({b"traceparent": UNSAMPLED.encode()})[0] is None for _ in range(50))
        span, _ = run({b"traceparent": SAMPLED.encode()})
        assert f"{span.get_span_context().trace_id:032x}" == SAMPLED.split("-")[1]
        assert span.name == "POST /v2/models/{model_name}/infer"
        assert span.attributes["kubeinfer.model.name"] == "m"
        span.attributes["http.response.status_code"] = 200  # a span's own copy of the path's attributes
        assert "http.response.status_code" not in run({b"traceparent": SAMPLED.encode()})[0].attributes
    finally:
        assert tracing._exporter is not None
        tracing._exporter.queue.clear()
        tracing.shutdown()
