"""The live web dashboard: of a running service (``kubeinfer up --dashboard-port``) or of the InferenceServices on a
cluster (``kubeinfer dashboard``, :mod:`kubeinfer.kube.dashboard_source`).

An aiohttp app; the services it shows come from a :class:`Source`:

============================ =====================================================================================
``GET /``                    the page (plain HTML, CSS and JavaScript shipped in ``dashboard_static/``: no build
                             step, no network beyond this server)
``GET /static/NAME``         its assets
``GET /api/services``        the services shown (key, name, namespace, ready and desired replicas)
``GET /api/status``          one service's status JSON (``?service=KEY``; without it the first: a local platform
                             has one, and this is what ``GET /v1/status`` of its control endpoint answers)
``GET /api/history``         that service's samples and autoscaler decisions kept in memory
``GET /api/events``          Server-Sent Events for one service (``?service=KEY``): ``init`` (status, history, cost,
                             prices, the services), then ``tick`` every interval (status, the new samples, a decision
                             if the desired count changed, cost); ``empty`` while there is no service, ``gone`` when
                             the service was deleted, ``unreadable`` when the statuses cannot be read (``message``;
                             null once they can again)
============================ =====================================================================================

A :class:`Source` is two things: a status function (the status documents of the services to show, in the shape of
the local platform's ``GET /v1/status``) and, for each status, the list of ``/metrics`` endpoints to scrape
(:meth:`Source.scrape_list`). :class:`LocalSource` wraps the local platform's status handler (its replicas' ports or Unix
sockets and its router); the cluster source reads the API server and scrapes the pods at their IPs.

Every interval the dashboard reads the statuses, scrapes each service's targets and keeps a
:class:`~.dashboard_model.Sample` per service. With a router (local), the request rate is the router's counter and the
error rate its ``/metrics`` (responses by code); without one (a cluster), both are the replicas' own
``kubeinfer_requests_total`` counters, differenced (a restarted replica's counters start again from zero). p50/p99
are the replicas' request latency (decode, queue, model, encode; a router's hop is not in it), over the last
``latency_window`` intervals, read off the summed ``kubeinfer_request_duration_seconds`` histogram deltas as
Prometheus' ``histogram_quantile`` does. When a service has replicas to scrape and none answers (a dashboard outside
the cluster network cannot reach pod IPs), its figures are ``None`` and the page says why (``metrics.note``).

The dashboard is read-only and has no token: it answers only requests whose ``Host`` is a loopback name (so a web
page elsewhere cannot read it through DNS rebinding), and anyone on this machine who can reach 127.0.0.1 can read
the status, as they can reach the router. In a cluster it is reached through ``kubectl port-forward``, whose
connections arrive with the browser's ``Host: localhost:PORT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from kubeinfer.local.dashboard_model import History, Prices, Sample, cost, histogram_quantile, is_error_code
from kubeinfer.local.metrics import Address, http_get

__all__ = ["Dashboard", "DashboardOptions", "LocalSource", "Source"]

log = logging.getLogger("kubeinfer.local.dashboard")

StatusFn = Callable[[], Awaitable[dict[str, Any]]]

LATENCY = "kubeinfer_request_duration_seconds"
REQUESTS = "kubeinfer_requests"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
MAX_CLIENTS = 32
"""Open event streams at most (each costs a task and a socket); more get 503."""
EVENTS_SENT = 200
"""The latest events sent with each status (the status keeps up to 500)."""
UNREACHABLE = "the replicas' /metrics did not answer: request rate, errors, latency and queue are not known"


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
    """Samples kept per service (900 at 1 s: the last 15 minutes)."""


class Source(Protocol):
    """The services a dashboard shows: a status function and, per status, a metrics-scrape list. Plain values
    only, so that a source elsewhere (:mod:`kubeinfer.kube.dashboard_source`) implements it without importing this
    module."""

    unreachable: str
    """The note the page shows when a service has replicas to scrape and none answered."""

    async def statuses(self) -> list[dict[str, Any]]:
        """The status documents, each shaped as the local platform's ``GET /v1/status`` (``name``, ``desired``,
        ``ready_replicas``, ``replicas``, ``autoscaling``, ``events``, ...; a ``namespace`` when there is one)."""
        ...

    def scrape_list(self, status: dict[str, Any]) -> Sequence[tuple[str, Address, str]]:
        """Each replica's ``/metrics`` as ``(key, address, host)``: ``key`` names it across samples (a restarted
        replica is a new key, its counters new), ``address`` a TCP port on ``host`` or a Unix socket path."""
        ...

    def router(self, status: dict[str, Any]) -> tuple[Address, str] | None:
        """The router in front of the replicas as ``(port, host)``; None: the request and error rates come from the
        replicas' own counters."""
        ...


