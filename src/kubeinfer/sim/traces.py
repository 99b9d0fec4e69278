"""Request traces for the simulator: arrival times (seconds from the start) plus optional per-request columns.

Three sources, one :class:`Trace`:

- a CSV of request timestamps (one row per request). The first column whose name contains ``time`` (or the first
  column) holds either numbers (seconds) or date-times (``2023-11-16 18:15:46.6805900``, the Azure LLM inference
  trace format); other numeric columns (``ContextTokens``, ``GeneratedTokens``) are kept as per-request columns
  that a :class:`~kubeinfer.sim.service.ServiceModel` can charge for;
- a CSV of per-interval counts (a ``count``/``requests`` column next to a time column): arrivals are drawn as a
  Poisson process at each interval's rate, so a counts file and the timestamps it summarizes simulate alike;
- generators (:func:`generate`): Poisson arrivals at a rate curve -- constant, diurnal, step, spike, on/off, flash
  crowd -- optionally with multiplicative noise (``noise``: the log-normal sigma of each ``noiseStep`` seconds' rate,
  mean-preserving), and arrival processes that are not Poisson at any rate: a Markov-modulated Poisson process
  (``mmpp``: quiet and burst states with exponential sojourns) and heavy-tailed batch arrivals (``batch``: Pareto
  batch sizes, every request of a batch within ``spread`` seconds -- many requests landing in the same second, as in
  real LLM traffic). ``tokens=conv`` draws ``ContextTokens``/``GeneratedTokens`` columns from the public Azure LLM
  conversation trace's distribution (:data:`TOKEN_MIXES`), ``tokens=long`` from a long-prompt, short-answer one.

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
    "PROCESSES",
    "TOKEN_MIXES",
    "Trace",
    "TraceError",
    "generate",
    "load_trace",
    "mmpp_states",
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


def _flash(t: FloatArr, p: Mapping[str, float]) -> FloatArr:
    """A flash crowd: ``base`` until ``at``, up to ``peak`` over ``rise`` seconds, then an exponential decay back to
    ``base`` with time constant ``decay`` (news-driven and launch traffic have this shape)."""
    base, peak = p.get("base", 20.0), p.get("peak", 200.0)
    at, rise, decay = p.get("at", 1200.0), max(p.get("rise", 30.0), 1e-9), max(p.get("decay", 600.0), 1e-9)
    up = np.clip((t - at) / rise, 0.0, 1.0)
    after = np.exp(-np.maximum(t - at - rise, 0.0) / decay)
    return base + (peak - base) * up * after


GENERATORS: Mapping[str, tuple[Callable[[FloatArr, Mapping[str, float]], FloatArr], float, str]] = {
    "poisson": (_constant, 3600.0, "rate"),
    "diurnal": (_diurnal, 86_400.0, "base, peak, period (trough at 0, peak at period/2)"),
    "step": (_step, 3600.0, "base, high, at"),
    "spike": (_spike, 3600.0, "base, high, at, length, ramp"),
    "onoff": (_onoff, 3600.0, "rate, base, on, off"),
    "flash": (_flash, 3600.0, "base, peak, at, rise, decay"),
}
NOISE_PARAMS = ("noise", "noiseStep")
"""Parameters every rate-curve generator takes: log-normal sigma of each step's rate, and the step (s, 60)."""


def _mmpp_sojourns(
    duration: float, p: Mapping[str, float], rng: np.random.Generator
) -> tuple[FloatArr, FloatArr, FloatArr]:
    """The state path of :func:`_mmpp`: (start, length, rate) of each sojourn, quiet first."""
    low, high = p.get("low", 10.0), p.get("high", 100.0)
    quiet, burst = max(p.get("quiet", 600.0), 1e-6), max(p.get("burst", 60.0), 1e-6)
    starts, widths, rates = [], [], []
    t, hot = 0.0, False
    while t < duration:
        length = min(rng.exponential(burst if hot else quiet), duration - t)
        starts.append(t)
        widths.append(length)
        rates.append(high if hot else low)
        t += length
        hot = not hot
    return np.array(starts), np.array(widths), np.array(rates)


def _mmpp(duration: float, p: Mapping[str, float], rng: np.random.Generator) -> FloatArr:
    """Two-state Markov-modulated Poisson: ``low`` req/s for exponential sojourns of mean ``quiet`` s, ``high``
    req/s for sojourns of mean ``burst`` s; starts quiet."""
    return _poisson_piecewise(*_mmpp_sojourns(duration, p, rng), rng)


