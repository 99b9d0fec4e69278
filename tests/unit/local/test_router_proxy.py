"""The router in process against tiny fake upstreams on 127.0.0.1: buffering bounds, retries, per-try timeout,
header pass-through, its own endpoints. Real replicas are in tests/integration/test_router.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop

from kubeinfer.local.router import Backend, Router

pytestmark = pytest.mark.timeout(20)

Reply = Callable[[bytes, bytes], Awaitable[bytes | None]]  # (head, body) -> raw response, or None to hang


def response(status: int = 200, body: bytes = b'{"ok":true}', headers: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{headers}content-length: {len(body)}\r\n\r\n".encode()
        + body
    )


class Upstream:
    """An HTTP/1.1 keep-alive server that answers each request with ``reply(head, body)``; it records the heads."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.seen: list[bytes] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                self.seen.append(head)
                out = await self.reply(head, body)
                if out is None:
                    await asyncio.sleep(3600)
                    return
                writer.write(out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self.tasks.discard(task)

    async def aclose(self) -> None:
        assert self.server is not None
        self.server.close()
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()


async def fake_upstream(reply: Reply) -> tuple[Upstream, int, list[bytes]]:
    up = Upstream(reply)
    up.server = await asyncio.start_server(up.handle, "127.0.0.1", 0)
    up.port = up.server.sockets[0].getsockname()[1]
    return up, up.port, up.seen


async def request(
    port: int, method: str = "POST", path: str = "/v2/models/m/infer", body: bytes = b"{}", headers: str = ""
) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"{method} {path} HTTP/1.1\r\nhost: x\r\n{headers}content-length: {len(body)}\r\n\r\n".encode() + body
        )
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        data = b"" if method == "HEAD" else await reader.readexactly(int(hdrs.get("content-length", "0")))
    finally:
        writer.close()
    return status, hdrs, data


def run(coro: Awaitable[Any]) -> Any:
    return uvloop.run(coro)  # type: ignore[arg-type]


async def ok(head: bytes, body: bytes) -> bytes:
    return response(200, b'{"echo":%s}' % body)


def test_buffer_full_answers_503_with_retry_after_at_once() -> None:
    async def main() -> None:
        router = Router(buffer_limit=2, buffer_timeout=5.0)
        port, _ = await router.start("127.0.0.1", 0, None)
        waiting = [asyncio.create_task(request(port)) for _ in range(2)]
        while router.stats().buffered < 2:
            await asyncio.sleep(0.01)
        status, headers, body = await asyncio.wait_for(request(port), 2)
        assert status == 503
        assert headers["retry-after"] == "1"
        assert "buffer is full" in json.loads(body)["error"]
        assert router.stats().rejected == 1
        for t in waiting:
            t.cancel()
        await router.stop(grace=0.1)

    run(main())


def test_buffer_timeout_answers_503_with_retry_after() -> None:
    async def main() -> None:
        router = Router(buffer_timeout=0.3)
        port, _ = await router.start("127.0.0.1", 0, None)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        status, headers, body = await asyncio.wait_for(request(port), 3)
        assert status == 503 and headers["retry-after"] == "1"
        assert 0.25 <= loop.time() - t0 < 1.5
        assert "buffer timeout of 0.3s" in json.loads(body)["error"]
        s = router.stats()
        assert (s.buffered, s.buffered_total, s.rejected) == (0, 1, 1)
        await router.stop(grace=0.1)

    run(main())


def test_buffered_requests_are_sent_in_order_when_a_backend_becomes_ready() -> None:
    async def main() -> None:
        calls: list[int] = []
        router = Router(buffer_timeout=10.0, on_buffered=lambda: calls.append(1))
        port, _ = await router.start("127.0.0.1", 0, None)
        server, up_port, _ = await fake_upstream(ok)
        tasks = [asyncio.create_task(request(port, body=b"%d" % i)) for i in range(3)]
        while router.stats().buffered < 3:
            await asyncio.sleep(0.01)
        assert len(calls) == 3
        assert router.stats().concurrency == 3
        router.set_backends([Backend("a", "127.0.0.1", up_port, None)])
        results = await asyncio.wait_for(asyncio.gather(*tasks), 5)
        assert [r[0] for r in results] == [200, 200, 200]
        assert sorted(r[2] for r in results) == [b'{"echo":0}', b'{"echo":1}', b'{"echo":2}']
        s = router.stats()
        assert (s.buffered, s.buffered_total, s.requests) == (0, 3, 3)
        assert s.backends["a"].total == 3 and s.backends["a"].outstanding == 0
        await router.stop(grace=0.1)
        await server.aclose()

    run(main())


