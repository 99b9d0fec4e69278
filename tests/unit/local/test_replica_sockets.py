"""Replicas of ``kubeinfer up`` without TCP: the setting, their command line and announcement, probes and scrapes over
their Unix socket, and how status shows them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kubeinfer.cli.local import _address
from kubeinfer.local.metrics import HttpMetricsSource, http_get
from kubeinfer.local.process import Listening, serve_command
from kubeinfer.local.router import Backend
from kubeinfer.local.settings import LocalSettings, SettingsError
from kubeinfer.server.listen import grpc_socket_path

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize(("raw", "want"), [(None, False), ("", False), ("0", False), ("1", True), ("true", True)])
def test_replica_tcp_is_off_unless_asked(raw: str | None, want: bool) -> None:
    env = {} if raw is None else {"KUBEINFER_REPLICA_TCP": raw}
    assert LocalSettings.from_env(env).replica_tcp is want


def test_a_bad_replica_tcp_value_names_the_variable_and_the_choices() -> None:
    with pytest.raises(SettingsError, match=r"KUBEINFER_REPLICA_TCP has value 'maybe'.*1 or 0"):
        LocalSettings.from_env({"KUBEINFER_REPLICA_TCP": "maybe"})


def test_serve_command_drops_the_port_only_with_a_socket_to_serve_on(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    unix = serve_command(spec, grpc=True, uds="/run/r.sock", tcp=False)
    assert "--no-tcp" in unix and "--port" not in unix and "--grpc-port" in unix
    tcp = serve_command(spec, grpc=True, uds="/run/r.sock", tcp=True)
    assert "--no-tcp" not in tcp and tcp[tcp.index("--port") + 1] == "0"
    no_socket = serve_command(spec, grpc=False, uds=None, tcp=False)  # a path too long: TCP after all
    assert "--no-tcp" not in no_socket and "--port" in no_socket


def test_grpc_sockets_sit_next_to_the_http_one() -> None:
    assert grpc_socket_path(Path("/s/run/r-1.sock")) == Path("/s/run/r-1.grpc.sock")
    assert grpc_socket_path(Path("/s/run/r-1.sock"), 3) == Path("/s/run/r-1.grpc-3.sock")


def test_the_announcement_without_tcp_gives_the_sockets_as_the_address() -> None:
    info = {"http": None, "grpc": None, "pid": 1, "uds": "/r.sock", "grpc_uds": ["/r.grpc-0.sock", "/r.grpc-1.sock"]}
    where = Listening.from_json(info)
    assert where == Listening(None, None, "/r.sock", ("/r.grpc-0.sock", "/r.grpc-1.sock"))
    assert where.address == "/r.sock"
    assert Listening.from_json({"http": 8080, "grpc": 0, "uds": "/r.sock"}).address == 8080


def test_a_backend_needs_a_port_or_a_socket() -> None:
    with pytest.raises(ValueError, match="neither a port nor a Unix socket"):
        Backend("r1", "127.0.0.1", None, None)
    assert Backend("r1", "127.0.0.1", None, None, uds="/r.sock", grpc_uds=("/r.grpc.sock",)).serves_grpc
    assert not Backend("r1", "127.0.0.1", None, None, uds="/r.sock").serves_grpc


def test_status_shows_the_port_else_the_socket() -> None:
    assert _address({"port": 8080, "uds": "/r.sock"}) == "8080"
    assert (
        _address({"port": None, "uds": "/home/u/.kubeinfer/s/run/s-r1-1.sock"})
        == "/home/u/.kubeinfer/s/run/s-r1-1.sock"
    )
    assert _address({"port": None, "uds": None}) == "-"


def test_probes_and_scrapes_reach_a_replica_by_its_unix_socket(tmp_path: Path) -> None:
    sock = str(tmp_path / "r.sock")

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ")[1]
        body = b"kubeinfer_queue_depth 3\nkubeinfer_requests_in_flight 2\n" if path == b"/metrics" else b"{}"
        status = b"503" if path == b"/readyz" else b"200"
        writer.write(b"HTTP/1.1 " + status + b" X\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_unix_server(answer, sock)
        async with server:
            assert (await http_get(sock, "/healthz", 2))[0] == 200
            source = HttpMetricsSource()
            assert await source.probe(sock, "/startupz", 2) == (True, "GET /startupz: HTTP 200")
            assert (await source.probe(sock, "/readyz", 2))[0] is False
            m = await source.scrape(sock, None, 2)
            assert m.queue_depth == 3 and m.in_flight == 2
        ok, detail = await source.probe(str(tmp_path / "gone.sock"), "/healthz", 1)
        assert not ok and "FileNotFoundError" in detail

    asyncio.run(main())
