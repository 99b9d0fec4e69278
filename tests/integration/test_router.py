"""The router in front of real replica processes (``kubeinfer serve``), driven by real clients.

The router runs on a uvloop event loop in a background thread, as it runs inside ``kubeinfer up``; the tests talk to
it over 127.0.0.1 with urllib, http.client, tritonclient.http and tritonclient.grpc.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
import uvloop

from helpers import python_model
from kubeinfer.local.router import Backend, Router, RouterStats
from kubeinfer.testing import ServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


class RouterThread:
    """A Router on its own uvloop loop in a daemon thread; calls cross over with ``call``."""

    def __init__(self, **kwargs: Any) -> None:
        self.loop = uvloop.new_event_loop()
        self.router = Router(**kwargs)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="router-loop")
        self.thread.start()
        self.http_port, self.grpc_port = self.run(self.router.start("127.0.0.1", 0, 0))

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(15)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        async def go() -> Any:
            return fn(*args)

        return self.run(go())

    def set_backends(self, servers: list[ServerProcess]) -> None:
        backends = [Backend(f"r{s.pid}", "127.0.0.1", s.http_port, s.grpc_port) for s in servers]
        self.call(self.router.set_backends, backends)

    def stats(self) -> RouterStats:
        return self.call(self.router.stats)  # type: ignore[no-any-return]

    def close(self) -> None:
        self.run(self.router.stop(grace=1.0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def infer_body(rows: list[list[float]]) -> bytes:
    return json.dumps(
        {"inputs": [{"name": "x", "shape": [len(rows), len(rows[0])], "datatype": "FP32", "data": rows}]}
    ).encode()


def post(port: int, body: bytes, path: str = "/v2/models/m/infer", timeout: float = 20) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


@pytest.fixture
def router() -> Iterator[RouterThread]:
    r = RouterThread(per_try_timeout=1.0)
    yield r
    r.close()


def start_replicas(spec: Path, n: int, started: list[ServerProcess]) -> list[ServerProcess]:
    """Start ``n`` replicas at once (their start-up is the slow part of these tests)."""
    procs = [ServerProcess(spec, grpc=True) for _ in range(n)]
    started += procs
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda p: p.start(), procs))


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory) -> dict[float, Path]:
    out = {}
    for delay in (0.0, 0.02):
        folder = tmp_path_factory.mktemp(f"router-{delay}")
        out[delay] = python_model(folder, "m", "SlowDouble", f"{{delay: {delay}}}")
    return out


@pytest.fixture
def replicas(specs: dict[float, Path]) -> Iterator[Callable[..., list[ServerProcess]]]:
    started: list[ServerProcess] = []

    def make(n: int = 2, delay: float = 0.0) -> list[ServerProcess]:
        return start_replicas(specs[delay], n, started)

    yield make
    for p in started:
        p.kill()


@pytest.fixture(scope="module")
def pair(specs: dict[float, Path]) -> Iterator[list[ServerProcess]]:
    """Two replicas shared by the tests that leave them running."""
    started: list[ServerProcess] = []
    yield start_replicas(specs[0.0], 2, started)
    for p in started:
        p.kill()


def test_requests_are_spread_over_two_backends(router: RouterThread, pair: list[ServerProcess]) -> None:
    a, b = pair
    router.set_backends([a, b])
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: post(router.http_port, infer_body([[float(i)]])), range(80)))
    assert all(s == 200 for s, _ in results)
    assert json.loads(results[3][1])["outputs"][0]["data"] == [6.0]
    stats = router.stats()
    totals = {k: v.total for k, v in stats.backends.items()}
    assert sum(totals.values()) == 80 and min(totals.values()) >= 15, totals
    assert stats.requests == 80 and stats.retries == 0
    for s in (a, b):  # the replicas saw the requests too
        _, metrics = s.get("/metrics")
        assert b'kubeinfer_requests_total{code="200",model="m",protocol="v2",version="1"}' in metrics
    status, text = router_get(router.http_port, "/metrics")
    assert status == 200 and f'kubeinfer_router_backend_tries_total{{backend="r{a.pid}"}}' in text.decode()


def router_get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def _steady_load(port: int, stop: threading.Event, results: list[int], body: bytes) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)  # kept alive, as real clients do
    while not stop.is_set():
        try:
            conn.request("POST", "/v2/models/m/infer", body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            results.append(r.status)
        except (OSError, http.client.HTTPException):
            results.append(-1)
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    conn.close()


def _load_while(port: int, action: Callable[[], None], before: float = 0.7, after: float = 1.5) -> list[int]:
    stop = threading.Event()
    results: list[int] = []
    threads = [threading.Thread(target=_steady_load, args=(port, stop, results, infer_body([[1.0]]))) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(before)
    action()
    time.sleep(after)
    stop.set()
    for t in threads:
        t.join(20)
    return results


def test_sigkilled_backend_under_steady_load_costs_no_request(
    router: RouterThread, replicas: Callable[..., list[ServerProcess]]
) -> None:
    a, b = replicas(2, delay=0.02)
    router.set_backends([a, b])
    results = _load_while(router.http_port, lambda: os.kill(a.pid, signal.SIGKILL))
    failed = [s for s in results if s != 200]
    assert not failed, f"{len(failed)} of {len(results)} failed: {sorted(set(failed))}"
    assert len(results) > 100
    stats = router.stats()
    assert stats.retries >= 1  # requests in flight on the killed replica went to the other one
    assert stats.backends[f"r{b.pid}"].total > stats.backends[f"r{a.pid}"].total


def test_draining_backend_under_steady_load_costs_no_request(
    router: RouterThread, replicas: Callable[..., list[ServerProcess]]
) -> None:
    a, b = replicas(2, delay=0.02)
    router.set_backends([a, b])

    def drain() -> None:
        a.terminate()  # SIGTERM: the replica drains; the controller takes it out of the set soon after
        time.sleep(0.2)
        router.set_backends([b])

    results = _load_while(router.http_port, drain)
    failed = [s for s in results if s != 200]
    assert not failed, f"{len(failed)} of {len(results)} failed: {sorted(set(failed))}"
    assert a.wait(10) == 0


def test_hung_backend_hits_the_per_try_timeout_and_is_retried_elsewhere(
    router: RouterThread, replicas: Callable[..., list[ServerProcess]]
) -> None:
    hung, good = replicas(2)
    router.set_backends([hung, good])
    os.kill(hung.pid, signal.SIGSTOP)  # hung: the kernel still accepts connections, nothing answers
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: post(router.http_port, infer_body([[1.0]])), range(8)))
    assert [s for s, _ in results] == [200] * 8
    assert time.monotonic() - started < 8  # each request waited at most one per-try timeout (1 s)
    stats = router.stats()
    assert router.call(lambda: router.router.retry_reasons.get("timeout", 0)) >= 1
    assert stats.backends[f"r{good.pid}"].total >= 8


def test_no_backend_buffers_then_serves_when_one_is_added(replicas: Callable[..., list[ServerProcess]]) -> None:
    woken = threading.Event()
    r = RouterThread(buffer_timeout=20.0, on_buffered=woken.set)
    try:
        with ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(post, r.http_port, infer_body([[2.0]])) for _ in range(3)]
            assert woken.wait(5)
            deadline = time.monotonic() + 5
            while r.stats().buffered < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert r.stats().buffered == 3
            (replica,) = replicas(1)  # scale from zero: the replica starts only now
            r.set_backends([replica])
            results = [f.result(20) for f in futures]
        assert [s for s, _ in results] == [200] * 3
        assert json.loads(results[0][1])["outputs"][0]["data"] == [4.0]
        stats = r.stats()
        assert stats.buffered == 0 and stats.buffered_total == 3
    finally:
        r.close()


def test_buffer_full_and_buffer_timeout_answer_503_with_retry_after() -> None:
    r = RouterThread(buffer_limit=1, buffer_timeout=1.0)
    try:
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(post, r.http_port, infer_body([[1.0]]))
            deadline = time.monotonic() + 5
            while r.stats().buffered < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            conn = http.client.HTTPConnection("127.0.0.1", r.http_port, timeout=5)
            conn.request("POST", "/v2/models/m/infer", infer_body([[1.0]]))
            resp = conn.getresponse()
            assert resp.status == 503 and resp.getheader("Retry-After") == "1"
            assert "buffer is full" in json.loads(resp.read())["error"]
            conn.close()
            status, body = first.result(10)
        assert status == 503 and "buffer timeout" in json.loads(body)["error"]
        assert r.stats().rejected == 2
    finally:
        r.close()


def test_tritonclient_grpc_infer_through_the_router(router: RouterThread, pair: list[ServerProcess]) -> None:
    router.set_backends(pair)
    client = tg.InferenceServerClient(f"127.0.0.1:{router.grpc_port}")
    try:
        assert client.is_server_ready() and client.is_model_ready("m")
        assert client.get_model_metadata("m").name == "m"
        x = np.arange(6, dtype=np.float32).reshape(3, 2)
        for _ in range(6):
            inp = tg.InferInput("x", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            result = client.infer("m", [inp])
            np.testing.assert_array_equal(result.as_numpy("y"), x * 2)
    finally:
        client.close()
    stats = router.stats()
    assert stats.requests >= 8 and all(v.outstanding == 0 for v in stats.backends.values())


def test_grpc_retries_when_a_backend_is_gone(
    router: RouterThread, replicas: Callable[..., list[ServerProcess]]
) -> None:
    a, b = replicas(2)
    router.set_backends([a, b])
    a.kill()
    client = tg.InferenceServerClient(f"127.0.0.1:{router.grpc_port}")
    try:
        x = np.ones((1, 1), dtype=np.float32)
        for _ in range(6):
            inp = tg.InferInput("x", [1, 1], "FP32")
            inp.set_data_from_numpy(x)
            np.testing.assert_array_equal(client.infer("m", [inp]).as_numpy("y"), x * 2)
    finally:
        client.close()


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_http_binary_extension_through_the_router(
    router: RouterThread, pair: list[ServerProcess], binary: bool
) -> None:
    router.set_backends(pair[:1])
    client = th.InferenceServerClient(f"127.0.0.1:{router.http_port}")
    try:
        assert client.is_server_ready() and client.is_model_ready("m")
        x = np.random.default_rng(0).random((4, 3), dtype=np.float32)
        inp = th.InferInput("x", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        result = client.infer("m", [inp], outputs=[th.InferRequestedOutput("y", binary_data=binary)])
        np.testing.assert_allclose(result.as_numpy("y"), x * 2)
    finally:
        client.close()


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self) -> None:
        import socket

        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def test_replica_serves_http_on_its_unix_socket_too(specs: dict[float, Path], tmp_path: Path) -> None:
    sock = tmp_path / "r.sock"
    with ServerProcess(specs[0.0], grpc=False, args=["--uds", str(sock)]) as s:
        assert oct(sock.stat().st_mode & 0o777) == "0o600"  # user-only, like the control endpoint's token
        conn = _UnixHTTPConnection(str(sock))
        for _ in range(3):  # keep-alive on the Unix socket
            conn.request("POST", "/v2/models/m/infer", infer_body([[2.0]]), {"Content-Type": "application/json"})
            r = conn.getresponse()
            assert r.status == 200 and json.loads(r.read())["outputs"][0]["data"] == [4.0]
        conn.close()
        assert post(s.http_port, infer_body([[2.0]]))[0] == 200  # and on TCP as before
    assert not sock.exists()  # removed on a clean exit


def test_router_reaches_replicas_by_unix_socket_and_retries_a_killed_one(
    router: RouterThread, specs: dict[float, Path], tmp_path: Path
) -> None:
    socks = [tmp_path / "a.sock", tmp_path / "b.sock"]
    servers = [ServerProcess(specs[0.02], grpc=False, args=["--uds", str(p)]) for p in socks]
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda p: p.start(), servers)
    try:
        # The TCP ports given to the router are closed ones: only the Unix sockets can serve.
        backends = [Backend(f"r{s.pid}", "127.0.0.1", 1, None, uds=str(p)) for s, p in zip((a, b), socks, strict=True)]
        router.call(router.router.set_backends, backends)
        results = _load_while(router.http_port, lambda: os.kill(a.pid, signal.SIGKILL))
        failed = [s for s in results if s != 200]
        assert not failed, f"{len(failed)} of {len(results)} failed: {sorted(set(failed))}"
        assert len(results) > 100
        stats = router.stats()
        assert stats.retries >= 1 and stats.backends[f"r{b.pid}"].total > 0
    finally:
        for s in (a, b):
            s.kill()


def test_a_request_that_kills_replicas_is_not_fanned_out_to_all_of_them(router: RouterThread, tmp_path: Path) -> None:
    spec = python_model(tmp_path, "m", "DiesOnNegative", extra="  batching: {enabled: false}\n")
    started: list[ServerProcess] = []
    try:
        procs = start_replicas(spec, 3, started)
        router.set_backends(procs)
        assert post(router.http_port, infer_body([[1.0, 2.0]]))[0] == 200
        status, body = post(router.http_port, infer_body([[-1.0, 2.0]]))
        assert status == 502 and b"not retried" in body, body
        time.sleep(0.5)
        dead = [p for p in procs if p.proc is not None and p.proc.poll() is not None]
        assert len(dead) == 2, "the poison request was tried on one replica, retried once, then refused"
        assert router.call(lambda: router.router.poison_guarded) == 1
    finally:
        for p in started:
            p.kill()


def test_router_serves_http_and_grpc_of_a_replica_without_tcp_over_its_processes_sockets(
    router: RouterThread, tmp_path: Path
) -> None:
    """``serve --no-tcp`` (how ``kubeinfer up`` runs replicas): no inet listener, HTTP on the Unix socket, gRPC on one
    socket per process, the router taking calls in turn to each."""
    import psutil

    spec = python_model(tmp_path, "pid", "Pid", "{delay: 0.0}", "  server: {processes: 2}\n")
    sock = tmp_path / "r.sock"
    with ServerProcess(spec, ["--uds", str(sock), "--no-tcp"], grpc=True, wait_ready=False) as s:
        info = s.announced
        assert info["http"] is None and info["grpc"] is None and info["uds"] == str(sock)
        grpc_socks = info["grpc_uds"]
        assert len(grpc_socks) == 2
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # both processes loaded: each answers on its own gRPC socket
            try:
                if all(tg.InferenceServerClient(f"unix:{p}").is_model_ready("pid") for p in grpc_socks):
                    break
            except Exception:
                pass
            time.sleep(0.1)
        assert all(oct(Path(p).stat().st_mode & 0o777) == "0o600" for p in grpc_socks)  # user-only
        children = {c.pid for c in psutil.Process(s.pid).children()}
        procs = [psutil.Process(s.pid), *(psutil.Process(c) for c in children)]
        assert [c for q in procs for c in q.net_connections("inet") if c.status == psutil.CONN_LISTEN] == []
        backend = Backend(f"r{s.pid}", "127.0.0.1", None, None, uds=str(sock), grpc_uds=tuple(grpc_socks))
        router.call(router.router.set_backends, [backend])
        body = json.dumps({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]}).encode()
        status, answer = post(router.http_port, body, path="/v2/models/pid/infer")
        assert status == 200 and json.loads(answer)["outputs"][0]["data"][0] in children
        answered = set()
        with tg.InferenceServerClient(f"127.0.0.1:{router.grpc_port}") as client:
            x = tg.InferInput("x", [1, 1], "FP32")
            x.set_data_from_numpy(np.ones((1, 1), np.float32))
            for _ in range(4):
                answered.add(int(client.infer("pid", [x]).as_numpy("pid")[0, 0]))
        assert answered == children
    assert not sock.exists() and not any(Path(p).exists() for p in grpc_socks)  # removed on a clean exit


def test_grpc_calls_follow_the_split_and_pin_a_revision_by_metadata(
    router: RouterThread, pair: list[ServerProcess]
) -> None:
    """A canary split over gRPC: unpinned calls go by weight (here all to revision 1), ``x-kubeinfer-revision``
    metadata pins revision 2, each call is counted on its revision, and an unknown revision is NOT_FOUND."""
    backends = [
        Backend(f"r{s.pid}", "127.0.0.1", s.http_port, s.grpc_port, revision=rev)
        for s, rev in zip(pair, (1, 2), strict=True)
    ]
    router.call(router.router.set_backends, backends)
    router.call(router.router.set_split, [(1, 100), (2, 0)])
    x = np.arange(2, dtype=np.float32).reshape(1, 2)
    with tg.InferenceServerClient(f"127.0.0.1:{router.grpc_port}") as client:

        def infer(headers: dict[str, str] | None = None) -> None:
            inp = tg.InferInput("x", [1, 2], "FP32")
            inp.set_data_from_numpy(x)
            np.testing.assert_array_equal(client.infer("m", [inp], headers=headers).as_numpy("y"), x * 2)

        for _ in range(4):
            infer()
        for _ in range(3):
            infer({"x-kubeinfer-revision": "canary"})
        with pytest.raises(tg.InferenceServerException, match="not a revision with a ready replica"):
            infer({"x-kubeinfer-revision": "9"})
    revisions = router.stats().revisions
    assert (revisions[1].requests, revisions[2].requests) == (4, 3)
    assert revisions[1].errors == revisions[2].errors == 0
