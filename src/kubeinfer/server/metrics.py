"""Prometheus metrics of one replica, cheap enough for the request path.

Observations are plain integer and float updates made on the event loop (one thread, so no locks); a
``prometheus_client`` collector turns them into families only when ``/metrics`` is scraped. This keeps a request's
metric cost to a few hundred nanoseconds, where ``prometheus_client``'s own metric objects take a lock per update.

Names follow Prometheus conventions (base units, ``_total`` counters, ``_seconds`` histograms) with the content of
KServe's and Triton's metrics:

==========================================  =========  ================================================  ==============
name                                        type       meaning                                           Triton analogue
==========================================  =========  ================================================  ==============
kubeinfer_requests_total                    counter    requests by model, version, protocol and status   nv_inference_request_success/failure
kubeinfer_request_duration_seconds          histogram  end-to-end time in the server, by model/version    nv_inference_request_duration_us
kubeinfer_queue_duration_seconds            histogram  time queued before the model ran                  nv_inference_queue_duration_us
kubeinfer_compute_duration_seconds          histogram  model call time (per batch)                       nv_inference_compute_infer_duration_us
kubeinfer_batch_size                        histogram  rows per model call                               nv_inference_exec_count / count
kubeinfer_inference_rows_total              counter    rows inferred                                     nv_inference_count
kubeinfer_model_executions_total            counter    model calls                                       nv_inference_exec_count
kubeinfer_queue_depth                       gauge      requests waiting per model
kubeinfer_requests_in_flight                gauge      requests inside the server
kubeinfer_arrivals_peak                     gauge      most requests within any SLO-length window, last 15 s
kubeinfer_requests_late_total               counter    requests answered after the SLO, or 503/504
kubeinfer_model_ready                       gauge      1 when the model is loaded and warmed
kubeinfer_gpu_utilization_ratio             gauge      NVML GPU utilization (0-1), when a GPU is present  nv_gpu_utilization
kubeinfer_gpu_memory_used_bytes             gauge      NVML memory used, when a GPU is present           nv_gpu_memory_used_bytes
kubeinfer_payload_log_events_total          counter    payload log events written or dropped (logger)
kubeinfer_trace_spans_total                 counter    trace spans exported or dropped (tracing on)
process_cpu_seconds_total, process_resident_memory_bytes, ...  from prometheus_client's process collector
==========================================  =========  ================================================  ==============

A replica of several server processes (``server.processes``) answers a scrape from whichever process the connection
reached: that process adds its siblings' latest snapshots (each process writes one every half second, see
:meth:`Metrics.snapshot`) to its own figures, so the ``kubeinfer_*`` families count the whole replica (a sibling's
part may be up to half a second old). ``process_*`` describe the answering process alone.

``kubeinfer_arrivals_peak`` is the sub-second burst signal of the predictive autoscaler
(``autoscale.LoadSample.peak``), exported only while ``KUBEINFER_PEAK_WINDOW_SECONDS`` sets its window ``W`` (the
rendered Deployment of a predictive service sets it to ``sloLatencyMs / 1000``): the most requests counted in
``kubeinfer_requests_total`` that arrived within any ``W`` seconds, over the open second and the
:data:`PEAK_HORIZON_SECONDS` whole seconds before it (``autoscale.arrivals.RecentPeak``, the count ``kubeinfer up``'s
router and the simulator make). A time-based look-back rather than "since the last scrape", so that Prometheus and
the operator both read it without resetting it; 15 s covers every scrape interval a rendered ServiceMonitor sets
(``min(syncPeriodSeconds, 15)``). The request path appends the arrival's time to a list; the count runs off it,
every half second and at each scrape. Each process of a multi-process replica counts its own arrivals and the
replica's value is the sum of its processes' peaks: at least the replica's true peak (a burst split across the
processes is counted whole), at most that many times it (the processes' peaks need not fall in the same window),
so it errs towards more replicas.

``kubeinfer_requests_late_total`` is the predictive autoscaler's SLO feedback (``autoscale.LoadSample.late``),
exported only while ``KUBEINFER_SLO_SECONDS`` sets the SLO (the rendered Deployment, and ``kubeinfer up``, set it
to ``sloLatencyMs / 1000`` for a predictive service): the requests ``kubeinfer_requests_total`` counts that took
longer than that in the server, or were answered out of capacity (:data:`HTTP_MISSES`, :data:`GRPC_MISSES`).
"""

from __future__ import annotations

import math
import os
import sys
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from kubeinfer.autoscale.arrivals import RecentPeak
from kubeinfer.server import tracing
from kubeinfer.server.errors import GRPC_CODES, HTTP_STATUS, DeadlineExceeded, Unavailable

