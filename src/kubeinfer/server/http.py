"""uvicorn's httptools protocol with one change: writes made in one event-loop turn leave in one ``send()``.

An ASGI response is two messages, and uvicorn writes each at once: the status line and headers, then the body. On a
small inference answer that is two system calls and two TCP segments where one would do, for every request, on the
server and on the client. The transport below holds writes until the end of the current loop turn and sends them
together (header and body of a response, or several pipelined responses). Closing flushes first. Flow control and
everything else go straight to the real transport. Nothing else in uvicorn changes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["CoalescingHttpToolsProtocol"]


class _CoalescingTransport:
    __slots__ = ("_buf", "_loop", "_real")

    def __init__(self, real: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._real = real
        self._loop = loop
        self._buf: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._buf:
            self._loop.call_soon(self._flush)
        self._buf.append(bytes(data))

    def _flush(self) -> None:
        if self._buf:
            data = self._buf[0] if len(self._buf) == 1 else b"".join(self._buf)
            self._buf.clear()
            if not self._real.is_closing():
                self._real.write(data)

    def close(self) -> None:
        self._flush()
        self._real.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_CoalescingTransport(transport, asyncio.get_running_loop()))  # type: ignore[arg-type]
