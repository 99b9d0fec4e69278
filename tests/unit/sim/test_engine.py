"""The event engine: queueing on hand-computed cases, timeouts, buffering at zero, start-up delay, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from kubeinfer.autoscale import Decision, FixedReplicas, LoadSample, Observation
from kubeinfer.sim import EngineConfig, generate, simulate_policy


def _run(arrivals, service, replicas=1, duration=10.0, **cfg):
    a = np.array(arrivals, dtype=float)
    s = np.array(service, dtype=float) if np.ndim(service) else np.full(len(a), float(service))
    config = EngineConfig(initial_replicas=replicas, tick=1e6, **cfg)
    return simulate_policy(a, s, duration, FixedReplicas(replicas), config)


def test_one_replica_fifo_waits_are_the_lindley_recursion() -> None:
    """Deterministic 1 s service: waits 0, 0.5, 1.0, then an idle gap resets the queue."""
    r = _run([0.0, 0.5, 1.0, 5.0], 1.0)
    np.testing.assert_allclose(r.start, [0.0, 1.0, 2.0, 5.0])
    np.testing.assert_allclose(r.end, [1.0, 2.0, 3.0, 6.0])
    np.testing.assert_allclose(r.latency, [1.0, 1.5, 2.0, 1.0])


def test_two_slots_serve_two_at_once_and_the_third_takes_the_first_free_slot() -> None:
    r = _run([0.0, 0.0, 0.1, 0.2], [1.0, 2.0, 1.0, 1.0], slots=2)
    np.testing.assert_allclose(r.start, [0.0, 0.0, 1.0, 2.0])


def test_slots_of_two_replicas_pool_behind_one_queue() -> None:
    r = _run([0.0, 0.0, 0.0], 1.0, replicas=2)
    np.testing.assert_allclose(r.start, [0.0, 0.0, 1.0])


def test_a_request_that_cannot_start_before_its_timeout_is_dropped() -> None:
    r = _run([0.0, 0.1, 0.2], 5.0, request_timeout=2.0)
    assert list(r.dropped) == [False, True, True]
    np.testing.assert_allclose(r.end[1:], [2.1, 2.2])  # given up at arrival + timeout


class _ScaleAt:
    """A policy that asks for ``replicas`` from time ``at`` on (and 0 before it)."""

    def __init__(self, at: float, replicas: int, start: int = 0) -> None:
        self.at, self.replicas, self.start = at, replicas, start

    min_replicas = 0
    max_replicas = 10

    def initial_state(self) -> None:
        return None

    def decide(self, observation: Observation, state: None, now: float) -> tuple[Decision, None]:
        return Decision(self.replicas if now >= self.at else self.start, "test"), None


def test_a_scale_up_is_ready_after_the_startup_delay_and_buffered_requests_wait_for_it() -> None:
    """Scaled to zero: requests are buffered; the replica asked for at t=2 is ready at t=2+5 and drains them."""
    a = np.array([0.5, 1.0, 3.0])
    cfg = EngineConfig(initial_replicas=0, tick=1.0, startup=5.0, request_timeout=30.0)
    r = simulate_policy(a, np.full(3, 0.5), 20.0, _ScaleAt(2.0, 1), cfg)
    np.testing.assert_allclose(r.start, [7.0, 7.5, 8.0])
    assert r.cold_starts == 1
    assert r.pods[0, 0] == 2.0 and r.pods[0, 1] == 7.0
    assert r.timeline["ready"][6] == 0 and r.timeline["ready"][7] == 1
    assert r.replica_seconds == pytest.approx(18.0)  # billed from creation at t=2 to the end (t=20)


def test_buffered_requests_past_their_deadline_are_dropped_while_scaled_to_zero() -> None:
    a = np.array([0.5, 4.0])
    cfg = EngineConfig(initial_replicas=0, tick=1.0, startup=5.0, request_timeout=4.5)
    r = simulate_policy(a, np.full(2, 0.1), 20.0, _ScaleAt(3.0, 1), cfg)
    assert list(r.dropped) == [True, False]
    assert r.start[1] == pytest.approx(8.0)


def test_a_removed_replica_drains_and_is_billed_until_its_work_is_done() -> None:
    a = np.array([0.0, 0.0])
    cfg = EngineConfig(initial_replicas=2, tick=1.0, startup=0.0)
    r = simulate_policy(a, np.array([5.0, 1.0]), 10.0, _ScaleAt(1.0, 1, start=2), cfg)
    np.testing.assert_allclose(r.end, [5.0, 1.0])
    # At t=1 one replica goes: the idle slot (free since t=1) is removed first, so it is billed 1 s.
    assert r.replica_seconds == pytest.approx(10.0 + 1.0)
    assert r.scaling_events == 1


def test_same_seed_same_result_and_time_average_concurrency_matches_littles_law() -> None:
    tr = generate("poisson", {"rate": 40, "duration": 300}, seed=3)
    s = np.full(len(tr), 0.05)
    cfg = EngineConfig(slots=4, initial_replicas=1, tick=1e6)
    r1 = simulate_policy(tr.arrivals, s, tr.duration, FixedReplicas(1), cfg)
    r2 = simulate_policy(tr.arrivals, s, tr.duration, FixedReplicas(1), cfg)
    np.testing.assert_array_equal(r1.start, r2.start)
    # Little: time-average in system = total time spent / duration; busy = work / duration.
    total = float(np.sum(np.minimum(r1.end, tr.duration) - tr.arrivals))  # the timeline ends with the trace
    assert r1.timeline["in_system"].sum() == pytest.approx(total, rel=1e-6)
    work = float(np.sum(np.clip(tr.duration - r1.start, 0.0, s)))
    assert r1.timeline["busy"].sum() == pytest.approx(work, rel=1e-6)


def test_unsorted_arrivals_are_rejected() -> None:
    with pytest.raises(ValueError, match="sorted"):
        _run([1.0, 0.0], 1.0)


def test_load_samples_carry_busy_time_as_work() -> None:
    """One 0.5 s request per second on one idle slot: each second's sample reports 0.5 busy slot-seconds."""
    import numpy as np

    from kubeinfer.autoscale.base import Decision
    from kubeinfer.sim.engine import EngineConfig, simulate_policy

    seen: list[float | None] = []

    class Recorder:
        min_replicas = 1
        max_replicas = 1

        def initial_state(self) -> None:
            return None

        def decide(self, observation: Observation, state: None, now: float) -> tuple[Decision, None]:
            seen.extend(s.work for s in observation.load)
            return Decision(1, "Fixed"), None

    arrivals = np.arange(0.0, 30.0) + 0.25
    simulate_policy(arrivals, np.full(30, 0.5), 30.0, Recorder(), EngineConfig(tick=10.0))
    assert len(seen) == 20  # ticks at 10 s and 20 s
    assert all(w is not None and abs(w - 0.5) < 1e-9 for w in seen)


