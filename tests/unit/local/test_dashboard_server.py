"""The dashboard's server: the page and its assets, the status and history APIs, the event stream, the loopback
guard, and what a sample reads from real ``/metrics`` endpoints (a replica's, rendered by the server's own metrics
code, and a router's) served on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from kubeinfer.local.dashboard import Dashboard, DashboardOptions
from kubeinfer.local.dashboard_model import Prices
from kubeinfer.server.metrics import Metrics

ROUTER_METRICS = """# HELP kubeinfer_router_requests_total Responses by the backend that gave them and status.
# TYPE kubeinfer_router_requests_total counter
kubeinfer_router_requests_total{backend="r1",code="200"} %d
kubeinfer_router_requests_total{backend="r1",code="404"} 7
kubeinfer_router_requests_total{backend="",code="503"} %d
"""


def _status(replica_port: int, router_port: int, desired: int = 1, reason: str = "") -> dict[str, Any]:
    return {
        "name": "svc",
        "revision": 1,
        "version": "1",
        "desired": desired,
        "ready_replicas": 1,
        "replicas": [
            {
                "id": "svc-r1-1",
                "pid": 1,
                "port": replica_port,
                "uds": None,
                "state": "Running",
                "cpu": 0.1,
                "memory": 2**28,
            },
        ],
        "autoscaling": {"policy": "hpa", "min": 1, "max": 4, "reason": reason, "message": "because"},
        "events": [],
        "endpoint": {"http": f"http://127.0.0.1:{router_port}", "grpc": None},
        "router": {"requests": 0, "retries": 0, "buffered": 2, "buffered_total": 2, "rejected": 0, "rps": 0.0},
        "spec": {"resources": {"requests": {"cpu": "1", "memory": "1Gi"}}},
    }


async def _serve(handler: Callable[[web.Request], Awaitable[web.Response]]) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_get("/metrics", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


class World:
    """A replica's metrics (the server's own Metrics), a router's /metrics text and a status to serve."""

    def __init__(self) -> None:
        self.metrics = Metrics()
        self.ok = 0
        self.failed = 0
        self.status: dict[str, Any] = {}

    async def replica(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), content_type="text/plain")

    async def router(self, request: web.Request) -> web.Response:
        return web.Response(text=ROUTER_METRICS % (self.ok, self.failed), content_type="text/plain")

    async def get_status(self) -> dict[str, Any]:
        return self.status


def run(test: Callable[[World, Dashboard], Awaitable[None]], start: bool = False) -> None:
    async def main() -> None:
        w = World()
        r1, replica_port = await _serve(w.replica)
        r2, router_port = await _serve(w.router)
        w.status = _status(replica_port, router_port)
        # a long interval: the test takes its samples itself
        d = Dashboard(w.get_status, DashboardOptions(port=0, prices=Prices(1.0, 1.0, 1.0), interval=3600))
        try:
            if start:
                await d.start()
            await test(w, d)
        finally:
            await d.stop()
            await r1.cleanup()
            await r2.cleanup()

    asyncio.run(main())


def test_p50_and_p99_are_read_off_the_replicas_latency_histogram_of_the_recent_requests() -> None:
    async def t(w: World, d: Dashboard) -> None:
        for _ in range(50):
            w.metrics.request("m", "1", "rest", 200, 5.0)  # before the dashboard started: not recent
        first = await d.sample()
        assert d.history.samples[-1].p50 is None and first["seq"] == 1
        for _ in range(98):
            w.metrics.request("m", "1", "rest", 200, 0.004)
        for _ in range(2):
            w.metrics.request("m", "1", "rest", 200, 0.8)
        await d.sample()
        s = d.history.samples[-1]
        assert s.p50 is not None and 2.5 <= s.p50 <= 5.0  # ms, inside the 2.5-5 ms bucket
        assert s.p99 is not None and 500 <= s.p99 <= 1000
        assert s.queue == 2.0  # the router's buffered requests (the replica's batcher queue is empty)

    run(t)


def test_errors_per_second_count_the_routers_5xx_not_its_4xx() -> None:
    async def t(w: World, d: Dashboard) -> None:
        await d.sample()
        w.ok, w.failed = 100, 30
        w.status["router"]["requests"] = 130
        await asyncio.sleep(0.2)
        await d.sample()
        s = d.history.samples[-1]
        assert s.errors > 0 and s.rps > s.errors
        assert s.errors / s.rps == pytest.approx(30 / 130, rel=0.01)

    run(t)


