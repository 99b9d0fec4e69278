"""Attainable references for a policy's cost: the hindsight schedule and the static frontier, both *replayed*.

The analytic oracle (:mod:`kubeinfer.sim.oracle`) is a queueing-model bound: on bursty traffic (many requests in
one second, long prompts) no schedule reaches it, and "x oracle" against it flatters nobody. The two references
here are schedules that the simulator itself runs, with the same engine, start-up time and timeouts as the
policies, so each comes with its own measured attainment:

- **Hindsight schedule.** It knows the trace. Start from the analytic per-interval need; replay it (each replica
  created ``startup`` seconds ahead of the interval that needs it, kept through gaps shorter than ``startup``);
  wherever an interval's requests miss the SLO more often than the target allows, add a replica to that interval
  and to the one before (its backlog started there); replay again, until the whole run meets the target or
  ``max_rounds`` passes. Then, as a repair in the other direction, take one replica off each interval whose
  requests all met the SLO with margin, and keep the cut only where the replay still meets the target.
- **Static frontier.** The cheapest constant replica count whose replay meets the target (binary search: more
  replicas never miss more).

Both report replica-seconds as the engine bills them (start-ups included) and the attainment of their replay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from kubeinfer.autoscale.base import Decision, Observation
from kubeinfer.sim.engine import EngineConfig, RunResult, simulate_policy
from kubeinfer.sim.oracle import SloBasis, fill_level
from kubeinfer.sim.report import slo_met

__all__ = ["ReplayedSchedule", "SchedulePolicy", "hindsight_schedule", "replay_schedule", "static_frontier"]

IntArr = npt.NDArray[np.int64]


class SchedulePolicy:
    """A policy that follows a fixed per-second count of pods (created ones, starting or ready)."""

    def __init__(self, pods: IntArr, floor: int = 0, ceiling: int = 1_000_000) -> None:
        self.pods = pods
        self._min = floor
        self._max = ceiling

    @property
    def min_replicas(self) -> int:
        return self._min

    @property
    def max_replicas(self) -> int:
        return self._max

    def initial_state(self) -> None:
        return None

    def decide(self, observation: Observation, state: None, now: float) -> tuple[Decision, None]:
        i = min(max(int(now), 0), len(self.pods) - 1)
        return Decision(int(self.pods[i]), "schedule"), None


@dataclass(frozen=True)
class ReplayedSchedule:
    name: str
    replica_seconds: float
    attainment: float
    rounds: int
    need: IntArr
    """Replicas ready per interval (the hindsight schedule), or the constant count (static)."""
    run: RunResult
    tried: tuple[tuple[int, float, float], ...] = ()
    """Static: every constant count the search replayed, as (replicas, replica-seconds, attainment), ascending --
    the frontier's neighbourhood, what a Pareto plot draws."""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "replica_seconds": self.replica_seconds,
            "replica_hours": self.replica_seconds / 3600.0,
            "slo_attainment": self.attainment,
            "rounds": self.rounds,
            "peak_replicas": int(self.need.max(initial=0)),
            **(
                {
                    "tried": [
                        {"replicas": n, "replica_hours": rs / 3600.0, "slo_attainment": a} for n, rs, a in self.tried
                    ]
                }
                if self.tried
                else {}
            ),
        }


def pods_for(need_sec: IntArr, startup: float) -> IntArr:
    """Pods that must exist each second for ``need_sec`` replicas to be ready then: each level kept through gaps
    shorter than ``startup`` (as the analytic oracle keeps them, :func:`~kubeinfer.sim.oracle.fill_level`) and
    created ``startup`` seconds ahead of each second it comes back."""
    n = len(need_sec)
    lead = math.ceil(startup)
    pods = np.zeros(n, dtype=np.int64)
    for level in range(1, int(need_sec.max(initial=0)) + 1):
        kept, _ = fill_level(need_sec >= level, startup)
        starts = np.flatnonzero(kept[1:] & ~kept[:-1]) + 1  # seconds a level comes back (not at t = 0: warm)
        delta = np.zeros(n + 1, dtype=np.int64)
        np.add.at(delta, np.maximum(starts - lead, 0), 1)
        np.add.at(delta, starts, -1)
        pods += kept | (np.cumsum(delta[:-1]) > 0)
    return pods


def _replay(
    arrivals: npt.NDArray[np.float64],
    service: npt.NDArray[np.float64],
    duration: float,
    pods: IntArr,
    cfg: EngineConfig,
) -> RunResult:
    """Run the schedule ``pods`` in the engine (a decision every second)."""
    c = replace(cfg, tick=1.0, initial_replicas=int(pods[0]) if len(pods) else 0)
    return simulate_policy(arrivals, service, duration, SchedulePolicy(pods), c)


