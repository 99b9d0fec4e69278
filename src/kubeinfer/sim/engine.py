"""The discrete-event core: requests, replicas and one autoscaling policy on a virtual clock.

Model (the choices and why):

- **Router and slots.** Requests enter one FIFO queue in front of the service (kubeinfer's router, or Knative's
  activator while it is in the path) and go to the first free slot of any ready replica. A replica has ``slots``
  slots; a request holds one for its service time. With a fixed set of slots this is the Kiefer-Wolfowitz
  recursion for a FIFO G/G/c queue: request ``i`` starts at ``max(arrival_i, earliest free slot)``. A heap of
  slot free-times gives it in O(log c) per request -- the only per-request Python work; arrivals, service times
  and all statistics are numpy arrays, and per-request results are written back in slices.
- **Events.** The slot set changes only at control events (a replica becomes ready, a replica is removed). The
  engine walks the virtual clock second by second; inside a second it handles control events in time order
  (a heap of ``(time, seq, kind, pod)``), and before each one commits every queued request that can start
  before it. A request that cannot start before the next event stays queued, so a replica that becomes ready
  drains the backlog as it would in reality. Nothing reads a wall clock; the run is a pure function of its
  inputs (traces and noise are seeded).
- **Timeouts.** A request that has not started ``request_timeout`` seconds after it arrived is dropped (the
  router's deadline; ``spec.server.limits.requestTimeoutMs``). While the service has no ready replica (scaled to
  zero, or every replica still starting) requests are buffered in the same queue, as the activator does, and
  dropped at the same deadline.
- **Replicas.** A scale-up creates pods at once; each is billed from creation and becomes ready ``startup``
  seconds later (a cold start when none was ready). A scale-down first cancels pods still starting (newest
  first), then removes ready replicas: they take no new requests and are billed until their in-flight
  requests finish (graceful drain). The slots removed are the ones that free up first (idle ones).
- **What the policy sees.** Load samples every second (requests in the system -- in service plus queued -- as
  a time average over the second, arrivals over the second, and busy slot-seconds over the second as ``work``:
  what a server's compute-duration counter or busy gauge reports; with ``peak_window``, also the most arrivals
  within any window of that many seconds, as ``peak``; with ``late_slo``, the requests whose deadline -- arrival
  plus the SLO -- fell in the second and that missed it, as ``late``, the replicas' ``kubeinfer_requests_late_total``)
  as Knative's collector scrapes them, delayed by
  ``load_delay`` seconds; KPA and predictive fold them into their windows. The HPA sees per-pod metrics as
  metrics-server or a Prometheus adapter would serve them: averages over ``pod_metric_window`` seconds, refreshed
  every ``pod_metric_scrape`` seconds (so up to that old); load is spread evenly over ready pods (the router
  balances it), pods still starting report no metrics (missing, in the HPA's sense). cpu is the busy share of the
  slots times the cpu request; gpu-utilization the busy share in percent; queue-depth the queued requests.
  For a generative model (the run is given each request's generated tokens) the replicas also report the token
  signals of ``kubeinfer up``: ``tokens``, generated tokens per second over the last ``TOKENS_WINDOW`` whole seconds
  before the scrape (the replica's ``kubeinfer_generation_tokens_per_second``), a request's tokens spread evenly
  over the time it is served; and ``sequences-waiting``, the queued requests (the slots stand for the engine's
  running batch, so a queued request is a sequence waiting for a place in it). Both are per ready replica, and
  their service-wide sums go into ``external`` as ``kubeinfer up`` gives them.
- **Ticks.** The policy runs every ``tick`` seconds, first at ``tick`` (one period after the start, as Knative's
  decider and the HPA controller first decide); :mod:`kubeinfer.sim.scenario` takes it from
  :func:`kubeinfer.autoscale.sync_period`, the period ``kubeinfer up`` and the operator use. The decision is carried
  out at once and as it is (the policy has applied its bounds), like the other controllers do.

Extension point for cluster cost: :class:`RunResult` keeps every pod's ``(created, ready, ended)`` interval, so a
node-level model (the cluster autoscaler of :mod:`kubeinfer.placement`) can replay pods onto node groups later
and bill nodes instead of replicas, without touching this engine.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from kubeinfer.autoscale.base import Decision, LoadSample, Observation, PodSample, Policy
from kubeinfer.sim.nodes import NodeCost, NodeModel

__all__ = ["EngineConfig", "RunResult", "simulate_policy"]

FloatArr = npt.NDArray[np.float64]
IntArr = npt.NDArray[np.int64]

_READY, _TICK, _SCAN, _NODE = 0, 1, 2, 3

TOKENS_WINDOW = 10
"""Whole seconds of the ``tokens`` gauge's window (the LLM engine's ``tokens_per_second``)."""


@dataclass(frozen=True)
class EngineConfig:
    slots: int = 1
    startup: float = 10.0
    """Seconds from creating a replica to it being ready."""
    tick: float = 15.0
    """Seconds between policy decisions."""
    request_timeout: float = 30.0
    """Seconds a request may wait for a slot before it is dropped."""
    initial_replicas: int = 1
    """Replicas ready at t = 0 (the service was running before the trace began)."""
    load_delay: int = 0
    """Seconds by which load samples reach the policy."""
    pod_metric_window: float = 30.0
    pod_metric_scrape: float = 15.0
    pod_metrics: bool = False
    """Build per-pod samples (the HPA needs them; KPA and predictive read only ``load``)."""
    cpu_request: float = 1.0
    """Cores requested per replica: cpu usage is the busy share of the slots times this."""
    peak_window: float = 0.0
    """Seconds of the sliding window whose most arrivals each load sample reports as ``peak`` (0: not reported)."""
    late_slo: float = 0.0
    """Seconds of the SLO each load sample counts misses of as ``late`` (0: not reported): a request is counted in the
    second its deadline (arrival + SLO) falls in, once it is known to have missed it."""
    late_basis: str = "latency"
    """What the SLO bounds: ``latency`` (the answer) or ``wait`` (the start of service)."""
    nodes: Callable[[], NodeModel] | None = None
    """Node-level model (:mod:`kubeinfer.sim.nodes`), made fresh per run: replicas wait for a node, nodes cost."""

    def __post_init__(self) -> None:
        if self.peak_window < 0:
            raise ValueError(f"peak_window must be >= 0, got {self.peak_window}")
        if self.slots < 1:
            raise ValueError(f"slots must be >= 1, got {self.slots}")
        if self.startup < 0 or not self.tick > 0 or not self.request_timeout > 0:
            raise ValueError("startup must be >= 0, tick and request_timeout > 0")


@dataclass
class RunResult:
    """Per-request outcomes (in arrival order), a per-second timeline and every pod's lifetime."""

    arrivals: FloatArr
    service: FloatArr
    start: FloatArr
    """Start of service; NaN for dropped requests."""
    end: FloatArr
    """End of service, or the time a dropped request was given up."""
    duration: float
    replica_seconds: float
    scaling_events: int
    cold_starts: int
    pods: FloatArr
    """``(created, ready, ended)`` per pod; ``ready`` is NaN for a pod removed before it was ready."""
    timeline: dict[str, Any] = field(default_factory=dict)
    """Per-second arrays: ``arrivals``, ``in_system`` (time-averaged), ``busy``, ``ready``, ``replicas``
    (pods that exist, billed), ``desired`` and ``buffering`` (the policy asked the router to buffer); ``tokens``
    (generated per second) when the run had per-pod metrics and token counts."""
    decisions: list[tuple[float, int, str]] = field(default_factory=list)
    """Scale changes: (time, replicas, reason)."""
    nodes: NodeCost | None = None
    """Node-hours, GPU-hours and cost when the run had node groups."""

    @property
    def dropped(self) -> npt.NDArray[np.bool_]:
        return np.isnan(self.start)

    @property
    def latency(self) -> FloatArr:
        """Arrival to end of service (seconds); NaN for dropped requests."""
        return np.where(self.dropped, np.nan, self.end - self.arrivals)


