"""The router of ``kubeinfer up``: the one entry point in front of the replicas, HTTP/1.1 and gRPC.

It runs on the controller's event loop (uvloop) and does what a service mesh sidecar does for one service:

- **Load balancing**: power of two choices on least outstanding requests among the ready backends
  (``core.pick``; Envoy ``LEAST_REQUEST``, Linkerd's balancer). With a routing policy (``set_routing``; a generative
  service's by default) it weighs each HTTP request by its estimated tokens instead, and may send related requests
  (a session, a shared prompt prefix) to one replica under a load bound (``balance``).
- **Retries** on another backend when a try fails before any response byte reached the client: connection refused,
  reset or closed (a replica killed, or draining and closing its kept-alive connection), a response that cannot be
  parsed, or the per-try timeout (a hung replica; once a response has begun it is an idle timeout, so that a
  generation may stream for longer while its events keep coming). A ``503`` or ``429`` from a replica (its queue or concurrency
  limit is full, or it is not ready or draining: it did not run the request) is also retried elsewhere, and its body
  dropped, while another backend exists. Retries are bounded by ``max_retries`` per request and by a retry budget
  (``core.RetryBudget``: at most ``retry_budget_ratio`` x recent requests + 10 per second, as Finagle and
  Linkerd do) so a broken backend cannot turn into a retry storm. Once response bytes went to the client a request
  is never retried (a failure then resets the client connection). Requests are retried whatever their method:
  inference is a pure function of its input, so a try that a dying replica may have run is safe to run again.
- **Buffering** while no backend is ready (scale from zero, all replicas restarting): requests wait, up to
  ``buffer_limit`` of them for at most ``buffer_timeout`` seconds, and go out in arrival order once ``set_backends``
  names a ready one; ``on_buffered`` tells the controller (scale from zero). Beyond the bound or the timeout the
  router answers ``503`` with ``Retry-After`` and ``{"error": ...}`` saying why.
- **Traffic split** (a canary, ``set_split``): the revision of each request is drawn by weight, then its backend
  within that revision by power of two choices; a request may pin a revision with the header
  ``x-kubeinfer-revision`` (a revision number, ``stable`` or ``canary``; an A/B test) or, over HTTP, with the model
  version of its OIP path (``/v2/models/NAME/versions/V/infer``). gRPC honours the header (metadata) only: the
  request's ``model_version`` field would have to be decoded on the proxy's path, which passes bytes through. A
  canary's error (5xx other than 503, or a failed try) is retried on the stable revision, within the retry bound and
  budget, unless the request was pinned to the canary: users see the stable answer while the canary's error counts
  against it. Every response is counted per revision (total, errors, latency histogram): the canary analysis
  (``lifecycle.canary``) reads them through ``stats().revisions``.
- **Its own endpoints**: ``/healthz`` (the router runs), ``/readyz`` and ``/v2/health/ready`` (at least one backend
  is ready), ``/v2/health/live``, ``/metrics`` (Prometheus text rendered at scrape time from plain counters, as
  ``server/metrics.py`` does, then the ready replicas' families from their latest scrape, labelled by replica:
  ``replica_metrics.py``). Every other path goes to a replica.

The HTTP hot path lives in ``http.py`` (raw asyncio protocols, httptools, pooled upstream connections) and gRPC in
``grpc.py``; both call the router through ``api.RouterApi`` only, which ``Router`` implements: the choice of backend,
the count of requests, tries and retries (through the retry budget), ejection and the buffer are written once, here.
Time-dependent work (per-try timeouts, buffer timeouts, the budget's window) runs in one housekeeping tick every
``TICK`` seconds, so the request path arms no timers; its clock reads are the latency measurement, one per try, and,
while a peak window is set, the arrival time of each accepted request (``core.ArrivalPeak``: the most requests
within an SLO-length window, which the tick's 50 ms precision would blur as it would a p99).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from kubeinfer.lifecycle.canary import Counters
from kubeinfer.local.router.api import Backend, BackendState, ConnLimits, OwnRoute, Waiting, log_unexpected_end
from kubeinfer.local.router.balance import LOAD_FACTOR, RoutingPolicy, Work, choose, estimate
from kubeinfer.local.router.core import ArrivalPeak, RetryBudget, RevisionCounts, choose_revision, pick
from kubeinfer.local.router.http import HttpFront
from kubeinfer.local.router.replica_metrics import ReplicaMetrics
from kubeinfer.server import tracing

if TYPE_CHECKING:
    from kubeinfer.local.router.grpc import GrpcFront

__all__ = ["BackendStats", "Router", "RouterStats"]

log = logging.getLogger("kubeinfer.local.router")

TICK = 0.05  # seconds between housekeeping passes: the precision of per-try and buffer timeouts
RETRY_AFTER = 1  # seconds, in the Retry-After of the router's own 503s
EJECT_SECONDS = 2.0  # a backend whose try failed (refused, reset, timed out) gets no first tries for this long
METRICS_CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class BackendStats:
    id: str
    outstanding: int  # requests sent and not yet answered
    total: int  # tries sent to it since it was first named
    ready: bool  # in the ready set now (False: retired, finishing its in-flight requests)
    tokens: int = 0  # estimated tokens of its outstanding requests (a service balanced by tokens)


@dataclass(frozen=True)
class RouterStats:
    """A snapshot of the router's counters (monotonic totals since ``start``) for the controller."""

    backends: Mapping[str, BackendStats]
    requests: int  # client requests accepted (HTTP and gRPC), router endpoints excluded
    retries: int
    buffered: int  # waiting for a ready backend now
    buffered_total: int
    rejected: int  # answered 503 because the buffer was full or the wait timed out
    rps: float  # requests accepted in the last whole second
    revisions: Mapping[int, Counters] = dataclasses.field(default_factory=dict)
    """Responses per revision (monotonic): the canary analysis' input."""
    split: tuple[tuple[int, int], ...] | None = None
    """(revision, weight) while a traffic split is set."""
    peak: int = 0
    """The most requests accepted within any ``peak_window`` seconds, over the same last whole second as ``rps``
    (``core.ArrivalPeak``); 0 while no window is set."""
    peak_window: float = 0.0
    """Seconds of the window ``peak`` counts in (0: not counted)."""

    @property
    def outstanding(self) -> int:
        return sum(b.outstanding for b in self.backends.values())

    @property
    def concurrency(self) -> int:
        """In-flight plus buffered requests: the autoscaler's concurrency observation."""
        return self.outstanding + self.buffered