class LocalSource:
    """The local platform: one service, its status from the platform's own status handler, its replicas' ports
    (else their Unix sockets) and its router (``endpoint.http``)."""

    unreachable = UNREACHABLE

    def __init__(self, status: StatusFn) -> None:
        self._status = status

    async def statuses(self) -> list[dict[str, Any]]:
        return [await self._status()]

    def scrape_list(self, status: dict[str, Any]) -> list[tuple[str, Address, str]]:
        out: list[tuple[str, Address, str]] = []
        for r in status.get("replicas", ()):
            if r.get("state") not in ("Starting", "Running", "Terminating"):
                continue
            address: Address | None = r.get("uds") or r.get("port")
            if address is not None:
                out.append((f"{r['id']}:{r.get('pid')}", address, "127.0.0.1"))
        return out

    def router(self, status: dict[str, Any]) -> tuple[Address, str] | None:
        url = (status.get("endpoint") or {}).get("http")
        if not url:
            return None
        parts = urlsplit(url)
        if parts.port is None:
            return None
        host = parts.hostname or "127.0.0.1"
        return parts.port, "127.0.0.1" if host in ("0.0.0.0", "") else host


@dataclass(frozen=True, slots=True)
class Endpoint:
    key: str
    address: Address
    host: str = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Targets:
    """What to scrape for one service (from its source's scrape list and router)."""

    replicas: tuple[Endpoint, ...] = ()
    router: Endpoint | None = None
    unreachable: str = UNREACHABLE

    @classmethod
    def of(cls, source: Source, st: dict[str, Any]) -> Targets:
        r = source.router(st)
        return cls(
            tuple(Endpoint(k, a, h) for k, a, h in source.scrape_list(st)),
            None if r is None else Endpoint("router", r[0], r[1]),
            source.unreachable,
        )


def service_key(st: dict[str, Any]) -> str:
    """``namespace/name`` on a cluster, ``name`` locally."""
    ns = st.get("namespace")
    return f"{ns}/{st['name']}" if ns else str(st["name"])


@dataclass
class _Histogram:
    bounds: tuple[float, ...]
    cumulative: tuple[float, ...]


@dataclass
class _Scrape:
    latency: _Histogram | None = None
    queue: float = 0.0
    in_flight: float = 0.0
    requests: float = 0.0
    """``kubeinfer_requests_total``, all codes."""
    errors: float = 0.0
    """``kubeinfer_requests_total`` of the codes :func:`is_error_code` counts."""


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
        elif fam.name == REQUESTS:
            for s in fam.samples:
                if s.name == REQUESTS + "_total":
                    out.requests += s.value
                    if is_error_code(s.labels.get("code", "")):
                        out.errors += s.value
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


