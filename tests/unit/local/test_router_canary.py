"""The router's traffic split between revisions (a canary): weighted choice, pinning by header and OIP path, a
canary's errors retried on the stable revision, per-revision counters. In process, against small upstreams on
127.0.0.1 that answer with their own name."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable
from typing import Any

import pytest
import uvloop

from kubeinfer.local.router import Backend, Router
from kubeinfer.local.router.core import RevisionCounts, choose_revision, http_error

pytestmark = pytest.mark.timeout(30)


def _response(status: int, body: bytes) -> bytes:
    return b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        status,
        len(body),
        body,
    )


class Upstream:
    """A keep-alive HTTP/1.1 server answering every request with ``status`` and its ``name`` as the body."""

    def __init__(self, name: str, status: int = 200) -> None:
        self.name = name
        self.status = status
        self.seen = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                self.seen += 1
                writer.write(_response(self.status, self.name.encode()))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def start(self) -> Upstream:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def backend(self, revision: int, version: str = "") -> Backend:
        return Backend(self.name, "127.0.0.1", self.port, None, version=version, revision=revision)

    async def aclose(self) -> None:
        assert self.server is not None
        self.server.close()


async def call(port: int, path: str = "/v2/models/m/infer", headers: str = "") -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"POST {path} HTTP/1.1\r\nhost: x\r\n{headers}content-length: 2\r\n\r\n{{}}".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        hdrs = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        return int(lines[0].split()[1]), await reader.readexactly(int(hdrs.get("content-length", "0")))
    finally:
        writer.close()


def run(coro: Awaitable[Any]) -> Any:
    return uvloop.run(coro)  # type: ignore[arg-type]


async def two_revisions(canary_status: int = 200) -> tuple[Router, int, list[Upstream]]:
    """A router with revision 1 (two stable upstreams, version '1') and revision 2 (one canary, version '2')."""
    ups = [await Upstream("s1").start(), await Upstream("s2").start(), await Upstream("c1", canary_status).start()]
    router = Router()
    router._rng = random.Random(7).random  # a seeded draw: the split's counts are exact from run to run
    port, _ = await router.start("127.0.0.1", 0, None)
    router.set_backends([ups[0].backend(1, "1"), ups[1].backend(1, "1"), ups[2].backend(2, "2")])
    return router, port, ups


async def close(router: Router, ups: list[Upstream]) -> None:
    await router.stop(grace=0.1)
    for u in ups:
        await u.aclose()


def test_the_split_sends_the_canary_its_weight_and_counts_each_revision() -> None:
    async def main() -> None:
        router, port, ups = await two_revisions()
        router.set_split([(1, 80), (2, 20)])
        bodies = [(await call(port))[1] for _ in range(400)]
        canary = bodies.count(b"c1")
        assert 50 <= canary <= 110, canary  # 20% of 400 is 80; a seeded draw, wide bounds
        stats = router.stats()
        assert stats.split == ((1, 80), (2, 20))
        assert stats.revisions[2].requests == canary and stats.revisions[1].requests == 400 - canary
        assert sum(stats.revisions[2].latency) == canary and stats.revisions[2].errors == 0
        router.set_split([(1, 100), (2, 0)])  # a rolled-back canary gets nothing
        assert {(await call(port))[1] for _ in range(50)} <= {b"s1", b"s2"}
        router.set_split(None)  # no split: every ready backend alike, the canary included
        assert b"c1" in {(await call(port))[1] for _ in range(60)}
        await close(router, ups)

    run(main())


def test_a_canary_error_is_retried_on_the_stable_revision_and_counted_against_the_canary() -> None:
    """Users get the stable answer; the canary's analysis sees its error."""

    async def main() -> None:
        router, port, ups = await two_revisions(canary_status=500)
        router.set_split([(1, 50), (2, 50)])
        results = [await call(port) for _ in range(60)]
        assert {status for status, _ in results} == {200}
        assert {body for _, body in results} <= {b"s1", b"s2"}
        stats = router.stats()
        assert stats.revisions[2].errors == stats.revisions[2].requests == ups[2].seen >= 10
        assert stats.revisions[1].errors == 0
        assert router.retry_reasons["canary_error"] == ups[2].seen
        # Pinned to the canary: its own answer, error included (an A/B test asked for that revision).
        status, body = await call(port, headers="x-kubeinfer-revision: canary\r\n")
        assert (status, body) == (500, b"c1")
        await close(router, ups)

    run(main())


