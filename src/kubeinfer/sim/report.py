"""Summaries of simulated runs: SLO attainment, latency percentiles, drops, replica-seconds, cost, scaling events.

Attainment is the share of *all* requests (dropped ones included, as misses) whose latency met the target; with
``slo_basis="wait"`` the target bounds the time a request waited for a slot (time to first token for an LLM,
less its prefill) instead of its whole latency. Cost is replica-hours times a price per replica-hour: the
simplest cost model. A node-level model (node groups from :mod:`kubeinfer.placement`) can replace it by replaying
``RunResult.pods`` onto nodes; :class:`CostModel` is the seam.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from kubeinfer.sim.engine import RunResult
from kubeinfer.sim.oracle import OracleResult, SloBasis

__all__ = [
    "CostModel",
    "OracleSummary",
    "PerReplicaHour",
    "PolicySummary",
    "slo_met",
    "summarize",
    "summarize_oracle",
]


class CostModel(Protocol):
    """Prices a run from its pods' lifetimes; the cluster autoscaler model can implement it per node group."""

    def cost(self, replica_seconds: float, pods: np.ndarray[Any, Any]) -> float: ...


@dataclass(frozen=True)
class PerReplicaHour:
    price: float = 1.0

    def cost(self, replica_seconds: float, pods: np.ndarray[Any, Any]) -> float:
        return replica_seconds / 3600.0 * self.price


@dataclass(frozen=True)
class PolicySummary:
    policy: str
    requests: int
    slo_attainment: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    dropped: int
    replica_seconds: float
    cost: float
    scaling_events: int
    cold_starts: int
    mean_replicas: float
    peak_replicas: int
    vs_oracle: float
    """Replica-seconds relative to the oracle's."""
    node_hours: float | None = None
    """With node groups: node-hours, GPU-hours, the nodes' cost, peak nodes and replica-seconds spent waiting for a
    node (``None`` without node groups)."""
    gpu_hours: float | None = None
    node_cost: float | None = None
    peak_nodes: int | None = None
    pending_seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OracleSummary:
    replica_seconds: float
    cost: float
    mean_replicas: float
    peak_replicas: int
    capacity_per_replica_rps: float
    interval_s: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def slo_met(run: RunResult, slo_s: float, basis: SloBasis) -> npt.NDArray[np.bool_]:
    """Which requests of ``run`` met the SLO: answered within ``slo_s`` of arrival (``latency``) or started within
    it (``wait``); a dropped request never does."""
    served = ~run.dropped
    measure = np.where(served, (run.end if basis == "latency" else run.start) - run.arrivals, np.inf)
    return np.asarray(measure <= slo_s + 1e-9)


def summarize(
    name: str,
    run: RunResult,
    *,
    slo_s: float,
    basis: SloBasis,
    cost_model: CostModel,
    oracle_replica_seconds: float,
) -> PolicySummary:
    n = len(run.arrivals)
    dropped = run.dropped
    served = ~dropped
    lat = run.end[served] - run.arrivals[served]
    ok = int(np.count_nonzero(slo_met(run, slo_s, basis)))
    # Percentiles over every request: a dropped one counts as infinitely late (it never got an answer).
    full = np.full(n, np.inf)
    full[served] = lat
    p50, p99 = (float(np.percentile(full, q, method="inverted_cdf")) if n else 0.0 for q in (50, 99))
    duration = max(run.duration, 1e-9)
    nc = run.nodes
    return PolicySummary(
        policy=name,
        requests=n,
        slo_attainment=ok / n if n else 1.0,
        p50_ms=p50 * 1000,
        p99_ms=p99 * 1000,
        mean_ms=float(lat.mean()) * 1000 if len(lat) else 0.0,
        dropped=int(np.count_nonzero(dropped)),
        replica_seconds=run.replica_seconds,
        cost=cost_model.cost(run.replica_seconds, run.pods),
        scaling_events=run.scaling_events,
        cold_starts=run.cold_starts,
        mean_replicas=run.replica_seconds / duration,
        peak_replicas=int(run.timeline["replicas"].max(initial=0)),
        vs_oracle=run.replica_seconds / oracle_replica_seconds if oracle_replica_seconds > 0 else float("inf"),
        node_hours=None if nc is None else nc.node_hours,
        gpu_hours=None if nc is None else nc.gpu_hours,
        node_cost=None if nc is None else nc.cost,
        peak_nodes=None if nc is None else nc.peak_nodes,
        pending_seconds=None if nc is None else nc.pending_seconds,
    )


def summarize_oracle(result: OracleResult, duration: float, cost_model: CostModel) -> OracleSummary:
    return OracleSummary(
        replica_seconds=result.replica_seconds,
        cost=cost_model.cost(result.replica_seconds, np.zeros((0, 3))),
        mean_replicas=result.replica_seconds / max(duration, 1e-9),
        peak_replicas=int(result.provisioned.max(initial=0)),
        capacity_per_replica_rps=result.capacity_per_replica,
        interval_s=result.interval,
    )
