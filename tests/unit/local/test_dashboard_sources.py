"""The dashboard's server with a source of several services and no router (a cluster's shape): each service keeps
its own history, the request and error rates come from the replicas' own counters (real ``/metrics`` of the
server's Metrics on 127.0.0.1), a replica that does not answer leaves the figures unknown with the source's note,
the APIs and the event stream take ``?service=``, a deleted service's stream says ``gone``, an empty source
``empty``, and a failing read ``unreadable`` until a read succeeds."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from kubeinfer.local.dashboard import Dashboard, DashboardOptions
from kubeinfer.local.dashboard_model import Prices
from kubeinfer.server.metrics import Metrics


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status(name: str, desired: int = 1) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": "ml",
        "revision": 1,
        "version": "1",
        "desired": desired,
        "ready_replicas": 1,
        "replicas": [{"id": f"{name}-0", "state": "Running", "ready": True}],
        "autoscaling": {"policy": "hpa", "min": 1, "max": 4, "reason": "", "message": ""},
        "events": [],
        "endpoint": {"http": f"http://{name}.ml.svc.cluster.local:8080", "grpc": None},
        "spec": {"resources": {"requests": {"cpu": "1", "memory": "1Gi"}}},
    }


class Source:
    """A cluster-shaped source: statuses and scrape lists set by the test, no router."""

    unreachable = "pods unreachable from here: status only"

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.scrape: dict[str, list[tuple[str, int, str]]] = {}
        self.failure: Exception | None = None

    async def statuses(self) -> list[dict[str, Any]]:
        if self.failure is not None:
            raise self.failure
        return [dict(s) for s in self.items]

    def scrape_list(self, status: dict[str, Any]) -> Sequence[tuple[str, int, str]]:
        return self.scrape.get(status["name"], [])

    def router(self, status: dict[str, Any]) -> None:
        return None


async def _serve(metrics: Metrics) -> tuple[web.AppRunner, int]:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


def run(
    test: Callable[[Source, Metrics, int, Dashboard], Awaitable[None]], interval: float = 3600, start: bool = False
) -> None:
    """``interval``: 3600 by default, the test taking its samples itself."""

    async def main() -> None:
        src, metrics = Source(), Metrics()
        runner, port = await _serve(metrics)
        d = Dashboard(src, DashboardOptions(port=0, prices=Prices(1.0, 1.0, 1.0), interval=interval))
        try:
            if start:
                await d.start()
            await test(src, metrics, port, d)
        finally:
            await d.stop()
            await runner.cleanup()

    asyncio.run(main())


def test_without_a_router_the_rates_come_from_the_replicas_counters_and_an_unanswered_scrape_is_a_note() -> None:
    async def t(src: Source, m: Metrics, port: int, d: Dashboard) -> None:
        src.items = [_status("a"), _status("b")]
        src.scrape = {"a": [("a-0:uid", port, "127.0.0.1")], "b": [("b-0:uid", _closed_port(), "127.0.0.1")]}
        for _ in range(10):
            m.request("m", "1", "rest", 200, 0.004)  # before the dashboard: not counted as recent
        first = await d.sample()
        assert first is not None and first["key"] == "ml/a" and first["metrics"]["note"] == ""
        assert d.history.samples[-1].rps is None  # a rate needs two samples
        for _ in range(30):
            m.request("m", "1", "rest", 200, 0.004)
        for _ in range(10):
            m.request("m", "1", "rest", 503, 0.004)
        await asyncio.sleep(0.1)
        tick = await d.sample()
        assert tick is not None
        a = d._services["ml/a"].history.samples[-1]
        assert a.rps is not None and a.errors is not None and a.rps > a.errors > 0
        assert a.errors / a.rps == pytest.approx(10 / 40, rel=0.01)
        assert a.p50 is not None and 2.5 <= a.p50 <= 5.0 and a.queue == 0.0
        b = d._services["ml/b"]
        assert b.latest is not None and b.latest["metrics"] == {
            "targets": 1,
            "answered": 0,
            "note": "pods unreachable from here: status only",
        }
        s = b.history.samples[-1]
        assert (s.rps, s.errors, s.p50, s.queue, s.in_flight) == (None, None, None, None, None)
        # each service has its own decisions: a's scale-up is not b's
        src.items = [_status("a", desired=3), _status("b")]
        tick = await d.sample()
        assert tick is not None and tick["decision"]["after"] == 3
        assert [x.after for x in b.history.decisions] == [1]

    run(t)


async def _events(url: str, n: int, out: list[tuple[str, dict[str, Any]]]) -> None:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        name = ""
        async for raw in r.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                out.append((name, json.loads(line[6:])))
                if len(out) == n:
                    return


async def _until(what: Callable[[], bool]) -> None:
    for _ in range(500):
        if what():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


def test_the_apis_take_a_service_and_its_stream_follows_it_until_it_is_deleted() -> None:
    async def t(src: Source, m: Metrics, port: int, d: Dashboard) -> None:
        src.items = [_status("b"), _status("a")]
        await d.start()
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{d.url}api/services") as r:
                assert [x["key"] for x in (await r.json())["services"]] == ["ml/a", "ml/b"]
            async with s.get(f"{d.url}api/status?service=ml/b") as r:
                assert (await r.json())["name"] == "b"
            async with s.get(f"{d.url}api/status") as r:
                assert (await r.json())["name"] == "b"  # the source's first
            async with s.get(f"{d.url}api/history?service=ml/a") as r:
                assert len((await r.json())["samples"]) == 1
            for path in ("status", "history", "events"):
                async with s.get(f"{d.url}api/{path}?service=ml/nope") as r:
                    body = await r.json()
                    assert r.status == 404 and body["services"] == ["ml/a", "ml/b"], path
        got: list[tuple[str, dict[str, Any]]] = []
        reader = asyncio.create_task(_events(f"{d.url}api/events?service=ml/b", 3, got))
        await _until(lambda: len(got) == 1)
        assert got[0][0] == "init" and got[0][1]["key"] == "ml/b"
        src.items = [_status("a"), _status("b", desired=2)]
        await d.sample()
        await _until(lambda: len(got) == 2)
        assert got[1][0] == "tick" and got[1][1]["status"]["desired"] == 2 and got[1][1]["decision"]["after"] == 2
        src.items = [_status("a")]
        await d.sample()
        await asyncio.wait_for(reader, 10)
        assert got[2][0] == "gone" and got[2][1]["key"] == "ml/b"
        assert [x["key"] for x in got[2][1]["services"]] == ["ml/a"]

    run(t)


def test_an_empty_source_says_so_and_a_failing_read_is_unreadable_until_a_read_succeeds() -> None:
    """The sampler itself (every 50 ms here): the page hears why the status cannot be read, then the service."""

    async def t(src: Source, m: Metrics, port: int, d: Dashboard) -> None:
        await d.start()
        got: list[tuple[str, dict[str, Any]]] = []
        reader = asyncio.create_task(_events(f"{d.url}api/events", 99, got))
        await _until(lambda: len(got) == 1)
        assert got[0] == ("empty", {"services": []})
        src.failure = RuntimeError("the API server did not answer: connection refused")
        await _until(lambda: len(got) == 2)
        assert got[1] == ("unreadable", {"message": "the API server did not answer: connection refused"})
        assert d.error == "the API server did not answer: connection refused"
        src.failure = None
        src.items = [_status("a")]
        await _until(lambda: any(name == "init" for name, _ in got))
        assert d.error is None
        init = next(doc for name, doc in got if name == "init")
        assert init["key"] == "ml/a"
        reader.cancel()

    run(t, interval=0.05)
