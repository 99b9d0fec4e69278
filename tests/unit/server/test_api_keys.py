"""The API keys file and its token buckets (server/auth.py), on a clock the test moves."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from kubeinfer.server.auth import ApiKeys, KeyFileError, parse_keys
from kubeinfer.server.errors import TooManyRequests, Unauthorized
from kubeinfer.server.routes import ROUTES


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def keys_in(tmp_path: Path, text: str) -> tuple[ApiKeys, Clock]:
    path = tmp_path / "keys"
    path.write_text(text)
    clock = Clock()
    return ApiKeys(path, clock), clock


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a 1 2\n", "f:1: expected 'KEY' or 'KEY RATE'"),
        ("a\nb 0\n", "f:2: the rate '0' is not a positive number"),
        ("a nan\n", "'nan' is not a positive number"),
        ("a inf\n", "'inf' is not a positive number"),
        ("a\n\na 3\n", "f:3: a key given twice"),
        ("# only a comment\n\n", "f: no keys"),
    ],
)
def test_bad_files_name_the_line(text: str, message: str) -> None:
    with pytest.raises(KeyFileError, match=re.escape(message)):
        parse_keys(text, "f")


def test_headers_are_checked(tmp_path: Path) -> None:
    keys, _ = keys_in(tmp_path, "secret\n")
    keys.check(b"Bearer secret")
    keys.check("bearer secret")  # the scheme is case-insensitive (RFC 9110)
    for bad, message in [
        (None, "is required"),
        (b"secret", "must be 'Bearer KEY'"),
        (b"Bearer secre", "not valid"),
        (b"Bearer secrets", "not valid"),
        (b"Bearer ", "not valid"),
    ]:
        with pytest.raises(Unauthorized, match=message):
            keys.check(bad)


def test_token_bucket_holds_one_second_and_refills(tmp_path: Path) -> None:
    keys, clock = keys_in(tmp_path, "fast 4\nslow 0.5\nfree\n")
    for _ in range(4):
        keys.check(b"Bearer fast")
    with pytest.raises(TooManyRequests, match="rate limit of 4 requests per second") as e:
        keys.check(b"Bearer fast")
    assert e.value.retry_after == pytest.approx(0.25)
    clock.now += 0.5  # two tokens back
    keys.check(b"Bearer fast")
    keys.check(b"Bearer fast")
    with pytest.raises(TooManyRequests):
        keys.check(b"Bearer fast")
    keys.check(b"Bearer slow")  # a slow key may still make one request at once
    with pytest.raises(TooManyRequests) as e:
        keys.check(b"Bearer slow")
    assert e.value.retry_after == pytest.approx(2.0)
    for _ in range(1000):
        keys.check(b"Bearer free")


def test_reload_at_most_once_a_second_keeping_buckets(tmp_path: Path) -> None:
    keys, clock = keys_in(tmp_path, "kept 0.1\ngone\n")
    keys.check(b"Bearer kept")
    path = tmp_path / "keys"
    path.write_text("kept 0.1\nnew\n")
    os.utime(path, ns=(1, 1))  # a different modification time, whatever the file system's resolution
    clock.now += 0.5
    keys.check(b"Bearer gone")  # not looked at yet
    clock.now += 0.6
    keys.check(b"Bearer new")
    with pytest.raises(Unauthorized):
        keys.check(b"Bearer gone")
    clock.now += 0.01
    with pytest.raises(TooManyRequests):  # the kept key's bucket was not refilled by the reload
        keys.check(b"Bearer kept")
    path.write_text("broken 0\n")
    clock.now += 1.0
    keys.check(b"Bearer new")  # an invalid file keeps the keys in force
    path.unlink()
    clock.now += 1.0
    keys.check(b"Bearer new")


def test_only_probes_and_metrics_are_public() -> None:
    public = {r.path for r in ROUTES if r.public}
    assert public == {
        "/v2/health/live",
        "/v2/health/ready",
        "/healthz",
        "/livez",
        "/health/live",
        "/readyz",
        "/health/ready",
        "/startupz",
        "/health/startup",
        "/metrics",
    }