class _Service:
    """What the dashboard keeps for one service between samples: its history and the counters rates come from."""

    def __init__(self, options: DashboardOptions) -> None:
        self.options = options
        self.history = History(options.history)
        self.seq = 0  # samples taken; a stream sends those it has not sent yet
        self.latest: dict[str, Any] | None = None
        self._prev_requests: tuple[float, float] | None = None  # (t, requests)
        self._prev_errors: tuple[float, float] | None = None
        self._prev_counts: tuple[float, dict[str, tuple[float, float]]] | None = None  # t, key -> (requests, errors)
        self._prev_latency: dict[str, _Histogram] = {}
        self._window: deque[tuple[tuple[float, ...], list[float]]] = deque(maxlen=max(1, options.latency_window))

    def record(
        self,
        st: dict[str, Any],
        targets: Targets,
        scrapes: dict[str, _Scrape],
        router_errors: float | None,
        now: float,
    ) -> dict[str, Any]:
        """Keep one sample from a status and its scrapes (``scrapes``: the endpoints that answered, by key)."""
        router = st.get("router") or {}
        live = list(scrapes.values())
        answered = bool(scrapes)
        rps: float | None
        errors: float | None
        queue: float | None
        in_flight: float | None
        if targets.router is not None:
            rps = self._rate("_prev_requests", now, float(router.get("requests", 0)), float(router.get("rps", 0.0)))
            errors = 0.0 if router_errors is None else self._rate("_prev_errors", now, router_errors, 0.0)
        else:
            rps, errors = self._replica_rates(now, scrapes)
        if answered or targets.router is not None:
            queue = float(router.get("buffered", 0)) + sum(s.queue for s in live)
            # a replica counts the scrape that reads its gauge among its requests in flight
            in_flight = sum(max(0.0, s.in_flight - 1) for s in live)
        else:
            queue = in_flight = None
        p50, p99 = self._latency(scrapes)
        reason, message = _why(st)
        sample = Sample(
            t=now,
            rps=None if rps is None else round(rps, 3),
            errors=None if errors is None else round(errors, 3),
            p50=None if p50 is None else round(p50 * 1000, 3),
            p99=None if p99 is None else round(p99 * 1000, 3),
            queue=queue,
            in_flight=in_flight,
            desired=int(st.get("desired", 0)),
            ready=int(st.get("ready_replicas", 0)),
            replicas=len([r for r in st.get("replicas", ()) if r.get("state") != "Terminated"]),
            reason=reason,
        )
        decision = self.history.add(sample, message)
        self.seq += 1
        note = targets.unreachable if targets.replicas and not answered else ""
        self.latest = {
            "key": service_key(st),
            "status": _trim(st),
            "seq": self.seq,
            "decision": None if decision is None else decision.to_json(),
            "cost": cost(st, self.options.prices, self.history.mean_rps(60.0)).to_json(),
            "metrics": {"targets": len(targets.replicas), "answered": len(scrapes), "note": note},
        }
        return self.latest

    def _rate(self, attr: str, now: float, total: float, first: float) -> float:
        prev: tuple[float, float] | None = getattr(self, attr)
        setattr(self, attr, (now, total))
        if prev is None or now <= prev[0]:
            return first
        return max(0.0, total - prev[1]) / (now - prev[0])

    def _replica_rates(self, now: float, scrapes: dict[str, _Scrape]) -> tuple[float | None, float | None]:
        """Requests and errors per second from the replicas' own counters (no router): the counters' growth since
        the previous sample, summed; a replica seen for the first time after the first sample counts from zero."""
        prev = self._prev_counts
        self._prev_counts = (now, {k: (s.requests, s.errors) for k, s in scrapes.items()})
        if prev is None or now <= prev[0] or not scrapes:
            return None, None
        t0, before = prev
        requests = errors = 0.0
        for key, s in scrapes.items():
            r0, e0 = before.get(key, (0.0, 0.0))
            requests += s.requests - r0 if s.requests >= r0 else s.requests
            errors += s.errors - e0 if s.errors >= e0 else s.errors
        return requests / (now - t0), errors / (now - t0)

    def _latency(self, scrapes: dict[str, _Scrape]) -> tuple[float | None, float | None]:
        """Add this tick's histogram deltas (summed over replicas) to the window; p50 and p99 over the window."""
        first = self.seq == 0
        tick: dict[tuple[float, ...], list[float]] = {}
        seen: dict[str, _Histogram] = {}
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


