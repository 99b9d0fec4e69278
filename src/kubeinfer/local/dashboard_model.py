"""What the dashboard computes from status snapshots and scrapes, free of sockets and clocks.

- :class:`Prices` and :func:`cost`: what a service costs per hour and per million requests, from
  ``spec.resources`` (requests, else limits, else the replicas' measured use) and a price per CPU-hour, GiB-hour and
  GPU-hour (:meth:`Prices.from_env`). The default prices are Google Cloud's on-demand N2 vCPU and memory prices in
  us-central1 and a T4 GPU there, as examples to override.
- :func:`histogram_quantile` (from :mod:`kubeinfer.lifecycle.canary`, which judges a canary's p99 with it): a quantile
  of a Prometheus histogram's buckets, linear within its bucket as Prometheus' ``histogram_quantile`` is.
- :class:`History`: the time series the dashboard keeps in memory (one :class:`Sample` per tick, bounded) and the
  autoscaler's decisions (each change of the desired replica count with its reason and the load at the time).

Time is a parameter everywhere: the shell (:mod:`kubeinfer.local.dashboard`) passes the wall clock in.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from kubeinfer.lifecycle.canary import histogram_quantile
from kubeinfer.spec.quantity import QuantityError, parse_quantity

__all__ = [
    "Cost",
    "Decision",
    "History",
    "Prices",
    "PricesError",
    "Sample",
    "cost",
    "histogram_quantile",
    "is_error_code",
]

GIB = float(1 << 30)

# gRPC status codes that mean the server failed (the codes gRPC maps HTTP 5xx to, and the server-side failures);
# client errors (INVALID_ARGUMENT, NOT_FOUND, ...) are the caller's, as HTTP 4xx are.
_GRPC_SERVER_ERRORS = frozenset(
    {"UNKNOWN", "INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED", "DATA_LOSS", "RESOURCE_EXHAUSTED", "UNIMPLEMENTED"}
)


class PricesError(ValueError):
    """A price variable that is not a non-negative number; the message names it."""


@dataclass(frozen=True, slots=True)
class Prices:
    """Prices per hour of one unit, in the currency the user thinks in (the page writes ``$``)."""

    cpu_hour: float = 0.031611
    """One vCPU for an hour (GCP N2, us-central1, on demand)."""
    gib_hour: float = 0.004237
    """One GiB of memory for an hour (GCP N2, us-central1, on demand)."""
    gpu_hour: float = 0.35
    """One whole GPU for an hour (GCP NVIDIA T4, us-central1, on demand); fractions and MIG slices pay their share."""

    ENV = (
        ("cpu_hour", "KUBEINFER_PRICE_CPU_HOUR"),
        ("gib_hour", "KUBEINFER_PRICE_GIB_HOUR"),
        ("gpu_hour", "KUBEINFER_PRICE_GPU_HOUR"),
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Prices:
        values: dict[str, float] = {}
        for attr, key in cls.ENV:
            raw = env.get(key, "").strip()
            if not raw:
                continue
            try:
                value = float(raw)
            except ValueError:
                raise PricesError(f"{key} has value {raw!r}: not a number (a price per hour, e.g. 0.03)") from None
            if not math.isfinite(value) or value < 0:
                raise PricesError(f"{key} has value {raw!r}: must be a finite number >= 0")
            values[attr] = value
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Cost:
    per_hour: float
    """The replicas that exist now, for an hour."""
    per_million: float | None
    """``per_hour`` over the requests an hour at the recent request rate, times a million; None without traffic."""
    replicas: int
    cpu: float
    """Cores paid per replica."""
    memory: float
    """Bytes paid per replica."""
    gpus: float
    """GPUs paid per replica (a fraction for a shared one)."""
    basis: str
    """How the amounts were found, for the page to show."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _amount(spec_resources: Mapping[str, Any], name: str) -> tuple[float | None, str]:
    for kind in ("requests", "limits"):
        raw = (spec_resources.get(kind) or {}).get(name)
        if raw is not None:
            try:
                return float(parse_quantity(raw)), kind
            except QuantityError:
                return None, ""
    return None, ""


def _gpus(gpu: Mapping[str, Any] | None) -> float:
    if not gpu:
        return 0.0
    count = float(gpu.get("count") or 0)
    if count:
        return count
    if gpu.get("fraction") is not None:
        return float(gpu["fraction"])
    profile = gpu.get("migProfile")
    if isinstance(profile, str) and profile[:1].isdigit():
        return int(profile[0]) / 7  # a MIG slice pays for its compute sevenths of the GPU
    return 0.0


