"""The KPA follows Knative's decider: windows, panic mode, rate limits, scale to zero, burst capacity."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kubeinfer.autoscale.base import LoadSample, Observation
from kubeinfer.autoscale.kpa import KPA, DelayWindow, KpaConfig, KpaState, WindowBuckets, resolve_target

NOW = 100_000.0


def kpa(lo: int = 1, hi: int = 100, **kw: object) -> KPA:
    # containerConcurrency 10 at 70%: target 7 per replica, capacity 10
    return KPA(KpaConfig(lo, hi, target=7.0, total=10.0, **kw))  # type: ignore[arg-type]


def load(start: float, end: float, concurrency: float) -> tuple[LoadSample, ...]:
    """One sample per second in [start, end), as Knative's collector scrapes."""
    return tuple(LoadSample(float(t), concurrency=concurrency) for t in range(int(start), int(end)))


def obs(current: int, samples: tuple[LoadSample, ...], ready: int | None = None) -> Observation:
    return Observation(current, ready_replicas=current if ready is None else ready, load=samples)


# -- target resolution and windows ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "cc", "soft", "util", "expected"),
    [
        ("concurrency", 0, None, 70, (70.0, 100.0)),  # container-concurrency-target-default 100
        ("concurrency", 10, None, 70, (7.0, 10.0)),
        ("concurrency", 10, 50.0, 70, (7.0, 10.0)),  # the soft target is capped by containerConcurrency
        ("concurrency", 0, 4.0, 100, (4.0, 4.0)),
        ("rps", 0, None, 70, (140.0, 200.0)),  # requests-per-second-target-default 200
        ("concurrency", 0, 0.001, 70, (0.01, 0.001)),  # never below TargetMin 0.01
    ],
)
def test_resolve_target_follows_knative(
    metric: str, cc: int, soft: float | None, util: float, expected: tuple[float, float]
) -> None:
    assert resolve_target(metric, cc, soft, util) == pytest.approx(expected)  # type: ignore[arg-type]


def test_window_average_over_a_partial_window_uses_only_the_buckets_that_exist() -> None:
    w = WindowBuckets(60).record(tuple((NOW + i, 10.0) for i in range(6)))
    assert w.average(NOW + 5) == pytest.approx(10.0)


def test_window_average_counts_gaps_inside_the_window_as_zero() -> None:
    w = WindowBuckets(60).record(((NOW, 10.0), (NOW + 9, 10.0)))
    assert w.average(NOW + 9) == pytest.approx(2.0)  # 20 over 10 buckets


def test_window_average_drops_buckets_that_slid_out_while_no_data_came() -> None:
    w = WindowBuckets(10).record(tuple((NOW + i, float(i)) for i in range(10)))
    # at +12 the buckets of +0..+2 are gone: (3 + ... + 9) / (10 - 3)
    assert w.average(NOW + 12) == pytest.approx(sum(range(3, 10)) / 7)
    assert w.average(NOW + 30) == 0.0
    assert w.is_empty(NOW + 30)


def test_window_resets_after_a_silence_longer_than_the_window() -> None:
    w = WindowBuckets(10).record(((NOW, 100.0),)).record(((NOW + 50, 1.0),))
    assert w.average(NOW + 50) == pytest.approx(1.0)


def test_delay_window_keeps_the_maximum_of_its_duration() -> None:
    d = DelayWindow(10).record(NOW, 5).record(NOW + 4, 2)
    assert d.current() == 5
    assert d.record(NOW + 12, 1).current() == 2


# -- the decider --------------------------------------------------------------------------------------------


def test_stable_mode_provisions_ceil_of_average_over_target() -> None:
    policy = kpa()
    d, _ = policy.decide(obs(3, load(NOW - 60, NOW + 1, 20.0)), policy.initial_state(), NOW)
    assert (d.replicas, d.panic, d.reason) == (3, False, "Stable")  # ceil(20 / 7)


def test_no_data_keeps_the_current_scale() -> None:
    policy = kpa()
    d, _ = policy.decide(obs(3, ()), policy.initial_state(), NOW)
    assert (d.replicas, d.reason) == (3, "NoData")


def test_panic_starts_when_the_panic_window_needs_twice_the_ready_pods() -> None:
    policy = kpa()
    quiet, burst = load(NOW - 60, NOW - 5, 7.0), load(NOW - 5, NOW + 1, 70.0)
    d, state = policy.decide(obs(2, quiet + burst), policy.initial_state(), NOW)
    assert d.panic
    assert d.replicas == 10  # ceil(70 / 7) from the 6 s panic window
    assert state.panic_since == NOW


def test_panic_never_scales_down_and_ends_after_a_stable_window() -> None:
    policy = kpa()
    quiet, burst = load(NOW - 60, NOW - 5, 7.0), load(NOW - 5, NOW + 1, 70.0)
    d, state = policy.decide(obs(2, quiet + burst), policy.initial_state(), NOW)
    assert d.replicas == 10
    t = NOW
    for _ in range(30):  # the burst is over; 2 s ticks for 60 s
        d, state = policy.decide(obs(10, load(t + 1, t + 3, 7.0)), state, t + 2)
        t += 2
        assert d.panic
        assert d.replicas == 10
    d, state = policy.decide(obs(10, load(t + 1, t + 3, 7.0)), state, t + 2)
    assert not d.panic
    assert d.replicas == 5  # stable again, limited by the scale-down rate: floor(10 / 2)


