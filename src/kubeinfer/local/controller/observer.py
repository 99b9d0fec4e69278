"""The load observer: what the autoscaling policies and the VPA recommender see of this service.

Every second the controller takes a load sample from the router's counters (requests outstanding per backend and
buffered while no replica is ready, requests/s, and the most requests within any :func:`peak_window` -- the SLO's
length, as the simulator counts it) and the replicas' busy time; every sync period it scrapes each
replica and turns the scrape and the samples into one :class:`~kubeinfer.autoscale.Observation` (per pod:
concurrency, rps, queue depth, CPU cores, resident memory, and for a generative model's replica the token signals
``sequences-waiting`` and ``tokens``, as the HPA's metrics API would report them) and one
:class:`~kubeinfer.autoscale.VpaObservation`. Rates (CPU cores, busy slots) come from the difference of two scrapes.

The token signals are the replica's own gauges, not the router's outstanding tokens: on a cluster the HPA reads them
per pod through the Prometheus adapter (``kubeinfer render``'s Pods metrics), so the same spec scales on the same
number per replica here and there.
"""

from __future__ import annotations

from typing import Any

from kubeinfer.autoscale import LoadSample, Observation, PodSample, Resources, VpaObservation
from kubeinfer.local.controller.interfaces import RouterLike
from kubeinfer.local.controller.records import Replica
from kubeinfer.local.metrics import ReplicaMetrics
from kubeinfer.local.resources import cpu_cores
from kubeinfer.local.router import RouterStats
from kubeinfer.spec.service import ServiceSpec

__all__ = ["LoadObserver", "generation_metrics", "peak_window", "router_load"]

LOAD_HISTORY = 600
"""Load samples kept (one a second: ten minutes, the longest window a policy looks back)."""


def peak_window(spec: ServiceSpec) -> float:
    """Seconds of the window the router counts its peak arrivals in (``LoadSample.peak``): the SLO's length,
    ``autoscaling.predictive.sloLatencyMs``, whatever the policy (the others ignore it), as ``kubeinfer simulate``
    reports it (``sim.scenario``)."""
    return spec.autoscaling.predictive.sloLatencyMs / 1000.0


def router_load(stats: RouterStats) -> tuple[dict[str, float], float, float]:
    """(outstanding per backend id, buffered now, requests/s) from the router's stats."""
    per = {str(bid): float(b.outstanding) for bid, b in stats.backends.items()}
    return per, float(stats.buffered), float(stats.rps)