def replay_schedule(
    arrivals: npt.NDArray[np.float64],
    service: npt.NDArray[np.float64],
    duration: float,
    pods: IntArr,
    cfg: EngineConfig,
    *,
    slo_s: float,
    basis: SloBasis,
    name: str = "schedule",
) -> ReplayedSchedule:
    """Replay the per-second schedule ``pods`` and report its attainment and replica-seconds."""
    run = _replay(arrivals, service, duration, pods, cfg)
    attained = float(np.count_nonzero(slo_met(run, slo_s, basis))) / max(len(arrivals), 1)
    return ReplayedSchedule(name, run.replica_seconds, attained, 1, pods, run)


def hindsight_schedule(
    arrivals: npt.NDArray[np.float64],
    service: npt.NDArray[np.float64],
    duration: float,
    start_need: IntArr,
    cfg: EngineConfig,
    *,
    slo_s: float,
    basis: SloBasis,
    target: float,
    interval: float,
    max_replicas: int,
    max_rounds: int = 12,
    down_rounds: int = 8,
    cap: int | None = None,
) -> ReplayedSchedule:
    """The cheapest schedule found by replay and repair (module docstring), from the per-second ``start_need``
    (capped at ``cap``, e.g. the static frontier's count: a schedule never needs more than a constant that works)."""
    n_sec = len(start_need)
    n_int = max(1, math.ceil(n_sec / interval))
    sec_int = np.minimum((np.arange(n_sec) / interval).astype(np.int64), n_int - 1)
    need = np.zeros(n_int, dtype=np.int64)
    np.maximum.at(need, sec_int, start_need)
    if cap is not None:
        need = np.minimum(need, cap)
    req_int = np.minimum((arrivals / interval).astype(np.int64), n_int - 1)
    total = max(len(arrivals), 1)
    allowed_miss = (1.0 - target) * total

    def replay(need_int: IntArr) -> tuple[RunResult, npt.NDArray[np.bool_]]:
        run = _replay(arrivals, service, duration, pods_for(need_int[sec_int], cfg.startup), cfg)
        return run, slo_met(run, slo_s, basis)

    rounds = 0
    run, met = replay(need)
    while rounds < max_rounds and np.count_nonzero(~met) > allowed_miss:
        rounds += 1
        misses = np.bincount(req_int[~met], minlength=n_int)
        counts = np.bincount(req_int, minlength=n_int)
        # Intervals that miss more than the target allows for their own requests get one more replica, and so
        # does the one before (the backlog that spills into an interval began there).
        bad = misses > np.maximum((1.0 - target) * counts, 0.0)
        if not bad.any():
            bad = misses > 0
        grow = bad | np.concatenate((bad[1:], [False]))
        need = np.minimum(need + grow.astype(np.int64), max_replicas)
        run, met = replay(need)
    # Repair downwards: an interval whose requests all met the SLO may not need its last replica. Try the cut on
    # all of them, then on every other run of them (halving), keeping whatever still meets the target.
    if np.count_nonzero(~met) <= allowed_miss:
        stride = 1
        while rounds < max_rounds + down_rounds and stride <= 8:
            misses = np.bincount(req_int[~met], minlength=n_int)
            slack = (misses == 0) & (need > 0)
            if stride > 1:
                slack &= (np.arange(n_int) // stride) % 2 == 0
            if not slack.any():
                break
            trial = need - slack.astype(np.int64)
            t_run, t_met = replay(trial)
            rounds += 1
            if np.count_nonzero(~t_met) <= allowed_miss and t_run.replica_seconds < run.replica_seconds:
                need, run, met = trial, t_run, t_met
            else:
                stride *= 2
    return ReplayedSchedule("hindsight", run.replica_seconds, float(np.count_nonzero(met)) / total, rounds, need, run)


def static_frontier(
    arrivals: npt.NDArray[np.float64],
    service: npt.NDArray[np.float64],
    duration: float,
    cfg: EngineConfig,
    *,
    slo_s: float,
    basis: SloBasis,
    target: float,
    max_replicas: int,
) -> ReplayedSchedule:
    """The fewest constant replicas whose replay meets ``target`` (or ``max_replicas`` if none does)."""
    n_sec = max(1, math.ceil(duration))
    cache: dict[int, tuple[RunResult, float]] = {}

    def attain(n: int) -> float:
        if n not in cache:
            r = replay_schedule(
                arrivals, service, duration, np.full(n_sec, n, dtype=np.int64), cfg, slo_s=slo_s, basis=basis
            )
            cache[n] = (r.run, r.attainment)
        return cache[n][1]

    lo, hi = 1, max(1, max_replicas)
    if attain(hi) < target:
        lo = hi
    while lo < hi:
        mid = (lo + hi) // 2
        if attain(mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    attain(lo)
    if lo > 1:
        attain(lo - 1)  # the count just short of the target: where the frontier bends
    run, a = cache[lo]
    tried = tuple((n, cache[n][0].replica_seconds, cache[n][1]) for n in sorted(cache))
    return ReplayedSchedule(f"static-{lo}", run.replica_seconds, a, len(cache), np.array([lo]), run, tried)
