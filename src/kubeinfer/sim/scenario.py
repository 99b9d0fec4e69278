"""Compare autoscaling policies on one trace: the library behind ``kubeinfer simulate`` and ``bench/sim``.

The spec decides everything it can: each policy is ``policy_from_spec`` of ``spec.autoscaling`` with only
``policy`` replaced, so hpa, kpa and predictive share bounds, targets and windows. Defaults taken from the spec:
slots per replica = ``autoscaling.kpa.containerConcurrency`` or, when that is 0 (unlimited), ``server.workers``;
start-up = ``autoscaling.predictive.startupSeconds``; SLO = ``autoscaling.predictive.sloLatencyMs``; request
timeout = ``server.limits.requestTimeoutMs``; policy tick = :func:`kubeinfer.autoscale.sync_period`, the period
``kubeinfer up`` and the operator run the policy on (2 s for kpa, ``autoscaling.predictive.syncPeriodSeconds`` for
predictive, ``autoscaling.syncPeriodSeconds`` for hpa).
When the spec gives no ``predictive.capacityRps``, the predictive policy gets the oracle's capacity of one replica
at the SLO (what ``kubeinfer profile`` would measure), and the report says so; likewise, without
``predictive.capacityWork`` it sizes work against the oracle's pooled curve in Erlangs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from kubeinfer.autoscale import Policy, Predictive, bounded, policy_from_spec, sync_period
from kubeinfer.autoscale.predictive import predictive_config_from_spec
from kubeinfer.sim.engine import EngineConfig, RunResult, simulate_policy
from kubeinfer.sim.hindsight import ReplayedSchedule, hindsight_schedule, replay_schedule, static_frontier
from kubeinfer.sim.nodes import NodeModel, NodeSetup, pod_from_requests
from kubeinfer.sim.oracle import OracleResult, SloBasis, oracle
from kubeinfer.sim.report import OracleSummary, PerReplicaHour, PolicySummary, summarize, summarize_oracle
from kubeinfer.sim.service import ServiceModel
from kubeinfer.sim.traces import Trace, TraceError
from kubeinfer.spec.service import AutoscalingSpec, ServiceSpec

__all__ = ["POLICIES", "Comparison", "SimOptions", "compare", "replay"]

POLICIES = ("hpa", "kpa", "predictive", "none")
TOKENS_COLUMN = "GeneratedTokens"
"""The trace column of each request's generated tokens: what the ``tokens`` metric counts."""


@dataclass(frozen=True)
class SimOptions:
    """Everything a run needs beyond the spec; ``None`` means "take it from the spec" (module docstring)."""

    service: ServiceModel = field(default_factory=ServiceModel)
    slots: int | None = None
    slo_ms: float | None = None
    slo_basis: SloBasis = "latency"
    quantile: float = 0.99
    startup_s: float | None = None
    request_timeout_s: float | None = None
    price_per_replica_hour: float = 1.0
    oracle_interval_s: float = 10.0
    seed: int = 0
    pod_metric_window_s: float = 30.0
    pod_metric_scrape_s: float = 15.0
    load_delay_s: int = 0
    capacity_curve: bool = True
    """Give the predictive policy the capacity of n pooled replicas (the oracle's model), not n x one replica."""
    nodes: NodeSetup | None = None
    """Node groups and cluster autoscaler settings: replicas are scheduled onto nodes and nodes are billed."""
    work_signal: bool = True
    """Size predictive by work (busy slot-seconds per second, in Erlangs of the same curve) instead of requests/s."""
    peak_signal: bool = True
    """Load samples report the most arrivals within any SLO-length window (:attr:`LoadSample.peak`)."""
    miss_signal: bool = True
    """Load samples report the requests that missed the SLO (:attr:`LoadSample.late`): predictive's feedback."""
    references: bool = True
    """Also replay the hindsight schedule and find the static frontier (:mod:`kubeinfer.sim.hindsight`)."""


