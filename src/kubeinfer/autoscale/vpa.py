"""The Vertical Pod Autoscaler recommender (and the updater's eviction rule) as a pure policy.

Reference: kubernetes/autoscaler ``vertical-pod-autoscaler/pkg/recommender/util/histogram.go``,
``decaying_histogram.go`` and ``histogram_options.go`` (the histograms), ``pkg/recommender/model/
aggregate_container_state.go`` and ``container.go`` (cpu samples, per-interval memory peaks, OOM bump-up),
``pkg/recommender/logic/recommender.go`` and ``estimator.go`` (percentiles, margin, confidence, minimums),
``pkg/utils/vpa/capping.go`` (min/max allowed) and ``pkg/updater/priority/priority_processor.go`` (when a
running pod is updated).

Defaults, all the recommender's and updater's:

- decaying histograms with a 24 h half-life; exponential buckets growing by 5%: cpu from 0.01 cores up to
  1000 cores, memory from 10 MB (1e7 bytes) up to 1 TB (1e12 bytes); epsilon 1e-4.
- cpu samples weigh ``max(request in cores, 0.1)``; memory keeps one peak per 24 h aggregation interval.
- target = p90, lower bound = p50, upper bound = p95, each plus a 15% safety margin.
- confidence = min(history span in days, samples / 1440): the upper bound is multiplied by
  ``(1 + 1/confidence)`` and the lower bound by ``(1 + 0.001/confidence)^-2`` (no history: upper infinite,
  lower zero -- a new workload is never evicted on their account).
- at least 25 millicores and 250 MiB per pod.
- an OOM adds a memory sample of ``max(used + 100 MiB, used x 1.2)``, ``used`` being the larger of the
  request and the interval's peak.
- updates: ``Off`` recommends only; ``Initial`` applies at pod creation; ``Recreate`` evicts a pod whose
  request is outside [lower, upper], or off the target by 10% or more once the pod is 12 h old;
  ``InPlaceOrRecreate`` resizes such a pod in place instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from kubeinfer.spec.quantity import parse_quantity
from kubeinfer.spec.service import VerticalSpec

__all__ = [
    "CPU_HISTOGRAM",
    "MEMORY_HISTOGRAM",
    "VPA",
    "DecayingHistogram",
    "HistogramOptions",
    "Resources",
    "VpaConfig",
    "VpaDecision",
    "VpaObservation",
    "VpaState",
    "vpa_config_from_spec",
]

DAY = 86_400.0
MIB = 1024 * 1024
_MAX_DECAY_EXPONENT = 100
_MIN_SAMPLE_WEIGHT = 0.1
_OOM_MIN_BUMP = 100 * MIB
_OOM_BUMP_RATIO = 1.2


@dataclass(frozen=True, slots=True)
class HistogramOptions:
    """``NewExponentialHistogramOptions``: bucket ``n`` starts at ``first x (ratio^n - 1) / (ratio - 1)``."""

    max_value: float
    first_bucket_size: float
    ratio: float = 1.05
    epsilon: float = 1e-4

    @property
    def num_buckets(self) -> int:
        r, f = self.ratio, self.first_bucket_size
        return math.ceil(math.log(self.max_value * (r - 1) / f + 1, r)) + 1

    def find_bucket(self, value: float) -> int:
        if value < self.first_bucket_size:
            return 0
        bucket = math.floor(math.log(value * (self.ratio - 1) / self.first_bucket_size + 1, self.ratio))
        return min(bucket, self.num_buckets - 1)

    def bucket_start(self, bucket: int) -> float:
        if bucket == 0:
            return 0.0
        return self.first_bucket_size * (self.ratio**bucket - 1) / (self.ratio - 1)


CPU_HISTOGRAM = HistogramOptions(max_value=1000.0, first_bucket_size=0.01)
MEMORY_HISTOGRAM = HistogramOptions(max_value=1e12, first_bucket_size=1e7)


@dataclass(frozen=True, slots=True)
class DecayingHistogram:
    """A histogram whose sample weights double every ``half_life`` seconds, so old samples fade.

    Weights are kept sparse as ``(bucket, weight)`` pairs; only buckets that ever held a sample appear.
    """

    options: HistogramOptions
    half_life: float = DAY
    weights: tuple[tuple[int, float], ...] = ()
    total: float = 0.0
    reference: float = 0.0

    def _decay(self, t: float) -> tuple[DecayingHistogram, float]:
        h = self
        if t > h.reference + h.half_life * _MAX_DECAY_EXPONENT:
            # Renormalize: move the reference to t (a whole number of half-lives) and rescale the weights.
            new_ref = round(t / h.half_life) * h.half_life
            factor = math.ldexp(1.0, round((h.reference - new_ref) / h.half_life))
            h = replace(
                h,
                weights=tuple((b, w * factor) for b, w in h.weights),
                total=h.total * factor,
                reference=new_ref,
            )
        return h, math.exp2((t - h.reference) / h.half_life)

    def add(self, value: float, weight: float, t: float) -> DecayingHistogram:
        h, factor = self._decay(t)
        return h._change(self.options.find_bucket(value), weight * factor)

    def subtract(self, value: float, weight: float, t: float) -> DecayingHistogram:
        h, factor = self._decay(t)
        return h._change(self.options.find_bucket(value), -weight * factor)

    def _change(self, bucket: int, delta: float) -> DecayingHistogram:
        weights = dict(self.weights)
        new = max(0.0, weights.get(bucket, 0.0) + delta)
        applied = new - weights.get(bucket, 0.0)
        weights[bucket] = new
        return replace(self, weights=tuple(sorted(weights.items())), total=max(0.0, self.total + applied))

    def is_empty(self) -> bool:
        return not any(w >= self.options.epsilon for _, w in self.weights)

    def percentile(self, p: float) -> float:
        """The end of the bucket where the cumulative weight reaches ``p`` (the start, for the last bucket)."""
        if self.is_empty():
            return 0.0
        live = [(b, w) for b, w in self.weights if w > 0]
        threshold = p * self.total
        partial = 0.0
        bucket = live[-1][0]
        for b, w in live:
            partial += w
            if partial >= threshold:
                bucket = b
                break
        if bucket < self.options.num_buckets - 1:
            return self.options.bucket_start(bucket + 1)
        return self.options.bucket_start(bucket)


@dataclass(frozen=True, slots=True)
class Resources:
    cpu: float
    """Cores."""
    memory: float
    """Bytes."""


@dataclass(frozen=True, slots=True)
class VpaObservation:
    """Usage samples since the previous call (oldest first) and the pod being considered for an update."""

    cpu: tuple[tuple[float, float], ...] = ()
    """(time, cores used) samples."""
    memory: tuple[tuple[float, float], ...] = ()
    """(time, bytes used) samples (working set)."""
    ooms: tuple[float, ...] = ()
    """Times of out-of-memory kills."""
    requests: Resources | None = None
    """The current pod's requests, if a pod exists."""
    pod_age: float = 0.0
    creating: bool = False
    """A pod is being created now (the admission controller's moment for ``Initial``)."""