class Router:
    """See the module docstring; implements ``api.RouterApi`` for its fronts. All methods must be called on the event
    loop that ``start`` ran on."""

    def __init__(
        self,
        *,
        per_try_timeout: float = 10.0,
        max_retries: int = 2,
        retry_budget_ratio: float = 0.2,
        buffer_limit: int = 1024,
        buffer_timeout: float = 30.0,
        max_body_bytes: int = 64 * 2**20,
        conn_limits: ConnLimits | None = None,
        on_buffered: Callable[[], None] | None = None,
        replica_metrics: bool = False,
        peak_window: float = 0.0,
    ) -> None:
        """``replica_metrics``: scrape the ready replicas and serve their families on ``/metrics`` too
        (``replica_metrics.py``; ``kubeinfer up`` does). ``peak_window``: count the most requests accepted within
        any window of that many seconds, each second (``stats().peak``; 0: do not count; see
        :meth:`set_peak_window`)."""
        if per_try_timeout <= 0:
            raise ValueError(f"per_try_timeout must be > 0 seconds, got {per_try_timeout}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0, got {max_retries}")
        if buffer_limit < 0:
            raise ValueError(f"buffer_limit must be an integer >= 0, got {buffer_limit}")
        if buffer_timeout < 0:
            raise ValueError(f"buffer_timeout must be >= 0 seconds, got {buffer_timeout}")
        if max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be an integer >= 1, got {max_body_bytes}")
        self.per_try_timeout = per_try_timeout
        self.max_retries = max_retries
        self.buffer_limit = buffer_limit
        self.buffer_timeout = buffer_timeout
        self.max_body_bytes = max_body_bytes
        self.conn_limits = conn_limits or ConnLimits()
        self.on_buffered = on_buffered
        self.now = 0.0  # the loop time of the last housekeeping tick
        self._budget = RetryBudget(retry_budget_ratio, 0.0)
        self._peak: ArrivalPeak | None = None
        self._arrival: Callable[[float], None] | None = None  # the peak's pending.append, while a window is set
        self.set_peak_window(peak_window)
        self._states: dict[Backend, BackendState] = {}
        self._retired: dict[int, BackendState] = {}  # id() -> state, while requests are still in flight
        self._all: list[BackendState] = []  # the ready set, as last given to set_backends
        self._ready: list[BackendState] = []  # the ready set less ejected backends (all of it if all are ejected)
        self._waiting: deque[Waiting] = deque()
        self._split: tuple[tuple[int, int], ...] | None = None  # (revision, weight), canary last
        self._groups: dict[int, list[BackendState]] = {}  # the live set by revision, while a split is set
        self._revisions: dict[int, RevisionCounts] = {}
        self.requests = 0
        self.retries = 0
        self.retry_reasons: dict[str, int] = {}
        self.buffered_total = 0
        self.rejected = 0
        self.ejections = 0
        self.local_codes: dict[int, int] = {}
        self._http = HttpFront(self)
        self._grpc: GrpcFront | None = None
        self._tick_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rng = random.random
        self.routing: RoutingPolicy | None = None  # None: every request weighs one (core.pick)
        self.affinity_counts: dict[str, int] = {}  # "home" / "spill" -> keyed requests
        self.own_routes: dict[bytes, OwnRoute] = {
            b"/healthz": lambda: (200, b'{"live":true}', b"application/json"),
            b"/v2/health/live": lambda: (200, b'{"live":true}', b"application/json"),
            b"/readyz": self._readyz,
            b"/v2/health/ready": self._readyz,
            b"/metrics": self._metrics,
        }
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_Collector(self))
        self.replica_metrics: ReplicaMetrics | None = None
        if replica_metrics:
            self.replica_metrics = ReplicaMetrics(lambda: [st.backend for st in self._all])
            self._registry.register(self.replica_metrics)

    # -- public API --------------------------------------------------------------------------------------
    @property
    def refused_connections(self) -> int:
        """HTTP client connections refused because ``conn_limits.max_connections`` were open."""
        return self._http.refused_connections

    @property
    def poison_guarded(self) -> int:
        """Requests answered 502 unretried because their replica connection broke after they were sent, twice."""
        return self._http.poison_guarded

    def set_backends(self, ready: Sequence[Backend]) -> None:
        """Replace the ready set. Backends left out get no new request; their in-flight requests finish."""
        states: dict[Backend, BackendState] = {}
        for b in ready:
            st = self._states.get(b) or states.get(b)
            if st is None:
                retired = [s for s in self._retired.values() if s.backend == b]
                st = (
                    retired[0] if retired else BackendState(b, self._revisions.setdefault(b.revision, RevisionCounts()))
                )
                self._retired.pop(id(st), None)
                st.retired = False
            states[b] = st
        for b, st in self._states.items():
            if b not in states:
                st.retired = True
                self._http.backend_retired(st)
                if st.outstanding > 0:
                    self._retired[id(st)] = st
                else:
                    self._close_state(st)
        self._states = states
        self._all = list(states.values())
        self._rebuild_live()
        while self._ready and self._waiting:
            w = self._waiting.popleft()
            if w.alive:
                w.dispatch()

    def set_peak_window(self, seconds: float) -> None:
        """Count the most requests accepted within any ``seconds`` (the autoscaler's burst signal,
        ``autoscale.LoadSample.peak``); 0 stops counting. A new window starts from no arrivals."""
        if seconds < 0 or not math.isfinite(seconds):
            raise ValueError(f"peak_window must be a number of seconds >= 0, got {seconds}")
        self._peak = ArrivalPeak(seconds, self.now) if seconds > 0 else None
        self._arrival = self._peak.pending.append if self._peak is not None else None

    def set_routing(self, policy: RoutingPolicy | None) -> None:
        """Weigh requests by tokens and place related ones together (``balance``), or, with None, balance plain
        requests. Tries in flight keep the tokens they were charged with until they end."""
        self.routing = policy

    def set_split(self, split: Sequence[tuple[int, int]] | None) -> None:
        """Split the traffic between revisions: (revision, weight) pairs, the stable revision first and the canary
        last (weights are proportions, as a Gateway API ``HTTPRoute``'s ``backendRefs``); None: no split, every
        ready backend alike. Backends of a revision outside the split get only requests pinned to them."""
        self._split = tuple((int(r), int(w)) for r, w in split) if split is not None else None
        self._rebuild_live()

    async def start(self, host: str, port: int, grpc_port: int | None) -> tuple[int, int | None]:
        """Listen for HTTP on ``host:port`` and, unless ``grpc_port`` is None, gRPC; 0 picks a free port."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.now = loop.time()
        self._budget = RetryBudget(self._budget.ratio, self.now)
        if self._peak is not None:
            self.set_peak_window(self._peak.window)
        http_port = await self._http.start(host, port)
        bound_grpc: int | None = None
        if grpc_port is not None:
            from kubeinfer.local.router.grpc import GrpcFront  # grpc loads only when the router serves it

            self._grpc = GrpcFront(self)
            bound_grpc = await self._grpc.start(host, grpc_port)
        self._tick_task = loop.create_task(self._tick_forever(), name="kubeinfer-router-tick")
        self._tick_task.add_done_callback(log_unexpected_end)
        if self.replica_metrics is not None:
            self.replica_metrics.start(loop)
        return http_port, bound_grpc

    async def stop(self, grace: float = 5.0) -> None:
        """Stop listening, let in-flight requests finish for up to ``grace`` seconds, then close everything."""
        await self._http.stop_listening()
        if self._grpc is not None:
            await self._grpc.stop(grace)
        loop = asyncio.get_running_loop()
        await self._http.drain(loop.time() + grace)
        while self._waiting:
            w = self._waiting.popleft()
            if w.alive:
                w.reject(503, b"the router is shutting down", RETRY_AFTER)
        self._http.close()
        for st in [*self._states.values(), *self._retired.values()]:
            self._close_state(st)
        if self._tick_task is not None:
            self._tick_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick_task
        self._tick_task = None
        if self.replica_metrics is not None:
            await self.replica_metrics.stop()
        self._grpc = None

    def stats(self) -> RouterStats:
        backends = {
            st.id: BackendStats(st.id, st.outstanding, st.total, not st.retired, st.tokens)
            for st in [*self._retired.values(), *self._states.values()]
        }
        return RouterStats(
            backends=backends,
            requests=self.requests,
            retries=self.retries,
            buffered=len(self._waiting),
            buffered_total=self.buffered_total,
            rejected=self.rejected,
            rps=float(self._budget.requests.last_second()),
            revisions={rev: c.snapshot() for rev, c in self._revisions.items()},
            split=self._split,
            peak=self._peak.last_second() if self._peak is not None else 0,
            peak_window=self._peak.window if self._peak is not None else 0.0,
        )

    # -- api.RouterApi: what the HTTP and gRPC fronts call -----------------------------------------------
    def request_accepted(self) -> None:
        self.requests += 1
        self._budget.deposit()
        arrival = self._arrival
        if arrival is not None:
            arrival(time.monotonic())

    def request_work(self, url: bytes, data: bytes, body_size: int) -> Work | None:
        policy = self.routing
        return None if policy is None else estimate(policy, url, data, body_size)

    def begin_try(
        self, tried: Sequence[BackendState], grpc: bool = False, pin: int | None = None, work: Work | None = None
    ) -> BackendState | None:
        ready: Sequence[BackendState] = self._ready
        if pin is not None:
            ready = self._groups.get(pin, [])
        elif self._split is not None:
            ready = self._choose(tried)
        if grpc:
            ready = [s for s in ready if s.backend.serves_grpc]
        if work is not None:
            factor = self.routing.load_factor if self.routing is not None else LOAD_FACTOR
            st, how = choose(ready, work, self._rng, tried, factor)
            if st is not None:
                st.tokens += work.tokens
                if how != "balance":
                    self.affinity_counts[how] = self.affinity_counts.get(how, 0) + 1
        elif len(ready) == 1:
            st = ready[0]  # the common case of one replica, without drawing
        else:
            st = pick(ready, self._rng, tried)
        if st is not None:
            st.outstanding += 1
            st.total += 1
        return st

    @property
    def split_active(self) -> bool:
        return self._split is not None

    def resolve_pin(self, header: bytes | None, version: bytes | None) -> int | bytes | None:
        split = self._split
        if header is not None:
            value = header.strip().lower()
            if split is not None and value in (b"stable", b"canary"):
                return split[0][0] if value == b"stable" else split[-1][0]
            if value.isdigit() and int(value) in self._groups:
                return int(value)
            serving = ", ".join(
                f"{rev}" + ("" if split is None else " (stable)" if rev == split[0][0] else " (canary)")
                for rev in sorted(self._groups)
            )
            return (
                b"x-kubeinfer-revision: %s is not a revision with a ready replica (give a revision number%s); "
                % (
                    header[:64],
                    b", stable or canary" if split is not None else b"",
                )
                + f"serving: {serving or 'none'}".encode()
            )
        if version is not None:
            for rev, states in self._groups.items():
                if states and states[0].backend.version.encode() == version:
                    return rev
        return None

    def failover(self, st: BackendState, attempts: int) -> bool:
        split = self._split
        if split is None or len(split) < 2 or st.revision != split[-1][0] or not self._groups.get(split[0][0]):
            return False
        return self.may_retry(attempts, "canary_error")

    def _choose(self, tried: Sequence[BackendState]) -> Sequence[BackendState]:
        """The backends the next try may go to under the split: a retry after a canary's try goes to the stable
        revision; a first try to the revision drawn by weight (every ready backend if no revision of the split has
        one)."""
        split = self._split
        if split is None:
            return self._ready
        groups = self._groups
        if tried and len(split) > 1:
            canary = split[-1][0]
            stable = groups.get(split[0][0])
            if stable and any(s.revision == canary for s in tried):
                return stable
        chosen = choose_revision(split, groups, self._rng)
        return self._ready if chosen is None else chosen

    def has_ready(self) -> bool:
        return bool(self._ready)

    def has_ready_besides(self, st: BackendState) -> bool:
        return any(s is not st for s in self._ready)

    def end_try(self, st: BackendState, work: Work | None = None) -> None:
        st.outstanding -= 1
        if work is not None:
            st.tokens -= work.tokens
        if st.retired and st.outstanding == 0 and self._retired.pop(id(st), None) is not None:
            self._close_state(st)

    def may_retry(self, attempts: int, reason: str) -> bool:
        if attempts > self.max_retries or not self._budget.try_withdraw():
            return False
        self.retries += 1
        self.retry_reasons[reason] = self.retry_reasons.get(reason, 0) + 1
        return True

    def buffer(self, w: Waiting) -> None:
        if len(self._waiting) >= self.buffer_limit:
            self.rejected += 1
            w.reject(
                503,
                b"no replica is ready and the router's buffer is full (%d requests waiting); retry later"
                % self.buffer_limit,
                RETRY_AFTER,
            )
            return
        w.enqueued = self.now
        self._waiting.append(w)
        self.buffered_total += 1
        if self.on_buffered is not None:
            try:
                self.on_buffered()
            except Exception:
                log.exception("on_buffered callback failed")

    def eject(self, st: BackendState) -> None:
        """Passive health checking (Envoy's outlier detection, Linkerd's failure accrual, reduced to one rule): a
        backend that refused, reset or timed out a try gets no first tries for ``EJECT_SECONDS``. Without it, least
        outstanding requests would favour a dead backend (it answers instantly, with errors) until the prober
        removes it, and every request would spend a retry on it."""
        if st.retired or st.ejected_until > self.now:
            return
        st.ejected_until = self.now + EJECT_SECONDS
        self.ejections += 1
        log.info("router: backend %s ejected for %.0fs after a failed try", st.id, EJECT_SECONDS)
        self._rebuild_live()

    def count_local(self, status: int) -> None:
        self.local_codes[status] = self.local_codes.get(status, 0) + 1

    # -- inside --------------------------------------------------------------------------------------------
    def _rebuild_live(self) -> None:
        now = self.now
        live = [s for s in self._all if s.ejected_until <= now]
        self._ready = live or list(self._all)  # all ejected: try them all rather than fail or buffer
        groups: dict[int, list[BackendState]] = {}
        for s in self._ready:
            groups.setdefault(s.revision, []).append(s)
        self._groups = groups

    async def _tick_forever(self) -> None:
        assert self._loop is not None
        while True:
            await asyncio.sleep(TICK)
            try:
                self._tick(self._loop.time())
            except Exception:  # timeouts must keep being enforced: log (rate-limited) and go on
                log.exception("router housekeeping failed; it goes on")

    def _tick(self, now: float) -> None:
        self.now = now
        self._budget.advance(now)
        if self._peak is not None:
            self._peak.advance(now)
        if len(self._ready) < len(self._all) and any(0.0 < s.ejected_until <= now for s in self._all):
            self._rebuild_live()
        self._http.tick(now)
        waiting = self._waiting
        limit = now - self.buffer_timeout
        while waiting and (waiting[0].enqueued <= limit or not waiting[0].alive):
            w = waiting.popleft()
            if w.alive:
                self.rejected += 1
                w.reject(
                    503,
                    b"no replica became ready within the router's buffer timeout of %gs; retry later"
                    % self.buffer_timeout,
                    RETRY_AFTER,
                )

    def _close_state(self, st: BackendState) -> None:
        self._http.backend_closed(st)
        if self._grpc is not None:
            self._grpc.backend_closed(st)

    # -- own endpoints -----------------------------------------------------------------------------------
    def _readyz(self) -> tuple[int, bytes, bytes]:
        n = len(self._all)
        return (200 if n else 503), b'{"ready":%s,"backends":%d}' % (b"true" if n else b"false", n), b"application/json"

    def _metrics(self) -> tuple[int, bytes, bytes]:
        return 200, generate_latest(self._registry), METRICS_CONTENT_TYPE


class _Collector(Collector):
    """Turns the router's counters into Prometheus families at scrape time."""

    def __init__(self, router: Router) -> None:
        self.r = router

    def collect(self) -> Iterator[Any]:
        r = self.r
        states = [*r._retired.values(), *r._states.values()]
        out = GaugeMetricFamily(
            "kubeinfer_router_backend_outstanding",
            "Requests sent to a backend and not answered yet.",
            labels=["backend"],
        )
        ready = GaugeMetricFamily(
            "kubeinfer_router_backend_ready", "1 while the backend is in the ready set.", labels=["backend"]
        )
        tokens = GaugeMetricFamily(
            "kubeinfer_router_backend_outstanding_tokens",
            "Estimated tokens (prompt plus max_tokens) of the requests sent to a backend and not answered yet.",
            labels=["backend"],
        )
        sent = CounterMetricFamily("kubeinfer_router_backend_tries", "Tries sent to a backend.", labels=["backend"])
        reqs = CounterMetricFamily(
            "kubeinfer_router_requests",
            "Responses by the backend that gave them and status (HTTP code, gRPC code name or 'aborted'); "
            "backend '' for the router's own.",
            labels=["backend", "code"],
        )
        for st in states:
            out.add_metric([st.id], st.outstanding)
            tokens.add_metric([st.id], st.tokens)
            ready.add_metric([st.id], 0.0 if st.retired else 1.0)
            sent.add_metric([st.id], st.total)
            for code, n in sorted(st.codes.items(), key=lambda kv: str(kv[0])):
                reqs.add_metric([st.id, str(code)], n)
        for code, n in sorted(r.local_codes.items()):
            reqs.add_metric(["", str(code)], n)
        yield out
        yield tokens
        yield ready
        yield sent
        yield reqs
        retries = CounterMetricFamily("kubeinfer_router_retries", "Retries by reason.", labels=["reason"])
        for reason, n in sorted(r.retry_reasons.items()):
            retries.add_metric([reason], n)
        yield retries
        affinity = CounterMetricFamily(
            "kubeinfer_router_affinity_requests",
            "Requests with an affinity key, by where they went: 'home' (the key's replica) or 'spill' (the home was "
            "past the load bound).",
            labels=["outcome"],
        )
        for outcome, n in sorted(r.affinity_counts.items()):
            affinity.add_metric([outcome], n)
        yield affinity
        yield CounterMetricFamily("kubeinfer_router_accepted_requests", "Client requests accepted.", value=r.requests)
        yield GaugeMetricFamily(
            "kubeinfer_router_buffered", "Requests waiting for a ready backend.", value=len(r._waiting)
        )
        yield CounterMetricFamily(
            "kubeinfer_router_buffered_requests", "Requests that waited for a ready backend.", value=r.buffered_total
        )
        yield CounterMetricFamily(
            "kubeinfer_router_rejected_requests",
            "Requests answered 503 because the buffer was full or the wait timed out.",
            value=r.rejected,
        )
        yield GaugeMetricFamily("kubeinfer_router_ready_backends", "Backends in the ready set.", value=len(r._all))
        yield CounterMetricFamily(
            "kubeinfer_router_ejections", "Backends taken out of rotation after a failed try.", value=r.ejections
        )
        exported, dropped = tracing.span_counts()
        spans = CounterMetricFamily(
            "kubeinfer_router_trace_spans",
            "The router's trace spans exported over OTLP, or dropped (queue full, exporter behind or failing); 0 with "
            "tracing off.",
            labels=["outcome"],
        )
        spans.add_metric(["exported"], exported)
        spans.add_metric(["dropped"], dropped)
        yield spans