def test_a_change_of_the_desired_count_is_a_decision_with_its_reason_and_cost_follows_the_replicas() -> None:
    async def t(w: World, d: Dashboard) -> None:
        await d.sample()
        w.status["desired"] = 3
        w.status["autoscaling"]["reason"] = "ScaleUp"
        w.status["replicas"] = w.status["replicas"] * 3
        tick = await d.sample()
        assert tick["decision"]["before"] == 1 and tick["decision"]["after"] == 3
        assert tick["decision"]["reason"] == "ScaleUp" and tick["decision"]["message"] == "because"
        assert tick["cost"]["per_hour"] == pytest.approx(3 * 2.0)  # 3 x (1 CPU + 1 GiB) at 1 each

    run(t)


def test_without_an_autoscaler_reason_a_decision_takes_the_services_latest_event() -> None:
    """policy none: ``kubeinfer scale`` changed the count, and the service's event says so."""

    async def t(w: World, d: Dashboard) -> None:
        await d.sample()
        w.status["desired"] = 2
        w.status["events"] = [
            {"time": 1.0, "type": "Normal", "reason": "ScalingReplicaSet", "object": "svc", "message": "1 to 2"},
            {"time": 2.0, "type": "Normal", "reason": "Created", "object": "svc-r1-2", "message": "revision 1"},
        ]
        tick = await d.sample()
        assert (tick["decision"]["reason"], tick["decision"]["message"]) == ("ScalingReplicaSet", "1 to 2")

    run(t)


async def _events(url: str, n: int) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        assert r.headers["Content-Type"] == "text/event-stream"
        name = ""
        async for raw in r.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                out.append((name, json.loads(line[6:])))
                if len(out) == n:
                    return out
    return out


def test_the_page_its_assets_and_the_apis_are_served() -> None:
    async def t(w: World, d: Dashboard) -> None:
        async with aiohttp.ClientSession() as s:
            async with s.get(d.url) as r:
                page = await r.text()
                assert r.status == 200 and r.content_type == "text/html"
                assert '<script src="/static/app.js"' in page and "https://" not in page  # nothing from elsewhere
            for asset, kind in (("app.js", "javascript"), ("style.css", "text/css")):
                async with s.get(f"{d.url}static/{asset}") as r:
                    assert r.status == 200 and kind in r.content_type
            async with s.get(f"{d.url}api/status") as r:
                assert await r.json() == w.status
            async with s.get(f"{d.url}api/history") as r:
                assert set(await r.json()) == {"samples", "decisions"}

    run(t, start=True)


def test_the_event_stream_sends_the_history_then_each_new_sample() -> None:
    async def t(w: World, d: Dashboard) -> None:
        reader = asyncio.create_task(_events(f"{d.url}api/events", 2))
        while d._clients == 0:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        w.status["desired"] = 2
        await d.sample()
        (first, init), (second, tick) = await asyncio.wait_for(reader, 10)
        assert first == "init" and init["status"]["name"] == "svc"
        assert init["prices"] == {"cpu_hour": 1.0, "gib_hour": 1.0, "gpu_hour": 1.0}
        assert len(init["history"]["samples"]) == 1
        assert second == "tick" and tick["status"]["desired"] == 2
        assert [s["desired"] for s in tick["samples"]] == [2] and tick["decision"]["after"] == 2

    run(t, start=True)


def test_a_request_for_another_host_name_is_refused() -> None:
    """A page elsewhere that rebinds its DNS name to 127.0.0.1 cannot read the status."""

    async def t(w: World, d: Dashboard) -> None:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{d.url}api/status", headers={"Host": f"evil.example:{d.port}"}) as r:
                assert r.status == 403 and "loopback" in (await r.json())["error"]
            async with s.get(f"{d.url}api/status", headers={"Host": f"localhost:{d.port}"}) as r:
                assert r.status == 200

    run(t, start=True)


def test_a_taken_port_is_an_os_error() -> None:
    async def t(w: World, d: Dashboard) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            other = Dashboard(w.get_status, DashboardOptions(port=taken.getsockname()[1]))
            with pytest.raises(OSError):
                await other.start()
            await other.stop()

    run(t)
