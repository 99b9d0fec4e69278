"""How long one request occupies one replica slot: a fixed cost plus per-column costs, with optional noise.

A replica serves up to ``slots`` requests at once (``containerConcurrency``, or the server's ``workers`` -- model
instances run in parallel -- when no hard limit is set); each request holds one slot for its service time.
Service time is ``fixed_ms + sum(cost_ms[col] x request[col])``: a millisecond classifier is ``fixed_ms=20``; an
LLM on the Azure trace is e.g. ``fixed_ms=150, cost_ms={"ContextTokens": 0.15, "GeneratedTokens": 20}``
(prefill per prompt token, decode per generated token), i.e. seconds-long requests.

``distribution`` multiplies each time by a random factor of mean 1: ``fixed`` (none), ``exponential`` (the M/M/c
assumption of the oracle) or ``lognormal`` with coefficient of variation ``cv``. Draws are seeded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from kubeinfer.sim.traces import Trace, TraceError

__all__ = ["ServiceModel"]

Distribution = Literal["fixed", "exponential", "lognormal"]


@dataclass(frozen=True)
class ServiceModel:
    fixed_ms: float = 20.0
    cost_ms: Mapping[str, float] = field(default_factory=dict)
    """Milliseconds per unit of a trace column (e.g. ``GeneratedTokens: 20``)."""
    slots: int = 1
    """Requests one replica serves at once."""
    distribution: Distribution = "fixed"
    cv: float = 1.0
    """Coefficient of variation for ``lognormal``."""

    def __post_init__(self) -> None:
        if self.fixed_ms < 0 or any(v < 0 for v in self.cost_ms.values()):
            raise ValueError("service costs must be >= 0 ms")
        if self.slots < 1:
            raise ValueError(f"slots must be >= 1, got {self.slots}")
        if self.distribution not in ("fixed", "exponential", "lognormal"):
            raise ValueError(f"distribution {self.distribution!r}: use fixed, exponential or lognormal")

    def service_times(self, trace: Trace, seed: int = 0) -> npt.NDArray[np.float64]:
        """Seconds of slot time for each request of ``trace``."""
        ms = np.full(len(trace), self.fixed_ms, dtype=np.float64)
        for col, cost in self.cost_ms.items():
            if col not in trace.columns:
                have = ", ".join(trace.columns) or "none"
                raise TraceError(f"service cost on column {col!r}, but the trace has columns: {have}")
            ms += cost * trace.columns[col]
        if self.distribution != "fixed":
            rng = np.random.default_rng(seed + 7919)
            if self.distribution == "exponential":
                ms *= rng.exponential(1.0, len(ms))
            else:
                sigma = float(np.sqrt(np.log1p(self.cv**2)))
                ms *= rng.lognormal(-(sigma**2) / 2, sigma, len(ms))
        return ms / 1000.0

    def describe(self) -> str:
        parts = [f"{self.fixed_ms:g} ms"] + [f"{v:g} ms x {k}" for k, v in self.cost_ms.items()]
        noise = "" if self.distribution == "fixed" else f", {self.distribution}"
        return " + ".join(parts) + f" per request, {self.slots} slot(s) per replica{noise}"
