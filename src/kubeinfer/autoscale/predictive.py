"""kubeinfer's predictive policy: forecast the request rate, provision for it before it arrives.

There is no upstream reference; the building blocks are textbook. Demand is the request rate reported in
:attr:`Observation.load`, averaged into steps -- or, when ``capacity_work`` is configured, the *work*: busy
slot-seconds per second (:attr:`LoadSample.work`, what the replicas' compute-duration counters measure), sized
with a capacity in the same unit (Erlangs). By work, a minute of long LLM generations needs more replicas than a
minute of short ones at the same request rate, as it does in reality and in the oracle's model. Three forecasters
run side by side, each updated in O(1)
per completed step (no refitting over history, so a simulator can call ``decide`` every sync period for a
day-long trace):

- naive: the last step's rate;
- Holt: level and trend (double exponential smoothing, alpha 0.3, beta 0.05);
- Holt-Winters: additive level, trend and one season of ``PredictiveSpec.seasonSeconds`` (gamma 0.3),
  initialized classically after the first season (level = its mean, slots = deviations from it).

Each forecaster's error is measured the way it is used: the forecast it made ``h`` steps ahead is compared
with what then happened (exponentially weighted, weight 0.2). The one with the smallest recent error is
trusted if that error is at most 25% of the recent mean rate; otherwise the policy falls back to reactive
scaling.

Replicas come from the measured capacity of one replica at the latency SLO (``PredictiveSpec.capacityRps``, from
``kubeinfer profile``; ``capacityWork`` in Erlangs) times a headroom: ``ceil(rate x headroom / capacity)``. While
the forecast is trusted, the headroom is its own recent error -- the 90th percentile of actual / forecast over the
last 30 completed steps, floored at ``minHeadroom`` (1.0) and capped at ``headroom`` (1.1) -- so a smooth day is not
paid a fixed 10% on top of a capacity already taken at the SLO's quantile; during a surge, and without a trusted
forecast, it is ``headroom``. ``minHeadroom`` is the knob that buys attainment with replicas. The policy runs every
``PredictiveSpec.syncPeriodSeconds`` (5 s; its own loop, not the HPA's 15 s). The forecast is taken for ``[now +
startupSeconds, now + startupSeconds + syncPeriod]`` so that replicas are ready when the load arrives. The count is
never below what the current rate needs: the larger of the 30 s and the 6 s average (Knative's panic window) plus a
rising trend (least squares over 30 s) carried over start-up + sync period (at most the 30 s it was fitted on): the
short average when it stands two standard errors out of the noise, the trend only then and when its slope stands
three standard errors out, so a surge no forecaster saw coming still gets replicas early. Both are read on arrivals
(independent counts; busy time is autocorrelated and lags) and converted to work at the window's mean cost per
request. With no history (the first decision), the current count counts as recommended, so a cold metrics pipeline
cannot scale a loaded service down. ``capacity_curve`` (optional: what n pooled replicas serve within the SLO)
replaces ``n x capacityRps`` where a profile or model gives it; scale-downs are held for 120 s (a maximum over the
window, as the HPA's scale-down stabilization -- shorter than its 300 s because the forecast, not the window,
anticipates rises); and the result is clamped to [min, max].

Bursts no forecast sees coming (a batch of requests within a second, a Markov-modulated burst) are met by a burst
allowance learned from the last hour of arrivals (:meth:`Predictive.allowance`): spare capacity on top of the
level, never more than the static deployment the same history calls for (its *envelope*). A surge no bigger than
that envelope is one of the bursts the history has shown: its trend is carried no higher than the envelope, so a
burst of a Markov-modulated process costs about what a static deployment spends on it, not a trend's extrapolation
held through the stabilization window. Where it is reported (``up``'s router,
the operator from the replicas' ``kubeinfer_arrivals_peak``, the simulator), each load
sample's :attr:`~kubeinfer.autoscale.LoadSample.peak` -- the most arrivals within an SLO-length window -- shows how
a second's requests were bunched, which per-second counts hide and a 100 ms SLO is decided by. Until an hour of
history has accrued and while no burst has been seen, spare capacity of one replica per 15 s of start-up (four for
a 60 s LLM), fading with the history seen, is held (``burst_prior``): the first burst has nothing to be learned
from, and only the replicas already running serve it until those started for it are ready. A burst the allowance
has learned (worth a replica) or a surge beyond the prior's replicas ends it for good.

How much queueing the allowance may leave (``burst_budget``, 0.35% of the demand) is a guess; where load samples
report :attr:`~kubeinfer.autoscale.LoadSample.late` (the requests that missed the SLO: the replicas'
``kubeinfer_requests_late_total``, the simulator), the policy checks it against what happened. When more of the
last hour's requests missed than that budget -- leaving out the hour's worst minute: one burst no spare capacity
could have met (the first burst, before anything was learned; a minute at three times its hour's level) says
nothing about the budget -- the budget shrinks in proportion, down to a tenth, so the allowance and the envelope
grow until the misses fall back. Feedback only tightens: a budget loosened while misses were few let bursts of a
Markov-modulated process through (``bench/sim``).
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass, field, replace
from typing import Any

from kubeinfer.autoscale.base import Decision, Observation
from kubeinfer.spec.service import AutoscalingSpec

__all__ = ["MODELS", "Predictive", "PredictiveConfig", "PredictiveState", "predictive_config_from_spec"]

MODELS = ("naive", "holt", "holt-winters")


@dataclass(frozen=True, slots=True)
class PredictiveConfig:
    min_replicas: int
    max_replicas: int
    capacity_rps: float
    startup_seconds: float = 10.0
    season_seconds: float = 86_400.0
    headroom: float = 1.1
    sync_period: float = 15.0
    step_seconds: float | None = None
    """Forecast resolution; by default a 48th of the season, at most 60 s."""
    reactive_window: float = 30.0
    short_window: float = 6.0
    """Seconds of the fast reactive view (Knative's panic window is 6 s): a surge is seen within seconds."""
    trend: bool = True
    """Extrapolate a rising rate over the lead time (start-up + sync period) when sizing the reactive need."""
    max_relative_error: float = 0.25
    scale_down_stabilization: float = 120.0
    alpha: float = 0.3
    beta: float = 0.05
    gamma: float = 0.3
    error_weight: float = 0.2
    capacity_curve: tuple[float, ...] = ()
    """Optional: requests/s that ``n`` replicas serve within the SLO, for n = 1, 2, ... (non-decreasing). Pooled
    replicas behind one queue serve more than ``n`` times one replica at a latency SLO (Erlang C); a measured or
    modelled curve lets the policy use it. Beyond its end, each extra replica adds the last per-replica value."""
    capacity_work: float | None = None
    """Optional: busy slot-seconds per second (Erlangs) one replica sustains within the SLO. When set, demand is
    measured as work (:attr:`LoadSample.work`: busy slot-seconds per second; the requests in flight where a
    sample has no work), not as requests/s: requests of very different cost (LLM generations) then count for what
    they cost. Queued requests are not added: a backlog saturates the busy time at the pool's size, which is
    already above what the curve allows at the SLO, so the policy scales up anyway."""
    work_curve: tuple[float, ...] = ()
    """Like ``capacity_curve``, in Erlangs: the work ``n`` pooled replicas sustain within the SLO."""
    trend_sigmas: float = 3.0
    """A rising trend counts when its slope stands this many standard errors out of the noise..."""
    trend_needs_surge: bool = True
    """...and only while the short-window rate also stands out: real traffic (the Azure LLM trace) is burstier
    than Poisson, and a slope alone, carried over a minute of start-up, fired on noise."""
    adaptive_headroom: bool = True
    """While the forecast is trusted, the headroom is the forecast's own recent under-forecast (an upper quantile
    of actual / forecast), floored at ``min_headroom`` and capped at ``headroom``; ``headroom`` itself otherwise."""
    min_headroom: float = 1.0
    """The adaptive headroom's floor (``PredictiveSpec.minHeadroom``): a larger one buys attainment with replicas."""
    headroom_quantile: float = 0.9
    headroom_window: int = 30
    """Completed steps whose actual / forecast ratios are kept, per forecaster."""
    headroom_min_samples: int = 10
    """Fewer ratios than this and the quantile means little: use ``headroom``."""
    burst_allowance: bool = True
    """Keep spare capacity for the bursts this service's traffic has shown (see :meth:`Predictive.allowance`)."""
    burst_budget: float = 0.0035
    """Share of the requests the allowance may leave to queueing: about a third of a 99% SLO target's miss budget.
    With the SLO feedback (``miss_feedback``), also the share of missed requests beyond which the budget shrinks."""
    miss_feedback: bool = True
    """Scale ``burst_budget`` by how the SLO has fared over the burst window, where load samples report
    :attr:`LoadSample.late`: the budget is a guess at how much queueing a burst may cause; the misses counted are
    what it caused (:meth:`Predictive.budget_factor`)."""
    miss_floor: float = 0.1
    """The smallest factor the feedback puts on ``burst_budget``."""
    miss_spell: float = 60.0
    """Seconds of the spells the misses are counted in; the worst spell of the window is left out."""
    burst_window: float = 3600.0
    """Seconds of arrival history the allowance is learned from."""
    burst_min_history: float = 120.0
    """Less history than this and no allowance is kept (nothing learned yet). Two minutes: on the burst families of
    ``bench/sim/families.py`` nearly every miss fell in the first ten minutes while this was 600 s (mmpp seed 2:
    1,081 of 1,133 misses), and two minutes of heavy-tailed batches already show their size (batch, held-out seeds
    4-6: worst 98.79% -> 99.51% at 1-2% more replica-hours; no family's attainment went down)."""
    burst_refresh: float = 60.0
    """How often the allowance is recomputed from the history."""
    burst_z: float = 2.0
    """Arrivals within this many Poisson standard deviations of the level are not a burst: the capacity figure,
    measured or modelled at the SLO under Poisson load, already covers them."""
    peak_z: float = 4.0
    """A sample's :attr:`LoadSample.peak` (most arrivals within an SLO-length window) within this many Poisson
    standard deviations of what its own per-second count puts in such a window (plus one request) is not a burst:
    Poisson arrivals' busiest 100 ms window of a second stands 2.3 standard deviations out at the median and 4.5 at
    the 99th percentile. Beyond it, the excess counts at the window's rate: 40 requests within 100 ms are 400
    req/s for as long as they last, which the per-second count of the same second does not show."""
    burst_prior: bool = True
    """Until the history spans ``burst_window`` (the allowance has seen what it learns from) and while no burst has
    been seen, hold spare capacity of :attr:`burst_prior_startup`-many replicas beyond the level, weighted by the
    share of the window not yet seen: the first burst a service sees has no history to learn from (a flash crowd
    twenty minutes after start). At the start that is the prior's replicas more; as history accrues, fewer (the
    level's own slack below its count counts towards it). Only while there is traffic (a service at zero stays
    there). A burst is *seen* -- and the prior stands aside for good -- once the allowance has learned one worth a
    replica (:meth:`Predictive.allowance`: it is sized from the bursts themselves from then on), or a surge asks
    for more than the prior holds (the reactive need is sizing it; the allowance learns it within a minute)."""
    burst_prior_startup: float = 15.0
    """Seconds of replica start-up per replica of the prior (at least one): a first burst is met only by the
    replicas already running until those started for it are ready, so the longer they take, the more of it the
    prior must bridge. A classifier starting in 10 s holds one; an LLM starting in 60 s, four. On the ``mmpp``
    family of ``bench/sim/families.py`` (2 -> 10 req/s bursts of LLM requests), one replica left 6 of 9 seeds'
    first bursts below 99% of the SLO, three left one (98.77%), four none."""

    def __post_init__(self) -> None:
        if self.min_replicas < 0 or self.max_replicas < 1 or self.min_replicas > self.max_replicas:
            raise ValueError(
                f"need 0 <= minReplicas <= maxReplicas and maxReplicas >= 1, "
                f"got minReplicas={self.min_replicas} maxReplicas={self.max_replicas}"
            )
        if not self.capacity_rps > 0:
            raise ValueError(f"capacityRps must be > 0, got {self.capacity_rps}")
        for name, curve in (("capacity_curve", self.capacity_curve), ("work_curve", self.work_curve)):
            if any(b < a for a, b in itertools.pairwise(curve)) or any(not c > 0 for c in curve):
                raise ValueError(f"{name} must be positive and non-decreasing in the replica count")
        if self.capacity_work is not None and not self.capacity_work > 0:
            raise ValueError(f"capacity_work must be > 0, got {self.capacity_work}")
        if not self.headroom >= 1.0:
            raise ValueError(f"headroom must be >= 1, got {self.headroom}")
        if not 1.0 <= self.min_headroom <= self.headroom:
            raise ValueError(f"min_headroom must be in [1, headroom={self.headroom}], got {self.min_headroom}")
        if not 0.0 < self.headroom_quantile <= 1.0:
            raise ValueError(f"headroom_quantile must be in (0, 1], got {self.headroom_quantile}")
        if not 0.0 < self.burst_budget < 1.0:
            raise ValueError(f"burst_budget must be in (0, 1), got {self.burst_budget}")
        if not self.burst_prior_startup > 0:
            raise ValueError(f"burst_prior_startup must be > 0 seconds, got {self.burst_prior_startup}")
        if self.headroom_window < 1 or self.headroom_min_samples < 1:
            raise ValueError(
                f"headroom_window and headroom_min_samples must be >= 1, "
                f"got {self.headroom_window} and {self.headroom_min_samples}"
            )

    @property
    def step(self) -> float:
        if self.step_seconds is not None:
            return self.step_seconds
        return min(60.0, max(1.0, self.season_seconds / 48.0))

    @property
    def season_steps(self) -> int:
        return max(1, round(self.season_seconds / self.step))

    @property
    def horizon_steps(self) -> int:
        return max(1, math.ceil((self.startup_seconds + self.sync_period) / self.step))


@dataclass(frozen=True, slots=True)
class PredictiveState:
    recent: tuple[tuple[float, float, float], ...] = ()
    """(time, demand, rps) samples inside the reactive window; demand is rps, or work in work mode."""
    step_index: int | None = None
    step_sum: float = 0.0
    step_count: int = 0
    steps_seen: int = 0
    last_value: float = 0.0
    holt: tuple[float, float] = (0.0, 0.0)
    hw: tuple[float, float] = (0.0, 0.0)
    season: tuple[float, ...] = ()
    pending: tuple[tuple[int, float, float, float], ...] = ()
    """Forecasts awaiting their outcome: (target step, naive, holt, holt-winters)."""
    errors: tuple[float, float, float] = (math.inf, math.inf, math.inf)
    ratios: tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]] = ((), (), ())
    """Recent actual / forecast per forecaster (the last ``headroom_window`` outcomes): its own error's spread."""
    mean_rate: float = 0.0
    history: tuple[tuple[float, int], ...] = field(default=())
    """(time, desired replicas) inside the scale-down stabilization window."""
    arrivals: tuple[tuple[float, float, float, float, float], ...] = ()
    """(time, rps, peak rate, peak window, late) samples inside the burst window: what the burst allowance is learned
    from. The peak rate is ``rps`` plus the sample's sub-second burst (:meth:`Predictive.peak_rate`); late is the
    sample's :attr:`LoadSample.late`, nan where not reported (:meth:`Predictive.budget_factor`)."""
    allowance: float = 0.0
    """The burst allowance, in demand units: spare capacity the replicas must hold for bursts."""
    envelope: float = math.inf
    """The demand a static deployment meeting the burst budget would be sized for: the allowance never asks more."""
    allowance_at: float = -math.inf
    burst_seen: bool = False
    """A burst has been seen (see :attr:`PredictiveConfig.burst_prior`): the prior no longer applies."""
    miss_share: float = math.nan
    """The share of the burst window's requests that missed the SLO, its worst spell left out, when the allowance
    was last learned (:meth:`Predictive.miss_share`); nan where no sample reported misses."""


