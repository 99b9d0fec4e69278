"""``ModelStreamInfer`` (Triton's bidirectional stream) through the router, with ``tritonclient.grpc``.

Real replica processes (``kubeinfer serve``) behind a real router on 127.0.0.1; the router on its own uvloop loop in a
thread, as in ``test_router.py``. Each answer through the router must equal the replica's own.
"""

from __future__ import annotations

import queue
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tg
from test_router import RouterThread, start_replicas
from tritonclient.utils import InferenceServerException

from helpers import python_model
from kubeinfer.local.router import Backend
from kubeinfer.testing import ServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

Answer = tuple[tg.InferResult | None, InferenceServerException | None]


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return python_model(tmp_path_factory.mktemp("stream"), "m", "SlowDouble", "{delay: 0.0}")


@pytest.fixture(scope="module")
def pair(spec: Path) -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield start_replicas(spec, 2, started)
    for p in started:
        p.kill()


@pytest.fixture
def router() -> Iterator[RouterThread]:
    r = RouterThread(per_try_timeout=1.0)
    yield r
    r.close()


def backend(s: ServerProcess) -> Backend:
    return Backend(f"r{s.pid}", "127.0.0.1", s.http_port, s.grpc_port)


def gone_backend() -> Backend:
    """A backend whose ports refuse connections, as a replica that just died."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    return Backend("gone", "127.0.0.1", port, port)


def inputs(x: np.ndarray) -> list[tg.InferInput]:
    inp = tg.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return [inp]


def rows(i: int) -> np.ndarray:
    return np.arange(i, i + 6, dtype=np.float32).reshape(3, 2) / (i + 1)


class Stream:
    """A ``tritonclient.grpc`` stream whose callback puts each answer on a queue."""

    def __init__(self, url: str) -> None:
        self.client = tg.InferenceServerClient(url)
        self.answers: queue.Queue[Answer] = queue.Queue()
        self.client.start_stream(callback=lambda result, error: self.answers.put((result, error)))

    def send(self, x: np.ndarray, request_id: str, model: str = "m") -> None:
        self.client.async_stream_infer(model, inputs(x), request_id=request_id)

    def take(self, n: int) -> list[Answer]:
        return [self.answers.get(timeout=10) for _ in range(n)]

    def close(self, cancel: bool = False) -> None:
        self.client.stop_stream(cancel_requests=cancel)
        self.client.close()


def stream_answers(url: str, n: int) -> dict[str, np.ndarray]:
    stream = Stream(url)
    try:
        for i in range(n):
            stream.send(rows(i), f"req-{i}")
        out = {}
        for result, error in stream.take(n):
            assert error is None and result is not None
            out[result.get_response().id] = result.as_numpy("y")
        return out
    finally:
        stream.close()


def wait_idle(router: RouterThread) -> None:
    deadline = time.monotonic() + 5
    while router.stats().outstanding and time.monotonic() < deadline:
        time.sleep(0.02)
    assert router.stats().outstanding == 0


def test_stream_answers_through_the_router_equal_the_replicas_own(
    router: RouterThread, pair: list[ServerProcess]
) -> None:
    router.set_backends(pair)
    direct = stream_answers(pair[0].grpc_url, 8)
    for _ in range(3):
        routed = stream_answers(f"127.0.0.1:{router.grpc_port}", 8)
        assert sorted(routed) == sorted(direct) == [f"req-{i}" for i in range(8)]
        for rid, y in routed.items():
            np.testing.assert_array_equal(y, direct[rid])
    wait_idle(router)
    stats = router.stats()
    assert stats.requests == 3 and stats.retries == 0


def test_an_invalid_request_gets_its_error_in_the_stream_and_the_stream_goes_on(
    router: RouterThread, pair: list[ServerProcess]
) -> None:
    router.set_backends(pair)
    stream = Stream(f"127.0.0.1:{router.grpc_port}")
    try:
        stream.send(rows(0), "ok-0")
        assert stream.take(1)[0][1] is None
        stream.send(rows(1).reshape(-1), "bad-shape")
        stream.send(rows(2), "bad-model", model="no-such-model")
        answers = stream.take(2)
        assert all(result is None and error is not None for result, error in answers)
        messages = [str(error) for _, error in answers]
        assert any("has shape [6]" in m for m in messages) and any(
            "unknown model 'no-such-model'" in m for m in messages
        )
        stream.send(rows(3), "ok-3")
        result, error = stream.take(1)[0]
        assert error is None and result is not None and result.get_response().id == "ok-3"
        np.testing.assert_array_equal(result.as_numpy("y"), rows(3) * 2)
    finally:
        stream.close()
    wait_idle(router)


def test_a_stream_whose_backend_is_gone_is_retried_on_another_with_its_requests(
    router: RouterThread, pair: list[ServerProcess]
) -> None:
    router.call(setattr, router.router, "_rng", lambda: 0.0)  # power of two choices then takes the first: the gone one
    router.call(router.router.set_backends, [gone_backend(), backend(pair[0])])
    answers = stream_answers(f"127.0.0.1:{router.grpc_port}", 4)
    assert sorted(answers) == [f"req-{i}" for i in range(4)]
    for i in range(4):
        np.testing.assert_array_equal(answers[f"req-{i}"], rows(i) * 2)
    stats = router.stats()
    assert stats.retries == 1 and stats.backends[f"r{pair[0].pid}"].total == 1
    wait_idle(router)


def test_a_cancelled_stream_releases_its_backend(router: RouterThread, pair: list[ServerProcess]) -> None:
    router.set_backends(pair[:1])
    stream = Stream(f"127.0.0.1:{router.grpc_port}")
    stream.send(rows(0), "first")
    assert stream.take(1)[0][1] is None
    assert router.stats().outstanding == 1  # the stream holds its backend while open
    stream.close(cancel=True)
    wait_idle(router)


def test_a_backend_dying_after_a_response_ends_the_stream_with_its_status_unretried(
    router: RouterThread, spec: Path, pair: list[ServerProcess]
) -> None:
    started: list[ServerProcess] = []
    try:
        (doomed,) = start_replicas(spec, 1, started)
        router.call(setattr, router.router, "_rng", lambda: 0.0)
        router.call(router.router.set_backends, [backend(doomed), backend(pair[0])])
        stream = Stream(f"127.0.0.1:{router.grpc_port}")
        try:
            stream.send(rows(0), "first")
            assert stream.take(1)[0][1] is None
            doomed.kill()
            result, error = stream.take(1)[0]
            assert result is None and error is not None and error.status() == "StatusCode.UNAVAILABLE"
        finally:
            stream.close()
        assert router.stats().retries == 0
        wait_idle(router)
    finally:
        for p in started:
            p.kill()
