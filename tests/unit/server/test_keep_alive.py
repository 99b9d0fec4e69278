"""The direct infer path's connection handling on a real uvicorn server and real sockets (server/http.py)."""

from __future__ import annotations

import asyncio
import socket
import time

import uvicorn

from kubeinfer.server.app import InferenceApp
from kubeinfer.server.http import protocol_for

REQUEST = b"POST /v2/models/nope/infer HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}"


async def _serve(timeout_keep_alive: float) -> tuple[uvicorn.Server, int, asyncio.Task[None]]:
    app = InferenceApp()
    app.started = True
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, http=protocol_for(app), loop="none", lifespan="off", log_level="warning",
        timeout_keep_alive=timeout_keep_alive,
    )  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    return server, sock.getsockname()[1], task


async def _answer(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    size = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    return head + await reader.readexactly(size)


def test_idle_connections_close_after_the_keep_alive_timeout_and_busy_ones_stay() -> None:
    async def main() -> tuple[float, bool, int]:
        server, port, task = await _serve(0.3)
        try:
            # Idle after one answer: closed once the timeout has passed, not before.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(REQUEST)
            assert (await _answer(reader)).startswith(b"HTTP/1.1 404 ")
            t0 = time.monotonic()
            assert await reader.read(1) == b""
            idle_closed_after = time.monotonic() - t0
            writer.close()
            # A request every 0.1 s for 1.2 s (four timeouts' worth): the connection stays open throughout.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            answered = 0
            for _ in range(12):
                writer.write(REQUEST)
                await _answer(reader)
                answered += 1
                await asyncio.sleep(0.1)
            still_open = not reader.at_eof()
            writer.close()
            return idle_closed_after, still_open, answered
        finally:
            server.should_exit = True
            await task

    idle_closed_after, still_open, answered = asyncio.run(main())
    assert 0.2 <= idle_closed_after <= 2.0, idle_closed_after
    assert still_open and answered == 12


def test_unknown_model_on_the_direct_path_is_a_404_with_a_json_error_and_counted() -> None:
    async def main() -> tuple[bytes, bytes]:
        server, port, task = await _serve(5)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(REQUEST)
            answer = await _answer(reader)
            writer.write(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
            metrics = await _answer(reader)
            writer.close()
            return answer, metrics
        finally:
            server.should_exit = True
            await task

    answer, metrics = asyncio.run(main())
    assert answer.startswith(b"HTTP/1.1 404 ") and b'{"error":"unknown model' in answer
    assert b'kubeinfer_requests_total{code="404",model="",protocol="v2",version=""} 1.0' in metrics