def mmpp_states(params: Mapping[str, float], seed: int = 0) -> tuple[FloatArr, FloatArr, FloatArr]:
    """The hidden state path behind ``generate("mmpp", params, seed)``: (start, length, rate) of each sojourn --
    what a policy that could see the modulating state would know (``bench/sim/bounds.py``), never the arrivals."""
    p = dict(params)
    duration = float(p.pop("duration", PROCESSES["mmpp"][1]))
    return _mmpp_sojourns(duration, p, np.random.default_rng(seed))


def _pareto_sizes(n: int, alpha: float, cap: int, rng: np.random.Generator) -> npt.NDArray[np.int64]:
    # Discrete Pareto with minimum 1: floor(U^(-1/alpha)), capped (an uncapped alpha <= 1 has no mean).
    return np.minimum(np.floor(rng.random(n) ** (-1.0 / alpha)), cap).astype(np.int64)


def _batch(duration: float, p: Mapping[str, float], rng: np.random.Generator) -> FloatArr:
    """Heavy-tailed batch arrivals at ``rate`` requests/s on average: batches start as a Poisson process, each of a
    Pareto(``alpha``) number of requests (at most ``max``) spread uniformly over ``spread`` seconds."""
    rate, alpha = p.get("rate", 20.0), p.get("alpha", 1.5)
    cap, spread = max(1, int(p.get("max", 500))), max(p.get("spread", 1.0), 0.0)
    if not alpha > 0:
        raise TraceError(f"generator 'batch': alpha must be > 0, got {alpha:g}")
    mean_size = float(_pareto_sizes(200_000, alpha, cap, np.random.default_rng(12345)).mean())
    epochs = np.sort(rng.random(rng.poisson(rate / mean_size * duration)) * duration)
    sizes = _pareto_sizes(len(epochs), alpha, cap, rng)
    arrivals = np.repeat(epochs, sizes) + rng.random(int(sizes.sum())) * spread
    return np.sort(arrivals)


PROCESSES: Mapping[str, tuple[Callable[[float, Mapping[str, float], np.random.Generator], FloatArr], float, str]] = {
    "mmpp": (_mmpp, 3600.0, "low, high, quiet, burst"),
    "batch": (_batch, 3600.0, "rate, alpha, max, spread"),
}

# Quantiles of the public Azure LLM inference trace (2023, conversation: 19,366 requests; see ../shared/data) at
# _TOKEN_PROBS; context and generated tokens are nearly independent there (Spearman 0.07), so they are drawn apart.
_TOKEN_PROBS = (0, 0.01, *(round(0.05 * i, 2) for i in range(1, 20)), 0.99, 0.999, 1)
_CONV_CONTEXT = (2, 29, 181, 207, 372, 387, 396, 403, 414, 703, 984, 1020, 1045, 1071, 1097, 1130, 1189, 1315, 1876,
                 2734, 4083, 4142, 6179, 14050)  # fmt: skip
_CONV_GENERATED = (7, 16, 41, 54, 67, 77, 85, 91, 96, 103, 113, 129, 151, 177, 217, 384, 395, 400, 411, 424, 451, 601,
                   954, 1000)  # fmt: skip


def _conv_tokens(n: int, rng: np.random.Generator) -> dict[str, FloatArr]:
    ctx = np.interp(rng.random(n), _TOKEN_PROBS, _CONV_CONTEXT)
    gen = np.interp(rng.random(n), _TOKEN_PROBS, _CONV_GENERATED)
    return {"ContextTokens": np.round(ctx), "GeneratedTokens": np.maximum(1.0, np.round(gen))}


def _long_tokens(n: int, rng: np.random.Generator) -> dict[str, FloatArr]:
    # Long prompts, short answers (code completion, retrieval-augmented questions): log-normal context of median
    # 1,500 tokens (mean about 2,250, capped at 32k) and generations of median 20 (mean about 33, capped at 2,000).
    ctx = np.minimum(rng.lognormal(math.log(1500.0), 0.9, n), 32_000.0)
    gen = np.minimum(rng.lognormal(math.log(20.0), 1.0, n), 2000.0)
    return {"ContextTokens": np.round(ctx), "GeneratedTokens": np.maximum(1.0, np.round(gen))}


TOKEN_MIXES: Mapping[str, Callable[[int, np.random.Generator], dict[str, FloatArr]]] = {
    "conv": _conv_tokens,
    "long": _long_tokens,
}


