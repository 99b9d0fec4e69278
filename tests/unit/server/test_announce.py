"""The ``KUBEINFER_LISTENING`` line: what the server prints is what its supervisors read back, and a malformed line
is a clear error, not a stray KeyError or a replica with no address."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from kubeinfer.local.process import Listening
from kubeinfer.server.announce import MARK, AnnounceError, Announcement, announce, parse_announce

pytestmark = pytest.mark.timeout(10)


def _printed(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().out.splitlines()


def test_tcp_announcement_round_trips(capsys: pytest.CaptureFixture[str]) -> None:
    announce("iris", "127.0.0.1", 8080, 8081, None)
    human, line = _printed(capsys)
    assert human == "kubeinfer serving 'iris' on http://127.0.0.1:8080 and grpc 127.0.0.1:8081"
    # The wire format the docs promise (docs/server.md), byte for byte: compact JSON, these keys in this order.
    assert line == MARK + f'{{"http":8080,"grpc":8081,"pid":{os.getpid()},"model":"iris"}}'
    assert parse_announce(line + "\n") == Announcement(http=8080, grpc=8081, pid=os.getpid(), model="iris")


def test_unix_socket_announcement_round_trips(capsys: pytest.CaptureFixture[str]) -> None:
    grpc_socks = [Path("/run/r.grpc-0.sock"), Path("/run/r.grpc-1.sock")]
    announce("m", "127.0.0.1", None, None, Path("/run/r.sock"), grpc_socks)
    human, line = _printed(capsys)
    assert human == (
        "kubeinfer serving 'm' on http unix:/run/r.sock and grpc unix:/run/r.grpc-0.sock and grpc unix:/run/r.grpc-1.sock"
    )
    where = parse_announce(line)
    assert where is not None
    assert (where.http, where.grpc, where.uds) == (None, None, "/run/r.sock")
    assert where.grpc_uds == ("/run/r.grpc-0.sock", "/run/r.grpc-1.sock")
    assert where.to_json() == orjson.loads(line[len(MARK) :])
    assert Listening.of(where) == Listening(None, None, "/run/r.sock", where.grpc_uds)


def test_other_lines_are_not_announcements() -> None:
    for line in ("", "kubeinfer serving 'iris' on http://127.0.0.1:8080", " " + MARK + "{}", "KUBEINFER_LISTENING"):
        assert parse_announce(line) is None


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ('{"http": 8080', "not JSON"),
        ("", "not JSON"),
        ("[8080, 8081]", "not a JSON object"),
        ('{"http": "8080"}', "'http' must be int or null"),
        ('{"http": true}', "'http' must be int or null"),
        ('{"http": 1, "uds": 3}', "'uds' must be str or null"),
        ('{"http": null, "grpc_uds": "/r.sock"}', "'grpc_uds' must be a list of paths"),
    ],
)
def test_a_malformed_announcement_is_a_clear_error(body: str, says: str) -> None:
    with pytest.raises(AnnounceError, match=says):
        parse_announce(MARK + body)


def test_missing_fields_are_none() -> None:
    """An older or newer server may leave fields out; a reader still gets what is there."""
    assert parse_announce(MARK + '{"http": 8080}') == Announcement(http=8080)
