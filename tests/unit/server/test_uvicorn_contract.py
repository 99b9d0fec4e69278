"""The parts of uvicorn's httptools protocol that server/http.py relies on are still there and still the same.

``InferHttpProtocol`` subclasses uvicorn's ``HttpToolsProtocol``: it replaces some of its methods outright, calls
others, and reads and writes its per-connection state. None of that is uvicorn's public API, so pyproject.toml pins
uvicorn to the range tested here, and this test fails when a uvicorn release changes what the fast path depends on:
a method's signature, an attribute, the ASGI scope that ``_make_scope`` rebuilds, or the source of a method that
http.py replaces or whose internals it relies on (then read the new source, adapt http.py, and update the digest).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import socket
import tomllib
from pathlib import Path

import uvicorn
from packaging.specifiers import SpecifierSet
from uvicorn.config import Config
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from kubeinfer.server.app import InferenceApp
from kubeinfer.server.http import InferHttpProtocol, protocol_for

ROOT = Path(__file__).resolve().parents[3]

# Methods that http.py replaces without calling them, or calls while depending on how they use the state it sets
# (on_headers_complete reads the scope _make_scope built; on_response_complete's work is redone in http.py).
SOURCE_DIGESTS = {
    "data_received": "010a7ae59a5d3b1a",
    "on_url": "37be44e962b04ca8",
    "on_message_begin": "96d377fdc7c2baef",
    "on_response_complete": "64e254f28e389e76",
    "on_headers_complete": "1ea8589acfad92d8",
    "on_body": "dba9c32aeba35b6a",
    "on_message_complete": "1fbad42dc31fc01f",
    "_start_asgi_task": "8d0189e65525db42",
}

SIGNATURES = {
    "connection_made": ["self", "transport"],
    "data_received": ["self", "data"],
    "on_url": ["self", "url"],
    "on_header": ["self", "name", "value"],
    "on_headers_complete": ["self"],
    "on_body": ["self", "body"],
    "on_message_begin": ["self"],
    "on_message_complete": ["self"],
    "on_response_complete": ["self"],
    "pause_writing": ["self"],
    "resume_writing": ["self"],
    "_should_upgrade": ["self"],
    "handle_websocket_upgrade": ["self"],
    "_unsupported_upgrade_warning": ["self"],
    "_start_asgi_task": ["self", "cycle", "app"],
}


def _digest(name: str) -> str:
    return hashlib.sha256(inspect.getsource(getattr(HttpToolsProtocol, name)).encode()).hexdigest()[:16]


def test_installed_uvicorn_is_within_the_pinned_range() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pin = next(d for d in deps if d.startswith("uvicorn"))
    spec = SpecifierSet(pin.removeprefix("uvicorn"))
    assert spec.contains(uvicorn.__version__), (pin, uvicorn.__version__)
    assert "<" in pin, f"uvicorn must have an upper bound: http.py uses its internals ({pin})"


def test_replaced_and_relied_on_methods_are_unchanged() -> None:
    changed = {name: _digest(name) for name, digest in SOURCE_DIGESTS.items() if _digest(name) != digest}
    assert not changed, (
        f"uvicorn {uvicorn.__version__} changed HttpToolsProtocol methods that http.py depends on: {changed}"
    )


def test_method_signatures() -> None:
    for name, params in SIGNATURES.items():
        assert list(inspect.signature(getattr(HttpToolsProtocol, name)).parameters) == params, name


def test_status_lines_and_cycle_attributes() -> None:
    assert httptools_impl.STATUS_LINE[200] == b"HTTP/1.1 200 OK\r\n"
    assert httptools_impl.STATUS_LINE[503].startswith(b"HTTP/1.1 503 ")
    cycle_init = inspect.signature(RequestResponseCycle.__init__).parameters
    assert {"keep_alive", "message_event", "on_response"} <= set(cycle_init)
    source = inspect.getsource(RequestResponseCycle.__init__)
    for attr in ("response_complete", "keep_alive", "disconnected", "more_body"):
        assert f"self.{attr} = " in source, attr


def test_connection_state_and_scope_match_what_http_py_uses() -> None:
    """A real connection (a socket pair): uvicorn's attributes exist, and _make_scope builds uvicorn's scope."""

    async def main() -> None:
        app = InferenceApp()
        config = Config(app, http=protocol_for(app), loop="none", lifespan="off")
        config.load()
        state = ServerState()
        ours, theirs = socket.socketpair()
        loop = asyncio.get_running_loop()
        proto = protocol_for(app)(config=config, server_state=state, app_state={}, _loop=loop)
        assert isinstance(proto, InferHttpProtocol)
        transport, _ = await loop.connect_accepted_socket(lambda: proto, ours)
        try:
            for attr in (
                "parser", "flow", "pipeline", "cycle", "server_state", "timeout_keep_alive_task",
                "timeout_keep_alive", "headers", "expect_100_continue", "asgi_version", "root_path", "app_state",
                "loop", "transport", "server", "client", "scheme",
            ):  # fmt: skip
                assert hasattr(proto, attr), attr
            for attr in ("pause_reading", "resume_reading", "write_paused"):
                assert hasattr(proto.flow, attr), attr
            for attr in ("connections", "total_requests", "default_headers"):
                assert hasattr(state, attr), attr
            HttpToolsProtocol.on_message_begin(proto)
            theirs_scope = dict(proto.scope)
            proto._make_scope()
            assert set(proto.scope) == set(theirs_scope)
            assert {k: v for k, v in proto.scope.items() if k != "state"} == {
                k: v for k, v in theirs_scope.items() if k != "state"
            }
        finally:
            transport.close()
            theirs.close()

    asyncio.run(main())