__all__ = [
    "CONTENT_TYPE",
    "PEAK_HORIZON_ENV",
    "PEAK_HORIZON_SECONDS",
    "PEAK_WINDOW_ENV",
    "Histogram",
    "Metrics",
    "peak_horizon_from_env",
    "peak_window_from_env",
    "slo_from_env",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

PEAK_WINDOW_ENV = "KUBEINFER_PEAK_WINDOW_SECONDS"
PEAK_HORIZON_ENV = "KUBEINFER_PEAK_HORIZON_SECONDS"
SLO_ENV = "KUBEINFER_SLO_SECONDS"
_OUT_OF_CAPACITY = (Unavailable, DeadlineExceeded)
HTTP_MISSES = frozenset(int(HTTP_STATUS[e]) for e in _OUT_OF_CAPACITY)
"""HTTP statuses ``kubeinfer_requests_late_total`` counts whatever the time: the answers of a replica out of capacity
(503: queue full, not ready, draining; 504: its deadline passed). Not a model's error (500), nor a client's (4xx,
including 429 for an API key's rate and 413 for a body too large): more replicas fix none of them, and a client
sending such requests must not buy the service spare capacity."""
GRPC_MISSES = frozenset(GRPC_CODES[e].value[0] for e in _OUT_OF_CAPACITY)
"""The same for gRPC: UNAVAILABLE and DEADLINE_EXCEEDED (not RESOURCE_EXHAUSTED, which also answers a message too
large)."""
PEAK_HORIZON_SECONDS = 15
"""Whole seconds before the open one that ``kubeinfer_arrivals_peak`` looks back over, unless
``KUBEINFER_PEAK_HORIZON_SECONDS`` says otherwise (module docstring)."""


def peak_horizon_from_env(env: Mapping[str, str] | None = None) -> int:
    """``KUBEINFER_PEAK_HORIZON_SECONDS``: whole seconds ``kubeinfer_arrivals_peak`` looks back over; unset or empty:
    :data:`PEAK_HORIZON_SECONDS`. The rendered Deployment of a predictive service sets it to the operator's sync
    period, so that a reader every sync period sees each burst once. A value that is not a whole number >= 1 is
    reported on stderr and the default is used."""
    raw = (os.environ if env is None else env).get(PEAK_HORIZON_ENV, "").strip()
    if not raw:
        return PEAK_HORIZON_SECONDS
    if not raw.isdigit() or int(raw) < 1:
        sys.stderr.write(
            f"{PEAK_HORIZON_ENV}={raw!r} is not a whole number of seconds >= 1: {PEAK_HORIZON_SECONDS} is used\n"
        )
        return PEAK_HORIZON_SECONDS
    return int(raw)


def _seconds_from_env(name: str, what: str, env: Mapping[str, str] | None) -> float:
    """A number of seconds > 0 from ``name``; unset or empty: 0. Anything else is reported on stderr and gives 0
    (``what`` is off): a typo must not stop a replica from serving."""
    raw = (os.environ if env is None else env).get(name, "").strip()
    if not raw:
        return 0.0
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (seconds > 0 and math.isfinite(seconds)):
        sys.stderr.write(f"{name}={raw!r} is not a number of seconds > 0: {what} is off\n")
        return 0.0
    return seconds


def peak_window_from_env(env: Mapping[str, str] | None = None) -> float:
    """``KUBEINFER_PEAK_WINDOW_SECONDS``: the window of ``kubeinfer_arrivals_peak`` in seconds; unset or empty: no
    gauge (0). A value that is not a number of seconds > 0 is reported on stderr and leaves the gauge off: a typo
    must not stop a replica from serving."""
    return _seconds_from_env(PEAK_WINDOW_ENV, "kubeinfer_arrivals_peak", env)


def slo_from_env(env: Mapping[str, str] | None = None) -> float:
    """``KUBEINFER_SLO_SECONDS``: the latency objective ``kubeinfer_requests_late_total`` counts misses of; unset or
    empty: no counter (0); not a number of seconds > 0: reported on stderr, no counter."""
    return _seconds_from_env(SLO_ENV, "kubeinfer_requests_late_total", env)


class Histogram:
    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, v: float) -> None:
        self.counts[bisect_left(self.bounds, v)] += 1
        self.sum += v
        self.count += 1

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        acc = 0
        for b, c in zip(self.bounds, self.counts, strict=False):
            acc += c
            out.append((_fmt(b), acc))
        out.append(("+Inf", acc + self.counts[-1]))
        return out

    def quantile(self, q: float) -> float:
        """Upper bound of the bucket holding quantile ``q`` (for dashboards and the local controller)."""
        if self.count == 0:
            return 0.0
        target, acc = q * self.count, 0
        for b, c in zip(self.bounds, self.counts, strict=False):
            acc += c
            if acc >= target:
                return b
        return float("inf")