class Predictive:
    """Forecast-driven horizontal policy; see the module docstring."""

    def __init__(self, config: PredictiveConfig) -> None:
        self.config = config

    @property
    def min_replicas(self) -> int:
        return self.config.min_replicas

    @property
    def max_replicas(self) -> int:
        return self.config.max_replicas

    def initial_state(self) -> PredictiveState:
        return PredictiveState(season=(0.0,) * self.config.season_steps)

    # -- forecasting ----------------------------------------------------------------------------------------

    def _complete_step(self, s: PredictiveState, k: int, y: float) -> PredictiveState:
        cfg = self.config
        m = cfg.season_steps
        w = cfg.error_weight
        errors = list(s.errors)
        ratios = list(s.ratios)
        pending = []
        for entry in s.pending:
            if entry[0] == k:
                for i in range(3):
                    f = entry[i + 1]
                    e = abs(f - y)
                    errors[i] = e if math.isinf(errors[i]) else (1 - w) * errors[i] + w * e
                    ratio = y / f if f > 0 else (1.0 if y <= 0 else math.inf)
                    ratios[i] = (*ratios[i][-(cfg.headroom_window - 1) :], ratio)
            elif entry[0] > k:
                pending.append(entry)
        mean_rate = y if s.steps_seen == 0 else (1 - w) * s.mean_rate + w * y
        a, b, g = cfg.alpha, cfg.beta, cfg.gamma
        slot = k % m
        season = s.season
        if s.steps_seen == 0:
            holt = (y, 0.0)
            hw = (y, 0.0)
            season = (*season[:slot], y, *season[slot + 1 :])
            if m == 1:
                season = (0.0,)
        else:
            lv, tr = s.holt
            nl = a * y + (1 - a) * (lv + tr)
            holt = (nl, b * (nl - lv) + (1 - b) * tr)
            lv, tr = s.hw
            if s.steps_seen < m:
                # First season: remember the raw values; Holt-Winters forecasts like Holt meanwhile.
                hw = holt
                season = (*season[:slot], y, *season[slot + 1 :])
                if s.steps_seen + 1 == m:
                    # Classical initialization: level = the season's mean, no trend, slots = deviations.
                    mean = sum(season) / m
                    hw = (mean, 0.0)
                    season = tuple(v - mean for v in season)
            else:
                nl = a * (y - season[slot]) + (1 - a) * (lv + tr)
                nt = b * (nl - lv) + (1 - b) * tr
                hw = (nl, nt)
                season = (*season[:slot], g * (y - nl) + (1 - g) * season[slot], *season[slot + 1 :])
        s = replace(
            s,
            steps_seen=s.steps_seen + 1,
            last_value=y,
            holt=holt,
            hw=hw,
            season=season,
            errors=(errors[0], errors[1], errors[2]),
            ratios=(ratios[0], ratios[1], ratios[2]),
            mean_rate=mean_rate,
        )
        h = cfg.horizon_steps
        pending.append((k + h, *self._forecasts(s, k, h)))
        return replace(s, pending=tuple(pending))

    def _forecasts(self, s: PredictiveState, k: int, h: int) -> tuple[float, float, float]:
        m = self.config.season_steps
        naive = s.last_value
        holt = s.holt[0] + h * s.holt[1]
        seasonal = s.season[(k + h) % m] if s.steps_seen >= m else 0.0
        hw = s.hw[0] + h * s.hw[1] + seasonal
        return max(0.0, naive), max(0.0, holt), max(0.0, hw)

    def _ingest(self, s: PredictiveState, obs: Observation, now: float) -> PredictiveState:
        cfg = self.config
        step = cfg.step
        recent = [r for r in s.recent if r[0] > now - cfg.reactive_window]
        use_work = cfg.capacity_work is not None
        for sample in obs.load:
            value = sample.rps
            if use_work:
                value = sample.concurrency if sample.work is None else sample.work
            recent.append((sample.time, value, sample.rps))
            k = math.floor(sample.time / step)
            if s.step_index is None:
                s = replace(s, step_index=k, step_sum=value, step_count=1)
                continue
            if k < s.step_index:
                continue  # late sample for a finished step: ignore
            if k > s.step_index:
                done = s.step_index
                s = self._complete_step(s, done, s.step_sum / max(1, s.step_count))
                # Steps with no sample at all had no traffic; cap the catch-up at one season.
                for gap in range(max(done + 1, k - cfg.season_steps), k):
                    s = self._complete_step(s, gap, 0.0)
                s = replace(s, step_index=k, step_sum=0.0, step_count=0)
            s = replace(s, step_sum=s.step_sum + value, step_count=s.step_count + 1)
        recent = [r for r in recent if r[0] > now - cfg.reactive_window]
        if cfg.burst_allowance:
            # Sorted by time: drop what left the window by bisection, not by scanning an hour of samples each tick.
            first = bisect.bisect_right(s.arrivals, now - cfg.burst_window, key=lambda a: a[0])
            new = (
                (
                    x.time,
                    x.rps,
                    self.peak_rate(x.rps, x.peak, x.peak_window),
                    x.peak_window or 1.0,
                    math.nan if x.late is None else x.late,
                )
                for x in obs.load
            )
            s = replace(s, arrivals=(*s.arrivals[first:], *new))
        return replace(s, recent=tuple(recent))

    def peak_rate(self, rps: float, peak: float | None, window: float) -> float:
        """The arrival rate a sample's busiest ``window`` asks for: ``rps``, plus what its ``peak`` arrivals stand
        beyond Poisson arrivals at ``rps`` (``peak_z`` standard deviations and one request), at the window's rate."""
        if peak is None or not window > 0 or not math.isfinite(peak):
            return rps
        mean = max(rps, 0.0) * window
        excess = peak - mean - self.config.peak_z * math.sqrt(mean) - 1.0
        return rps + excess / window if excess > 0 else rps

    def allowance(self, arrivals: tuple[tuple[float, ...], ...], service: float | None = None) -> tuple[float, float]:
        """The burst allowance and the static envelope learned from ``arrivals`` (:meth:`_learn`)."""
        allowance, envelope, _ = self._learn(arrivals, service)
        return allowance, envelope

    def _learn(
        self, arrivals: tuple[tuple[float, ...], ...], service: float | None = None
    ) -> tuple[float, float, float]:
        """Spare demand that the traffic's bursts have needed, and the static envelope, learned from its arrivals.

        A burst shorter than the lead time (start-up + sync period) can only be met by replicas already running.
        Demand is requests/s, or in work mode (``service``: the mean seconds a request holds a slot) the *offered*
        slots: the arrivals of the last ``service`` seconds (at least one), times ``service`` over that window -- what
        infinitely many servers would have busy, so a batch of 67 long requests in one second wants 67 slots and a
        sustained rise its rate times the service time, and a backlog (what under-provisioning causes) never feeds
        back into what is learned. Where the router reports sub-second peaks (a third element: the peak rate of
        :meth:`peak_rate`, with its window as a fourth), a sample's demand is the larger of that and the peak's, in
        the same unit: the peak rate times ``service`` and ``min(1, window / service)`` (a request longer than the
        window holds one slot through it). Requests of 25 ms bunched within 100 ms then count at their rate there;
        requests of seconds are already counted over their service time, which a one-second peak does not add to. For each sample, the *surprise* is
        its demand above the level the policy could
        have seen a lead time earlier (the reactive window's mean then) plus ``burst_z`` Poisson standard deviations
        of that level (what the capacity at the SLO already covers; in work, the deviation of the arrivals counted,
        times the work each carries: ``sqrt(level x service / w)`` for the ``w`` seconds counted). The allowance is the smallest ``A`` such that
        the demand beyond ``A`` in all surprising samples is at most ``burst_budget`` of all demand: weighted by
        demand, not by samples, because attainment counts requests -- one second with 67 requests matters more
        than sixty quiet ones. Smooth (Poisson, diurnal) traffic learns about 0 and pays nothing.

        The envelope is the same rule applied to the demand itself: what a constant deployment meeting the budget
        is sized for. Level plus allowance never asks more than that, so the allowance cannot make the policy
        dearer than the static deployment its own history calls for. Returns ``(allowance, envelope, miss share)``
        (the share of :meth:`miss_share`, nan where no sample reports misses), ``(0, inf, nan)`` without enough
        history.
        """
        import numpy as np

        cfg = self.config
        if len(arrivals) < 2 or arrivals[-1][0] - arrivals[0][0] < cfg.burst_min_history:
            return 0.0, math.inf, math.nan
        cols = np.array(arrivals, dtype=float)  # one conversion: the samples are tuples of one length
        share = self.miss_share(cols)
        t, v = cols[:, 0], cols[:, 1]
        peak = cols[:, 2] if cols.shape[1] > 2 else v
        window = cols[:, 3] if cols.shape[1] > 3 else np.ones_like(v)
        cum = np.concatenate(([0.0], np.cumsum(v)))
        unit = 1.0  # demand per request counted in a sample: Poisson counts n have variance n, demand unit^2 n
        if service is not None and math.isfinite(service) and service > 0:
            w = max(service, 1.0)
            unit = service / w
            first = np.searchsorted(t, t - w, side="right")
            idx = np.arange(1, len(v) + 1)
            with np.errstate(over="ignore", invalid="ignore"):
                v = (cum[idx] - cum[first]) / np.maximum(idx - first, 1) * service
                cum = np.concatenate(([0.0], np.cumsum(v)))
                # A window's requests hold min(1, service / window) slots each through it, as above: the peak of a
                # second counts where it outweighs the arrivals of the last service time (short requests).
                peak = peak * service * np.minimum(1.0, window / service)
            if not np.isfinite(cum[-1]) or not np.isfinite(peak).all():
                # Work per request from a vanishing arrival rate (seconds of work over a few requests) overflows:
                # nothing to learn a capacity from.
                return 0.0, math.inf, share
        budget = cfg.burst_budget * self._factor(share) * float(v.sum())
        demand = np.maximum(v, peak)
        envelope = _excess_level(demand, budget)
        lead = cfg.startup_seconds + cfg.sync_period
        hi = np.searchsorted(t, t - lead, side="right")
        lo = np.searchsorted(t, t - lead - cfg.reactive_window, side="right")
        seen = hi > lo
        if not seen.any():
            return 0.0, envelope, share
        level = (cum[hi[seen]] - cum[lo[seen]]) / (hi[seen] - lo[seen])
        surprise = demand[seen] - level - cfg.burst_z * np.sqrt(level * unit)
        return _excess_level(surprise, budget), envelope, share

    def budget_factor(self, cols: Any) -> float:
        """The factor on ``burst_budget`` from the misses the samples report (``cols``: the allowance's history as
        an array, misses in its fifth column, nan where not reported): 1 while the share of the reported requests
        that missed, less the worst ``miss_spell`` (:meth:`miss_share`), is within ``burst_budget``;
        ``burst_budget`` over that share beyond it, at least ``miss_floor``."""
        return self._factor(self.miss_share(cols))

    def miss_share(self, cols: Any) -> float:
        """The share of the requests ``cols`` reports that missed the SLO, less the worst ``miss_spell`` of
        them; nan where no sample reports misses (or nothing arrived), and with ``miss_feedback`` off."""
        import numpy as np

        cfg = self.config
        if not cfg.miss_feedback or cols.ndim != 2 or cols.shape[1] < 5:
            return math.nan
        late = cols[:, 4]
        known = ~np.isnan(late)
        arrived = float(cols[known, 1].sum())
        if not known.any() or arrived <= 0:
            return math.nan
        spell = (cols[known, 0] // cfg.miss_spell).astype(np.int64)
        per = np.bincount(spell - spell.min(), weights=late[known])
        return float(per.sum() - per.max()) / arrived

    def _factor(self, share: float) -> float:
        cfg = self.config
        if not share > cfg.burst_budget:  # nan (nothing reported) included
            return 1.0
        return max(cfg.miss_floor, cfg.burst_budget / share)

    def _capacity(self, n: int) -> float:
        """The demand ``n`` replicas sustain within the SLO (the capacity curve, extended linearly)."""
        cfg = self.config
        if cfg.capacity_work is not None:
            curve, per_replica = cfg.work_curve, cfg.capacity_work
        else:
            curve, per_replica = cfg.capacity_curve, cfg.capacity_rps
        if n <= 0:
            return 0.0
        if not curve:
            return n * per_replica
        if n <= len(curve):
            return curve[n - 1]
        return curve[-1] + (n - len(curve)) * curve[-1] / len(curve)

    def _history_spans(self, arrivals: tuple[tuple[float, ...], ...]) -> bool:
        """The arrival history covers the burst window: the allowance has seen what an hour of traffic holds."""
        return len(arrivals) >= 2 and arrivals[-1][0] - arrivals[0][0] >= self.config.burst_window - 1.0

    @property
    def prior_replicas(self) -> int:
        """Replicas of spare capacity the first-burst prior holds at its start (:attr:`PredictiveConfig.burst_prior`)."""
        cfg = self.config
        return max(1, math.ceil(round(cfg.startup_seconds / cfg.burst_prior_startup, 9)))

    def _note_burst(
        self, state: PredictiveState, level: float, spare: float, current: float, sized: float
    ) -> PredictiveState:
        """Mark a burst as seen when the allowance has learned one worth a replica beyond the level's count, or when
        the demand being sized (``sized``: a surge's, else ``current``) exceeds the current one by more than the
        prior's replicas hold: from then on the bursts themselves, not the prior, decide the spare capacity."""
        n = self._replicas_for(level, 1.0)
        learned = spare > 0 and spare >= self._capacity(n + 1) - self._capacity(n)
        m = self._replicas_for(current, 1.0)
        surging = sized - current >= self._capacity(m + self.prior_replicas) - self._capacity(m)
        return replace(state, burst_seen=True) if learned or surging else state

    # -- the decision -----------------------------------------------------------------------------------

    def _headroom(self, ratios: tuple[float, ...]) -> float:
        """An upper quantile of the trusted forecaster's recent actual / forecast, within [1, headroom]."""
        cfg = self.config
        if not cfg.adaptive_headroom or len(ratios) < cfg.headroom_min_samples:
            return cfg.headroom
        ordered = sorted(ratios)
        q = ordered[max(0, math.ceil(cfg.headroom_quantile * len(ordered)) - 1)]
        return min(cfg.headroom, max(cfg.min_headroom, q))

    def _replicas_for(self, rate: float, headroom: float | None = None) -> int:
        cfg = self.config
        need = round(max(0.0, rate) * (cfg.headroom if headroom is None else headroom), 9)
        if not math.isfinite(need):
            # Work per request from a vanishing arrival rate (a few requests with seconds-long work) can overflow.
            return cfg.max_replicas
        if cfg.capacity_work is not None:
            curve, per_replica = cfg.work_curve, cfg.capacity_work
        else:
            curve, per_replica = cfg.capacity_curve, cfg.capacity_rps
        if curve and need > 0:
            n = bisect.bisect_left(curve, need)
            if n < len(curve):
                return n + 1
            per = curve[-1] / len(curve)
            return len(curve) + math.ceil(round((need - curve[-1]) / per, 9))
        return math.ceil(round(need / per_replica, 9))

    @staticmethod
    def _slope(samples: tuple[tuple[float, float], ...]) -> tuple[float, float]:
        """Least-squares slope of (time, rate) and its standard error."""
        n = len(samples)
        if n < 5:
            return 0.0, math.inf
        mt = sum(t for t, _ in samples) / n
        mr = sum(r for _, r in samples) / n
        var = sum((t - mt) ** 2 for t, _ in samples)
        if var <= 0:
            return 0.0, math.inf
        slope = sum((t - mt) * (r - mr) for t, r in samples) / var
        res = sum((r - mr - slope * (t - mt)) ** 2 for t, r in samples)
        return slope, math.sqrt(res / (n - 2) / var)

    def decide(self, observation: Observation, state: PredictiveState, now: float) -> tuple[Decision, PredictiveState]:
        cfg = self.config
        state = self._ingest(state, observation, now)
        recent = state.recent
        current_rate = sum(r[1] for r in recent) / len(recent) if recent else 0.0
        current_rps = sum(r[2] for r in recent) / len(recent) if recent else 0.0
        # Demand per request/s (1 in rps mode; the mean cost of a request in work mode). Surges and trends are
        # detected on arrivals -- Poisson counts, independent from second to second, so a standard error means
        # what it says -- and carried over to demand through it: busy time is autocorrelated (a request keeps
        # a slot busy for seconds) and lags arrivals by a service time.
        scale = current_rate / current_rps if current_rps > 0 else 1.0
        # The reactive need: the larger of the 30 s and the 6 s average, plus a rising trend (least squares over
        # the reactive window) carried over the lead time -- a surge the forecast did not foresee still gets
        # replicas started before the queue builds up. Only ever upwards: noise never scales down.
        # Both only count when they stand out of the noise (two standard errors): at a few requests per second
        # a 6 s average or a 30 s slope is mostly Poisson noise, and the lead time would amplify it.
        rates = [r[2] for r in recent]
        n = len(rates)
        sd = math.sqrt(sum((r - current_rps) ** 2 for r in rates) / (n - 1)) if n > 1 else 0.0
        short = [r[2] for r in recent if r[0] > now - cfg.short_window]
        rate = current_rate
        surge = False
        if cfg.burst_allowance and now - state.allowance_at >= cfg.burst_refresh:
            service = scale if cfg.capacity_work is not None and current_rps > 0 else None
            allowance, envelope, share = self._learn(state.arrivals, service)
            state = replace(state, allowance=allowance, envelope=envelope, allowance_at=now, miss_share=share)
        spare = state.allowance
        if short:
            short_rate = sum(short) / len(short)
            # A surge the burst allowance already holds capacity for (held in full: under the envelope) is not one:
            # a batch of requests is over before replicas started for it would be ready, and the stabilization
            # window would keep them for minutes.
            covered = short_rate * scale <= current_rate + spare <= state.envelope
            if short_rate > current_rps + 2 * sd / math.sqrt(len(short)) and not covered:
                rate = short_rate * scale
                surge = True
        if cfg.trend and (surge or not cfg.trend_needs_surge):
            slope, se = self._slope(tuple((r[0], r[2]) for r in recent))
            if slope > cfg.trend_sigmas * se:
                # Carried no further than the window it was fitted on: a line through 30 s of data says little
                # about the minute after it (an LLM's start-up), and bursty arrivals made it start replicas.
                lead = min(cfg.startup_seconds + cfg.sync_period, cfg.reactive_window)
                rate += slope * lead * scale
        if surge and short_rate * scale <= state.envelope:
            # A surge no bigger than the bursts this history has shown is one of them: its trend is carried no
            # higher than the static envelope the history calls for (the surge's headroom still applies) -- the
            # replicas a constant deployment holds for such a burst suffice, and the stabilization window would
            # keep the extra ones for minutes after it ended. A surge beyond the envelope is new: sized in full.
            rate = min(rate, state.envelope)
        sized_rate = rate

        best = min(range(3), key=lambda i: state.errors[i])
        rel_error = state.errors[best] / max(state.mean_rate, 1e-9)
        forecast = math.nan
        trusted = (
            state.step_index is not None
            and state.steps_seen > cfg.horizon_steps
            and rel_error <= cfg.max_relative_error
        )
        # A trusted forecast earns the margin its own recent misses call for (a smooth day: a few percent), the
        # full headroom otherwise. The same margin covers the reactive need -- both are the demand of the next
        # lead time, and a fixed 1.1 on top of a capacity already at the SLO's quantile only buys idle replicas --
        # except during a surge, which is by definition what the forecast did not see.
        headroom = self._headroom(state.ratios[best]) if trusted else cfg.headroom
        level = rate * (cfg.headroom if surge else headroom)
        if trusted and state.step_index is not None:
            last_done = state.step_index - 1
            h1 = max(1, math.floor((now + cfg.startup_seconds) / cfg.step) - last_done)
            h2 = max(h1, math.floor((now + cfg.startup_seconds + cfg.sync_period) / cfg.step) - last_done)
            forecast = max(self._forecasts(state, last_done, h)[best] for h in range(h1, h2 + 1))
            level = max(level, forecast * headroom)
            reason = f"Forecast ({MODELS[best]})"
        else:
            reason = "Reactive"
        need_now = self._replicas_for(rate, cfg.headroom if surge else headroom)
        desired = self._replicas_for(level, 1.0)
        if spare > 0:
            # The burst allowance on top of the level, up to the static envelope (never below the level's own need).
            envelope = self._replicas_for(state.envelope, 1.0)
            held = min(self._replicas_for(level + spare, 1.0), envelope)
            if held > desired:
                desired = held
                reason += "; BurstAllowance"
        if cfg.burst_allowance and cfg.burst_prior and not state.burst_seen and not self._history_spans(state.arrivals):
            state = self._note_burst(state, level, spare, current_rate, rate if surge else current_rate)
        if (
            cfg.burst_allowance
            and cfg.burst_prior
            and level > 0
            and not state.burst_seen
            and not self._history_spans(state.arrivals)
        ):
            # No burst seen yet, and too little history to trust that none will come: the prior's spare capacity,
            # weighted by the share of the window not yet seen (the level's own slack below its count counts towards
            # it, so the prior fades as history accrues instead of holding its replicas until the hour is up).
            arr = state.arrivals
            seen = arr[-1][0] - arr[0][0] if len(arr) >= 2 else 0.0
            weight = max(0.0, 1.0 - seen / cfg.burst_window)
            n = self._replicas_for(level, 1.0)
            prior = self._replicas_for(
                level + weight * (self._capacity(n + self.prior_replicas) - self._capacity(n)), 1.0
            )
            if prior > desired:
                desired = prior
                reason += "; BurstPrior"

        window_start = now - cfg.scale_down_stabilization
        # With no history yet (the policy just took over a running service), the current count counts as
        # recommended now: a cold metrics pipeline -- empty windows, replicas still filling up -- must not scale
        # a loaded service down before a stabilization window of evidence.
        seed = ((now, observation.current_replicas),) if not state.history else ()
        history = (*seed, *tuple(h for h in state.history if h[0] > window_start), (now, desired))
        stabilized = max(r for _, r in history)
        if stabilized > desired:
            reason += "; ScaleDownStabilized"
        replicas = min(max(stabilized, cfg.min_replicas), cfg.max_replicas)
        state = replace(state, history=history)
        details = (
            ("current_rps", current_rate),
            ("need_now", float(need_now)),
            ("sized_demand", sized_rate),
            ("forecast_rps", forecast),
            ("relative_error", rel_error),
            ("headroom", headroom),
            ("burst_allowance", state.allowance),
            ("burst_envelope", state.envelope),
            ("miss_share", state.miss_share),
            ("burst_budget_factor", self._factor(state.miss_share)),
        )
        decision = Decision(
            replicas=replicas,
            reason=reason,
            recommended=desired,
            buffer_requests=replicas == 0 or observation.ready_count() == 0,
            details=details,
        )
        return decision, state


def _excess_level(values: Any, budget: float) -> float:
    """The smallest ``A >= 0`` with ``sum(max(0, values - A)) <= budget`` (numpy array in, float out)."""
    import numpy as np

    top = np.sort(values[values > 0])[::-1]
    if top.size == 0 or float(top.sum()) <= budget:
        return 0.0
    # The excess above A = top[k] (the k+1-th largest) is sum(top[:k+1]) - (k+1) * top[k+1]; find where it passes.
    head = np.cumsum(top)
    k = np.arange(1, top.size + 1)
    below = np.append(top[1:], 0.0)
    over = np.flatnonzero(head - k * below > budget)
    i = int(over[0]) if over.size else top.size - 1
    return max(0.0, float((head[i] - budget) / (i + 1)))


def predictive_config_from_spec(spec: AutoscalingSpec) -> PredictiveConfig:
    p = spec.predictive
    capacity = p.capacityRps
    if capacity is None:
        rps = [m.target for m in spec.effective_metrics if m.type == "rps"]
        if not rps:
            raise ValueError(
                "autoscaling.predictive.capacityRps is required for policy 'predictive' "
                "(measure it with `kubeinfer profile`), unless the metric is rps with a target"
            )
        capacity = rps[0]
    return PredictiveConfig(
        min_replicas=spec.minReplicas,
        max_replicas=spec.maxReplicas,
        capacity_rps=capacity,
        startup_seconds=p.startupSeconds,
        season_seconds=p.seasonSeconds,
        headroom=p.headroom,
        min_headroom=p.minHeadroom,
        sync_period=p.syncPeriodSeconds,
        capacity_work=p.capacityWork,
    )