class Dashboard:
    """The dashboard's server and sampler. ``source``: a :class:`Source`, or the local platform's status function
    (one service, wrapped in :class:`LocalSource`)."""

    def __init__(self, source: Source | StatusFn, options: DashboardOptions) -> None:
        self.source: Source = LocalSource(source) if callable(source) else source
        self.options = options
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._task: asyncio.Task[None] | None = None
        self._tick = asyncio.Event()
        self._closing = False
        self._clients = 0
        self._sampled = False
        self._tried = False  # a sample was attempted (it may have failed): requests need not wait for one
        self._services: dict[str, _Service] = {}
        self.error: str | None = None
        """Why the last read of the statuses failed (None: it did not); the page shows it."""
        self._page = (static_dir() / "index.html").read_bytes()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def history(self) -> History:
        """The first service's history (a local platform's one service)."""
        first = next(iter(self._services.values()), None)
        return first.history if first is not None else History(self.options.history)

    # -- lifecycle --------------------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1") -> int:
        """Listen on ``host:options.port`` (OSError when it is taken) and start sampling; returns the port."""
        app = web.Application(middlewares=[self._only_loopback])
        app.router.add_get("/", self._index)
        app.router.add_get("/api/services", self._api_services)
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
            except Exception as e:  # the page must go on updating: say why, and try again next tick
                message = str(e) or type(e).__name__
                if self.error is None:
                    log.exception(
                        "reading the status failed; the dashboard tries again every %gs", self.options.interval
                    )
                elif message != self.error:
                    log.warning("reading the status failed: %s", message)
                self.error = message
                self._tried = True
                self._notify()
            await asyncio.sleep(self.options.interval)

    async def sample(self) -> dict[str, Any] | None:
        """Read the statuses and the metrics once, record a sample per service, wake the event streams; returns the
        first service's tick (None without a service)."""
        statuses = await self.source.statuses()
        now = time.time()
        ticks = await asyncio.gather(*(self._sample_one(st, now) for st in statuses))
        keys = {t["key"] for t in ticks}
        for gone in set(self._services) - keys:
            del self._services[gone]
        self._sampled = self._tried = True
        self.error = None
        self._notify()
        return ticks[0] if ticks else None

    async def _sample_one(self, st: dict[str, Any], now: float) -> dict[str, Any]:
        key = service_key(st)
        svc = self._services.get(key)
        if svc is None:
            svc = self._services[key] = _Service(self.options)
        targets = Targets.of(self.source, st)
        scrapes, router_errors = await asyncio.gather(
            asyncio.gather(*(self._scrape_replica(e) for e in targets.replicas)), self._scrape_router(targets.router)
        )
        answered = {e.key: s for e, s in zip(targets.replicas, scrapes, strict=True) if s is not None}
        return svc.record(st, targets, answered, router_errors, now)

    async def _scrape_replica(self, e: Endpoint) -> _Scrape | None:
        try:
            code, body = await http_get(e.address, "/metrics", timeout=min(0.5, self.options.interval), host=e.host)
            if code != 200:
                return None
            return _parse_replica(body.decode(errors="replace"))
        except (OSError, TimeoutError, ValueError, IndexError):
            return None

    async def _scrape_router(self, e: Endpoint | None) -> float | None:
        if e is None:
            return None
        try:
            code, body = await http_get(e.address, "/metrics", timeout=min(0.5, self.options.interval), host=e.host)
            return _router_errors(body.decode(errors="replace")) if code == 200 else None
        except (OSError, TimeoutError, ValueError, IndexError):
            return None

    def _notify(self) -> None:
        ev, self._tick = self._tick, asyncio.Event()
        ev.set()

    def services(self) -> list[dict[str, Any]]:
        """The services shown, in key order: what the page's picker lists."""
        out = []
        for key in sorted(self._services):
            latest = self._services[key].latest
            if latest is None:
                continue
            st = latest["status"]
            out.append(
                {
                    "key": key,
                    "name": st.get("name"),
                    "namespace": st.get("namespace"),
                    "ready": st.get("ready_replicas", 0),
                    "desired": st.get("desired", 0),
                }
            )
        return out

    def _pick(self, key: str | None) -> str | None:
        if key is not None:
            return key if key in self._services and self._services[key].latest is not None else None
        return next((k for k in sorted(self._services) if self._services[k].latest is not None), None)

    # -- HTTP --------------------------------------------------------------------------------------------------
    @web.middleware
    async def _only_loopback(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        host = urlsplit(f"//{request.host}").hostname or ""
        if host not in LOOPBACK:
            return web.json_response(
                {
                    "error": f"Host {request.host!r} is not this machine's loopback: open http://127.0.0.1:PORT/ or "
                    "http://localhost:PORT/ (on a cluster: through kubectl port-forward)"
                },
                status=403,
            )
        return await handler(request)

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(body=self._page, content_type="text/html", charset="utf-8")

    async def _first_sample(self) -> None:
        """Wait for the sampler's first attempt (a page opened at once would find no service yet)."""
        while not self._tried and not self._closing and self._task is not None:
            await self._tick.wait()

    async def _api_services(self, request: web.Request) -> web.Response:
        await self._first_sample()
        return _json({"services": self.services()})

    async def _api_status(self, request: web.Request) -> web.Response:
        want = request.query.get("service")
        statuses = await self.source.statuses()
        for st in statuses:
            if want is None or service_key(st) == want:
                return _json(st)
        return _no_service(want, sorted(service_key(s) for s in statuses))

    async def _api_history(self, request: web.Request) -> web.Response:
        await self._first_sample()
        key = self._pick(request.query.get("service"))
        if key is None:
            return _no_service(request.query.get("service"), sorted(self._services))
        return _json(self._services[key].history.to_json())

    async def _api_events(self, request: web.Request) -> web.StreamResponse:
        want = request.query.get("service")
        if self._sampled and want is not None and self._pick(want) is None:
            return _no_service(want, sorted(self._services))
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
            empty_sent = False
            error_sent: str | None = None
            while (key := self._pick(want)) is None:  # the first sample is on its way, or there is no service yet
                if self._closing:
                    return resp
                if self.error != error_sent:
                    error_sent = self.error
                    await resp.write(_event("unreadable", {"message": self.error}))
                if self._sampled and not empty_sent:
                    if want is not None:
                        await resp.write(_event("gone", {"key": want, "services": self.services()}))
                        return resp
                    await resp.write(_event("empty", {"services": []}))
                    empty_sent = True
                await self._tick.wait()
            svc = self._services[key]
            latest = svc.latest
            assert latest is not None  # _pick returns services with a sample
            sent = latest["seq"]
            init = {
                **latest,
                "history": svc.history.to_json(),
                "prices": _prices(self.options.prices),
                "services": self.services(),
            }
            await resp.write(_event("init", init))
            while not self._closing:
                await self._tick.wait()
                if self._closing:
                    break
                if self.error != error_sent:  # the status could not be read (or can again): the page says so
                    error_sent = self.error
                    await resp.write(_event("unreadable", {"message": self.error}))
                current = self._services.get(key)
                if current is not svc or svc.latest is None:
                    await resp.write(_event("gone", {"key": key, "services": self.services()}))
                    break
                latest = svc.latest
                new = latest["seq"] - sent
                if new <= 0:
                    continue
                samples = list(svc.history.samples)[-new:]
                sent = latest["seq"]
                tick = {**latest, "samples": [s.to_json() for s in samples], "services": self.services()}
                await resp.write(_event("tick", tick))
            return resp
        except ConnectionResetError:  # the page went away
            return resp
        finally:
            self._clients -= 1


def _no_service(want: str | None, known: list[str]) -> web.Response:
    what = f"no service {want!r}" if want is not None else "no service yet"
    return web.json_response({"error": what, "services": known}, status=404)


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