def _fmt(b: float) -> str:
    return repr(float(b))


class _Counts:
    """The counters and histograms of requests and batches: a process's own (:class:`Metrics`), or a replica's sum
    (:class:`_View`)."""

    def __init__(self) -> None:
        # Keyed (model, version, protocol, code) and (model, version, protocol): Triton's and KServe's labels.
        self.requests: dict[tuple[str, str, str, str], int] = {}
        self.request_duration: dict[tuple[str, str, str], Histogram] = {}
        self.queue_duration: dict[str, Histogram] = {}
        self.compute_duration: dict[str, Histogram] = {}
        self.batch_size: dict[str, Histogram] = {}
        self.rows: dict[str, int] = {}
        self.executions: dict[str, int] = {}
        self.in_flight = 0
        # Payload log events (server/payload_log.py): written to the sink, or dropped (queue full, sink failing).
        # A process's own are its logger's (Metrics.payload_log); these are a view's sums.
        self.payload_logged = 0
        self.payload_dropped = 0
        # Trace spans (server/tracing.py): exported over OTLP, or dropped (queue full, exporter behind, export failed).
        self.spans_exported = 0
        self.spans_dropped = 0
        self.arrivals_peak = 0
        self.late = 0


class Metrics(_Counts):
    def __init__(
        self,
        gpu_sampler: Callable[[], list[tuple[str, float, float]]] | None = None,
        peak_window: float = 0.0,
        clock: Callable[[], float] = time.perf_counter,
        peak_horizon: int = PEAK_HORIZON_SECONDS,
        slo: float = 0.0,
    ) -> None:
        """``peak_window``: seconds of ``kubeinfer_arrivals_peak``'s window (0: no gauge); ``peak_horizon``: whole
        seconds it looks back over; ``slo``: seconds beyond which a request counts in ``kubeinfer_requests_late_total``
        (0: no counter); ``clock``: the clock of the arrival times :attr:`arrival` is given
        (``time.perf_counter``, what ``DataPlane.begin`` reads)."""
        super().__init__()
        self.slo = slo
        self.clock = clock
        self.arrivals = RecentPeak(peak_window, peak_horizon) if peak_window > 0 else None
        self.arrival: Callable[[float], None] | None = self.arrivals.pending.append if self.arrivals else None
        """The request path's hook: one counted request arrived at the given time (None while no window is set)."""
        self.queue_depth: dict[str, Callable[[], int]] = {}
        self.ready: dict[str, Callable[[], bool]] = {}
        self.gpu_sampler = gpu_sampler
        self.siblings: Callable[[], list[dict[str, Any]]] | None = None
        self.state = "loading"
        """This process's part in its replica, for its siblings: ``loading``, ``serving`` (it takes requests on the
        replica's listeners) or ``failed`` (its model failed to load; it never takes requests)."""
        # (logged, dropped) of the payload logger, which counts in its own thread; None: no logger.
        self.payload_log: Callable[[], tuple[int, int]] | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        self.registry.register(_Collector(self))

    def request(self, model: str, version: str, protocol: str, status: int, seconds: float) -> None:
        key = (model, version, protocol, str(status))
        self.requests[key] = self.requests.get(key, 0) + 1
        hkey = (model, version, protocol)
        h = self.request_duration.get(hkey)
        if h is None:
            h = self.request_duration[hkey] = Histogram(LATENCY_BUCKETS)
        h.observe(seconds)
        if self.slo and (seconds > self.slo or status in (GRPC_MISSES if protocol == "grpc" else HTTP_MISSES)):
            self.late += 1

    def batch(self, model: str, items: int, rows: int, compute: float, queued: list[float]) -> None:
        if model not in self.batch_size:
            self.batch_size[model] = Histogram(BATCH_BUCKETS)
            self.compute_duration[model] = Histogram(LATENCY_BUCKETS)
            self.queue_duration[model] = Histogram(LATENCY_BUCKETS)
            self.rows[model] = 0
            self.executions[model] = 0
        self.batch_size[model].observe(rows)
        self.compute_duration[model].observe(compute)
        qh = self.queue_duration[model]
        for q in queued:
            qh.observe(q)
        self.rows[model] += rows
        self.executions[model] += 1

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def count_arrivals(self) -> None:
        """Count the arrivals appended since the last count (every half second from the replica's loop, so that the
        list stays short between scrapes)."""
        if self.arrivals is not None:
            self.arrivals.advance(self.clock())

    def arrivals_peak_now(self) -> int:
        """This process's ``kubeinfer_arrivals_peak`` now (0 while no window is set)."""
        return self.arrivals.value(self.clock()) if self.arrivals is not None else 0

    def snapshot(self) -> dict[str, Any]:
        """This process's figures as plain JSON-able values, for a sibling process to add to its own."""
        return {
            "requests": [[*k, n] for k, n in self.requests.items()],
            "request_duration": [[*k, h.counts, h.sum] for k, h in self.request_duration.items()],
            "queue_duration": [[k, h.counts, h.sum] for k, h in self.queue_duration.items()],
            "compute_duration": [[k, h.counts, h.sum] for k, h in self.compute_duration.items()],
            "batch_size": [[k, h.counts, h.sum] for k, h in self.batch_size.items()],
            "rows": self.rows,
            "executions": self.executions,
            "in_flight": self.in_flight,
            "payload_log": list(self.payload_log()) if self.payload_log is not None else [0, 0],
            "trace_spans": list(tracing.span_counts()),
            "queue_depth": {k: fn() for k, fn in self.queue_depth.items()},
            "ready": {k: bool(fn()) for k, fn in self.ready.items()},
            "state": self.state,
            "arrivals_peak": self.arrivals_peak_now(),
            "late": self.late,
        }

    def merged(self) -> _View:
        """This process's figures plus its siblings' snapshots (none unless ``siblings`` is set)."""
        view = _View()
        view.add(self.snapshot())
        if self.siblings is not None:
            for snap in self.siblings():
                view.add(snap)
        return view

    def total_requests(self) -> int:
        return sum(self.requests.values())


