"""The live web dashboard of a running service (``kubeinfer up --dashboard-port``).

An aiohttp app on 127.0.0.1 beside the control endpoint:

============================ =====================================================================================
``GET /``                    the page (plain HTML, CSS and JavaScript shipped in ``dashboard_static/``: no build
                             step, no network beyond this server)
``GET /static/NAME``         its assets
``GET /api/status``          the service's status JSON (what ``GET /v1/status`` of the control endpoint answers)
``GET /api/history``         the samples and autoscaler decisions kept in memory
``GET /api/events``          Server-Sent Events: ``init`` (status, history, cost, prices), then ``tick`` every
                             interval (status, the new samples, a decision if the desired count changed, cost)
============================ =====================================================================================

Every interval the dashboard reads the status through the function it was given (the platform's own status
handler), the router's ``/metrics`` (responses by code: the error rate) and each replica's ``/metrics`` (the
``kubeinfer_request_duration_seconds`` histogram and the queue depth), and keeps a :class:`~.dashboard_model.Sample`.
The router keeps no latency histogram, so p50/p99 are the replicas' own request latency (decode, queue, model,
encode; the router's hop is not in it), over the last ``latency_window`` intervals, read off the summed histogram
deltas as Prometheus' ``histogram_quantile`` does.

The dashboard is read-only and has no token: it answers only requests whose ``Host`` is a loopback name (so a web
page elsewhere cannot read it through DNS rebinding), and anyone on this machine who can reach 127.0.0.1 can read
the status, as they can reach the router.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from kubeinfer.local.dashboard_model import History, Prices, Sample, cost, histogram_quantile, is_error_code
from kubeinfer.local.metrics import Address, http_get

__all__ = ["Dashboard", "DashboardOptions"]

log = logging.getLogger("kubeinfer.local.dashboard")

StatusFn = Callable[[], Awaitable[dict[str, Any]]]

LATENCY = "kubeinfer_request_duration_seconds"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
MAX_CLIENTS = 32
"""Open event streams at most (each costs a task and a socket); more get 503."""
EVENTS_SENT = 200
"""The latest events sent with each status (the status keeps up to 500)."""


def static_dir() -> Path:
    return Path(str(resources.files("kubeinfer.local") / "dashboard_static"))


@dataclass(frozen=True, slots=True)
class DashboardOptions:
    port: int
    """0: a free port."""
    prices: Prices = field(default_factory=Prices)
    interval: float = 1.0
    """Seconds between samples (and events sent to the page)."""
    latency_window: int = 5
    """Samples whose latency histograms the p50/p99 are read from."""
    history: int = 900
    """Samples kept (900 at 1 s: the last 15 minutes)."""


@dataclass
class _Histogram:
    bounds: tuple[float, ...]
    cumulative: tuple[float, ...]


@dataclass
class _Scrape:
    latency: _Histogram | None = None
    queue: float = 0.0
    in_flight: float = 0.0


def _parse_replica(text: str) -> _Scrape:
    out = _Scrape()
    buckets: dict[float, float] = {}
    for fam in text_string_to_metric_families(text):
        if fam.name == LATENCY:
            for s in fam.samples:
                if s.name == LATENCY + "_bucket":
                    le = float(s.labels["le"])
                    buckets[le] = buckets.get(le, 0.0) + s.value
        elif fam.name == "kubeinfer_queue_depth":
            out.queue += sum(s.value for s in fam.samples)
        elif fam.name == "kubeinfer_requests_in_flight":
            out.in_flight += sum(s.value for s in fam.samples)
    if buckets:
        bounds = tuple(sorted(buckets))
        out.latency = _Histogram(bounds, tuple(buckets[b] for b in bounds))
    return out


def _router_errors(text: str) -> float:
    total = 0.0
    for fam in text_string_to_metric_families(text):
        if fam.name == "kubeinfer_router_requests":
            for s in fam.samples:
                if s.name.endswith("_total") and is_error_code(s.labels.get("code", "")):
                    total += s.value
    return total


def _router_address(status: dict[str, Any]) -> tuple[str, int] | None:
    url = (status.get("endpoint") or {}).get("http")
    if not url:
        return None
    parts = urlsplit(url)
    if parts.port is None:
        return None
    host = parts.hostname or "127.0.0.1"
    return ("127.0.0.1" if host in ("0.0.0.0", "") else host), parts.port


class Dashboard:
    def __init__(self, status: StatusFn, options: DashboardOptions) -> None:
        self._status = status
        self.options = options
        self.history = History(options.history)
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._task: asyncio.Task[None] | None = None
        self._tick = asyncio.Event()
        self._closing = False
        self._clients = 0
        self._seq = 0  # samples taken; a stream sends those it has not sent yet
        self._latest: dict[str, Any] | None = None
        self._prev_requests: tuple[float, float] | None = None  # (t, requests)
        self._prev_errors: tuple[float, float] | None = None
        self._prev_latency: dict[tuple[str, int | None], _Histogram] = {}
        self._window: deque[tuple[tuple[float, ...], list[float]]] = deque(maxlen=max(1, options.latency_window))
        self._page = (static_dir() / "index.html").read_bytes()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    # -- lifecycle --------------------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1") -> int:
        """Listen on ``host:options.port`` (OSError when it is taken) and start sampling; returns the port."""
        app = web.Application(middlewares=[self._only_loopback])
        app.router.add_get("/", self._index)
        app.router.add_get("/api/status", self._api_status)
        app.router.add_get("/api/history", self._api_history)
        app.router.add_get("/api/events", self._api_events)
        app.router.add_static("/static/", static_dir(), append_version=False)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, self.options.port)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            self._runner = None
            raise
        server = site._server
        if server is None:  # start() either listens or raises
            raise OSError(f"the dashboard did not listen on {host}:{self.options.port}")
        self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        self._task = asyncio.create_task(self._sample_forever(), name="kubeinfer-dashboard-sampler")
        return self.port

    async def stop(self) -> None:
        self._closing = True
        self._notify()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._runner is not None:
            await self._runner.cleanup()

    # -- sampling ----------------------------------------------------------------------------------------------
    async def _sample_forever(self) -> None:
        while True:
            try:
                await self.sample()
            except asyncio.CancelledError:
                raise
            except Exception:  # the page must go on updating: log (rate-limited) and try again next tick
                log.exception("dashboard sample failed; it goes on")
            await asyncio.sleep(self.options.interval)

    async def sample(self) -> dict[str, Any]:
        """Read the status and the metrics once, record a sample, wake the event streams; returns the tick."""
        st = await self._status()
        now = time.time()
        replicas = [r for r in st.get("replicas", ()) if r.get("state") in ("Starting", "Running", "Terminating")]
        scrapes, router_errors = await asyncio.gather(
            asyncio.gather(*(self._scrape_replica(r) for r in replicas)), self._scrape_router(st)
        )
        router = st.get("router") or {}
        rps = self._rate("_prev_requests", now, float(router.get("requests", 0)), float(router.get("rps", 0.0)))
        errors = 0.0 if router_errors is None else self._rate("_prev_errors", now, router_errors, 0.0)
        p50, p99 = self._latency({(r["id"], r.get("pid")): s for r, s in zip(replicas, scrapes, strict=True) if s})
        live = [s for s in scrapes if s is not None]
        reason, message = _why(st)
        sample = Sample(
            t=now,
            rps=round(rps, 3),
            errors=round(errors, 3),
            p50=None if p50 is None else round(p50 * 1000, 3),
            p99=None if p99 is None else round(p99 * 1000, 3),
            queue=float(router.get("buffered", 0)) + sum(s.queue for s in live),
            # a replica counts the scrape that reads its gauge among its requests in flight
            in_flight=sum(max(0.0, s.in_flight - 1) for s in live),
            desired=int(st.get("desired", 0)),
            ready=int(st.get("ready_replicas", 0)),
            replicas=len([r for r in st.get("replicas", ()) if r.get("state") != "Terminated"]),
            reason=reason,
        )
        decision = self.history.add(sample, message)
        self._seq += 1
        self._latest = {
            "status": _trim(st),
            "seq": self._seq,
            "decision": None if decision is None else decision.to_json(),
            "cost": cost(st, self.options.prices, self.history.mean_rps(60.0)).to_json(),
        }
        self._notify()
        return self._latest

    def _rate(self, attr: str, now: float, total: float, first: float) -> float:
        prev: tuple[float, float] | None = getattr(self, attr)
        setattr(self, attr, (now, total))
        if prev is None or now <= prev[0]:
            return first
        return max(0.0, total - prev[1]) / (now - prev[0])

    def _latency(self, scrapes: dict[tuple[str, int | None], _Scrape]) -> tuple[float | None, float | None]:
        """Add this tick's histogram deltas (summed over replicas) to the window; p50 and p99 over the window."""
        first = self._seq == 0
        tick: dict[tuple[float, ...], list[float]] = {}
        seen: dict[tuple[str, int | None], _Histogram] = {}
        for key, s in scrapes.items():
            h = s.latency
            if h is None:
                continue
            seen[key] = h
            prev = self._prev_latency.get(key)
            if prev is None and first:
                continue  # counted before the dashboard started: not recent
            if (
                prev is None
                or prev.bounds != h.bounds
                or any(c < p for c, p in zip(h.cumulative, prev.cumulative, strict=True))
            ):
                base: tuple[float, ...] = (0.0,) * len(h.cumulative)  # new or restarted: all of it is recent
            else:
                base = prev.cumulative
            delta = [c - b for c, b in zip(h.cumulative, base, strict=True)]
            acc = tick.setdefault(h.bounds, [0.0] * len(delta))
            for i, d in enumerate(delta):
                acc[i] += d
        self._prev_latency = seen
        for bounds, cum in tick.items():
            self._window.append((bounds, [c - (cum[i - 1] if i else 0.0) for i, c in enumerate(cum)]))
            break  # replicas of one service share the buckets; another set would be another server version
        else:
            self._window.append(((), []))
        total: dict[tuple[float, ...], list[float]] = {}
        for bounds, counts in self._window:
            if bounds:
                acc = total.setdefault(bounds, [0.0] * len(counts))
                for i, n in enumerate(counts):
                    acc[i] += n
        if not total:
            return None, None
        bounds, counts = next(iter(total.items()))
        return histogram_quantile(bounds, counts, 0.5), histogram_quantile(bounds, counts, 0.99)

    async def _scrape_replica(self, r: dict[str, Any]) -> _Scrape | None:
        address: Address | None = r.get("uds") or r.get("port")
        if address is None:
            return None
        try:
            code, body = await http_get(address, "/metrics", timeout=min(0.5, self.options.interval))
            if code != 200:
                return None
            return _parse_replica(body.decode(errors="replace"))
        except (OSError, TimeoutError, ValueError, IndexError):
            return None

    async def _scrape_router(self, st: dict[str, Any]) -> float | None:
        addr = _router_address(st)
        if addr is None:
            return None
        try:
            code, body = await http_get(addr[1], "/metrics", timeout=min(0.5, self.options.interval), host=addr[0])
            return _router_errors(body.decode(errors="replace")) if code == 200 else None
        except (OSError, TimeoutError, ValueError, IndexError):
            return None

    def _notify(self) -> None:
        ev, self._tick = self._tick, asyncio.Event()
        ev.set()

    # -- HTTP --------------------------------------------------------------------------------------------------
    @web.middleware
    async def _only_loopback(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        host = urlsplit(f"//{request.host}").hostname or ""
        if host not in LOOPBACK:
            return web.json_response(
                {"error": f"Host {request.host!r} is not this machine's loopback: open {self.url}"}, status=403
            )
        return await handler(request)

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(body=self._page, content_type="text/html", charset="utf-8")

    async def _api_status(self, request: web.Request) -> web.Response:
        return _json(await self._status())

    async def _api_history(self, request: web.Request) -> web.Response:
        return _json(self.history.to_json())

    async def _api_events(self, request: web.Request) -> web.StreamResponse:
        if self._clients >= MAX_CLIENTS:
            return web.json_response({"error": f"too many open dashboards (at most {MAX_CLIENTS})"}, status=503)
        self._clients += 1
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        try:
            await resp.prepare(request)
            # reconnect a second after the platform restarts or the connection drops
            await resp.write(b"retry: 1000\n\n")
            while self._latest is None and not self._closing:  # the sampler's first sample is on its way
                await self._tick.wait()
            if self._latest is None:
                return resp
            latest = self._latest
            sent = latest["seq"]
            init = {**latest, "history": self.history.to_json(), "prices": _prices(self.options.prices)}
            await resp.write(_event("init", init))
            while not self._closing:
                tick = self._tick
                await tick.wait()
                if self._closing or self._latest is None:
                    break
                latest = self._latest
                new = latest["seq"] - sent
                samples = list(self.history.samples)[-new:] if new > 0 else []
                sent = latest["seq"]
                await resp.write(_event("tick", {**latest, "samples": [s.to_json() for s in samples]}))
            return resp
        except ConnectionResetError:  # the page went away
            return resp
        finally:
            self._clients -= 1


def _why(st: dict[str, Any]) -> tuple[str, str]:
    """The autoscaler's last reason and message; without one (policy none: ``kubeinfer scale`` sets the count), the
    latest event of the service itself (``ScalingReplicaSet: scaled from 1 to 2 replicas by request``)."""
    auto = st.get("autoscaling") or {}
    if auto.get("reason"):
        return str(auto["reason"]), str(auto.get("message", ""))
    name = st.get("name")
    for e in reversed(st.get("events") or []):
        if e.get("object") == name:
            return str(e.get("reason", "")), str(e.get("message", ""))
    return "", ""


def _trim(st: dict[str, Any]) -> dict[str, Any]:
    events = st.get("events") or []
    return {**st, "events": events[-EVENTS_SENT:]} if len(events) > EVENTS_SENT else st


def _prices(p: Prices) -> dict[str, float]:
    return {"cpu_hour": p.cpu_hour, "gib_hour": p.gib_hour, "gpu_hour": p.gpu_hour}


def _json(doc: Any) -> web.Response:
    return web.Response(body=orjson.dumps(doc, default=str), content_type="application/json")


def _event(name: str, doc: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(doc, default=str) + b"\n\n"