def test_a_stable_error_is_passed_on_not_failed_over() -> None:
    async def main() -> None:
        ups = [await Upstream("s1", 500).start(), await Upstream("c1").start()]
        router = Router()
        port, _ = await router.start("127.0.0.1", 0, None)
        router.set_backends([ups[0].backend(1), ups[1].backend(2)])
        router.set_split([(1, 100), (2, 0)])
        assert await call(port) == (500, b"s1")
        assert router.stats().revisions[1].errors == 1
        await close(router, ups)

    run(main())


@pytest.mark.parametrize(
    ("headers", "path", "expect"),
    [
        ("x-kubeinfer-revision: 2\r\n", "/v2/models/m/infer", {b"c1"}),
        ("x-kubeinfer-revision: canary\r\n", "/v2/models/m/infer", {b"c1"}),
        ("X-Kubeinfer-Revision: stable\r\n", "/v2/models/m/infer", {b"s1", b"s2"}),
        ("x-kubeinfer-revision: 1\r\n", "/v2/models/m/infer", {b"s1", b"s2"}),
        ("", "/v2/models/m/versions/2/infer", {b"c1"}),
        ("", "/v2/models/m/versions/1/infer", {b"s1", b"s2"}),
    ],
)
def test_a_request_pins_its_revision_by_header_or_oip_version(headers: str, path: str, expect: set[bytes]) -> None:
    async def main() -> None:
        router, port, ups = await two_revisions()
        router.set_split([(1, 50), (2, 50)])
        assert {(await call(port, path, headers))[1] for _ in range(30)} == expect
        await close(router, ups)

    run(main())


def test_a_pin_to_a_revision_not_served_is_a_404_that_names_the_served_ones() -> None:
    async def main() -> None:
        router, port, ups = await two_revisions()
        router.set_split([(1, 90), (2, 10)])
        status, body = await call(port, headers="x-kubeinfer-revision: 7\r\n")
        assert status == 404 and b"serving: 1 (stable), 2 (canary)" in body
        # A version no revision serves is left to the replica (it may serve several versions).
        status, _ = await call(port, "/v2/models/m/versions/9/infer")
        assert status == 200
        # Without a split, a revision number still pins (a request for a revision mid-update).
        router.set_split(None)
        assert {(await call(port, headers="x-kubeinfer-revision: 2\r\n"))[1] for _ in range(10)} == {b"c1"}
        status, body = await call(port, headers="x-kubeinfer-revision: canary\r\n")
        assert status == 404 and b"give a revision number)" in body
        await close(router, ups)

    run(main())


def test_choose_revision_draws_by_weight_among_revisions_with_ready_backends() -> None:
    groups = {1: ["a", "b"], 2: ["c"]}
    draws = iter([0.0, 0.79, 0.8, 0.99])
    picks = [choose_revision([(1, 80), (2, 20)], groups, lambda: next(draws)) for _ in range(4)]
    assert picks == [["a", "b"], ["a", "b"], ["c"], ["c"]]
    assert choose_revision([(1, 80), (2, 20)], {1: ["a"]}, random.random) == ["a"]  # no ready canary
    assert choose_revision([(3, 100)], groups, random.random) is None  # none of the split is ready
    assert choose_revision([(1, 0), (2, 0)], groups, random.random) is None


def test_revision_counts_and_what_counts_as_an_error() -> None:
    c = RevisionCounts()
    c.record(False, 0.004)
    c.record(True, 2.0)
    snap = c.snapshot()
    assert (snap.requests, snap.errors, sum(snap.latency)) == (2, 1, 2)
    assert [http_error(s) for s in (200, 404, 429, 500, 502, 503, 504)] == [
        False,
        False,
        False,
        True,
        True,
        False,
        True,
    ]