def _add(into: dict[Any, Histogram], key: Any, bounds: tuple[float, ...], counts: list[int], total: float) -> None:
    h = into.get(key)
    if h is None:
        h = into[key] = Histogram(bounds)
    if len(counts) != len(h.counts):
        return  # a sibling of another version: skip rather than misplace its buckets
    h.counts = [a + b for a, b in zip(h.counts, counts, strict=True)]
    h.sum += total
    h.count += sum(counts)


class _View(_Counts):
    """The figures a scrape renders: the sum of the snapshots added with :meth:`add` (this process's, then any
    siblings')."""

    def __init__(self) -> None:
        super().__init__()
        self.queue_depth: dict[str, int] = {}
        self.ready: dict[str, bool] = {}

    def add(self, snap: dict[str, Any]) -> None:
        for model, version, proto, code, n in snap.get("requests", ()):
            key = (model, version, proto, code)
            self.requests[key] = self.requests.get(key, 0) + n
        for model, version, proto, counts, total in snap.get("request_duration", ()):
            _add(self.request_duration, (model, version, proto), LATENCY_BUCKETS, counts, total)
        for name, bounds in (
            ("queue_duration", LATENCY_BUCKETS),
            ("compute_duration", LATENCY_BUCKETS),
            ("batch_size", BATCH_BUCKETS),
        ):
            for model, counts, total in snap.get(name, ()):
                _add(getattr(self, name), model, bounds, counts, total)
        for name in ("rows", "executions", "queue_depth"):
            mine = getattr(self, name)
            for model, n in snap.get(name, {}).items():
                mine[model] = mine.get(model, 0) + n
        self.in_flight += snap.get("in_flight", 0)
        logged, dropped = snap.get("payload_log", (0, 0))
        self.payload_logged += logged
        self.payload_dropped += dropped
        exported, dropped = snap.get("trace_spans", (0, 0))
        self.spans_exported += exported
        self.spans_dropped += dropped
        self.arrivals_peak += snap.get("arrivals_peak", 0)
        self.late += snap.get("late", 0)
        # The replica's model is ready when every process has it ready.
        for model, ok in snap.get("ready", {}).items():
            self.ready[model] = self.ready.get(model, True) and bool(ok)


