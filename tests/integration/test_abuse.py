"""Abuse at the socket level, against a replica (``kubeinfer serve``) and against the router in front of it.

Each case is what an attacker or a broken client does with a raw TCP socket on 127.0.0.1: send nothing, half a head,
half a body, a ``Content-Length`` that lies either way, a head too large or with too many fields, more connections
than allowed, a client that pipelines and never reads. Each must end with a clear 4xx/503 (a JSON body saying what
was wrong) or a closed connection within its configured timeout -- never a hang -- and the service must answer the
next good request. The limits are set small here (the spec's ``server.limits``) so that every timeout is seconds.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from test_router import RouterThread

from helpers import python_model
from kubeinfer.local.router import ConnLimits
from kubeinfer.testing import ServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0
IDLE_TIMEOUT = 2.0
MAX_CONNECTIONS = 24
MAX_HEADER_BYTES = 8192
MAX_HEADERS = 32
MAX_BODY = 1 << 20
SWEEP = 0.6  # the servers check their connections every half second
LIMITS = (
    f"  server: {{limits: {{headerTimeoutSeconds: {HEADER_TIMEOUT}, bodyTimeoutSeconds: {BODY_TIMEOUT}, "
    f"idleTimeoutSeconds: {IDLE_TIMEOUT}, maxConnections: {MAX_CONNECTIONS}, maxHeaderBytes: {MAX_HEADER_BYTES}, "
    f"maxHeaders: {MAX_HEADERS}, maxBodySize: 1Mi}}}}\n"
)
PATH = "/v2/models/m/infer"
GOOD = json.dumps({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}).encode()


@dataclass
class Reply:
    status: int | None  # None: closed (or timed out) with no answer
    body: bytes
    seconds: float
    closed: bool


def exchange(port: int, data: bytes, wait: float) -> Reply:
    """Send ``data`` on a new connection, then read until the server closes it or ``wait`` seconds pass."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        if data:
            s.sendall(data)
        buf = b""
        closed = False
        s.settimeout(0.2)
        while time.monotonic() - t0 < wait:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            buf += chunk
    seconds = time.monotonic() - t0
    status = int(buf.split(b" ", 2)[1]) if buf.startswith(b"HTTP/1.") else None
    body = buf.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in buf else b""
    return Reply(status, body, seconds, closed)


def head(length: int | None = None, extra: bytes = b"") -> bytes:
    cl = b"Content-Length: %d\r\n" % length if length is not None else b""
    return (
        b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + cl + extra + b"\r\n"
    )


def good(port: int) -> int | None:
    return exchange(port, head(len(GOOD)) + GOOD, 10).status