@dataclass
class Comparison:
    trace: Trace
    options: SimOptions
    slots: int
    slo_s: float
    startup_s: float
    oracle: OracleResult
    oracle_summary: OracleSummary
    summaries: list[PolicySummary]
    runs: dict[str, RunResult]
    notes: list[str]
    seconds: dict[str, float] = field(default_factory=dict)
    hindsight: ReplayedSchedule | None = None
    """The hindsight schedule, replayed: an attainable lower reference (the analytic oracle may not be)."""
    static: ReplayedSchedule | None = None
    """The cheapest constant replica count whose replay meets the SLO quantile."""

    def to_json(self) -> dict[str, Any]:
        o = self.options
        return {
            "trace": {
                "name": self.trace.name,
                "requests": len(self.trace),
                "duration_s": self.trace.duration,
                "mean_rps": self.trace.mean_rate,
            },
            "service": {
                "model": replace(o.service, slots=self.slots).describe(),
                "slots": self.slots,
                "mean_service_ms": float(np.mean(next(iter(self.runs.values())).service)) * 1000 if self.runs else None,
            },
            "slo": {"ms": self.slo_s * 1000, "basis": o.slo_basis, "quantile": o.quantile},
            "startup_s": self.startup_s,
            "price_per_replica_hour": o.price_per_replica_hour,
            "oracle": self.oracle_summary.to_json(),
            "hindsight": self.hindsight.to_json() if self.hindsight is not None else None,
            "static_frontier": self.static.to_json() if self.static is not None else None,
            "policies": [s.to_json() for s in self.summaries],
            "notes": self.notes,
        }


def _slots(spec: ServiceSpec, opts: SimOptions) -> int:
    if opts.slots is not None:
        return opts.slots
    cc = spec.autoscaling.kpa.containerConcurrency
    return cc if cc > 0 else spec.server.workers


def _cpu_request(spec: ServiceSpec) -> float:
    q = spec.resources.requests.quantity("cpu")
    return float(q.value) if q is not None else 1.0


@dataclass(frozen=True)
class _RunSetup:
    """What every run on a trace takes from the spec and the options (module docstring)."""

    slots: int
    service: npt.NDArray[np.float64]
    """Each request's service time (s), drawn once per trace and seed."""
    slo_s: float
    startup: float
    timeout: float


def _run_setup(spec: ServiceSpec, trace: Trace, opts: SimOptions) -> _RunSetup:
    auto = spec.autoscaling
    slots = _slots(spec, opts)
    timeout = opts.request_timeout_s
    return _RunSetup(
        slots=slots,
        service=replace(opts.service, slots=slots).service_times(trace, opts.seed),
        slo_s=(opts.slo_ms if opts.slo_ms is not None else auto.predictive.sloLatencyMs) / 1000.0,
        startup=opts.startup_s if opts.startup_s is not None else auto.predictive.startupSeconds,
        timeout=timeout if timeout is not None else spec.server.limits.requestTimeoutMs / 1e3,
    )


def _reference_config(spec: ServiceSpec, slots: int, startup: float, timeout: float) -> EngineConfig:
    """The engine the references replay in: no policy signals, a decision every second."""
    return EngineConfig(slots=slots, startup=startup, request_timeout=timeout, cpu_request=_cpu_request(spec), tick=1.0)


def _replica_pod(spec: ServiceSpec) -> Any:
    req = spec.resources.requests
    cpu = req.quantity("cpu")
    mem = req.quantity("memory")
    return pod_from_requests(
        float(cpu.value) if cpu is not None else 1.0,
        mem.int_value if mem is not None else 2**30,
        spec.resources.gpu.count,
    )


def _generated_tokens(auto: AutoscalingSpec, trace: Trace) -> Any:
    """The trace's ``GeneratedTokens`` column when a metric needs it (hpa on ``tokens``); None when none does."""
    column = trace.columns.get(TOKENS_COLUMN)
    if column is not None:
        return column
    if any(m.type == "tokens" for m in auto.effective_metrics):
        have = ", ".join(trace.columns) or "none"
        raise TraceError(
            f"autoscaling metric 'tokens' needs each request's generated tokens: trace {trace.name!r} has no "
            f"{TOKENS_COLUMN!r} column (columns: {have}); use a trace with it, e.g. the Azure LLM trace or a "
            "generated one with tokens=conv"
        )
    return None


