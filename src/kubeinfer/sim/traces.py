"""Request traces for the simulator: arrival times (seconds from the start) plus optional per-request columns.

Three sources, one :class:`Trace`:

- a CSV of request timestamps (one row per request). The first column whose name contains ``time`` (or the first
  column) holds either numbers (seconds) or date-times (``2023-11-16 18:15:46.6805900``, the Azure LLM inference
  trace format); other numeric columns (``ContextTokens``, ``GeneratedTokens``) are kept as per-request columns
  that a :class:`~kubeinfer.sim.service.ServiceModel` can charge for;
- a CSV of per-interval counts (a ``count``/``requests`` column next to a time column): arrivals are drawn as a
  Poisson process at each interval's rate, so a counts file and the timestamps it summarizes simulate alike;
- generators (:func:`generate`): Poisson arrivals at a rate curve -- constant, diurnal, step, spike, on/off.

Every source is deterministic given its seed. Arrival times are float64 seconds from the trace start, sorted.
Time can be compressed or stretched with :meth:`Trace.scaled` (``--time-scale 0.5`` halves every gap, so the
rate doubles and a one-hour trace plays in 30 minutes).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = [
    "GENERATORS",
    "Trace",
    "TraceError",
    "generate",
    "load_trace",
    "parse_generator",
    "poisson_arrivals",
    "rate_curve",
]

FloatArr = npt.NDArray[np.float64]


class TraceError(ValueError):
    """A trace file or generator string that cannot be read; the message says what is wrong and what is allowed."""


@dataclass(frozen=True)
class Trace:
    """Sorted arrival times (seconds from the start) and per-request columns of the same length."""

    arrivals: FloatArr
    duration: float
    columns: Mapping[str, FloatArr] = field(default_factory=dict)
    name: str = "trace"

    def __post_init__(self) -> None:
        for k, v in self.columns.items():
            if len(v) != len(self.arrivals):
                raise TraceError(f"column {k!r} has {len(v)} values for {len(self.arrivals)} requests")

    def __len__(self) -> int:
        return len(self.arrivals)

    @property
    def mean_rate(self) -> float:
        return len(self) / self.duration if self.duration > 0 else 0.0

    def scaled(self, factor: float) -> Trace:
        """Multiply every time by ``factor``: below 1 compresses the trace (higher rate), above 1 stretches it."""
        if not factor > 0:
            raise TraceError(f"time scale must be > 0, got {factor}")
        return Trace(self.arrivals * factor, self.duration * factor, self.columns, self.name)

    def per_second(self) -> npt.NDArray[np.int64]:
        """Arrivals in each whole second ``[k, k+1)``."""
        n = max(1, math.ceil(self.duration))
        idx = np.minimum(self.arrivals.astype(np.int64), n - 1)
        return np.bincount(idx, minlength=n).astype(np.int64)


# -- CSV ------------------------------------------------------------------------------------------------------


def _to_seconds(values: list[str], path: Path, col: str) -> FloatArr:
    try:
        nums = np.array([float(v) for v in values], dtype=np.float64)
    except ValueError:
        try:
            stamps = np.array([v.strip().replace(" ", "T") for v in values], dtype="datetime64[ns]")
        except ValueError as e:
            raise TraceError(
                f"{path}: column {col!r} holds neither seconds nor date-times such as '2023-11-16 18:15:46.68': {e}"
            ) from None
        nums = (stamps - stamps.min()).astype(np.int64).astype(np.float64) / 1e9
    return nums


def load_trace(path: str | Path, seed: int = 0) -> Trace:
    """Read a CSV of request timestamps or of per-interval counts (see the module docstring)."""
    p = Path(path)
    try:
        with p.open(newline="") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise TraceError(f"cannot read trace {p}: {e.strerror or e}") from None
    if len(rows) < 2:
        raise TraceError(f"{p}: needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    data = [r for r in rows[1:] if r and any(c.strip() for c in r)]
    lower = [h.lower() for h in header]
    tcol = next((i for i, h in enumerate(lower) if "time" in h), 0)
    times = _to_seconds([r[tcol] for r in data], p, header[tcol])
    ccol = next((i for i, h in enumerate(lower) if h in ("count", "counts", "requests", "n")), None)
    if ccol is not None:
        counts = np.array([float(r[ccol]) for r in data], dtype=np.float64)
        order = np.argsort(times, kind="stable")
        times, counts = times[order] - times.min(), counts[order]
        step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
        widths = np.append(np.diff(times), step)
        if np.any(widths <= 0):
            raise TraceError(f"{p}: interval start times in {header[tcol]!r} must be distinct")
        arrivals = _poisson_piecewise(times, widths, counts / widths, np.random.default_rng(seed))
        return Trace(arrivals, float(times[-1] + step), {}, p.stem)
    columns: dict[str, FloatArr] = {}
    for i, h in enumerate(header):
        if i == tcol:
            continue
        try:
            columns[h] = np.array([float(r[i]) for r in data], dtype=np.float64)
        except (ValueError, IndexError):
            continue  # a non-numeric column (ids, labels): not chargeable, skip
    order = np.argsort(times, kind="stable")
    times = times[order] - times.min()
    columns = {k: v[order] for k, v in columns.items()}
    # The last request arrives at the end of the trace; give it one more second to be served.
    return Trace(times, float(times[-1]) + 1.0, columns, p.stem)


# -- generators -----------------------------------------------------------------------------------------------


def _poisson_piecewise(starts: FloatArr, widths: FloatArr, rates: FloatArr, rng: np.random.Generator) -> FloatArr:
    counts = rng.poisson(np.maximum(rates, 0.0) * widths)
    base = np.repeat(starts, counts)
    span = np.repeat(widths, counts)
    return np.sort(base + rng.random(len(base)) * span)


def poisson_arrivals(rates: FloatArr, seed: int = 0, step: float = 1.0) -> FloatArr:
    """Arrivals of a Poisson process whose rate is ``rates[k]`` requests/s during ``[k*step, (k+1)*step)``."""
    rates = np.asarray(rates, dtype=np.float64)
    starts = np.arange(len(rates), dtype=np.float64) * step
    widths = np.full(len(rates), step, dtype=np.float64)
    return _poisson_piecewise(starts, widths, rates, np.random.default_rng(seed))


def _diurnal(t: FloatArr, p: Mapping[str, float]) -> FloatArr:
    lo, hi = p.get("base", 20.0), p.get("peak", 100.0)
    period = p.get("period", 86_400.0)
    # Trough at t=0 (midnight), peak at half a period; a cosine is the usual first model of a daily cycle.
    return lo + (hi - lo) * 0.5 * (1.0 - np.cos(2 * np.pi * t / period))


def _step(t: FloatArr, p: Mapping[str, float]) -> FloatArr:
    return np.where(t < p.get("at", 600.0), p.get("base", 20.0), p.get("high", 100.0))


def _spike(t: FloatArr, p: Mapping[str, float]) -> FloatArr:
    base, high = p.get("base", 20.0), p.get("high", 100.0)
    at, length, ramp = p.get("at", 1800.0), p.get("length", 300.0), p.get("ramp", 0.0)
    up = np.clip((t - at) / ramp, 0.0, 1.0) if ramp > 0 else (t >= at).astype(np.float64)
    down = np.clip((at + length - t) / ramp, 0.0, 1.0) if ramp > 0 else (t < at + length).astype(np.float64)
    return base + (high - base) * np.minimum(up, down)


def _onoff(t: FloatArr, p: Mapping[str, float]) -> FloatArr:
    on, off = p.get("on", 300.0), p.get("off", 300.0)
    return np.where((t % (on + off)) < on, p.get("rate", 50.0), p.get("base", 0.0))


def _constant(t: FloatArr, p: Mapping[str, float]) -> FloatArr:
    return np.full(len(t), p.get("rate", 50.0))


GENERATORS: Mapping[str, tuple[Callable[[FloatArr, Mapping[str, float]], FloatArr], float, str]] = {
    "poisson": (_constant, 3600.0, "rate"),
    "diurnal": (_diurnal, 86_400.0, "base, peak, period (trough at 0, peak at period/2)"),
    "step": (_step, 3600.0, "base, high, at"),
    "spike": (_spike, 3600.0, "base, high, at, length, ramp"),
    "onoff": (_onoff, 3600.0, "rate, base, on, off"),
}


def rate_curve(kind: str, params: Mapping[str, float], duration: float) -> FloatArr:
    """Requests/s in each second of a generated trace, before the Poisson draw (what the oracle may know)."""
    if kind not in GENERATORS:
        raise TraceError(f"unknown generator {kind!r}: use one of {', '.join(GENERATORS)}")
    t = np.arange(max(1, math.ceil(duration)), dtype=np.float64) + 0.5
    return GENERATORS[kind][0](t, params)


def generate(kind: str, params: Mapping[str, float] | None = None, seed: int = 0) -> Trace:
    """A Poisson trace at one of the :data:`GENERATORS` rate curves; ``duration`` (s) is a common parameter."""
    p = dict(params or {})
    if kind not in GENERATORS:
        raise TraceError(f"unknown generator {kind!r}: use one of {', '.join(GENERATORS)}")
    duration = float(p.pop("duration", GENERATORS[kind][1]))
    if not duration > 0:
        raise TraceError(f"duration must be > 0 seconds, got {duration}")
    rates = rate_curve(kind, p, duration)
    arrivals = poisson_arrivals(rates, seed)
    arrivals = arrivals[arrivals < duration]
    label = ",".join(f"{k}={v:g}" for k, v in sorted(p.items()))
    return Trace(arrivals, duration, {}, f"{kind}({label})" if label else kind)


def parse_generator(text: str, seed: int = 0) -> Trace:
    """``gen:KIND,key=value,...`` (e.g. ``gen:diurnal,base=20,peak=100,duration=86400``) to a trace."""
    body = text.removeprefix("gen:")
    kind, *pairs = [x.strip() for x in body.split(",") if x.strip()]
    params: dict[str, float] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise TraceError(f"generator parameter {pair!r} must be key=value (e.g. rate=50)")
        try:
            params[key.strip()] = float(value)
        except ValueError:
            raise TraceError(f"generator parameter {key!r} must be a number, got {value!r}") from None
    if kind not in GENERATORS:
        raise TraceError(f"unknown generator {kind!r}: use one of {', '.join(GENERATORS)}")
    allowed = {*(s.strip() for s in GENERATORS[kind][2].split("(")[0].split(",")), "duration"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise TraceError(f"generator {kind!r} has no parameter {unknown[0]!r}: use {', '.join(sorted(allowed))}")
    return generate(kind, params, seed)