@pytest.fixture(scope="module")
def replica(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    spec = python_model(tmp_path_factory.mktemp("abuse"), "m", "SlowDouble", "{delay: 0}", LIMITS)
    with ServerProcess(spec, grpc=False) as s:
        yield s


@pytest.fixture(scope="module")
def router(replica: ServerProcess) -> Iterator[RouterThread]:
    limits = ConnLimits(
        header_timeout=HEADER_TIMEOUT,
        body_timeout=BODY_TIMEOUT,
        idle_timeout=IDLE_TIMEOUT,
        max_connections=MAX_CONNECTIONS,
        max_header_bytes=MAX_HEADER_BYTES,
        max_headers=MAX_HEADERS,
    )
    r = RouterThread(per_try_timeout=5.0, max_body_bytes=MAX_BODY, conn_limits=limits)
    r.set_backends([replica])
    yield r
    r.close()


@pytest.fixture(params=["replica", "router"])
def port(request: pytest.FixtureRequest) -> int:
    if request.param == "replica":
        return int(request.getfixturevalue("replica").http_port)
    return int(request.getfixturevalue("router").http_port)


def error_of(reply: Reply) -> str:
    doc = json.loads(reply.body)
    assert set(doc) == {"error"} and doc["error"]
    return str(doc["error"])


CASES: dict[str, tuple[bytes, float, Callable[[Reply], None]]] = {}


def case(name: str, data: bytes, wait: float) -> Callable[[Callable[[Reply], None]], Callable[[Reply], None]]:
    def register(check: Callable[[Reply], None]) -> Callable[[Reply], None]:
        CASES[name] = (data, wait, check)
        return check

    return register


@case("nothing sent", b"", max(HEADER_TIMEOUT, IDLE_TIMEOUT) + SWEEP + 2)
def _nothing(r: Reply) -> None:
    assert r.closed and r.status in (None, 408), r
    assert r.seconds < max(HEADER_TIMEOUT, IDLE_TIMEOUT) + SWEEP + 1.5


@case("half a head", b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: x\r\n", HEADER_TIMEOUT + SWEEP + 3)
def _half_head(r: Reply) -> None:
    assert r.status == 408 and r.closed, r
    assert "headerTimeoutSeconds" in error_of(r)
    assert r.seconds < HEADER_TIMEOUT + SWEEP + 1


@case("half a body (Content-Length larger than the body)", head(100) + b'{"inputs"', BODY_TIMEOUT + SWEEP + 3)
def _half_body(r: Reply) -> None:
    assert r.status == 408 and r.closed, r
    assert "bodyTimeoutSeconds" in error_of(r)
    assert r.seconds < BODY_TIMEOUT + SWEEP + 1


@case("declared length over the limit, small body", head(10**9) + b"{}", 3)
def _declared(r: Reply) -> None:
    assert r.status == 413, r
    assert r.seconds < 1.5  # refused on the declaration, not after a timeout


@case("body longer than its Content-Length", head(5) + GOOD + b"GARBAGE\r\n\r\n", 4)
def _longer(r: Reply) -> None:
    # The first 5 bytes are a request (invalid JSON: 400); the rest is not HTTP: 400, and the connection closes.
    assert r.status == 400 and r.closed, r
    assert r.seconds < 3


@case("head larger than maxHeaderBytes", head(2, b"X-Big: " + b"a" * (MAX_HEADER_BYTES + 100) + b"\r\n") + b"{}", 4)
def _big_head(r: Reply) -> None:
    assert r.status == 431 and r.closed, r
    assert "maxHeaderBytes" in error_of(r)


@case("more header fields than maxHeaders", head(2, b"".join(b"X-%d: 1\r\n" % i for i in range(200))) + b"{}", 4)
def _many_headers(r: Reply) -> None:
    assert r.status == 431 and r.closed, r


@case("request line longer than maxHeaderBytes", b"GET /" + b"a" * (MAX_HEADER_BYTES + 10) + b" HTTP/1.1\r\n\r\n", 4)
def _long_url(r: Reply) -> None:
    assert r.status in (414, 431) and r.closed, r


@case("not HTTP", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64, 4)
def _not_http(r: Reply) -> None:
    assert r.status == 400 and r.closed, r
    error_of(r)


@pytest.mark.parametrize("name", list(CASES))
def test_abuse_gets_a_clear_answer_or_a_close_in_time(port: int, name: str) -> None:
    data, wait, check = CASES[name]
    check(exchange(port, data, wait))
    assert good(port) == 200


def test_connections_past_the_cap_get_503_and_are_closed(port: int) -> None:
    held: list[socket.socket] = []
    try:
        for _ in range(MAX_CONNECTIONS + 6):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(0.3)
        refused = 0
        for s in held:
            s.settimeout(0.05)
            try:
                data = s.recv(4096)
            except TimeoutError:
                continue
            if data.startswith(b"HTTP/1.1 503"):
                assert b"retry-after" in data.lower() and b"maxConnections" in data
                refused += 1
        assert refused >= 6
    finally:
        for s in held:
            s.close()
    time.sleep(0.3)
    assert good(port) == 200


def test_a_client_that_pipelines_and_never_reads_does_not_grow_the_replica(replica: ServerProcess) -> None:
    # 20,000 pipelined requests, answers never read: the replica stops reading the connection once its answers back
    # up (and the kernel's buffers fill), so its memory stays put instead of holding every answer.
    proc = psutil.Process(replica.pid)
    before = proc.memory_info().rss
    one = head(len(GOOD)) + GOOD
    s = socket.create_connection(("127.0.0.1", replica.http_port), timeout=5)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sent = 0
    stop = threading.Event()

    def push() -> None:
        nonlocal sent
        s.settimeout(0.5)
        try:
            while not stop.is_set() and sent < 20_000:
                s.sendall(one * 100)
                sent += 100
        except OSError:
            pass

    t = threading.Thread(target=push, daemon=True)
    t.start()
    t.join(8)
    stop.set()
    grown = proc.memory_info().rss - before
    s.close()
    assert grown < 64 << 20, f"the replica grew {grown >> 20} MiB for a client that never reads ({sent} sent)"
    assert good(replica.http_port) == 200


def test_the_replica_still_serves_after_all_of_it(replica: ServerProcess, router: RouterThread, tmp_path: Path) -> None:
    assert good(replica.http_port) == 200 and good(router.http_port) == 200
    assert replica.proc is not None and replica.proc.poll() is None
