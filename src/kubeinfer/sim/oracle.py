"""The oracle: the fewest replicas that meet the SLO at each moment, knowing the future -- a lower bound on cost.

Definition (what :func:`oracle` computes):

1. **Capacity at the SLO.** ``n`` replicas of ``slots`` slots each are modelled as one M/M/(n x slots) queue
   behind the router (Erlang C), with the mean service time ``s`` of the trace's requests. ``capacity(n)`` is the
   largest arrival rate ``lam`` for which ``P(wait > budget) = C(c, lam s) exp(-(c/s - lam) budget k) <= 1 - q``
   with ``k = 2 / (1 + cv^2)`` (Kingman's correction for the service time's variability, 1 when exponential),
   with ``c = n x slots``, ``q`` the SLO quantile (0.99) and ``budget`` the SLO minus the mean service time for
   a latency SLO (``slo_basis="latency"``) or the SLO itself when it bounds the wait (``slo_basis="wait"``, e.g.
   time to first token for an LLM). Pooling makes ``capacity(n)`` grow slightly faster than ``n``.
2. **Demand per interval.** The trace is cut into intervals of ``interval`` seconds (10 s); the demand of
   interval ``k`` is its work (sum of its requests' service times) over the interval, divided by ``s``: a rate
   in requests/s of mean size. ``need[k] = min{n : capacity(n) >= demand[k]}``, clamped to [min, max] replicas.
3. **Start-up.** A replica is billed from the moment it is created, ``startup`` seconds before it is ready, so
   the oracle creates each replica exactly ``startup`` seconds before the interval that needs it (it knows the
   future) and pays that lead time. It removes a replica as soon as it is not needed, unless it is needed again
   within ``startup`` seconds (removing and re-creating would cost more than keeping it). Replicas needed are
   nested (the ``j``-th is needed whenever ``need >= j``), so each level is scheduled on its own, optimally.
   Replicas present at ``t = 0`` are warm (as the simulated policies start warm).

The result is the replica-seconds of that schedule. A real policy cannot beat it without missing the SLO, up to
the model's assumptions (Poisson arrivals within an interval, the Kingman approximation of service variability).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = ["OracleResult", "capacity", "capacity_table", "erlang_c", "fill_level", "oracle"]

SloBasis = Literal["latency", "wait"]


def erlang_c(servers: int, offered: float) -> float:
    """Probability that an arrival waits in an M/M/c queue with ``servers`` and ``offered`` load (Erlangs)."""
    if offered <= 0:
        return 0.0
    if offered >= servers:
        return 1.0
    b = 1.0  # Erlang B by its stable recursion
    for k in range(1, servers + 1):
        b = offered * b / (k + offered * b)
    return servers * b / (servers - offered * (1 - b))


def _p_wait_over(servers: int, lam: float, mean_s: float, budget: float, cv2: float = 1.0) -> float:
    # Kingman / Allen-Cunneen: service variability scales the wait by (1 + cv^2) / 2, i.e. the tail's decay rate
    # by 2 / (1 + cv^2); exact (M/M/c) for exponential service, cv^2 = 1.
    return erlang_c(servers, lam * mean_s) * math.exp(-(servers / mean_s - lam) * budget * 2.0 / (1.0 + cv2))


def capacity(servers: int, mean_s: float, budget: float, quantile: float = 0.99, cv2: float = 1.0) -> float:
    """Largest arrival rate (requests/s) at which ``P(wait > budget) <= 1 - quantile`` with ``servers`` slots.

    ``cv2`` is the squared coefficient of variation of the service time (1 for exponential service).
    """
    if servers <= 0 or mean_s <= 0:
        return math.inf if mean_s <= 0 and servers > 0 else 0.0
    if budget < 0:
        return 0.0
    lo, hi = 0.0, servers / mean_s
    for _ in range(60):
        mid = (lo + hi) / 2
        if _p_wait_over(servers, mid, mean_s, budget, cv2) <= 1 - quantile:
            lo = mid
        else:
            hi = mid
    return lo


def wait_budget(slo_s: float, mean_s: float, basis: SloBasis) -> float:
    return slo_s - mean_s if basis == "latency" else slo_s


def capacity_table(
    max_replicas: int,
    slots: int,
    mean_s: float,
    slo_s: float,
    basis: SloBasis = "latency",
    quantile: float = 0.99,
    cv2: float = 1.0,
) -> npt.NDArray[np.float64]:
    """``capacity(n)`` for n = 0..max_replicas (requests/s of mean size)."""
    budget = wait_budget(slo_s, mean_s, basis)
    return np.array([capacity(n * slots, mean_s, budget, quantile, cv2) for n in range(max_replicas + 1)])


@dataclass(frozen=True)
class OracleResult:
    need: npt.NDArray[np.int64]
    """Replicas ready in each second."""
    provisioned: npt.NDArray[np.int64]
    """Replicas existing (billed) in each second, start-ups and kept gaps included."""
    replica_seconds: float
    capacity_per_replica: float
    """``capacity(1)``: requests/s one replica serves within the SLO."""
    interval: float
    capacity: npt.NDArray[np.float64]
    """``capacity(n)`` for n = 0..max replicas (requests/s of mean size within the SLO)."""


def fill_level(mask: npt.NDArray[np.bool_], startup: float) -> tuple[npt.NDArray[np.bool_], float]:
    """Keep a replica through gaps shorter than ``startup``; return the kept mask and the start-up seconds paid."""
    idx = np.flatnonzero(mask)
    if len(idx) == 0:
        return mask, 0.0
    gaps = np.diff(idx) - 1
    fill = (gaps > 0) & (gaps < startup)
    delta = np.zeros(len(mask) + 1, dtype=np.int64)
    np.add.at(delta, idx[:-1][fill] + 1, 1)
    np.add.at(delta, idx[1:][fill], -1)
    kept = mask | (np.cumsum(delta[:-1]) > 0)
    starts = int(np.count_nonzero(gaps >= startup)) + (0 if idx[0] == 0 else 1)
    return kept, starts * startup


def oracle(
    arrivals: npt.NDArray[np.float64],
    service: npt.NDArray[np.float64],
    duration: float,
    *,
    slots: int,
    slo_s: float,
    startup: float,
    min_replicas: int,
    max_replicas: int,
    basis: SloBasis = "latency",
    quantile: float = 0.99,
    interval: float = 10.0,
) -> OracleResult:
    """The oracle schedule for a trace (see the module docstring)."""
    n_sec = max(1, math.ceil(duration))
    mean_s = float(service.mean()) if len(service) else 0.0
    cv2 = float(service.var() / mean_s**2) if mean_s > 0 else 1.0
    table = capacity_table(max_replicas, slots, mean_s, slo_s, basis, quantile, cv2)
    n_int = max(1, math.ceil(n_sec / interval))
    k = np.minimum((arrivals / interval).astype(np.int64), n_int - 1)
    work = np.bincount(k, weights=service, minlength=n_int)
    demand = work / interval / mean_s if mean_s > 0 else np.zeros(n_int)
    # Fewest n with capacity(n) >= demand; the table is increasing in n.
    need_int = np.searchsorted(table, demand - 1e-9, side="left")
    need_int = np.where(demand <= 0, 0, need_int)
    need_int = np.clip(need_int, min_replicas, max_replicas).astype(np.int64)
    sec_interval = np.minimum((np.arange(n_sec) / interval).astype(np.int64), n_int - 1)
    need = need_int[sec_interval]
    provisioned = np.zeros(n_sec, dtype=np.int64)
    extra = 0.0
    for level in range(1, int(need.max(initial=0)) + 1):
        kept, paid = fill_level(need >= level, startup)
        provisioned += kept
        extra += paid
    return OracleResult(need, provisioned, float(provisioned.sum()) + extra, float(table[1]), interval, table)