UpdateAction = Literal["none", "set-on-create", "evict", "resize-in-place"]


@dataclass(frozen=True, slots=True)
class VpaDecision:
    target: Resources
    lower_bound: Resources
    upper_bound: Resources
    uncapped_target: Resources
    action: UpdateAction
    reason: str


@dataclass(frozen=True, slots=True)
class VpaConfig:
    update_mode: Literal["Off", "Initial", "Recreate", "InPlaceOrRecreate"] = "Off"
    min_allowed: Resources | None = None
    max_allowed: Resources | None = None
    containers: int = 1
    """Containers sharing the per-pod minimums (25m / 250 MiB are split evenly between them)."""
    safety_margin: float = 0.15
    memory_aggregation_interval: float = DAY
    half_life: float = DAY


@dataclass(frozen=True, slots=True)
class VpaState:
    cpu: DecayingHistogram
    memory: DecayingHistogram
    first_sample: float | None = None
    last_sample: float | None = None
    total_samples: int = 0
    window_end: float | None = None
    memory_peak: float = 0.0
    oom_peak: float = 0.0
    last_memory_sample: float = -math.inf


class VPA:
    """The VPA recommender for one container; ``decide`` folds samples in and recommends."""

    def __init__(self, config: VpaConfig | None = None) -> None:
        self.config = config or VpaConfig()

    def initial_state(self) -> VpaState:
        hl = self.config.half_life
        return VpaState(cpu=DecayingHistogram(CPU_HISTOGRAM, hl), memory=DecayingHistogram(MEMORY_HISTOGRAM, hl))

    # -- aggregate_container_state / container ------------------------------------------------------------

    def _add_cpu(self, s: VpaState, t: float, cores: float, request: float) -> VpaState:
        weight = max(request, _MIN_SAMPLE_WEIGHT)
        first = t if s.first_sample is None else min(s.first_sample, t)
        last = t if s.last_sample is None else max(s.last_sample, t)
        return replace(
            s,
            cpu=s.cpu.add(cores, weight, t),
            first_sample=first,
            last_sample=last,
            total_samples=s.total_samples + 1,
        )

    def _add_memory(self, s: VpaState, t: float, used: float, oom: bool) -> VpaState:
        if not oom and t < s.last_memory_sample:
            return s  # older than the last sample: discarded
        interval = self.config.memory_aggregation_interval
        s = replace(s, last_memory_sample=t)
        window_end = t if s.window_end is None else s.window_end
        memory = s.memory
        add_peak = False
        if t < window_end:
            old_peak = max(s.memory_peak, s.oom_peak)
            if old_peak != 0 and used > old_peak:
                # A higher peak in the same interval replaces the old one in the histogram.
                memory = memory.subtract(old_peak, 1.0, window_end)
                add_peak = True
        else:
            # Move to the interval that contains t; each interval contributes one peak.
            window_end += (math.floor((t - window_end) / interval) + 1) * interval
            s = replace(s, memory_peak=0.0, oom_peak=0.0)
            add_peak = True
        if add_peak:
            memory = memory.add(used, 1.0, window_end)
            s = replace(s, oom_peak=used) if oom else replace(s, memory_peak=used)
        return replace(s, memory=memory, window_end=window_end)

    def _record_oom(self, s: VpaState, t: float, requested: float) -> VpaState:
        used = max(requested, s.memory_peak)
        needed = max(used + _OOM_MIN_BUMP, used * _OOM_BUMP_RATIO)
        return self._add_memory(s, t, needed, oom=True)

    # -- estimators -----------------------------------------------------------------------------------------

    def _confidence(self, s: VpaState) -> float:
        if s.first_sample is None or s.last_sample is None:
            return 0.0
        lifespan_days = (s.last_sample - s.first_sample) / DAY
        return min(lifespan_days, s.total_samples / (60 * 24))

    def _estimate(self, s: VpaState, cpu_p: float, mem_p: float) -> Resources:
        m = 1 + self.config.safety_margin
        return Resources(cpu=s.cpu.percentile(cpu_p) * m, memory=s.memory.percentile(mem_p) * m)

    def decide(self, observation: VpaObservation, state: VpaState, now: float) -> tuple[VpaDecision, VpaState]:
        cfg = self.config
        request_cpu = observation.requests.cpu if observation.requests else 0.0
        request_mem = observation.requests.memory if observation.requests else 0.0
        s = state
        for t, cores in observation.cpu:
            s = self._add_cpu(s, t, cores, request_cpu)
        for t, used in observation.memory:
            s = self._add_memory(s, t, used, oom=False)
        for t in observation.ooms:
            if s.window_end is None or t >= s.window_end - cfg.memory_aggregation_interval:
                s = self._record_oom(s, t, request_mem)

        confidence = self._confidence(s)
        target = self._estimate(s, 0.9, 0.9)
        lower = self._estimate(s, 0.5, 0.5)
        upper = self._estimate(s, 0.95, 0.95)
        up_mult = math.inf if confidence == 0 else 1 + 1 / confidence
        low_mult = 0.0 if confidence == 0 else (1 + 0.001 / confidence) ** -2
        upper = Resources(_scale(upper.cpu, up_mult), _scale(upper.memory, up_mult))
        lower = Resources(lower.cpu * low_mult, lower.memory * low_mult)
        min_cpu = 0.025 / cfg.containers
        min_mem = 250 * MIB / cfg.containers
        target, lower, upper = (Resources(max(r.cpu, min_cpu), max(r.memory, min_mem)) for r in (target, lower, upper))
        uncapped = target
        target, lower, upper = (self._cap(r) for r in (target, lower, upper))
        action, reason = self._update(observation, target, lower, upper)
        return VpaDecision(target, lower, upper, uncapped, action, reason), s

    def _cap(self, r: Resources) -> Resources:
        cpu, mem = r.cpu, r.memory
        lo, hi = self.config.min_allowed, self.config.max_allowed
        if lo is not None:
            cpu, mem = max(cpu, lo.cpu), max(mem, lo.memory)
        if hi is not None:
            cpu, mem = min(cpu, hi.cpu), min(mem, hi.memory)
        return Resources(cpu, mem)

    def _update(
        self, obs: VpaObservation, target: Resources, lower: Resources, upper: Resources
    ) -> tuple[UpdateAction, str]:
        mode = self.config.update_mode
        if mode == "Off":
            return "none", "updateMode Off: recommendation only"
        if obs.creating:
            return "set-on-create", "pod created: requests set to the target"
        if mode == "Initial" or obs.requests is None:
            return "none", "updateMode Initial: running pods are left alone"
        req = obs.requests
        outside = any(
            r < lo or r > hi
            for r, lo, hi in ((req.cpu, lower.cpu, upper.cpu), (req.memory, lower.memory, upper.memory))
        )
        diff = 0.0
        for r, t in ((req.cpu, target.cpu), (req.memory, target.memory)):
            if r > 0:
                diff += abs(t - r) / r
        stale = obs.pod_age > 12 * 3600 and diff >= 0.10
        if not (outside or stale):
            return "none", "requests within the recommended range"
        why = "outside the recommended range" if outside else "off the target by 10% or more after 12 h"
        if mode == "InPlaceOrRecreate":
            return "resize-in-place", why
        return "evict", why


