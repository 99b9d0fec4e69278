"""The Knative Pod Autoscaler (KPA) as a pure policy: stable and panic windows, scale to zero, burst capacity.

Reference: knative/serving ``pkg/autoscaler/scaling/autoscaler.go`` (``Scale``: the decider),
``pkg/autoscaler/aggregation/bucketing.go`` (``TimedFloat64Buckets``: windowed averages),
``pkg/autoscaler/aggregation/max/window.go`` (the scale-down delay window),
``pkg/autoscaler/metrics/collector.go`` (one bucket per second, the value being the service-wide total),
``pkg/reconciler/autoscaling/kpa/scaler.go`` (bounds, initial scale, ``handleScaleToZero``) and
``kpa.go`` (active/inactive, when the activator sits in the request path), and ``config-autoscaler``.

Defaults (Knative's ``config-autoscaler``, mirrored by :class:`kubeinfer.spec.service.KpaSpec`):

- stable window 60 s; panic window 10% of it (6 s); panic threshold 200% of the ready pods' capacity.
- target utilization 70% of the per-replica target: ``target = max(0.01, total x utilization)`` where
  ``total`` is containerConcurrency, or the soft target (``autoscaling.target``) capped by it, or Knative's
  ``container-concurrency-target-default`` of 100 (200 for rps, ``requests-per-second-target-default``).
- desired pods ``ceil(average / target)`` for both windows, clamped to ``[floor(ready / 2), ceil(1000 x
  ready)]``: max scale-down rate 2, max scale-up rate 1000 (``ready`` counts at least one pod).
- panic mode starts when the panic-window desire reaches 200% of ready pods; while in it the count never
  drops; it ends once the threshold has not been crossed for a whole stable window.
- scale-down delay 0 s (a maximum over a window of 2 s buckets when set: the decider's tick is 2 s).
- scale to zero (only when minReplicas is 0): the service must have been active for a stable window, is
  then marked inactive (requests go through the activator -- ``buffer_requests``) and is scaled to zero
  after ``scale-to-zero-grace-period`` of 30 s.
- activation scale 1, initial scale 1, target burst capacity 211: excess burst capacity
  ``floor(ready x total - burst - panic average)``; when negative the activator buffers requests. Burst 0
  never buffers on capacity grounds; -1 always buffers.

The windowed averages are computed here from :attr:`Observation.load`, one bucket per second as Knative's
collector scrapes, so callers only report the samples they took.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from kubeinfer.autoscale.base import Decision, Observation

__all__ = [
    "KPA",
    "DelayWindow",
    "KpaConfig",
    "KpaState",
    "WindowBuckets",
]

# Knative's decider ticks every 2 s; the scale-down delay window uses that granularity.
_DECIDER_TICK = 2.0


@dataclass(frozen=True, slots=True)
class WindowBuckets:
    """Knative's ``TimedFloat64Buckets``: a ring of per-second sums and their windowed average.

    Times are kept as whole bucket indices (``floor(t / granularity)``). A window with no write resets; a gap
    inside the window counts as zeros; a window that began less than its length ago averages over the part
    that exists.
    """

    window: float
    granularity: float = 1.0
    buckets: tuple[float, ...] = ()
    first_write: int | None = None
    last_write: int | None = None
    total: float = 0.0

    @property
    def size(self) -> int:
        return max(1, math.ceil(self.window / self.granularity))

    def _index(self, t: float) -> int:
        return math.floor(t / self.granularity)

    def record(self, samples: tuple[tuple[float, float], ...]) -> WindowBuckets:
        """Add ``(time, value)`` samples (oldest first); values in one bucket add up.

        O(samples + buckets cleared) bookkeeping on one ring copy per call: the running ``total`` is kept, never
        re-summed, so the windowed average is O(1) (the decider calls this every 2 s for hours of simulation).
        """
        if not samples:
            return self
        gran, window = self.granularity, self.window
        n = max(1, math.ceil(window / gran))
        buckets = list(self.buckets) if self.buckets else [0.0] * n
        first, last, total = self.first_write, self.last_write, self.total
        floor = math.floor
        for t, value in samples:
            idx = floor(t / gran)
            if last is not None and idx < last:
                if last - idx < n:  # a late sample still inside the window lands in its bucket
                    buckets[idx % n] += value
                    total += value
                continue
            if last != idx:
                if last is None or (idx - last) * gran > window:
                    buckets = [0.0] * n
                    total = 0.0
                    first = idx
                else:
                    for i in range(last + 1, min(idx, last + n) + 1):
                        j = i % n
                        total -= buckets[j]
                        buckets[j] = 0.0
                last = idx
            buckets[idx % n] += value
            total += value
        return WindowBuckets(window, gran, tuple(buckets), first, last, total)

    def is_empty(self, now: float) -> bool:
        if self.last_write is None:
            return True
        return (self._index(now) - self.last_write) * self.granularity > self.window

    def average(self, now: float) -> float:
        if self.last_write is None or self.first_write is None:
            return 0.0
        n = self.size
        now_idx = self._index(now)
        d = now_idx - self.last_write
        if d <= 0:
            valid = min(self.last_write - self.first_write + 1, n)
            return self.total / valid
        if d * self.granularity < self.window:
            # No data for a while (less than a window): the buckets that slid out count as gone.
            ret = self.total
            for i in range(self.last_write + 1, now_idx + 1):
                ret -= self.buckets[i % n]
            valid = min(self.last_write - self.first_write + 1, n - d)
            return ret / valid if valid > 0 else 0.0
        return 0.0


@dataclass(frozen=True, slots=True)
class DelayWindow:
    """Knative's ``max.TimeWindow``: the maximum value recorded over the last ``duration`` seconds."""

    duration: float
    granularity: float = _DECIDER_TICK
    entries: tuple[tuple[int, int], ...] = ()
    """(bucket index, value) pairs with strictly decreasing values: a monotone deque of maxima."""

    def record(self, now: float, value: int) -> DelayWindow:
        idx = math.floor(now / self.granularity)
        size = max(1, math.ceil(self.duration / self.granularity))
        kept = [(i, v) for i, v in self.entries if i > idx - size]
        while kept and kept[-1][1] <= value:
            kept.pop()
        kept.append((idx, value))
        return replace(self, entries=tuple(kept))

    def current(self) -> int:
        return self.entries[0][1] if self.entries else 0


