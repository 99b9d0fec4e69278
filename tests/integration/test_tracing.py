"""OpenTelemetry tracing end to end: real replicas (and a real router) export over OTLP to receivers started here."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tg
from test_router import RouterThread

from kubeinfer.server import tracing
from kubeinfer.testing import ServerProcess
from otlp_receiver import GrpcReceiver, HttpReceiver, ReceivedSpan

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE}-{PARENT}-01"
BODY = json.dumps(
    {"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2] * 2}]}
).encode()
SERVER, INTERNAL = 2, 1  # SpanKind in OTLP


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


def traced_env(endpoint: str, protocol: str, **extra: str) -> dict[str, str]:
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        **extra,
    }


def in_trace(spans: list[ReceivedSpan], trace: str = TRACE) -> dict[str, list[ReceivedSpan]]:
    out: dict[str, list[ReceivedSpan]] = {}
    for s in spans:
        if s.trace_id == trace:
            out.setdefault(s.name, []).append(s)
    return out


def has(*names: str, trace: str = TRACE) -> object:
    return lambda spans: all(n in in_trace(spans, trace) for n in names)


def test_rest_infer_spans_follow_the_callers_traceparent(examples: Path, grpc_receiver: GrpcReceiver) -> None:
    """The direct REST path: request span child of the caller's traceparent; queue, batch, encode under it and the
    model call under the batch, with the HTTP conventions' and the model's attributes (OTLP over gRPC)."""
    env = traced_env(grpc_receiver.endpoint, "grpc")
    with ServerProcess(examples / "iris" / "service.yaml", grpc=False, env=env) as s:
        status, _, _ = s.post("/v2/models/iris/infer", BODY, headers={"traceparent": TRACEPARENT})
        assert status == 200
        spans = grpc_receiver.wait_for(has("POST /v2/models/{model_name}/infer", "queue", "batch", "model", "encode"))
    by = in_trace(spans)
    (req,) = by["POST /v2/models/{model_name}/infer"]
    assert req.parent_id == PARENT and req.kind == SERVER
    assert req.attributes["http.request.method"] == "POST"
    assert req.attributes["http.route"] == "/v2/models/{model_name}/infer"
    assert req.attributes["url.path"] == "/v2/models/iris/infer"
    assert req.attributes["http.response.status_code"] == 200
    assert req.attributes["kubeinfer.model.name"] == "iris"
    assert req.attributes["kubeinfer.model.version"] == "1"
    assert req.resource["service.name"] == "iris" and req.resource["kubeinfer.component"] == "replica"
    for name in ("queue", "batch", "encode"):
        (child,) = by[name]
        assert child.parent_id == req.span_id and child.kind == INTERNAL
    (batch,) = by["batch"]
    assert batch.attributes["kubeinfer.batch.size"] == 2  # two rows
    assert batch.attributes["kubeinfer.batch.requests"] == 1
    assert batch.attributes["kubeinfer.model.name"] == "iris"
    (model,) = by["model"]
    assert model.parent_id == batch.span_id


def test_asgi_and_grpc_requests_are_traced_and_errors_marked(examples: Path, http_receiver: HttpReceiver) -> None:
    """KServe v1 (the ASGI app) and gRPC ModelInfer (traceparent in metadata) get server spans with the HTTP and RPC
    conventions' attributes; a 404 is a client's error, not the span's (OTLP over HTTP/protobuf)."""
    env = traced_env(http_receiver.endpoint, "http/protobuf", OTEL_SERVICE_NAME="iris-svc")
    with ServerProcess(examples / "iris" / "service.yaml", grpc=True, env=env) as s:
        body = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}).encode()
        assert s.post("/v1/models/iris:predict", body, headers={"traceparent": TRACEPARENT})[0] == 200
        assert s.post("/v2/models/nope/infer", BODY, headers={"traceparent": TRACEPARENT})[0] == 404
        client = tg.InferenceServerClient(s.grpc_url)
        inp = tg.InferInput("input-0", [1, 4], "FP32")
        inp.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32))
        other = "0af7651916cd43dd8448eb211c80319c"
        client.infer("iris", [inp], headers={"traceparent": f"00-{other}-b7ad6b7169203331-01"})
        client.close()
        spans = http_receiver.wait_for(
            lambda got: (
                has("POST /v1/models/{model_name}:predict", "POST /v2/models/{model_name}/infer")(got)
                and has("inference.GRPCInferenceService/ModelInfer", "queue", "batch", "model", "encode", trace=other)(
                    got
                )
            )
        )
    by = in_trace(spans)
    (v1,) = by["POST /v1/models/{model_name}:predict"]
    assert v1.parent_id == PARENT and v1.attributes["http.response.status_code"] == 200
    assert v1.attributes["kubeinfer.protocol"] == "v1" and v1.resource["service.name"] == "iris-svc"
    assert [q.parent_id for q in by["queue"]] == [v1.span_id]
    (missing,) = by["POST /v2/models/{model_name}/infer"]
    assert missing.attributes["http.response.status_code"] == 404 and missing.status_code == 0  # unset, not error
    g = in_trace(spans, other)
    (rpc,) = g["inference.GRPCInferenceService/ModelInfer"]
    assert rpc.parent_id == "b7ad6b7169203331" and rpc.kind == SERVER
    assert rpc.attributes["rpc.system"] == "grpc" and rpc.attributes["rpc.method"] == "ModelInfer"
    assert rpc.attributes["rpc.grpc.status_code"] == 0 and rpc.attributes["kubeinfer.model.name"] == "iris"
    assert {g[n][0].parent_id for n in ("queue", "batch", "encode")} == {rpc.span_id}