def compare(
    spec: ServiceSpec,
    trace: Trace,
    policies: Sequence[str],
    options: SimOptions | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> Comparison:
    """Simulate each policy on ``trace`` and the oracle; ``progress(policy, simulated_seconds)`` reports progress."""
    import time

    opts = options or SimOptions()
    auto = spec.autoscaling
    if "hpa" in policies:
        _generated_tokens(auto, trace)  # before the oracle: a trace without the column fails at once
    run_setup = _run_setup(spec, trace, opts)
    slots, service, slo_s = run_setup.slots, run_setup.service, run_setup.slo_s
    startup, timeout = run_setup.startup, run_setup.timeout
    cost_model = PerReplicaHour(opts.price_per_replica_hour)
    notes: list[str] = []
    orc = oracle(
        trace.arrivals,
        service,
        trace.duration,
        slots=slots,
        slo_s=slo_s,
        startup=startup,
        min_replicas=auto.minReplicas,
        max_replicas=auto.maxReplicas,
        basis=opts.slo_basis,
        quantile=opts.quantile,
        interval=opts.oracle_interval_s,
    )
    if orc.capacity_per_replica <= 0:
        notes.append("one replica cannot meet the SLO even when idle: the SLO is below the service time")
    # The service was running before the trace began: start with what the oracle needs over the first lead time.
    lead = int(startup + max(auto.syncPeriodSeconds, 2.0)) + 1
    initial = int(orc.need[:lead].max()) if len(orc.need) else auto.minReplicas
    nodes_factory = None
    if opts.nodes is not None:
        setup, pod = opts.nodes, _replica_pod(spec)
        NodeModel(setup, pod)  # fail early if a replica fits no node group

        def nodes_factory() -> NodeModel:
            return NodeModel(setup, pod)

        notes.append(
            f"nodes: replicas request cpu {pod.cpu_milli}m, memory {pod.memory_mib}Mi, {pod.gpus} GPU(s) "
            "(spec.resources; 1 core / 1 GiB when unset)"
        )
    seconds: dict[str, float] = {}
    runs: dict[str, RunResult] = {}
    summaries: list[PolicySummary] = []
    for name in policies:
        if name not in POLICIES:
            raise ValueError(f"unknown policy {name!r}: use {', '.join(POLICIES)}")
        a: AutoscalingSpec = auto.model_copy(update={"policy": name})
        if name == "predictive" and auto.predictive.capacityRps is None:
            cap = max(orc.capacity_per_replica, 1e-6)
            a = a.model_copy(update={"predictive": auto.predictive.model_copy(update={"capacityRps": cap})})
            notes.append(f"predictive: capacityRps not in the spec; using the oracle's {cap:.3g} req/s per replica")
        tokens = None
        if name == "hpa":
            tokens = _generated_tokens(a, trace)
        policy: Policy[Any]
        if name == "predictive" and opts.capacity_curve:
            # The pooled capacity of n replicas (the oracle's Erlang model): what a profile at scale would give.
            curve = tuple(float(c) for c in orc.capacity[1:] if c > 0)
            pcfg = replace(predictive_config_from_spec(a), capacity_curve=curve)
            if opts.work_signal and curve and auto.predictive.capacityWork is None:
                # The same curve in Erlangs (busy slot-seconds per second): requests/s of mean size x mean size.
                mean_s = float(np.mean(service))
                work_curve = tuple(c * mean_s for c in curve)
                pcfg = replace(pcfg, capacity_work=work_curve[0], work_curve=work_curve)
            policy = Predictive(pcfg)
        else:
            policy = policy_from_spec(a, spec.replicas)
        cfg = EngineConfig(
            slots=slots,
            startup=startup,
            tick=sync_period(a),
            request_timeout=timeout,
            initial_replicas=bounded(initial, policy),
            load_delay=opts.load_delay_s,
            peak_window=slo_s if opts.peak_signal else 0.0,
            late_slo=slo_s if opts.miss_signal else 0.0,
            late_basis=opts.slo_basis,
            pod_metric_window=opts.pod_metric_window_s,
            pod_metric_scrape=opts.pod_metric_scrape_s,
            pod_metrics=name == "hpa",
            cpu_request=_cpu_request(spec),
            nodes=nodes_factory,
        )
        cb = None
        if progress is not None:
            cb = (lambda n: lambda t: progress(n, t))(name)  # bind the name now
        t0 = time.perf_counter()
        run = simulate_policy(trace.arrivals, service, trace.duration, policy, cfg, cb, tokens)
        seconds[name] = time.perf_counter() - t0
        runs[name] = run
        summaries.append(
            summarize(
                name,
                run,
                slo_s=slo_s,
                basis=opts.slo_basis,
                cost_model=cost_model,
                oracle_replica_seconds=orc.replica_seconds,
            )
        )
    hind = static = None
    if opts.references:
        ref_cfg = _reference_config(spec, slots, startup, timeout)
        t0 = time.perf_counter()
        static = static_frontier(
            trace.arrivals,
            service,
            trace.duration,
            ref_cfg,
            slo_s=slo_s,
            basis=opts.slo_basis,
            target=opts.quantile,
            max_replicas=auto.maxReplicas,
        )
        hind = hindsight_schedule(
            trace.arrivals,
            service,
            trace.duration,
            orc.need,
            ref_cfg,
            slo_s=slo_s,
            basis=opts.slo_basis,
            target=opts.quantile,
            interval=opts.oracle_interval_s,
            max_replicas=auto.maxReplicas,
            cap=int(static.need[0]) if static.attainment >= opts.quantile else None,
        )
        if static.attainment >= opts.quantile and static.replica_seconds < hind.replica_seconds:
            hind = replace(static, name="hindsight")  # a constant is a schedule too: the cheaper one found
        seconds["references"] = time.perf_counter() - t0
        if hind.attainment < opts.quantile:
            notes.append(
                f"hindsight: no schedule up to maxReplicas {auto.maxReplicas} met {opts.quantile:.0%} of the SLO "
                f"in {hind.rounds} rounds (best {hind.attainment:.2%})"
            )
    return Comparison(
        trace=trace,
        options=opts,
        slots=slots,
        slo_s=slo_s,
        startup_s=startup,
        oracle=orc,
        oracle_summary=summarize_oracle(orc, trace.duration, cost_model),
        summaries=summaries,
        runs=runs,
        notes=notes,
        seconds=seconds,
        hindsight=hind,
        static=static,
    )


def replay(spec: ServiceSpec, trace: Trace, pods: Any, options: SimOptions | None = None) -> ReplayedSchedule:
    """Replay a per-second schedule of pods (created ones, starting or ready; a pod created at ``t`` is ready a
    start-up later) on ``trace`` in the engine the references run in, with the SLO, slots, start-up and timeout
    :func:`compare` takes from the same spec and options. What a schedule built from knowledge no policy has (the
    hidden state of a Markov-modulated process, a noise-free rate curve) would have met, at what cost: the
    bounds of ``bench/sim/bounds.py``. ``pods`` needs one count per second of the trace (the last one holds after
    its end)."""
    counts = np.asarray(pods, dtype=np.int64)
    if counts.ndim != 1 or len(counts) == 0 or (counts < 0).any():
        raise ValueError("pods must be a non-empty one-dimensional array of counts >= 0, one per second")
    opts = options or SimOptions()
    setup = _run_setup(spec, trace, opts)
    cfg = _reference_config(spec, setup.slots, setup.startup, setup.timeout)
    return replay_schedule(
        trace.arrivals, setup.service, trace.duration, counts, cfg, slo_s=setup.slo_s, basis=opts.slo_basis
    )