class _LoadRecorder:
    """Keeps every load sample the engine reports."""

    min_replicas = 1
    max_replicas = 1

    def __init__(self) -> None:
        self.samples: list[LoadSample] = []

    def initial_state(self) -> None:
        return None

    def decide(self, observation: Observation, state: None, now: float) -> tuple[Decision, None]:
        self.samples.extend(observation.load)
        return Decision(1, "Fixed"), None


def test_load_samples_report_the_most_arrivals_within_the_peak_window() -> None:
    """Second 2 holds 10 requests spread over the second and second 5 the same 10 within 50 ms: equal counts,
    but only the second shows them as a peak of 10 within 80 ms; no window, no peak reported."""
    spread = 2.0 + np.arange(10) / 10 + 0.01
    bunched = 5.3 + np.arange(10) * 0.005
    arrivals = np.concatenate([spread, bunched])
    rec = _LoadRecorder()
    simulate_policy(arrivals, np.full(20, 0.01), 10.0, rec, EngineConfig(tick=2.0, peak_window=0.08))
    by_second = {int(s.time) - 1: s for s in rec.samples}
    assert by_second[2].rps == by_second[5].rps == 10
    assert by_second[2].peak == 1 and by_second[5].peak == 10
    assert by_second[0].peak == 0 and all(s.peak_window == 0.08 for s in rec.samples)
    plain = _LoadRecorder()
    simulate_policy(arrivals, np.full(20, 0.01), 10.0, plain, EngineConfig(tick=2.0))
    assert all(s.peak is None for s in plain.samples)


def test_a_peak_window_longer_than_a_second_counts_arrivals_before_the_second() -> None:
    """Five requests at the end of second 1 and five at the start of second 2: a 1 s window ending in second 2
    holds all ten, though each second counts five."""
    arrivals = np.concatenate([1.9 + np.arange(5) * 0.01, 2.0 + np.arange(5) * 0.01])
    rec = _LoadRecorder()
    simulate_policy(arrivals, np.full(10, 0.01), 5.0, rec, EngineConfig(tick=1.0, peak_window=1.0))
    by_second = {int(s.time) - 1: s for s in rec.samples}
    assert by_second[1].rps == by_second[2].rps == 5
    assert by_second[1].peak == 5 and by_second[2].peak == 10
    with pytest.raises(ValueError, match="peak_window"):
        EngineConfig(peak_window=-1.0)