def _scale(value: float, factor: float) -> float:
    if math.isinf(factor):
        return math.inf if value > 0 else 0.0
    return value * factor


def vpa_config_from_spec(spec: VerticalSpec, containers: int = 1, capacity: Resources | None = None) -> VpaConfig:
    """The recommender's configuration from ``spec.autoscaling.vertical``. ``capacity`` is the largest machine a
    replica can run on (this one, locally): recommendations are capped there as under ``maxAllowed``, as the
    recommender's ``--container-recommendation-max-allowed-cpu/memory`` flags cap them for a cluster -- an upper
    bound of 99 cores on a 2-core machine says nothing a user can act on."""

    def resources(r: object) -> Resources | None:
        cpu = getattr(r, "cpu", None)
        memory = getattr(r, "memory", None)
        if cpu is None and memory is None:
            return None
        return Resources(
            cpu=float(parse_quantity(cpu).value) if cpu is not None else math.nan,
            memory=float(parse_quantity(memory).value) if memory is not None else math.nan,
        )

    lo, hi = resources(spec.minAllowed), resources(spec.maxAllowed)
    # A bound given for one resource only leaves the other open.
    if lo is not None:
        lo = Resources(0.0 if math.isnan(lo.cpu) else lo.cpu, 0.0 if math.isnan(lo.memory) else lo.memory)
    if hi is not None:
        hi = Resources(math.inf if math.isnan(hi.cpu) else hi.cpu, math.inf if math.isnan(hi.memory) else hi.memory)
    if capacity is not None:
        hi = capacity if hi is None else Resources(min(hi.cpu, capacity.cpu), min(hi.memory, capacity.memory))
    return VpaConfig(update_mode=spec.updateMode, min_allowed=lo, max_allowed=hi, containers=containers)