def _noisy(rates: FloatArr, sigma: float, step: float, rng: np.random.Generator) -> FloatArr:
    """Each ``step`` seconds' rate times a mean-one log-normal factor of log-sigma ``sigma``."""
    if not sigma > 0:
        return rates
    k = max(1, round(step))
    factors = rng.lognormal(-0.5 * sigma * sigma, sigma, -(-len(rates) // k))
    return rates * np.repeat(factors, k)[: len(rates)]


def rate_curve(kind: str, params: Mapping[str, float], duration: float) -> FloatArr:
    """Requests/s in each second of a generated trace, before the Poisson draw (what the oracle may know)."""
    if kind not in GENERATORS:
        raise TraceError(f"unknown generator {kind!r}: use one of {', '.join(GENERATORS)}")
    t = np.arange(max(1, math.ceil(duration)), dtype=np.float64) + 0.5
    return GENERATORS[kind][0](t, params)


def generate(kind: str, params: Mapping[str, float] | None = None, seed: int = 0, tokens: str | None = None) -> Trace:
    """A trace from one of the :data:`GENERATORS` rate curves (Poisson arrivals, optionally noisy) or the
    :data:`PROCESSES`; ``duration`` (s) is a common parameter; ``tokens`` adds token columns (:data:`TOKEN_MIXES`)."""
    p = dict(params or {})
    if kind not in GENERATORS and kind not in PROCESSES:
        raise TraceError(f"unknown generator {kind!r}: use one of {', '.join([*GENERATORS, *PROCESSES])}")
    if tokens is not None and tokens not in TOKEN_MIXES:
        raise TraceError(f"unknown token mix {tokens!r}: use one of {', '.join(TOKEN_MIXES)}")
    default = GENERATORS[kind][1] if kind in GENERATORS else PROCESSES[kind][1]
    duration = float(p.pop("duration", default))
    if not duration > 0:
        raise TraceError(f"duration must be > 0 seconds, got {duration}")
    rng = np.random.default_rng(seed)
    if kind in GENERATORS:
        sigma, step = p.pop("noise", 0.0), p.pop("noiseStep", 60.0)
        if sigma < 0 or not step > 0:
            raise TraceError(f"noise must be >= 0 and noiseStep > 0, got {sigma:g} and {step:g}")
        rates = _noisy(rate_curve(kind, p, duration), sigma, step, np.random.default_rng([seed, 1]))
        if sigma > 0:
            p.update(noise=sigma, noiseStep=step)
        arrivals = poisson_arrivals(rates, seed)
    else:
        arrivals = PROCESSES[kind][0](duration, p, rng)
    arrivals = arrivals[arrivals < duration]
    columns = TOKEN_MIXES[tokens](len(arrivals), np.random.default_rng([seed, 2])) if tokens else {}
    label = ",".join([*(f"{k}={v:g}" for k, v in sorted(p.items())), *([f"tokens={tokens}"] if tokens else [])])
    return Trace(arrivals, duration, columns, f"{kind}({label})" if label else kind)


def parse_generator(text: str, seed: int = 0) -> Trace:
    """``gen:KIND,key=value,...`` (e.g. ``gen:diurnal,base=20,peak=100,duration=86400,noise=0.2`` or
    ``gen:batch,rate=3,alpha=1.3,tokens=conv``) to a trace."""
    body = text.removeprefix("gen:")
    kind, *pairs = [x.strip() for x in body.split(",") if x.strip()] or [""]
    params: dict[str, float] = {}
    tokens: str | None = None
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep:
            raise TraceError(f"generator parameter {pair!r} must be key=value (e.g. rate=50)")
        if key == "tokens":
            tokens = value.strip()
            continue
        try:
            params[key] = float(value)
        except ValueError:
            raise TraceError(f"generator parameter {key!r} must be a number, got {value!r}") from None
    if kind not in GENERATORS and kind not in PROCESSES:
        raise TraceError(f"unknown generator {kind!r}: use one of {', '.join([*GENERATORS, *PROCESSES])}")
    doc = GENERATORS[kind][2] if kind in GENERATORS else PROCESSES[kind][2]
    allowed = {*(s.strip() for s in doc.split("(")[0].split(",")), "duration"}
    if kind in GENERATORS:
        allowed.update(NOISE_PARAMS)
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise TraceError(
            f"generator {kind!r} has no parameter {unknown[0]!r}: use {', '.join(sorted(allowed))} (and tokens=)"
        )
    return generate(kind, params, seed, tokens)