def cost(status: Mapping[str, Any], prices: Prices, rps: float) -> Cost:
    """The cost of the service's replicas now. Per replica: ``spec.resources.requests`` (what a scheduler reserves
    and a cloud bills), else ``limits``, else the replicas' mean measured use (``cpu``, ``memory`` in the status);
    replicas that exist (not ``Terminated``) are paid for whether ready or not. ``rps``: the recent request rate."""
    resources = (status.get("spec") or {}).get("resources") or {}
    replicas = [r for r in status.get("replicas", ()) if r.get("state") != "Terminated"]
    n = len(replicas)
    cpu, cpu_from = _amount(resources, "cpu")
    mem, mem_from = _amount(resources, "memory")
    basis = []
    if cpu is None:
        used = [r["cpu"] for r in replicas if r.get("cpu") is not None]
        cpu = sum(used) / len(used) if used else 0.0
        cpu_from = "measured"
    if mem is None:
        used = [r["memory"] for r in replicas if r.get("memory") is not None]
        mem = sum(used) / len(used) if used else 0.0
        mem_from = "measured"
    basis.append(f"cpu from {cpu_from}")
    basis.append(f"memory from {mem_from}")
    gpus = _gpus(resources.get("gpu"))
    per_replica = cpu * prices.cpu_hour + mem / GIB * prices.gib_hour + gpus * prices.gpu_hour
    per_hour = n * per_replica
    per_million = per_hour / (rps * 3600.0) * 1e6 if rps > 0 else None
    return Cost(per_hour, per_million, n, cpu, mem, gpus, ", ".join(basis))


def is_error_code(code: str) -> bool:
    """Whether a response code, as the router counts them (HTTP status, gRPC code name or ``aborted``), is a
    failure of the service: HTTP 5xx, a connection aborted, or a server-side gRPC code."""
    if code.isdigit():
        return int(code) >= 500
    return code == "aborted" or code in _GRPC_SERVER_ERRORS


@dataclass(frozen=True, slots=True)
class Sample:
    t: float
    """Wall-clock seconds."""
    rps: float | None
    """Requests per second accepted by the router (or, without one, by the replicas) since the previous sample;
    None when not known (no replica's /metrics answered)."""
    errors: float | None
    """Failed responses per second (see :func:`is_error_code`); None when not known."""
    p50: float | None
    """Milliseconds: the replicas' request latency over the recent window (None without requests)."""
    p99: float | None
    queue: float | None
    """Requests waiting: buffered in the router plus queued in the replicas' batchers; None when not known."""
    in_flight: float | None
    """Requests inside the replicas; None when not known."""
    desired: int
    ready: int
    replicas: int
    reason: str
    """The autoscaler's last reason."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Decision:
    """A change of the desired replica count, with what the autoscaler said and the load that it saw."""

    t: float
    before: int
    after: int
    reason: str
    message: str
    rps: float | None
    queue: float | None
    in_flight: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class History:
    """The last ``limit`` samples and decisions."""

    limit: int = 900
    samples: deque[Sample] = field(init=False)
    decisions: deque[Decision] = field(init=False)

    def __post_init__(self) -> None:
        self.samples = deque(maxlen=self.limit)
        self.decisions = deque(maxlen=self.limit)

    def add(self, s: Sample, message: str) -> Decision | None:
        """Record a sample; returns the decision it reveals (the desired count changed), if any. The first sample
        of a service counts as a decision from 0 (its start)."""
        prev = self.samples[-1] if self.samples else None
        self.samples.append(s)
        before = prev.desired if prev is not None else 0
        if s.desired == before and prev is not None:
            return None
        if prev is None and s.desired == 0:
            return None
        d = Decision(s.t, before, s.desired, s.reason, message, s.rps, s.queue, s.in_flight)
        self.decisions.append(d)
        return d

    def mean_rps(self, seconds: float) -> float:
        """The mean request rate over the samples of the last ``seconds`` (0 with none)."""
        if not self.samples:
            return 0.0
        since = self.samples[-1].t - seconds
        recent = [s.rps for s in self.samples if s.t > since and s.rps is not None]
        return sum(recent) / len(recent) if recent else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "samples": [s.to_json() for s in self.samples],
            "decisions": [d.to_json() for d in self.decisions],
        }