@contextlib.contextmanager
def traced_router(
    examples: Path, grpc_receiver: GrpcReceiver, http_receiver: HttpReceiver
) -> Iterator[tuple[ServerProcess, RouterThread]]:
    """An iris replica exporting to ``grpc_receiver`` behind a router in this process exporting to
    ``http_receiver`` (as service ``iris-router``); both stopped, and tracing shut down, on the way out."""
    replica = ServerProcess(
        examples / "iris" / "service.yaml", grpc=True, env=traced_env(grpc_receiver.endpoint, "grpc")
    )
    replica.start()
    assert tracing.setup(traced_env(http_receiver.endpoint, "http/protobuf"), service="iris-router", component="router")
    router = RouterThread()
    try:
        router.set_backends([replica])
        yield replica, router
    finally:
        router.close()
        tracing.shutdown()
        replica.stop()


def test_router_span_is_the_replicas_parent_over_http_and_grpc(
    examples: Path, grpc_receiver: GrpcReceiver, http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request through the router: the router's span is the caller's child and the replica's parent (the router
    rewrites traceparent), and names the replica it chose; the same over gRPC with metadata."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    with traced_router(examples, grpc_receiver, http_receiver) as (replica, router):
        conn = http.client.HTTPConnection("127.0.0.1", router.http_port, timeout=10)
        conn.request("POST", "/v2/models/iris/infer", BODY, {"traceparent": TRACEPARENT, "tracestate": "k=v"})
        assert conn.getresponse().status == 200
        conn.close()
        other = "0af7651916cd43dd8448eb211c80319c"
        client = tg.InferenceServerClient(f"127.0.0.1:{router.grpc_port}")
        inp = tg.InferInput("input-0", [1, 4], "FP32")
        inp.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32))
        client.infer("iris", [inp], headers={"traceparent": f"00-{other}-b7ad6b7169203331-01"})
        client.close()
        routed = http_receiver.wait_for(
            lambda got: (
                has("POST /v2/models/{model_name}/infer")(got)
                and has("inference.GRPCInferenceService/ModelInfer", trace=other)(got)
            )
        )
        served = grpc_receiver.wait_for(
            lambda got: (
                has("POST /v2/models/{model_name}/infer", "batch")(got)
                and has("inference.GRPCInferenceService/ModelInfer", "batch", trace=other)(got)
            )
        )
    (r,) = in_trace(routed)["POST /v2/models/{model_name}/infer"]
    assert r.parent_id == PARENT and r.kind == SERVER
    assert r.resource["service.name"] == "iris-router" and r.resource["kubeinfer.component"] == "router"
    assert r.attributes["kubeinfer.replica"] == f"r{replica.pid}"
    assert r.attributes["http.response.status_code"] == 200 and r.attributes["kubeinfer.router.attempts"] == 1
    (s,) = in_trace(served)["POST /v2/models/{model_name}/infer"]
    assert s.parent_id == r.span_id  # router -> replica
    (rg,) = in_trace(routed, other)["inference.GRPCInferenceService/ModelInfer"]
    assert rg.parent_id == "b7ad6b7169203331" and rg.attributes["kubeinfer.replica"] == f"r{replica.pid}"
    assert rg.attributes["rpc.grpc.status_code"] == 0
    (sg,) = in_trace(served, other)["inference.GRPCInferenceService/ModelInfer"]
    assert sg.parent_id == rg.span_id