def test_refused_connection_is_retried_on_another_backend_and_ejected() -> None:
    async def main() -> None:
        router = Router()
        port, _ = await router.start("127.0.0.1", 0, None)
        server, up_port, _ = await fake_upstream(ok)
        dead = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        dead_port = dead.sockets[0].getsockname()[1]
        dead.close()
        await dead.wait_closed()
        router.set_backends([Backend("dead", "127.0.0.1", dead_port, None), Backend("ok", "127.0.0.1", up_port, None)])
        results = [await request(port) for _ in range(20)]
        assert all(r[0] == 200 for r in results)
        s = router.stats()
        assert 1 <= s.retries <= 2  # the dead one is ejected after its first failure
        assert s.backends["ok"].total == 20
        await router.stop(grace=0.1)
        await server.aclose()

    run(main())


def test_hung_backend_hits_the_per_try_timeout_and_the_request_goes_elsewhere() -> None:
    async def main() -> None:
        async def hang(head: bytes, body: bytes) -> None:
            return None

        router = Router(per_try_timeout=0.3)
        port, _ = await router.start("127.0.0.1", 0, None)
        hung, hung_port, hung_seen = await fake_upstream(hang)
        good, good_port, _ = await fake_upstream(ok)
        router.set_backends([Backend("hung", "127.0.0.1", hung_port, None)])
        router.set_backends(
            [Backend("hung", "127.0.0.1", hung_port, None), Backend("ok", "127.0.0.1", good_port, None)]
        )
        loop = asyncio.get_running_loop()
        for _ in range(6):
            t0 = loop.time()
            status, _, _ = await asyncio.wait_for(request(port), 3)
            assert status == 200
            assert loop.time() - t0 < 1.0
        assert len(hung_seen) >= 1
        assert router.retry_reasons.get("timeout", 0) == len(hung_seen)
        await router.stop(grace=0.1)
        await hung.aclose()
        await good.aclose()

    run(main())


def test_per_try_timeout_with_no_other_backend_ends_in_504() -> None:
    async def main() -> None:
        async def hang(head: bytes, body: bytes) -> None:
            return None

        router = Router(per_try_timeout=0.2, max_retries=1)
        port, _ = await router.start("127.0.0.1", 0, None)
        hung, hung_port, seen = await fake_upstream(hang)
        router.set_backends([Backend("hung", "127.0.0.1", hung_port, None)])
        status, _, body = await asyncio.wait_for(request(port), 3)
        assert status == 504
        assert "per-try timeout" in json.loads(body)["error"]
        assert len(seen) == 2  # first try and one retry
        await router.stop(grace=0.1)
        await hung.aclose()

    run(main())


def test_503_from_a_full_replica_is_retried_elsewhere_and_passed_on_when_alone() -> None:
    async def main() -> None:
        async def full(head: bytes, body: bytes) -> bytes:
            return response(503, b'{"error":"queue full"}', "retry-after: 1\r\n")

        router = Router()
        port, _ = await router.start("127.0.0.1", 0, None)
        busy, busy_port, busy_seen = await fake_upstream(full)
        good, good_port, _ = await fake_upstream(ok)
        router.set_backends(
            [Backend("busy", "127.0.0.1", busy_port, None), Backend("ok", "127.0.0.1", good_port, None)]
        )
        assert [(await request(port))[0] for _ in range(10)] == [200] * 10
        assert router.retry_reasons.get("status_503", 0) == len(busy_seen) >= 1
        router.set_backends([Backend("busy", "127.0.0.1", busy_port, None)])
        status, headers, body = await request(port)
        assert status == 503 and headers["retry-after"] == "1" and b"queue full" in body
        await router.stop(grace=0.1)
        await busy.aclose()
        await good.aclose()

    run(main())


def test_headers_and_binary_bodies_pass_through_both_ways() -> None:
    async def main() -> None:
        async def binary(head: bytes, body: bytes) -> bytes:
            assert b"inference-header-content-length: 2" in head.lower()
            assert b"connection" not in head.lower() and b"expect" not in head.lower()
            payload = b"{}" + bytes(range(256))
            return response(200, payload, "inference-header-content-length: 2\r\n")

        router = Router()
        port, _ = await router.start("127.0.0.1", 0, None)
        server, up_port, _ = await fake_upstream(binary)
        router.set_backends([Backend("a", "127.0.0.1", up_port, None)])
        status, headers, body = await request(
            port,
            body=b"{}" + bytes(range(10)),
            headers="Inference-Header-Content-Length: 2\r\nConnection: keep-alive\r\n",
        )
        assert status == 200
        assert headers["inference-header-content-length"] == "2"
        assert body == b"{}" + bytes(range(256))
        await router.stop(grace=0.1)
        await server.aclose()

    run(main())