@dataclass(frozen=True, slots=True)
class KpaConfig:
    min_replicas: int
    max_replicas: int
    target: float
    """Per-replica target value (already multiplied by the target utilization)."""
    total: float
    """Per-replica capacity (containerConcurrency, or the default target), for the excess burst capacity."""
    metric: Literal["concurrency", "rps"] = "concurrency"
    stable_window: float = 60.0
    panic_window_percentage: float = 10.0
    panic_threshold: float = 2.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    scale_to_zero_grace_period: float = 30.0
    scale_down_delay: float = 0.0
    activation_scale: int = 1
    target_burst_capacity: float = 211.0
    initial_scale: int = 1

    def __post_init__(self) -> None:
        if self.min_replicas < 0 or self.max_replicas < 1 or self.min_replicas > self.max_replicas:
            raise ValueError(
                f"need 0 <= minReplicas <= maxReplicas and maxReplicas >= 1, "
                f"got minReplicas={self.min_replicas} maxReplicas={self.max_replicas}"
            )
        if not self.target > 0:
            raise ValueError(f"target must be > 0, got {self.target}")

    @property
    def panic_window(self) -> float:
        return self.stable_window * self.panic_window_percentage / 100.0


@dataclass(frozen=True, slots=True)
class KpaState:
    stable: WindowBuckets
    panic: WindowBuckets
    delay: DelayWindow | None = None
    panic_since: float | None = None
    """Last time the panic threshold was crossed (Knative's ``panicTime``); None when not panicking."""
    max_panic_pods: int = 0
    active_since: float | None = None
    inactive_since: float | None = None
    scale_target_initialized: bool = False


def resolve_target(
    metric: Literal["concurrency", "rps"],
    container_concurrency: int,
    soft_target: float | None,
    utilization_percentage: float,
) -> tuple[float, float]:
    """Knative's ``ResolveMetricTarget``: (target per replica, total per replica)."""
    total = 200.0 if metric == "rps" else float(container_concurrency) if container_concurrency else 100.0
    if soft_target is not None:
        total = soft_target
        if metric == "concurrency" and container_concurrency:
            total = min(soft_target, float(container_concurrency))
    return max(0.01, total * utilization_percentage / 100.0), total