def _router_spans(port: int, outcome: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    body = conn.getresponse().read().decode()
    conn.close()
    for line in body.splitlines():
        if line.startswith(f'kubeinfer_router_trace_spans_total{{outcome="{outcome}"}}'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("kubeinfer_router_trace_spans_total is not on the router's /metrics")


def test_a_grpc_stream_through_the_router_has_one_router_span_over_the_replica_s_requests(
    examples: Path, grpc_receiver: GrpcReceiver, http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ModelStreamInfer`` through the router: one router span for the stream (the caller's child, naming the
    replica), and each streamed request's span on the replica its child."""
    import queue

    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    trace = "5af7651916cd43dd8448eb211c80319d"
    name = "inference.GRPCInferenceService/ModelStreamInfer"
    with traced_router(examples, grpc_receiver, http_receiver) as (replica, router):
        client = tg.InferenceServerClient(f"127.0.0.1:{router.grpc_port}")
        answers: queue.Queue[tuple[object, object]] = queue.Queue()
        client.start_stream(
            callback=lambda result, error: answers.put((result, error)),
            headers={"traceparent": f"00-{trace}-c7ad6b7169203332-01"},
        )
        for _ in range(2):
            inp = tg.InferInput("input-0", [1, 4], "FP32")
            inp.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32))
            client.async_stream_infer("iris", [inp])
        for _ in range(2):
            result, error = answers.get(timeout=10)
            assert error is None and result is not None
        client.stop_stream()
        client.close()
        routed = http_receiver.wait_for(has(name, trace=trace))
        served = grpc_receiver.wait_for(lambda got: len(in_trace(got, trace).get(name, [])) == 2)
        # the router's own spans on its /metrics (counted as the exporter reports them)
        deadline = time.monotonic() + 10
        while _router_spans(router.http_port, "exported") < 1:
            assert time.monotonic() < deadline, "kubeinfer_router_trace_spans_total never counted the exported span"
            time.sleep(0.1)
        assert _router_spans(router.http_port, "dropped") == 0
    (r,) = in_trace(routed, trace)[name]
    assert r.parent_id == "c7ad6b7169203332" and r.kind == SERVER
    assert r.attributes["kubeinfer.replica"] == f"r{replica.pid}" and r.attributes["rpc.grpc.status_code"] == 0
    assert [s.parent_id for s in in_trace(served, trace)[name]] == [r.span_id, r.span_id]


def test_tracing_off_exports_nothing(examples: Path, grpc_receiver: GrpcReceiver) -> None:
    """Without OTEL_TRACES_EXPORTER (or with it set to none) a replica sends no span, even with an endpoint set and a
    traceparent on every request; its exporter would have flushed at exit had there been any."""
    for exporter in ({}, {"OTEL_TRACES_EXPORTER": "none"}):
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": grpc_receiver.endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", **exporter}
        with ServerProcess(examples / "iris" / "service.yaml", grpc=False, env=env) as s:
            for _ in range(5):
                assert s.post("/v2/models/iris/infer", BODY, headers={"traceparent": TRACEPARENT})[0] == 200
            assert "tracing on" not in s.log()
        assert s.proc is not None and s.proc.returncode == 0
    assert grpc_receiver.requests == 0 and grpc_receiver.spans == []
    assert tracing.tracer is None  # and this process adds none either