def test_draining_replicas_connection_close_is_not_passed_to_the_client() -> None:
    async def main() -> None:
        async def closing(head: bytes, body: bytes) -> bytes:
            return response(200, b"{}", "connection: close\r\n")

        router = Router()
        port, _ = await router.start("127.0.0.1", 0, None)
        server, up_port, _ = await fake_upstream(closing)
        router.set_backends([Backend("a", "127.0.0.1", up_port, None)])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(3):  # the same client connection survives the upstream closes
            writer.write(b"POST /x HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200") and b"connection" not in head.lower()
            await reader.readexactly(2)
        writer.close()
        assert router.stats().retries == 0
        await router.stop(grace=0.1)
        await server.aclose()

    run(main())


def test_own_endpoints_readiness_and_metrics() -> None:
    async def main() -> None:
        router = Router()
        port, _ = await router.start("127.0.0.1", 0, None)
        assert (await request(port, "GET", "/healthz", b""))[0] == 200
        assert (await request(port, "GET", "/readyz", b""))[0] == 503
        server, up_port, _ = await fake_upstream(ok)
        router.set_backends([Backend("a", "127.0.0.1", up_port, None)])
        assert (await request(port, "GET", "/readyz", b""))[0] == 200
        assert (await request(port, "GET", "/v2/health/ready", b""))[0] == 200
        await request(port)
        status, headers, text = await request(port, "GET", "/metrics", b"")
        assert status == 200 and headers["content-type"].startswith("text/plain")
        for name in (
            'kubeinfer_router_backend_outstanding{backend="a"} 0.0',
            'kubeinfer_router_requests_total{backend="a",code="200"} 1.0',
            "kubeinfer_router_retries_total",
            "kubeinfer_router_buffered 0.0",
        ):
            assert name in text.decode(), name
        await router.stop(grace=0.1)
        await server.aclose()

    run(main())


def test_a_burst_through_the_http_front_is_the_peak_of_its_second() -> None:
    """Every client request the front accepts is an arrival of the peak window (the router's own endpoints are
    not); stats() reports the burst once its second closes."""

    async def main() -> None:
        router = Router(peak_window=5.0)  # long enough to hold the whole burst on a loaded machine
        port, _ = await router.start("127.0.0.1", 0, None)
        server, up_port, _ = await fake_upstream(ok)
        router.set_backends([Backend("a", "127.0.0.1", up_port, None)])
        replies = await asyncio.gather(*(request(port) for _ in range(12)), request(port, "GET", "/healthz", b""))
        assert [r[0] for r in replies] == [200] * 13
        # the burst may straddle a second's edge: the second of its last arrival counts it whole
        while router.stats().peak < 12:
            await asyncio.sleep(0.05)
        assert (router.stats().peak, router.stats().peak_window) == (12, 5.0)
        await router.stop(grace=0.1)
        await server.aclose()

    run(main())


def test_pipelined_requests_are_answered_in_order() -> None:
    async def main() -> None:
        router = Router()
        port, _ = await router.start("127.0.0.1", 0, None)
        server, up_port, _ = await fake_upstream(ok)
        router.set_backends([Backend("a", "127.0.0.1", up_port, None)])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"".join(b"POST /x HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\n%d" % i for i in range(3))
            + b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"
        )
        bodies = []
        for _ in range(4):
            head = await reader.readuntil(b"\r\n\r\n")
            n = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            bodies.append(await reader.readexactly(n))
        assert bodies == [b'{"echo":0}', b'{"echo":1}', b'{"echo":2}', b'{"live":true}']
        writer.close()
        await router.stop(grace=0.1)
        await server.aclose()

    run(main())


def test_too_large_body_is_refused_with_413() -> None:
    async def main() -> None:
        router = Router(max_body_bytes=100)
        port, _ = await router.start("127.0.0.1", 0, None)
        status, _, body = await request(port, body=b"x" * 1000)
        assert status == 413 and "limit of 100 bytes" in json.loads(body)["error"]
        await router.stop(grace=0.1)

    run(main())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"per_try_timeout": 0}, "per_try_timeout must be > 0"),
        ({"max_retries": -1}, "max_retries must be an integer >= 0"),
        ({"buffer_limit": -1}, "buffer_limit must be an integer >= 0"),
        ({"retry_budget_ratio": -1}, "retry_budget_ratio"),
    ],
)
def test_bad_settings_name_the_field(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Router(**kwargs)
