"""A generation's stream through the router in process, against a fake upstream on 127.0.0.1 that sends server-sent
events slowly: the stream may outlast the per-try timeout while events keep coming (the timeout is an idle one once
the response has begun), and its estimated tokens stay charged to the replica until the stream ends."""

from __future__ import annotations

import asyncio
import json

import pytest
import uvloop

from kubeinfer.local.router import Backend, Router
from kubeinfer.local.router.balance import RoutingPolicy

pytestmark = pytest.mark.timeout(20)

EVENTS = 8


async def stream_server(gap: float, started: asyncio.Event) -> tuple[asyncio.Server, int]:
    """Answers one request per connection with a chunked event stream: ``EVENTS`` events ``gap`` seconds apart."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(ln.split(b":")[1]) for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            started.set()
            for i in range(EVENTS):
                event = b'data: {"i": %d}\n\n' % i
                writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                await writer.drain()
                await asyncio.sleep(gap)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def read_stream(port: int, body: bytes) -> tuple[int, list[int]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        seen = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            if size == 0:
                break
            chunk = await reader.readexactly(size + 2)
            seen.append(json.loads(chunk[6:-4])["i"])
    finally:
        writer.close()
    return status, seen


def test_a_stream_outlasts_the_per_try_timeout_while_events_come_and_holds_its_tokens_until_it_ends() -> None:
    async def main() -> None:
        router = Router(per_try_timeout=0.3)
        router.set_routing(RoutingPolicy())
        port, _ = await router.start("127.0.0.1", 0, None)
        started = asyncio.Event()
        server, up_port = await stream_server(0.1, started)  # 8 events over ~0.8 s: longer than the 0.3 s timeout
        router.set_backends([Backend("r1", "127.0.0.1", up_port, None)])
        body = b'{"prompt": "abcdefgh", "max_tokens": 40, "stream": true}'
        task = asyncio.create_task(read_stream(port, body))
        await asyncio.wait_for(started.wait(), 5)
        assert router.stats().backends["r1"].tokens == 2 + 40  # charged while the stream runs
        status, seen = await asyncio.wait_for(task, 10)
        assert status == 200 and seen == list(range(EVENTS))
        assert router.retry_reasons == {} and router.stats().backends["r1"].tokens == 0
        await router.stop(grace=0.1)
        server.close()
        await server.wait_closed()

    uvloop.run(main())