def test_a_bad_otel_variable_stops_serve_with_a_message(examples: Path) -> None:
    """An unusable OTEL_* value is named at start, not a traceback."""
    env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "sometimes"}
    done = subprocess.run(
        [sys.executable, "-m", "kubeinfer", "serve", str(examples / "iris" / "service.yaml"), "--port", "0"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )
    assert done.returncode != 0
    assert "OTEL_TRACES_SAMPLER='sometimes' is not a sampler" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_request_the_router_does_not_sample_is_not_sampled_by_the_replica(
    examples: Path, grpc_receiver: GrpcReceiver, http_receiver: HttpReceiver
) -> None:
    """The router's decision travels: sampled out at the router (ratio 0), the request carries a traceparent with the
    sampled flag off, and the replica (which would sample everything else) records nothing either."""
    replica = ServerProcess(
        examples / "iris" / "service.yaml", grpc=False, env=traced_env(grpc_receiver.endpoint, "grpc")
    ).start()
    env = {
        **traced_env(http_receiver.endpoint, "http/protobuf"),
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0",
    }
    assert tracing.setup(env, service="iris-router", component="router")
    router = RouterThread()
    try:
        router.set_backends([replica])
        for _ in range(3):
            conn = http.client.HTTPConnection("127.0.0.1", router.http_port, timeout=10)
            conn.request("POST", "/v2/models/iris/infer", BODY)
            assert conn.getresponse().status == 200
            conn.close()
        # the replica does sample a request that comes to it directly: it is on
        assert replica.post("/v2/models/iris/infer", BODY)[0] == 200
        grpc_receiver.wait_for(lambda spans: any(s.kind == SERVER for s in spans))
    finally:
        router.close()
        tracing.shutdown()
        replica.stop()  # exports what it holds
    assert http_receiver.spans == []
    assert len([s for s in grpc_receiver.spans if s.kind == SERVER]) == 1  # the direct request only


def exporter_children(pid: int) -> list[int]:
    """The span exporter processes among the child processes of ``pid``."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"kubeinfer.server.trace_export" in cmdline:
                found.append(int(child))
    return found


def span_counts(s: ServerProcess) -> dict[str, float]:
    """kubeinfer_trace_spans_total by outcome, from the replica's /metrics."""
    status, body = s.get("/metrics")
    assert status == 200
    out = {}
    for line in body.decode().splitlines():
        if line.startswith("kubeinfer_trace_spans_total{"):
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            out[outcome] = float(line.rsplit(" ", 1)[1])
    return out


def wait_for_counts(
    s: ServerProcess, ok: Callable[[dict[str, float]], bool], timeout: float = 30.0
) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while not ok(counts := span_counts(s)):
        if time.monotonic() > deadline:
            raise AssertionError(f"kubeinfer_trace_spans_total never got there: {counts}")
        time.sleep(0.1)
    return counts


def test_spans_leave_through_an_exporter_process_started_and_stopped_with_the_replica(
    examples: Path, grpc_receiver: GrpcReceiver
) -> None:
    """The replica's spans are exported by a child process of its own (at a lower priority), which the replica starts
    with tracing and stops (after it exported what it held) when it stops; the spans exported are counted in
    /metrics."""
    env = traced_env(grpc_receiver.endpoint, "grpc")
    with ServerProcess(examples / "iris" / "service.yaml", grpc=False, env=env) as s:
        (child,) = exporter_children(s.pid)
        # at a lower priority than the serving process: under contention, requests go first
        nice = min(19, os.getpriority(os.PRIO_PROCESS, s.pid) + 10)
        deadline = time.monotonic() + 10  # it lowers its own priority as it starts
        while os.getpriority(os.PRIO_PROCESS, child) != nice and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.getpriority(os.PRIO_PROCESS, child) == nice
        assert s.post("/v2/models/iris/infer", BODY, headers={"traceparent": TRACEPARENT})[0] == 200
        grpc_receiver.wait_for(has("POST /v2/models/{model_name}/infer", "queue", "batch", "model", "encode"))
        counts = wait_for_counts(s, lambda c: c.get("exported", 0) >= 5)
        assert counts["dropped"] == 0
    assert s.proc is not None and s.proc.returncode == 0
    assert not Path(f"/proc/{child}").exists()  # stopped with the replica, and reaped


def test_a_dead_collector_neither_blocks_requests_nor_holds_spans_without_bound(examples: Path) -> None:
    """Nothing listens at the OTLP endpoint: every request is still answered, spans beyond the (small) queues are
    dropped and counted, and the replica stops (the exporter process given OTEL_BSP_EXPORT_TIMEOUT)."""
    with socket.socket() as probe:  # a port that was free a moment ago: connections to it are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = traced_env(
        f"http://127.0.0.1:{port}",
        "grpc",
        OTEL_BSP_MAX_QUEUE_SIZE="16",
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE="8",
        OTEL_BSP_EXPORT_TIMEOUT="1000",
        OTEL_EXPORTER_OTLP_TIMEOUT="2",
    )
    with ServerProcess(examples / "iris" / "service.yaml", grpc=False, env=env) as s:
        for _ in range(60):  # 5 spans each: 300, far more than the queues hold
            assert s.post("/v2/models/iris/infer", BODY, headers={"traceparent": TRACEPARENT})[0] == 200
        counts = wait_for_counts(s, lambda c: c.get("dropped", 0) >= 300 - 2 * 16)
        assert counts["exported"] == 0
    assert s.proc is not None and s.proc.returncode == 0