class _Collector(Collector):
    def __init__(self, m: Metrics) -> None:
        self.m = m

    def collect(self) -> Iterator[Any]:
        m = self.m.merged()
        c = CounterMetricFamily(
            "kubeinfer_requests",
            "Requests by model, version, protocol and status code.",
            labels=["model", "version", "protocol", "code"],
        )
        for key, n in sorted(m.requests.items()):
            c.add_metric(list(key), n)
        yield c
        yield _hist(
            "kubeinfer_request_duration_seconds",
            "End-to-end request time in the server.",
            ["model", "version", "protocol"],
            {k: v for k, v in m.request_duration.items()},
        )
        yield _hist(
            "kubeinfer_queue_duration_seconds",
            "Time a request waited before its batch ran.",
            ["model"],
            {(k,): v for k, v in m.queue_duration.items()},
        )
        yield _hist(
            "kubeinfer_compute_duration_seconds",
            "Model call time per batch.",
            ["model"],
            {(k,): v for k, v in m.compute_duration.items()},
        )
        yield _hist(
            "kubeinfer_batch_size", "Rows per model call.", ["model"], {(k,): v for k, v in m.batch_size.items()}
        )
        rows = CounterMetricFamily("kubeinfer_inference_rows", "Rows inferred.", labels=["model"])
        execs = CounterMetricFamily("kubeinfer_model_executions", "Model calls.", labels=["model"])
        for model in sorted(m.rows):
            rows.add_metric([model], m.rows[model])
            execs.add_metric([model], m.executions[model])
        yield rows
        yield execs
        qd = GaugeMetricFamily("kubeinfer_queue_depth", "Requests waiting per model.", labels=["model"])
        for model, depth in m.queue_depth.items():
            qd.add_metric([model], depth)
        yield qd
        yield GaugeMetricFamily("kubeinfer_requests_in_flight", "Requests inside the server.", value=m.in_flight)
        if self.m.arrivals is not None:
            yield GaugeMetricFamily(
                "kubeinfer_arrivals_peak",
                f"Most requests arrived within any {self.m.arrivals.window:g} s ({PEAK_WINDOW_ENV}) over the last "
                f"{self.m.arrivals.horizon} s; a multi-process replica's is the sum of its processes'.",
                value=m.arrivals_peak,
            )
        if self.m.slo:
            yield CounterMetricFamily(
                "kubeinfer_requests_late",
                f"Requests that took longer than {self.m.slo:g} s ({SLO_ENV}) in the server, or were answered 503 "
                "or 504 (gRPC UNAVAILABLE or DEADLINE_EXCEEDED): out of capacity.",
                value=m.late,
            )
        rd = GaugeMetricFamily("kubeinfer_model_ready", "1 when the model is loaded and warmed.", labels=["model"])
        for model, ready in m.ready.items():
            rd.add_metric([model], 1.0 if ready else 0.0)
        yield rd
        pl = CounterMetricFamily(
            "kubeinfer_payload_log_events",
            "Payload log events (spec.logger) written to the sink, or dropped.",
            labels=["outcome"],
        )
        pl.add_metric(["logged"], m.payload_logged)
        pl.add_metric(["dropped"], m.payload_dropped)
        yield pl
        ts = CounterMetricFamily(
            "kubeinfer_trace_spans",
            "Trace spans exported over OTLP, or dropped (queue full, exporter behind or failing); 0 with tracing off.",
            labels=["outcome"],
        )
        ts.add_metric(["exported"], m.spans_exported)
        ts.add_metric(["dropped"], m.spans_dropped)
        yield ts
        sampler = self.m.gpu_sampler
        if sampler is not None:
            util = GaugeMetricFamily("kubeinfer_gpu_utilization_ratio", "GPU utilization (NVML).", labels=["gpu"])
            mem = GaugeMetricFamily("kubeinfer_gpu_memory_used_bytes", "GPU memory used (NVML).", labels=["gpu"])
            for uuid, u, used in sampler():
                util.add_metric([uuid], u)
                mem.add_metric([uuid], used)
            yield util
            yield mem


def _hist(name: str, doc: str, labels: list[str], data: dict[tuple[str, ...], Histogram]) -> HistogramMetricFamily:
    fam = HistogramMetricFamily(name, doc, labels=labels)
    for key, h in sorted(data.items()):
        fam.add_metric(list(key), h.buckets(), h.sum)
    return fam


def nvml_sampler() -> Callable[[], list[tuple[str, float, float]]] | None:
    """A GPU sampler through NVML, or None where there is no NVIDIA driver or ``nvidia-ml-py``."""
    try:
        import pynvml

        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
    except Exception:
        return None
    if count == 0:
        return None

    def sample() -> list[tuple[str, float, float]]:
        out = []
        for i in range(count):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            uuid = pynvml.nvmlDeviceGetUUID(h)
            util = pynvml.nvmlDeviceGetUtilizationRates(h).gpu / 100.0
            mem = pynvml.nvmlDeviceGetMemoryInfo(h).used
            out.append((str(uuid), float(util), float(mem)))
        return out

    return sample