class _Sim:
    def __init__(
        self,
        arrivals: FloatArr,
        service: FloatArr,
        duration: float,
        policy: Policy[Any],
        cfg: EngineConfig,
        tokens: FloatArr | None = None,
    ):
        self.arr = np.ascontiguousarray(arrivals, dtype=np.float64)
        self.svc = np.ascontiguousarray(service, dtype=np.float64)
        # Generated tokens per request; only the HPA's per-pod samples read them.
        self.tokens = np.ascontiguousarray(tokens, dtype=np.float64) if tokens is not None and cfg.pod_metrics else None
        n = len(self.arr)
        self.duration = duration
        self.policy = policy
        self.cfg = cfg
        self.start = np.full(n, np.nan)
        self.end = np.full(n, np.nan)
        self.p = 0  # requests [0, p) are committed (started or dropped), in FIFO order
        self.heap: list[float] = []
        self.events: list[tuple[float, int, int, int]] = []
        self.seq = 0
        # pods: id -> [created, ready_at (nan until ready), ended (nan while alive)]
        self.pods: list[list[float]] = []
        self.starting: list[int] = []
        self.ready_ids: list[int] = []
        self.target = 0
        self.scaling_events = 0
        self.cold_starts = 0
        self.decisions: list[tuple[float, int, str]] = []
        self.buffering = False
        n_sec = max(1, math.ceil(duration))
        self.n_sec = n_sec
        h = n_sec + 1
        sec = np.minimum(self.arr.astype(np.int64), h - 1)
        self.a_cnt = np.bincount(sec, minlength=h).astype(np.float64)
        self.a_frac = np.bincount(sec, weights=sec + 1 - self.arr, minlength=h)
        self.peak: FloatArr | None = None
        if cfg.peak_window > 0 and n:
            # Arrivals within (t_i - window, t_i] for each arrival i; a second's peak is the largest ending in it.
            within = np.arange(1, n + 1) - np.searchsorted(self.arr, self.arr - cfg.peak_window, side="right")
            self.peak = np.zeros(h)
            starts = np.flatnonzero(np.diff(sec, prepend=-1))  # arrivals are sorted: each second is one run
            self.peak[sec[starts]] = np.maximum.reduceat(within, starts)
        elif cfg.peak_window > 0:
            self.peak = np.zeros(h)
        self.deadline = self.arr + cfg.late_slo if cfg.late_slo > 0 else None
        self.s_cnt = np.zeros(h)
        self.s_frac = np.zeros(h)
        self.d_cnt = np.zeros(h)  # all departures (served and dropped)
        self.d_frac = np.zeros(h)
        self.ds_cnt = np.zeros(h)  # served departures
        self.ds_frac = np.zeros(h)
        self.hist_p = 0  # requests [0, hist_p) are in the histograms
        # Tokens generated in each second: partial first and last seconds of each request, plus a difference array
        # of the rate over its whole seconds between; tok_done seconds of tok are final.
        self.tok_part = np.zeros(h)
        self.tok_diff = np.zeros(h + 1)
        self.tok = np.zeros(n_sec)
        self.tok_done = 0
        self.tok_rate = 0.0
        self.in_system = np.zeros(n_sec)
        self.busy = np.zeros(n_sec)
        self.k_done = 0  # seconds [0, k_done) have final integrals
        self.cum = [0.0, 0.0, 0.0, 0.0]  # counts before k_done: arrivals, departures, starts, served departures
        self.ready_tl = np.zeros(n_sec, dtype=np.int64)
        self.pods_tl = np.zeros(n_sec, dtype=np.int64)
        self.desired_tl = np.zeros(n_sec, dtype=np.int64)
        self.buffer_tl = np.zeros(n_sec, dtype=np.bool_)
        self.load_k = 0  # next second to report as a load sample
        self.state = policy.initial_state()
        self.nodes = cfg.nodes() if cfg.nodes is not None else None

    # -- requests -------------------------------------------------------------------------------------------

    def advance(self, u: float) -> None:
        """Commit, in FIFO order, every queued request that arrived before ``u`` and can start before ``u``."""
        p = self.p
        hi = int(np.searchsorted(self.arr, u, side="left"))
        if p >= hi:
            return
        heap = self.heap
        timeout = self.cfg.request_timeout
        arr = self.arr[p:hi]
        if not heap:
            # No ready replica until u: requests whose deadline falls before u are dropped, the rest wait.
            m = int(np.searchsorted(arr + timeout, u, side="left"))
            self.start[p : p + m] = np.nan
            self.end[p : p + m] = arr[:m] + timeout
            self.p = p + m
            return
        starts: list[float] = []
        sa = starts.append
        replace = heapq.heapreplace
        nan = math.nan
        # The hot loop (one iteration per request): keep it to a heap read, a compare, a heap replace, an append.
        for ai, si in zip(arr.tolist(), self.svc[p:hi].tolist(), strict=True):
            st = heap[0]
            if st <= ai:
                replace(heap, ai + si)
                sa(ai)
                continue
            if st - ai > timeout:
                if ai + timeout < u:  # no slot before its deadline, and the slots are fixed until u: dropped
                    sa(nan)
                    continue
                break
            if st >= u:
                break
            replace(heap, st + si)
            sa(st)
        m = len(starts)
        if m:
            st_arr = np.array(starts)
            dropped = np.isnan(st_arr)
            self.start[p : p + m] = st_arr
            self.end[p : p + m] = np.where(dropped, arr[:m] + timeout, st_arr + self.svc[p : p + m])
            self.p = p + m

    def _hist(
        self, cnt: FloatArr, frac: FloatArr, times: FloatArr, base: int, also: tuple[FloatArr, FloatArr] | None = None
    ) -> None:
        idx = times.astype(np.int64)
        top = int(idx.max())
        last = len(cnt) - 1
        if top > last:
            idx = np.minimum(idx, last)
            top = last
        rel = idx - base
        width = top - base + 1
        c = np.bincount(rel, minlength=width)
        f = np.bincount(rel, weights=idx + 1 - times, minlength=width)
        cnt[base : top + 1] += c
        frac[base : top + 1] += f
        if also is not None:
            also[0][base : top + 1] += c
            also[1][base : top + 1] += f

    def _histograms(self) -> None:
        lo, hi = self.hist_p, self.p
        if lo >= hi:
            return
        st, en = self.start[lo:hi], self.end[lo:hi]
        base = min(int(self.arr[lo]), len(self.d_cnt) - 1)  # every time in the slice is >= its first arrival
        served = ~np.isnan(st)
        if served.all():
            # Nothing dropped (the usual case): every departure is a served one -- one histogram for both.
            self._hist(self.d_cnt, self.d_frac, en, base, (self.ds_cnt, self.ds_frac))
            self._hist(self.s_cnt, self.s_frac, st, base)
        else:
            self._hist(self.d_cnt, self.d_frac, en, base)
            if served.any():
                self._hist(self.s_cnt, self.s_frac, st[served], base)
                self._hist(self.ds_cnt, self.ds_frac, en[served], base)
        if self.tokens is not None:
            tok = self.tokens[lo:hi]
            if not served.all():
                st, en, tok = st[served], en[served], tok[served]
            if len(st):
                self._spread_tokens(st, en, tok)
        self.hist_p = hi

    def _spread_tokens(self, st: FloatArr, en: FloatArr, tok: FloatArr) -> None:
        """Add each request's tokens to the seconds it is served in, evenly over its service time."""
        last = len(self.tok_part) - 1
        ks = np.minimum(st.astype(np.int64), last)
        ke = np.minimum(en.astype(np.int64), last)
        base = int(ks.min())
        top = int(ke.max())
        width = top - base + 1
        span = ke > ks
        rate = np.where(span, tok / np.where(span, en - st, 1.0), 0.0)
        first = np.where(span, rate * (ks + 1 - st), tok)  # all of it when the request starts and ends in one second
        self.tok_part[base : top + 1] += np.bincount(ks - base, weights=first, minlength=width)
        if span.any():
            ks, ke, rate, en = ks[span] - base, ke[span], rate[span], en[span]
            self.tok_part[base : top + 1] += np.bincount(ke - base, weights=rate * (en - ke), minlength=width)
            diff = np.bincount(ks + 1, weights=rate, minlength=width + 1)
            diff -= np.bincount(ke - base, weights=rate, minlength=width + 1)
            self.tok_diff[base : top + 2] += diff

    def _tokens_until(self, k_end: int) -> None:
        """Final tokens per second for seconds [tok_done, k_end): every request starting before them is committed."""
        k0 = self.tok_done
        if k_end <= k0:
            return
        rate = self.tok_rate + np.cumsum(self.tok_diff[k0:k_end])
        self.tok[k0:k_end] = self.tok_part[k0:k_end] + rate
        self.tok_rate = float(rate[-1])
        self.tok_done = k_end

    def _integrals(self, k_end: int) -> None:
        """Final time-averaged requests in the system and in service for seconds [k_done, k_end)."""
        k0 = self.k_done
        k_end = min(k_end, self.n_sec)
        if k_end <= k0:
            return
        self._histograms()
        # N(t) = arrivals - departures so far; its integral over second k is (events before k) + frac[k].
        a_b, d_b, s_b, ds_b = self.cum
        if k_end - k0 <= 16:  # the usual case (a tick every few seconds): scalar arithmetic is cheapest
            ac, af = self.a_cnt[k0:k_end].tolist(), self.a_frac[k0:k_end].tolist()
            dc, df = self.d_cnt[k0:k_end].tolist(), self.d_frac[k0:k_end].tolist()
            sc, sf = self.s_cnt[k0:k_end].tolist(), self.s_frac[k0:k_end].tolist()
            dsc, dsf = self.ds_cnt[k0:k_end].tolist(), self.ds_frac[k0:k_end].tolist()
            ins, busy = [], []
            for i in range(k_end - k0):
                ins.append(a_b + af[i] - d_b - df[i])
                busy.append(s_b + sf[i] - ds_b - dsf[i])
                a_b += ac[i]
                d_b += dc[i]
                s_b += sc[i]
                ds_b += dsc[i]
            self.in_system[k0:k_end] = ins
            self.busy[k0:k_end] = busy
            self.cum = [a_b, d_b, s_b, ds_b]
        else:
            sl = slice(k0, k_end)
            before = []
            for i, cnt in enumerate((self.a_cnt, self.d_cnt, self.s_cnt, self.ds_cnt)):
                c = np.cumsum(cnt[sl])
                before.append(self.cum[i] + np.concatenate(([0.0], c[:-1])))
                self.cum[i] += float(c[-1])
            self.in_system[sl] = (before[0] + self.a_frac[sl]) - (before[1] + self.d_frac[sl])
            self.busy[sl] = (before[2] + self.s_frac[sl]) - (before[3] + self.ds_frac[sl])
        self.k_done = k_end

    # -- replicas -------------------------------------------------------------------------------------------

    def _push(self, t: float, kind: int, pod: int) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, kind, pod))

    def _create(self, now: float, ready_now: bool = False) -> None:
        pid = len(self.pods)
        if ready_now:
            self.pods.append([now, now, math.nan])
            self._make_ready(pid, now)
        else:
            self.pods.append([now, math.nan, math.nan])
            self.starting.append(pid)
            if self.nodes is None or self.nodes.create(pid, now):
                self._push(now + self.cfg.startup, _READY, pid)
            # else: pending until a node has room; start-up begins when it is bound (_bound)

    def _bound(self, pids: list[int], now: float) -> None:
        for pid in pids:
            self._push(now + self.cfg.startup, _READY, pid)

    def _make_ready(self, pid: int, now: float) -> None:
        self.pods[pid][1] = now
        self.ready_ids.append(pid)
        for _ in range(self.cfg.slots):
            heapq.heappush(self.heap, now)

    def _remove(self, now: float, count: int) -> None:
        while count > 0 and self.starting:
            pid = self.starting.pop()
            self.pods[pid][2] = now
            if self.nodes is not None:
                self.nodes.remove(pid, now)
            count -= 1
        while count > 0 and self.ready_ids:
            pid = self.ready_ids.pop()
            if self.nodes is not None:
                self.nodes.remove(pid, now)
            drained = now
            for _ in range(self.cfg.slots):
                drained = max(drained, heapq.heappop(self.heap))
            self.pods[pid][2] = drained
            count -= 1

    def _apply(self, decision: Decision, now: float) -> None:
        want = max(0, decision.replicas)
        self.buffering = decision.buffer_requests
        if want == self.target:
            return
        self.scaling_events += 1
        self.decisions.append((now, want, decision.reason))
        if want > self.target:
            if not self.ready_ids and not self.starting:
                self.cold_starts += 1
            for _ in range(want - self.target):
                self._create(now)
        else:
            self._remove(now, self.target - want)
        self.target = want

    # -- the policy -----------------------------------------------------------------------------------------

    def _observe(self, now: float) -> Observation:
        cfg = self.cfg
        k_now = min(math.floor(now + 1e-9), self.n_sec)
        self._integrals(k_now)
        k_load = max(0, k_now - cfg.load_delay)
        lo = min(self.load_k, k_load)
        ins = self.in_system[lo:k_load].tolist()
        arr = self.a_cnt[lo:k_load].tolist()
        busy = self.busy[lo:k_load].tolist()
        ks = range(self.load_k, k_load)
        peak: list[float | None] = [None] * len(ks)
        late: list[float | None] = [None] * len(ks)
        window = 0.0
        if self.peak is not None:
            peak, window = self.peak[lo:k_load].tolist(), cfg.peak_window
        if self.deadline is not None:
            late = list(self._late(self.load_k, k_load))
        load = tuple(
            LoadSample(float(k + 1), ins[i], arr[i], busy[i], peak[i], window, late[i]) for i, k in enumerate(ks)
        )
        self.load_k = max(self.load_k, k_load)
        ready = len(self.ready_ids)
        pods: tuple[PodSample, ...] = ()
        external: dict[str, float] = {}
        if cfg.pod_metrics:
            end = min(math.floor(now / cfg.pod_metric_scrape + 1e-9) * cfg.pod_metric_scrape, float(k_now))
            k1 = int(end)
            k0 = max(0, k1 - max(1, round(cfg.pod_metric_window)))
            span = max(1, k1 - k0)
            total_n = float(self.in_system[k0:k1].sum()) / span
            total_busy = float(self.busy[k0:k1].sum()) / span
            total_rps = float(self.a_cnt[k0:k1].sum()) / span
            queued = max(0.0, total_n - total_busy)
            external = {"concurrency": total_n, "rps": total_rps, "queue-depth": queued, "sequences-waiting": queued}
            total_tokens: float | None = None
            if self.tokens is not None:
                self._tokens_until(k1)
                total_tokens = float(self.tok[max(0, k1 - TOKENS_WINDOW) : k1].sum()) / TOKENS_WINDOW
                external["tokens"] = total_tokens
            requests = {"cpu": cfg.cpu_request}
            samples = []
            if ready:
                share = total_busy / (ready * cfg.slots)
                metrics = {
                    "concurrency": total_n / ready,
                    "rps": total_rps / ready,
                    "queue-depth": queued / ready,
                    "cpu": share * cfg.cpu_request,
                    "gpu-utilization": 100.0 * share,
                    "sequences-waiting": queued / ready,
                }
                if total_tokens is not None:
                    metrics["tokens"] = total_tokens / ready
                for pid in self.ready_ids:
                    created, ready_at, _ = self.pods[pid]
                    samples.append(
                        PodSample(
                            f"pod-{pid}",
                            metrics,
                            requests,
                            started_at=created,
                            ready_changed_at=ready_at,
                            metrics_window=cfg.pod_metric_window,
                        )
                    )
            for pid in self.starting:
                created = self.pods[pid][0]
                samples.append(
                    PodSample(f"pod-{pid}", {}, requests, ready=False, started_at=created, ready_changed_at=created)
                )
            pods = tuple(samples)
        return Observation(
            current_replicas=self.target,
            pods=pods,
            ready_replicas=ready,
            status_replicas=ready + len(self.starting),
            external=external,
            load=load,
        )

    def _late(self, k0: int, k1: int) -> list[float]:
        """Requests whose deadline fell in each second of ``[k0, k1)`` and missed it: dropped, not yet started (or
        answered), or started (answered) after it. Every second reported has ended, so each is already known."""
        assert self.deadline is not None
        i0, i1 = np.searchsorted(self.deadline, [k0, k1], side="left")
        start = self.start[i0:i1]
        done = start + self.svc[i0:i1] if self.cfg.late_basis == "latency" else start
        late = ~(done - self.arr[i0:i1] <= self.cfg.late_slo + 1e-9)  # nan (dropped or not started) counts as late
        sec = self.deadline[i0:i1].astype(np.int64) - k0
        counts: list[float] = np.bincount(sec[late], minlength=k1 - k0)[: k1 - k0].astype(np.float64).tolist()
        return counts

    def _tick(self, now: float) -> None:
        obs = self._observe(now)
        decision, self.state = self.policy.decide(obs, self.state, now)
        self._apply(decision, now)

    # -- the clock ------------------------------------------------------------------------------------------

    def run(self, progress: Callable[[float], None] | None = None) -> RunResult:
        cfg = self.cfg
        for _ in range(cfg.initial_replicas):
            self._create(0.0, ready_now=True)
        self.target = cfg.initial_replicas
        self._push(cfg.tick, _TICK, -1)
        if self.nodes is not None:
            self.nodes.place_initial(list(range(cfg.initial_replicas)))
            self._push(self.nodes.scan_interval, _SCAN, -1)
        events = self.events
        every = max(1, self.n_sec // 200)
        for k in range(self.n_sec):
            t1 = float(k + 1)
            while events and events[0][0] < t1:
                t, _, kind, pid = heapq.heappop(events)
                self.advance(t)
                if kind == _READY:
                    if not math.isnan(self.pods[pid][2]):
                        continue  # cancelled while starting
                    self.starting.remove(pid)
                    self._make_ready(pid, t)
                elif kind == _SCAN:
                    assert self.nodes is not None
                    bound, ready_times = self.nodes.scan(t)
                    self._bound(bound, t)
                    for rt in ready_times:
                        self._push(rt, _NODE, -1)
                    self._push(t + self.nodes.scan_interval, _SCAN, -1)
                elif kind == _NODE:
                    assert self.nodes is not None
                    self._bound(self.nodes.bind_pending(t), t)
                else:
                    self._tick(t)
                    self._push(t + cfg.tick, _TICK, -1)
            self.advance(t1)
            self.ready_tl[k] = len(self.ready_ids)
            self.pods_tl[k] = len(self.ready_ids) + len(self.starting)
            self.desired_tl[k] = self.target
            self.buffer_tl[k] = self.buffering
            if progress is not None and k % every == 0:
                progress(t1)
        self.advance(math.inf)
        self._integrals(self.n_sec)
        timeline_tokens: dict[str, FloatArr] = {}
        if self.tokens is not None:
            self._tokens_until(self.n_sec)
            timeline_tokens["tokens"] = self.tok
        end_t = float(self.n_sec)
        pods = np.array(self.pods, dtype=np.float64).reshape(-1, 3)
        alive = np.isnan(pods[:, 2])
        pods[alive, 2] = end_t
        billed = np.minimum(pods[:, 2], end_t) - np.minimum(pods[:, 0], end_t)
        if progress is not None:
            progress(end_t)
        return RunResult(
            arrivals=self.arr,
            service=self.svc,
            start=self.start,
            end=self.end,
            duration=self.duration,
            replica_seconds=float(billed.sum()),
            scaling_events=self.scaling_events,
            cold_starts=self.cold_starts,
            pods=pods,
            timeline={
                "arrivals": self.a_cnt[: self.n_sec].copy(),
                "in_system": self.in_system,
                "busy": self.busy,
                "ready": self.ready_tl,
                "replicas": self.pods_tl,
                "desired": self.desired_tl,
                "buffering": self.buffer_tl,
                **timeline_tokens,
            },
            decisions=self.decisions,
            nodes=self.nodes.cost(end_t) if self.nodes is not None else None,
        )


def simulate_policy(
    arrivals: FloatArr,
    service: FloatArr,
    duration: float,
    policy: Policy[Any],
    config: EngineConfig,
    progress: Callable[[float], None] | None = None,
    tokens: FloatArr | None = None,
) -> RunResult:
    """Run one policy over a trace (arrival times sorted, service seconds per request); see the module docstring.
    ``tokens``: generated tokens per request, for the ``tokens`` pod metric of a generative model."""
    if len(arrivals) != len(service):
        raise ValueError(f"{len(arrivals)} arrivals but {len(service)} service times")
    if tokens is not None and len(tokens) != len(arrivals):
        raise ValueError(f"{len(arrivals)} arrivals but {len(tokens)} token counts")
    if len(arrivals) > 1 and bool(np.any(np.diff(arrivals) < 0)):
        raise ValueError("arrival times must be sorted")
    return _Sim(arrivals, service, duration, policy, config, tokens).run(progress)