def test_requests_are_served_after_the_exporter_process_dies(examples: Path, grpc_receiver: GrpcReceiver) -> None:
    """The exporter process killed: the replica serves on, its spans dropped and counted, and stops cleanly."""
    env = traced_env(grpc_receiver.endpoint, "grpc")
    with ServerProcess(examples / "iris" / "service.yaml", grpc=False, env=env) as s:
        (child,) = exporter_children(s.pid)
        os.kill(child, signal.SIGKILL)
        for _ in range(10):
            assert s.post("/v2/models/iris/infer", BODY, headers={"traceparent": TRACEPARENT})[0] == 200
        wait_for_counts(s, lambda c: c.get("dropped", 0) >= 50)
        assert "span exporter process is gone" in s.log()
    assert s.proc is not None and s.proc.returncode == 0
    assert grpc_receiver.spans == []


def test_a_signal_to_the_replicas_process_group_still_exports_the_spans_held(
    examples: Path, grpc_receiver: GrpcReceiver
) -> None:
    """SIGTERM to the replica's whole process group (a supervisor's killpg; Ctrl-C reaches a terminal's group the same
    way) does not end the exporter process first: the spans it holds are exported when the replica stops."""
    env = traced_env(grpc_receiver.endpoint, "grpc", OTEL_BSP_SCHEDULE_DELAY="60000")  # held until the stop
    s = ServerProcess(examples / "iris" / "service.yaml", grpc=False, env=env).start()
    try:
        (child,) = exporter_children(s.pid)
        assert s.post("/v2/models/iris/infer", BODY, headers={"traceparent": TRACEPARENT})[0] == 200
        os.killpg(s.pid, signal.SIGTERM)
        assert s.wait(30) == 0
    finally:
        s.stop()
    assert set(in_trace(grpc_receiver.spans)) == {
        "POST /v2/models/{model_name}/infer",
        "queue",
        "batch",
        "model",
        "encode",
    }
    assert not Path(f"/proc/{child}").exists()
