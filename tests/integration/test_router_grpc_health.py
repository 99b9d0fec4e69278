"""The router's own gRPC health (grpc.health.v1) and reflection through it, with the real generated stubs and the
real reflection client, against a real replica process behind a real router on 127.0.0.1."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from test_router import RouterThread, start_replicas

from helpers import python_model
from kubeinfer.testing import ServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def replica(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    started: list[ServerProcess] = []
    (server,) = start_replicas(python_model(tmp_path_factory.mktemp("health"), "m", "SlowDouble"), 1, started)
    yield server
    for p in started:
        p.kill()


def check(ch: grpc.Channel, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(ch)
    return int(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status)


class Watcher:
    """A Watch stream read in a thread: every status it sends, then None when the stream ends."""

    def __init__(self, ch: grpc.Channel, service: str = "") -> None:
        self.seen: queue.Queue[int | None] = queue.Queue()
        self.call = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=service), timeout=60)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for answer in self.call:
                self.seen.put(int(answer.status))
        except grpc.RpcError:
            pass
        self.seen.put(None)

    def next(self) -> int | None:
        return self.seen.get(timeout=10)


def test_health_is_the_routers_view_and_a_models_name_is_asked_of_a_replica(replica: ServerProcess) -> None:
    router = RouterThread(per_try_timeout=2.0)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{router.grpc_port}") as ch:
            assert check(ch, "") == NOT_SERVING  # no replica yet
            assert check(ch, "inference.GRPCInferenceService") == NOT_SERVING
            watch = Watcher(ch)
            assert watch.next() == NOT_SERVING
            router.set_backends([replica])
            assert watch.next() == SERVING  # streamed when the replica joined, not polled by the client
            assert check(ch, "") == SERVING
            assert check(ch, "m") == SERVING  # the replica's answer for its model
            with pytest.raises(grpc.RpcError) as e:
                check(ch, "no-such-model")
            assert e.value.code() == grpc.StatusCode.NOT_FOUND
            router.call(router.router.set_backends, [])
            assert watch.next() == NOT_SERVING
            router.set_backends([replica])
            assert watch.next() == SERVING
            router.run(router.router.stop(grace=1.0))
            assert watch.next() == NOT_SERVING  # shutting down: NOT_SERVING, then the stream ends
            assert watch.next() is None
    finally:
        router.loop.call_soon_threadsafe(router.loop.stop)
        router.thread.join(5)


def test_reflection_is_proxied_as_the_stream_it_is(replica: ServerProcess) -> None:
    router = RouterThread(per_try_timeout=2.0)
    try:
        router.set_backends([replica])
        with grpc.insecure_channel(f"127.0.0.1:{router.grpc_port}") as ch:
            db = ProtoReflectionDescriptorDatabase(ch)
            # the reflection client keeps one stream open for all its questions: several requests on one stream
            assert "inference.GRPCInferenceService" in set(db.get_services())
            pool = descriptor_pool.DescriptorPool(db)
            infer = pool.FindServiceByName("inference.GRPCInferenceService").methods_by_name["ModelInfer"]
            assert infer.input_type.full_name == "inference.ModelInferRequest"
            assert {"Check", "Watch"} <= set(pool.FindServiceByName("grpc.health.v1.Health").methods_by_name)
            # grpcurl and the reflection clients of other languages ask several questions on one stream
            stub = reflection_pb2_grpc.ServerReflectionStub(ch)
            asks = [
                reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol="inference.GRPCInferenceService"),
            ]
            answers = list(stub.ServerReflectionInfo(iter(asks), timeout=10))
            assert len(answers) == 2
            assert answers[0].HasField("list_services_response") and answers[1].HasField("file_descriptor_response")
    finally:
        router.close()
