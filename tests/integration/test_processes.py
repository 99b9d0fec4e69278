"""A replica of several server processes (``server.processes``): shared ports, one set of metrics, one lifecycle."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import pytest
import tritonclient.grpc as tg
from prometheus_client.parser import text_string_to_metric_families

from helpers import python_model
from kubeinfer.server.processes import threads_per_process
from kubeinfer.testing import ServerProcess

BODY = json.dumps({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]}).encode()


def _pid_of_answer(s: ServerProcess) -> int:
    status, _, body = s.post("/v2/models/pid/infer", BODY)
    assert status == 200, body
    return int(json.loads(body)["outputs"][0]["data"][0])


def _children(pid: int) -> list[int]:
    return [c.pid for c in psutil.Process(pid).children()]


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_running(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def two(tmp_path: Path, server_factory) -> ServerProcess:  # type: ignore[no-untyped-def]
    spec = python_model(tmp_path, "pid", "Pid", "{delay: 0.02}", "  server: {processes: 2}\n")
    return server_factory(spec, grpc=True)  # type: ignore[no-any-return]


def test_processes_share_the_http_and_grpc_ports(two: ServerProcess) -> None:
    children = _children(two.pid)
    assert len(children) == 2
    with ThreadPoolExecutor(32) as pool:
        http = Counter(pool.map(lambda _: _pid_of_answer(two), range(64)))
    assert set(http) == set(children), http  # every request answered, by both processes
    grpc = Counter()
    for _ in range(16):
        with tg.InferenceServerClient(two.grpc_url) as c:
            x = tg.InferInput("x", [1, 1], "FP32")
            x.set_data_from_numpy(np.ones((1, 1), np.float32))
            grpc[int(c.infer("pid", [x]).as_numpy("pid")[0, 0])] += 1
    assert set(grpc) == set(children), grpc


def test_the_replica_is_ready_only_once_its_first_process_serves(tmp_path: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    # The first process listens from the start (it answers probes while it loads); a sibling that loaded sooner
    # must not answer "ready" for it, nor take gRPC calls, before it serves: from the first ready answer on, every
    # request on a new connection is served, whichever process the kernel hands it to.
    spec = python_model(tmp_path, "pid", "Pid", "{first_load_delay: 3}", "  server: {processes: 2}\n")
    s = server_factory(spec, grpc=True)  # returns at the first 200 from /v2/health/ready
    with ThreadPoolExecutor(8) as pool:
        pids = list(pool.map(lambda _: _pid_of_answer(s), range(48)))
    assert set(pids) <= set(_children(s.pid)), pids
    for _ in range(8):
        with tg.InferenceServerClient(s.grpc_url) as c:
            x = tg.InferInput("x", [1, 1], "FP32")
            x.set_data_from_numpy(np.ones((1, 1), np.float32))
            assert int(c.infer("pid", [x]).as_numpy("pid")[0, 0]) in _children(s.pid)
    deadline = time.monotonic() + 10
    while len(set(pids)) < 2 and time.monotonic() < deadline:  # the sibling joins once the first is ready
        pids.append(_pid_of_answer(s))
    assert set(pids) == set(_children(s.pid)), Counter(pids)


def test_a_process_that_fails_to_load_keeps_the_replica_not_ready_and_says_why(tmp_path: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    spec = python_model(tmp_path, "pid", "Pid", "{fail_after_first: true}", "  server: {processes: 2}\n")
    s = server_factory(spec, wait_ready=False)
    deadline, reason = time.monotonic() + 30, ""
    while "failed to load its model" not in reason and time.monotonic() < deadline:
        time.sleep(0.1)
        with contextlib.suppress(OSError):
            status, body = s.get("/readyz")
            assert status == 503, body  # never ready: one of its processes cannot serve
            reason = json.loads(body).get("reason", "")
    assert "server process 1 of this replica failed to load its model" in reason, reason
    first = min(psutil.Process(s.pid).children(), key=lambda p: (p.create_time(), p.pid)).pid
    assert {_pid_of_answer(s) for _ in range(8)} == {first}  # the first serves what reaches it; the other never joined


def _listening_inodes(pid: int, port: int) -> set[int]:
    """The inodes of the TCP sockets listening on ``port`` that process ``pid`` holds (from /proc)."""
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            held.add(int(target[8:-1]))
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                listening.add(int(f[9]))
    return held & listening


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc (Linux)")
def test_each_process_listens_on_the_http_port_with_a_socket_of_its_own(two: ServerProcess) -> None:
    port = int(two.url.rsplit(":", 1)[1])
    inodes = [_listening_inodes(pid, port) for pid in _children(two.pid)]
    assert all(len(i) == 1 for i in inodes), inodes
    assert inodes[0] != inodes[1]  # not one shared listener: the kernel spreads connections (SO_REUSEPORT)
    assert not _listening_inodes(two.pid, port)  # the parent holds the port bound, not listening


def test_a_burst_of_connections_is_spread_over_the_processes(two: ServerProcess) -> None:
    # 64 clients connecting at once, as a load generator or a router's pool does. On one shared listening socket the
    # first process to wake accepted all that were pending (48/16 and 61/3 splits measured); with a listener each
    # (SO_REUSEPORT) the kernel spreads them by address: 32 +- 4, and fewer than 16 on one side is a 1-in-30,000 draw.
    host, port = two.url.removeprefix("http://").rsplit(":", 1)
    # The replica is ready once one process is; the other opens its listener after its own model loads (slower on a
    # busy machine): a burst before that can only go to the first.
    deadline = time.monotonic() + 30
    while not all(_listening_inodes(pid, int(port)) for pid in _children(two.pid)):
        assert time.monotonic() < deadline, "the second process never listened"
        time.sleep(0.1)
    conns = [socket.create_connection((host, int(port)), timeout=10) for _ in range(64)]
    try:
        req = (
            f"POST /v2/models/pid/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(BODY)}\r\n\r\n"
        ).encode() + BODY
        for c in conns:
            c.sendall(req)
        pids = Counter()
        for c in conns:
            data = b""
            while b"}]}" not in data:
                chunk = c.recv(65536)
                assert chunk, data
                data += chunk
            pids[int(json.loads(data.split(b"\r\n\r\n", 1)[1])["outputs"][0]["data"][0])] += 1
    finally:
        for c in conns:
            c.close()
    assert len(pids) == 2 and min(pids.values()) >= 16, pids


def test_metrics_count_the_whole_replica(two: ServerProcess) -> None:
    with ThreadPoolExecutor(16) as pool:
        served = Counter(pool.map(lambda _: _pid_of_answer(two), range(48)))
    assert len(served) == 2
    time.sleep(1.2)  # each process publishes its figures every half second
    for _ in range(6):  # fresh connections: the scrapes land on either process
        status, text = two.get("/metrics")
        assert status == 200
        fams = {f.name: f for f in text_string_to_metric_families(text.decode())}
        requests = sum(s.value for s in fams["kubeinfer_requests"].samples if s.name == "kubeinfer_requests_total")
        rows = sum(s.value for s in fams["kubeinfer_inference_rows"].samples)
        count = next(s.value for s in fams["kubeinfer_batch_size"].samples if s.name == "kubeinfer_batch_size_count")
        ready = [s.value for s in fams["kubeinfer_model_ready"].samples]
        assert (requests, rows, ready) == (48, 48, [1.0])
        assert count == sum(s.value for s in fams["kubeinfer_model_executions"].samples)


def test_sigterm_drains_every_process_and_exits_zero(tmp_path: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    s = server_factory(python_model(tmp_path, "pid", "Pid", "{delay: 0.2}", "  server: {processes: 2}\n"))
    children = _children(s.pid)
    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(s.post, "/v2/models/pid/infer", BODY, None, 30) for _ in range(16)]
        time.sleep(0.15)  # sent and accepted, most still queued behind the slow model
        s.terminate()
        results = [f.result() for f in futures]
    assert [r[0] for r in results] == [200] * 16
    assert {int(json.loads(r[2])["outputs"][0]["data"][0]) for r in results} == set(children)
    assert s.wait(30) == 0
    assert _gone(children, 5)


def test_a_process_that_dies_takes_the_replica_down_to_be_restarted(two: ServerProcess) -> None:
    children = _children(two.pid)
    os.kill(children[0], signal.SIGKILL)
    assert two.wait(30) == 1
    assert _gone(children, 5)
    assert "exited with -9; stopping the replica" in two.log()


def test_processes_exit_when_their_parent_is_killed(two: ServerProcess) -> None:
    assert two.proc is not None
    children = _children(two.pid)
    two.proc.kill()  # the parent alone, as an OOM kill would
    two.proc.wait(5)
    assert _gone(children, 10)


def test_each_process_gets_an_equal_share_of_the_threads() -> None:
    assert threads_per_process(2, {"OMP_NUM_THREADS": "4"}) == 2
    assert threads_per_process(3, {"OMP_NUM_THREADS": "4"}) == 1
    assert threads_per_process(4, {"OMP_NUM_THREADS": "2"}) == 1
    assert threads_per_process(1, {"OMP_NUM_THREADS": "3"}) == 3
    assert threads_per_process(1, {}) == len(os.sched_getaffinity(0))


def test_a_process_whose_event_loop_hangs_is_killed_and_the_replica_restarted(tmp_path: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    spec = python_model(tmp_path, "pid", "Pid", "{}", "  server: {processes: 2}\n")
    s = server_factory(spec, env={"KUBEINFER_PROCESS_HANG_SECONDS": "1.5"})
    children = _children(s.pid)
    time.sleep(1.0)  # both have published a ready snapshot
    os.kill(children[1], signal.SIGSTOP)  # its loop stops: no snapshot, no answers
    assert s.wait(30) == 1
    assert "has not run its event loop" in s.log()
    assert _gone(children, 5)


def test_a_replica_stopped_and_continued_whole_is_not_taken_for_hung(tmp_path: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    spec = python_model(tmp_path, "pid", "Pid", "{}", "  server: {processes: 2}\n")
    s = server_factory(spec, env={"KUBEINFER_PROCESS_HANG_SECONDS": "1.5"})
    time.sleep(1.0)
    os.killpg(s.pid, signal.SIGSTOP)  # the parent too, as a debugger or a sleeping laptop would
    time.sleep(3.0)
    os.killpg(s.pid, signal.SIGCONT)
    time.sleep(2.5)
    assert s.proc is not None and s.proc.poll() is None, s.log()
    assert _pid_of_answer(s) in _children(s.pid)
