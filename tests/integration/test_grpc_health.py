"""gRPC health checking (grpc.health.v1.Health) and server reflection on a real server process, driven by the
real generated stubs of grpcio-health-checking and the reflection client of grpcio-reflection."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from helpers import python_model
from kubeinfer.testing import ServerProcess

pytestmark = pytest.mark.integration

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


def _check(channel: grpc.Channel, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return int(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status)


def _watch(channel: grpc.Channel, service: str) -> tuple[queue.Queue[object], threading.Thread]:
    """Watch ``service`` in a thread: every status it reports goes to the queue, then ``"end"`` (or the error)."""
    seen: queue.Queue[object] = queue.Queue()
    stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=service), timeout=60)

    def read() -> None:
        try:
            for resp in stream:
                seen.put(int(resp.status))
            seen.put("end")
        except grpc.RpcError as e:
            seen.put(e)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return seen, thread


def _next(seen: queue.Queue[object]) -> object:
    return seen.get(timeout=30)


@pytest.fixture
def gated(tmp_path: Path) -> Iterator[tuple[ServerProcess, Path]]:
    """A server whose model keeps loading until the gate file is written."""
    gate = tmp_path / "gate"
    spec = python_model(
        tmp_path, "gated", "GatedLoad", args=f"{{gate: '{gate}'}}", extra="  server: {limits: {drainDelaySeconds: 0}}\n"
    )
    server = ServerProcess(spec, grpc=True, wait_ready=False).start()
    try:
        yield server, gate
    finally:
        server.kill()


def test_health_follows_loading_ready_and_draining(gated: tuple[ServerProcess, Path]) -> None:
    """NOT_SERVING while the model loads, SERVING once it is ready (Check and Watch, overall and per model), and on
    SIGTERM the open Watch streams see NOT_SERVING and end, and the server exits 0."""
    server, gate = gated
    with grpc.insecure_channel(server.grpc_url) as ch:
        assert _check(ch, "") == NOT_SERVING
        assert _check(ch, "gated") == NOT_SERVING
        assert _check(ch, "inference.GRPCInferenceService") == NOT_SERVING
        overall, overall_thread = _watch(ch, "")
        model, model_thread = _watch(ch, "gated")
        assert _next(overall) == NOT_SERVING
        assert _next(model) == NOT_SERVING
        gate.touch()
        assert _next(overall) == SERVING
        assert _next(model) == SERVING
        assert _check(ch, "") == SERVING
        assert _check(ch, "gated") == SERVING
        assert _check(ch, "inference.GRPCInferenceService") == SERVING
        server.terminate()
        assert _next(overall) == NOT_SERVING
        assert _next(model) == NOT_SERVING
        assert _next(overall) == "end"
        assert _next(model) == "end"
        overall_thread.join(10)
        model_thread.join(10)
    assert server.wait(30) == 0, server.log()


def test_unknown_service_is_not_found_on_check_and_unknown_on_watch(tmp_path: Path) -> None:
    with (
        ServerProcess(python_model(tmp_path, "dbl", "SlowDouble"), grpc=True) as server,
        grpc.insecure_channel(server.grpc_url) as ch,
    ):
        with pytest.raises(grpc.RpcError) as ei:
            _check(ch, "nope")
        assert ei.value.code() == grpc.StatusCode.NOT_FOUND
        seen, _ = _watch(ch, "nope")
        assert _next(seen) == SERVICE_UNKNOWN
        assert _check(ch, "dbl") == SERVING


def test_a_model_that_fails_to_load_is_not_serving(tmp_path: Path) -> None:
    server = ServerProcess(python_model(tmp_path, "broken", "DoesNotExist"), grpc=True, wait_ready=False).start()
    try:
        with grpc.insecure_channel(server.grpc_url) as ch:
            seen, _ = _watch(ch, "broken")
            assert _next(seen) == NOT_SERVING
            for _ in range(600):  # until the load has failed (readiness then says why)
                if "failed to load" in server.json("/readyz")[1].get("reason", ""):
                    break
                time.sleep(0.05)
            assert _check(ch, "") == NOT_SERVING
            assert _check(ch, "broken") == NOT_SERVING
    finally:
        server.kill()


def test_reflection_lists_and_describes_the_services(tmp_path: Path) -> None:
    """grpcurl-style discovery: the reflection client lists the three services and resolves their methods."""
    with (
        ServerProcess(python_model(tmp_path, "dbl", "SlowDouble"), grpc=True) as server,
        grpc.insecure_channel(server.grpc_url) as ch,
    ):
        db = ProtoReflectionDescriptorDatabase(ch)
        services = set(db.get_services())
        assert services == {
            "inference.GRPCInferenceService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
        }
        pool = descriptor_pool.DescriptorPool(db)
        inference = pool.FindServiceByName("inference.GRPCInferenceService")
        assert {"ModelInfer", "ModelStreamInfer", "ServerReady", "ModelMetadata"} <= set(inference.methods_by_name)
        infer = inference.methods_by_name["ModelInfer"]
        assert infer.input_type.full_name == "inference.ModelInferRequest"
        assert "raw_input_contents" in infer.input_type.fields_by_name
        assert {"Check", "Watch"} <= set(pool.FindServiceByName("grpc.health.v1.Health").methods_by_name)


def test_list_gives_every_name_and_its_status(tmp_path: Path) -> None:
    with (
        ServerProcess(python_model(tmp_path, "dbl", "SlowDouble"), grpc=True) as server,
        grpc.insecure_channel(server.grpc_url) as ch,
    ):
        listed = health_pb2_grpc.HealthStub(ch).List(health_pb2.HealthListRequest(), timeout=5)
        statuses = {name: int(r.status) for name, r in listed.statuses.items()}
        assert statuses == {"": SERVING, "inference.GRPCInferenceService": SERVING, "dbl": SERVING}