def test_scale_down_rate_halves_at_most_per_decision() -> None:
    policy = kpa()
    d, _ = policy.decide(obs(10, load(NOW - 60, NOW + 1, 0.5)), policy.initial_state(), NOW)
    assert d.replicas == 5


def test_scale_up_rate_limits_growth() -> None:
    policy = kpa(max_scale_up_rate=2.0)
    d, _ = policy.decide(obs(1, load(NOW - 60, NOW + 1, 700.0)), policy.initial_state(), NOW)
    assert d.replicas == 2  # ceil(2 x max(1, ready))


def test_activation_scale_is_a_floor_once_there_is_traffic() -> None:
    policy = kpa(lo=0, activation_scale=3)
    d, _ = policy.decide(obs(0, load(NOW - 60, NOW + 1, 1.0), ready=0), policy.initial_state(), NOW)
    assert d.replicas == 3


def test_scale_down_delay_holds_the_highest_recent_count() -> None:
    policy = kpa(scale_down_delay=30.0)
    state = policy.initial_state()
    d, state = policy.decide(obs(4, load(NOW - 60, NOW + 1, 28.0)), state, NOW + 10)
    assert d.replicas == 4
    d, state = policy.decide(obs(4, load(NOW + 1, NOW + 36, 0.0)), state, NOW + 35)
    assert d.detail("desired_stable") == 2  # the stable window now averages 700 / 60 -> 2 pods
    assert d.replicas == 4  # but 4 was wanted less than 30 s ago
    d, state = policy.decide(obs(4, load(NOW + 36, NOW + 71, 0.0)), state, NOW + 70)
    assert d.replicas == 2


# -- scale to zero and the activator ------------------------------------------------------------------------


def test_scale_to_zero_waits_for_the_stable_window_then_the_grace_period() -> None:
    policy = kpa(lo=0)
    state = replace(policy.initial_state(), active_since=NOW - 10)
    d, state = policy.decide(obs(1, load(NOW - 60, NOW + 1, 0.0)), state, NOW)
    assert d.replicas == 1  # active for only 10 s: keep one replica until a stable window has passed
    d, state = policy.decide(obs(1, load(NOW + 1, NOW + 51, 0.0)), state, NOW + 50)
    assert (d.replicas, d.reason, d.buffer_requests) == (1, "Inactive", True)
    d, state = policy.decide(obs(1, load(NOW + 51, NOW + 71, 0.0)), state, NOW + 70)
    assert (d.replicas, d.reason) == (1, "ScaleToZeroGracePeriod")
    d, state = policy.decide(obs(1, load(NOW + 71, NOW + 81, 0.0)), state, NOW + 80)
    assert (d.replicas, d.reason, d.buffer_requests) == (0, "ScaledToZero", True)


def test_traffic_at_zero_wakes_the_service_and_buffers_until_ready() -> None:
    policy = kpa(lo=0)
    state = replace(policy.initial_state(), inactive_since=NOW - 100)
    d, state = policy.decide(obs(0, load(NOW, NOW + 1, 3.0), ready=0), state, NOW + 1)
    assert d.replicas == 1
    assert d.buffer_requests
    assert state.inactive_since is None


def test_min_replicas_above_zero_never_scales_to_zero() -> None:
    policy = kpa(lo=1)
    d, _ = policy.decide(obs(1, load(NOW - 120, NOW + 1, 0.0)), policy.initial_state(), NOW)
    assert d.replicas == 1


@pytest.mark.parametrize(
    ("tbc", "ready", "panic_load", "ebc", "buffer"),
    [
        (211.0, 2, 5.0, -196.0, True),  # floor(2 x 10 - 211 - 5)
        (10.0, 3, 5.0, 15.0, False),  # floor(30 - 10 - 5)
        (0.0, 2, 5.0, 0.0, False),  # burst capacity 0: the activator leaves the path once scaled up
        (-1.0, 5, 5.0, -1.0, True),  # -1: the activator always stays in the path
    ],
)
def test_excess_burst_capacity_decides_when_the_router_buffers(
    tbc: float, ready: int, panic_load: float, ebc: float, buffer: bool
) -> None:
    policy = kpa(target_burst_capacity=tbc)
    d, _ = policy.decide(obs(ready, load(NOW - 60, NOW + 1, panic_load)), policy.initial_state(), NOW)
    assert d.excess_burst_capacity == ebc
    assert d.buffer_requests is buffer


def test_initial_scale_is_a_floor_until_reached() -> None:
    policy = kpa(initial_scale=3)
    d, state = policy.decide(obs(3, load(NOW - 60, NOW + 1, 1.0), ready=0), policy.initial_state(), NOW)
    assert d.replicas == 3
    d, state = policy.decide(obs(3, load(NOW + 1, NOW + 3, 1.0), ready=3), state, NOW + 2)
    assert state.scale_target_initialized
    assert d.replicas in (1, 2)  # free to follow the metric (rate-limited to floor(3/2))


def test_initial_state_has_empty_windows() -> None:
    state = kpa().initial_state()
    assert isinstance(state, KpaState)
    assert state.stable.is_empty(NOW)