class KPA:
    """The Knative Pod Autoscaler. Build it from a spec with :func:`policy_from_spec`."""

    def __init__(self, config: KpaConfig) -> None:
        self.config = config

    @property
    def min_replicas(self) -> int:
        return self.config.min_replicas

    @property
    def max_replicas(self) -> int:
        return self.config.max_replicas

    def initial_state(self) -> KpaState:
        cfg = self.config
        delay = DelayWindow(cfg.scale_down_delay) if cfg.scale_down_delay > 0 else None
        return KpaState(stable=WindowBuckets(cfg.stable_window), panic=WindowBuckets(cfg.panic_window), delay=delay)

    def decide(self, observation: Observation, state: KpaState, now: float) -> tuple[Decision, KpaState]:
        cfg = self.config
        # State updates are collected in locals and the next KpaState built once (dataclasses.replace is slow
        # enough to dominate a day-long simulation with a 2 s decider tick).
        if cfg.metric == "rps":
            samples = tuple((s.time, s.rps) for s in observation.load)
        else:
            samples = tuple((s.time, s.concurrency) for s in observation.load)
        stable, panic = state.stable.record(samples), state.panic.record(samples)
        ready = observation.ready_count()
        current = observation.current_replicas
        initialized = state.scale_target_initialized
        if not initialized and ready >= max(cfg.min_replicas, cfg.initial_scale):
            initialized = True

        # -- the decider (autoscaler.go Scale) --
        if stable.is_empty(now):
            # No data yet: Knative returns an invalid result and leaves the scale alone.
            state = KpaState(
                stable,
                panic,
                state.delay,
                state.panic_since,
                state.max_panic_pods,
                state.active_since,
                state.inactive_since,
                initialized,
            )
            return Decision(current, "NoData", "no metrics in the stable window yet"), state
        ready_for_rates = max(1.0, float(ready))
        max_up = math.ceil(cfg.max_scale_up_rate * ready_for_rates)
        max_down = math.floor(ready_for_rates / cfg.max_scale_down_rate)
        stable_avg = stable.average(now)
        panic_avg = panic.average(now)
        dspc = math.ceil(stable_avg / cfg.target)
        dppc = math.ceil(panic_avg / cfg.target)
        desired_stable = int(min(max(dspc, max_down), max_up))
        desired_panic = int(min(max(dppc, max_down), max_up))
        if cfg.activation_scale > 1:
            if dspc > 0 and cfg.activation_scale > desired_stable:
                desired_stable = cfg.activation_scale
            if dppc > 0 and cfg.activation_scale > desired_panic:
                desired_panic = cfg.activation_scale

        over_threshold = dppc / ready_for_rates >= cfg.panic_threshold
        panic_since, max_panic = state.panic_since, state.max_panic_pods
        if over_threshold:
            panic_since = now
        elif panic_since is not None and panic_since + cfg.stable_window < now:
            # The surge has made its way into the stable window: trust it again.
            panic_since, max_panic = None, 0

        desired = desired_stable
        if panic_since is not None:
            desired = max(desired, desired_panic)
            max_panic = max(max_panic, desired)
            desired = max_panic  # never scale down while panicking
        delay = state.delay
        if delay is not None:
            delay = delay.record(now, desired)
            desired = delay.current()
        state = KpaState(
            stable, panic, delay, panic_since, max_panic, state.active_since, state.inactive_since, initialized
        )

        if cfg.target_burst_capacity == 0:
            ebc = 0.0
        elif cfg.target_burst_capacity > 0:
            ebc = float(math.floor(ready * cfg.total - cfg.target_burst_capacity - panic_avg))
        else:
            ebc = -1.0
        recommended = desired

        # -- the scaler (scaler.go scale): bounds, initial scale, scale to zero --
        lower = cfg.min_replicas
        if cfg.initial_scale > 1 and not state.scale_target_initialized:
            lower = max(lower, cfg.initial_scale)
        want = min(max(desired, lower), cfg.max_replicas)
        reason = "Panic" if panic_since is not None else "Stable"
        if want == 0:
            want, reason, state = self._scale_to_zero(current, state, now)
        elif state.inactive_since is not None or state.active_since is None:
            state = replace(state, inactive_since=None, active_since=now if ready > 0 else None)
        buffer = want == 0 or ebc < 0 or state.inactive_since is not None or ready == 0
        details = (
            ("stable_average", stable_avg),
            ("panic_average", panic_avg),
            ("desired_stable", float(desired_stable)),
            ("desired_panic", float(desired_panic)),
            ("ready", float(ready)),
        )
        decision = Decision(
            replicas=want,
            reason=reason,
            recommended=recommended,
            panic=panic_since is not None,
            excess_burst_capacity=ebc,
            buffer_requests=buffer,
            details=details,
        )
        return decision, state

    def _scale_to_zero(self, current: int, state: KpaState, now: float) -> tuple[int, str, KpaState]:
        cfg = self.config
        if state.inactive_since is None:
            if state.active_since is not None and now - state.active_since < cfg.stable_window:
                # Active for less than a stable window: hold one replica for the rest of it.
                return 1, "ScaleToZeroWaitingForStableWindow", state
            # Mark inactive: the activator takes over the request path; replicas stay for the grace period.
            state = replace(state, inactive_since=now, active_since=None)
            return current, "Inactive", state
        if now - state.inactive_since >= cfg.scale_to_zero_grace_period:
            return 0, "ScaledToZero", state
        return current, "ScaleToZeroGracePeriod", state