class LoadObserver:
    def __init__(self, router: RouterLike) -> None:
        self.router = router
        self.loads: list[LoadSample] = []
        """The last :data:`LOAD_HISTORY` samples."""
        self.outstanding: dict[str, float] = {}
        """Requests outstanding per backend id at the last sample."""
        self.buffered = 0.0
        """Requests the router buffered (no replica ready) at the last sample."""
        self.ooms: list[float] = []
        """When replicas ended OOMKilled since the last VPA observation."""
        self.rejected = 0
        """The router's rejected-requests counter at the last sample."""

    def sample(self, replicas: list[Replica], now: float) -> LoadSample:
        """One load sample: the router's counters now, and the ready replicas' busy rate from their last scrape."""
        stats = self.router.stats()
        per, buffered, rps = router_load(stats)
        rates = [r.busy_rate for r in replicas if r.machine.ready and r.busy_rate is not None]
        work = sum(rates) if rates else None
        # the SLO feedback, once every ready replica has a rate of missed requests (two scrapes)
        late_rates = [r.late_rate for r in replicas if r.machine.ready]
        late = sum(x for x in late_rates if x is not None) if late_rates and None not in late_rates else None
        rejected, self.rejected = stats.rejected - self.rejected, stats.rejected
        if late is not None:
            late += max(0, rejected)  # answered 503 by the router itself (buffer full or timed out): missed too
        # the peak of the same last whole second as rps, when the router counts one
        peak = float(stats.peak) if stats.peak_window > 0 else None
        sample = LoadSample(
            now,
            concurrency=sum(per.values()) + buffered,
            rps=rps,
            work=work,
            peak=peak,
            peak_window=stats.peak_window if peak is not None else 0.0,
            late=late,
        )
        self.loads.append(sample)
        self.loads = self.loads[-LOAD_HISTORY:]
        self.outstanding = per
        self.buffered = buffered
        return sample

    def oom(self, now: float) -> None:
        """A replica ended OOMKilled at ``now``."""
        self.ooms.append(now)

    @staticmethod
    def record_usage(rep: Replica, m: ReplicaMetrics, now: float) -> None:
        """Keep a replica's scrape and the rates since its previous one (CPU cores, busy slots)."""
        rep.metrics = m
        if m.cpu_seconds is not None:
            if rep.cpu_seconds is not None and rep.cpu_at is not None and now > rep.cpu_at:
                rep.cpu_cores = max(0.0, (m.cpu_seconds - rep.cpu_seconds) / (now - rep.cpu_at))
            rep.cpu_seconds, rep.cpu_at = m.cpu_seconds, now
        if m.busy_seconds is not None:
            if rep.busy_seconds is not None and rep.busy_at is not None and now > rep.busy_at:
                rep.busy_rate = max(0.0, (m.busy_seconds - rep.busy_seconds) / (now - rep.busy_at))
            rep.busy_seconds, rep.busy_at = m.busy_seconds, now
        if m.late_total is not None:
            if rep.late_total is not None and rep.late_at is not None and now > rep.late_at:
                # a restarted server's counter starts again from zero: count from there
                missed = m.late_total - rep.late_total if m.late_total >= rep.late_total else m.late_total
                rep.late_rate = missed / (now - rep.late_at)
            rep.late_total, rep.late_at = m.late_total, now
        if m.rss is not None:
            rep.rss = m.rss

    @staticmethod
    def memory_overrun(rep: Replica, m: ReplicaMetrics) -> str | None:
        """Why the replica must be killed for its memory, or None: resident memory in this scrape over
        ``limits.memory`` with no memory cgroup to enforce the limit (the kernel's OOM kill, done by hand), once per
        process."""
        limit = rep.launch.memory_limit
        if m.rss is None or not limit or rep.cgroup or rep.proc is None or rep.watchdog_oom or m.rss <= limit:
            return None
        return f"resident memory {m.rss / 2**20:.0f}Mi exceeds limits.memory {limit / 2**20:.0f}Mi"

    def observation(
        self, live: list[Replica], loads: tuple[LoadSample, ...], now: float, spec: ServiceSpec, desired: int
    ) -> Observation:
        """What the autoscaling policy decides on: each live replica as a pod, the service-wide load."""
        ready = [r for r in live if r.machine.ready]
        share = self.buffered / len(ready) if ready else 0.0
        requests = _requests(spec)
        total_rps = loads[-1].rps if loads else 0.0
        pods = []
        for r in live:
            metrics: dict[str, float] = {}
            if r.machine.ready:
                metrics["concurrency"] = self.outstanding.get(r.id, 0.0) + share
                metrics["rps"] = total_rps / max(1, len(ready))
                if r.metrics.queue_depth is not None:
                    metrics["queue-depth"] = r.metrics.queue_depth
            # Prometheus scrapes a pod that is not ready too (a ServiceMonitor's endpoints include not-ready
            # addresses), and the HPA counts a Pods metric of a running pod whatever its readiness: so do we.
            metrics.update(generation_metrics(r.metrics))
            if r.cpu_cores is not None:
                metrics["cpu"] = r.cpu_cores
            if r.rss is not None:
                metrics["memory"] = r.rss
            phase: Any = "Running" if r.machine.phase in ("Running", "Starting") else "Pending"
            pods.append(
                PodSample(
                    r.id,
                    metrics,
                    requests,
                    phase=phase,
                    ready=r.machine.ready,
                    started_at=r.machine.process_started_at,
                    metrics_at=now,
                )
            )
        external = {
            "concurrency": loads[-1].concurrency if loads else 0.0,
            "rps": total_rps,
            "queue-depth": sum(r.metrics.queue_depth or 0 for r in live),
        }
        for r in live:
            for key, value in generation_metrics(r.metrics).items():
                external[key] = external.get(key, 0.0) + value
        return Observation(
            current_replicas=desired,
            pods=tuple(pods),
            ready_replicas=len(ready),
            status_replicas=len(live),
            external=external,
            load=loads,
        )

    def vpa_observation(self, live: list[Replica], now: float, spec: ServiceSpec) -> VpaObservation:
        """What the VPA recommender learns from: the replicas' usage now and the OOM kills since the last one."""
        cpu = tuple((now, r.cpu_cores) for r in live if r.cpu_cores is not None)
        mem = tuple((now, r.rss) for r in live if r.rss is not None)
        req_cpu = spec.resources.requests.quantity("cpu")
        req_mem = spec.resources.requests.quantity("memory")
        requests = Resources(float(req_cpu.value) if req_cpu else 0.0, float(req_mem.value) if req_mem else 0.0)
        obs = VpaObservation(cpu=cpu, memory=mem, ooms=tuple(self.ooms), requests=requests)
        self.ooms = []
        return obs


def generation_metrics(m: ReplicaMetrics) -> dict[str, float]:
    """A replica's token signals under their ``spec.autoscaling`` metric types, from its latest scrape: the number
    the Prometheus adapter serves the HPA for that pod (deploy/prometheus-adapter/values.yaml), its gauge as scraped
    and summed over the replica's models. ``sequences-waiting`` is ``kubeinfer_generation_sequences_waiting``,
    ``tokens`` is ``kubeinfer_generation_tokens_per_second`` (generated tokens per second over the last 10 s). A
    replica that exports neither (not format llm, its model not loaded, its scrape failed) has neither: a missing
    metric, in the HPA's sense."""
    out: dict[str, float] = {}
    if m.sequences_waiting is not None:
        out["sequences-waiting"] = m.sequences_waiting
    if m.tokens_per_second is not None:
        out["tokens"] = m.tokens_per_second
    return out


def _requests(spec: ServiceSpec) -> dict[str, float]:
    """The pod's resource requests, as the HPA's utilization targets divide by them (cpu: the derived cores when
    ``requests.cpu`` is not set)."""
    cpu_q = spec.resources.requests.quantity("cpu")
    cores = cpu_cores(spec.resources) if cpu_q is None else float(cpu_q.value)
    mem_q = spec.resources.requests.quantity("memory")
    requests: dict[str, float] = {}
    if cores is not None:
        requests["cpu"] = cores
    if mem_q is not None:
        requests["memory"] = float(mem_q.value)
    return requests
