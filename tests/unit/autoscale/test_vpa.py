"""The VPA recommender: histogram buckets and decay, percentiles, margins, confidence, OOM, update modes."""

from __future__ import annotations

import math

import pytest

from kubeinfer.autoscale.vpa import (
    CPU_HISTOGRAM,
    DAY,
    MEMORY_HISTOGRAM,
    MIB,
    VPA,
    DecayingHistogram,
    Resources,
    VpaConfig,
    VpaObservation,
    vpa_config_from_spec,
)
from kubeinfer.spec.service import VerticalSpec

NOW = 1_700_000_000.0


def bucket_end(options: object, value: float) -> float:
    o = options  # HistogramOptions
    return o.bucket_start(o.find_bucket(value) + 1)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("value", "bucket"),
    [(0.0, 0), (0.005, 0), (0.01, 1), (0.021, 2), (0.5, 25), (10_000.0, 175)],
)
def test_cpu_buckets_grow_by_5_percent_from_10_millicores(value: float, bucket: int) -> None:
    assert CPU_HISTOGRAM.num_buckets == 176
    assert CPU_HISTOGRAM.find_bucket(value) == bucket


def test_bucket_starts_form_a_geometric_series() -> None:
    assert CPU_HISTOGRAM.bucket_start(0) == 0.0
    assert CPU_HISTOGRAM.bucket_start(1) == pytest.approx(0.01)
    assert CPU_HISTOGRAM.bucket_start(2) == pytest.approx(0.01 + 0.0105)
    assert MEMORY_HISTOGRAM.bucket_start(1) == pytest.approx(1e7)


def test_percentile_returns_the_end_of_the_bucket_reaching_it() -> None:
    h = DecayingHistogram(CPU_HISTOGRAM)
    for v in (0.1, 0.2, 0.3, 0.4, 1.0):
        h = h.add(v, 1.0, NOW)
    assert h.percentile(0.5) == pytest.approx(bucket_end(CPU_HISTOGRAM, 0.3))
    assert h.percentile(0.9) == pytest.approx(bucket_end(CPU_HISTOGRAM, 1.0))
    assert DecayingHistogram(CPU_HISTOGRAM).percentile(0.9) == 0.0


def test_samples_a_half_life_newer_weigh_twice_as_much() -> None:
    h = DecayingHistogram(CPU_HISTOGRAM).add(1.0, 1.0, NOW).add(2.0, 1.0, NOW + DAY)
    weights = dict(h.weights)
    assert weights[CPU_HISTOGRAM.find_bucket(2.0)] == pytest.approx(2 * weights[CPU_HISTOGRAM.find_bucket(1.0)])
    # p50 of weights 1 (1 core) and 2 (2 cores): the threshold 1.5 is reached in the 2-core bucket
    assert h.percentile(0.5) == pytest.approx(bucket_end(CPU_HISTOGRAM, 2.0))


def test_subtracting_a_sample_restores_the_histogram() -> None:
    h = DecayingHistogram(MEMORY_HISTOGRAM).add(5e8, 1.0, NOW)
    assert h.subtract(5e8, 1.0, NOW).is_empty()


def steady(cores: float, memory: float, minutes: int, start: float = NOW) -> VpaObservation:
    times = [start + 60 * i for i in range(minutes)]
    return VpaObservation(cpu=tuple((t, cores) for t in times), memory=tuple((t, memory) for t in times))


def test_target_is_p90_plus_15_percent_margin() -> None:
    vpa = VPA()
    d, _ = vpa.decide(steady(0.5, 600 * MIB, 60), vpa.initial_state(), NOW + 3600)
    assert d.target.cpu == pytest.approx(bucket_end(CPU_HISTOGRAM, 0.5) * 1.15)
    assert d.target.memory == pytest.approx(bucket_end(MEMORY_HISTOGRAM, 600 * MIB) * 1.15)


def test_confidence_widens_bounds_for_short_histories() -> None:
    """A day of samples: upper x (1 + 1/1) = 2, lower x (1 + 0.001)^-2."""
    vpa = VPA()
    d, _ = vpa.decide(steady(0.5, 600 * MIB, 1441), vpa.initial_state(), NOW + DAY)
    base = bucket_end(CPU_HISTOGRAM, 0.5) * 1.15
    assert d.upper_bound.cpu == pytest.approx(base * 2, rel=1e-3)
    assert d.lower_bound.cpu == pytest.approx(base * (1.001) ** -2, rel=1e-3)


def test_no_history_leaves_a_young_pod_inside_the_bounds() -> None:
    vpa = VPA(VpaConfig(update_mode="Recreate"))
    obs = VpaObservation(cpu=((NOW, 0.5),), requests=Resources(0.1, 250 * MIB), pod_age=60.0)
    d, _ = vpa.decide(obs, vpa.initial_state(), NOW)
    assert math.isinf(d.upper_bound.cpu)
    assert d.lower_bound.cpu == 0.025  # the floor; the confidence multiplier made it 0
    assert d.action == "none"


def test_minimum_resources_are_25_millicores_and_250_mib() -> None:
    vpa = VPA()
    d, _ = vpa.decide(steady(0.001, 1 * MIB, 30), vpa.initial_state(), NOW + 1800)
    assert d.target == Resources(0.025, 250 * MIB)


def test_memory_keeps_one_peak_per_day() -> None:
    vpa = VPA()
    obs = VpaObservation(memory=((NOW, 100e6), (NOW + 60, 300e6), (NOW + 120, 200e6)))
    _, state = vpa.decide(obs, vpa.initial_state(), NOW + 120)
    live = [(b, w) for b, w in state.memory.weights if w > 0]
    assert len(live) == 1
    assert live[0][0] == MEMORY_HISTOGRAM.find_bucket(300e6)


def test_oom_bumps_memory_to_the_larger_of_plus_100_mib_and_120_percent() -> None:
    vpa = VPA()
    obs = VpaObservation(memory=((NOW, 150 * MIB),), ooms=(NOW + 10,), requests=Resources(0.5, 400 * MIB))
    _, state = vpa.decide(obs, vpa.initial_state(), NOW + 10)
    # used = max(request 400 MiB, peak 150 MiB); bump = max(500 MiB, 480 MiB) = 500 MiB
    assert state.oom_peak == 500 * MIB
    big = VpaObservation(memory=((NOW, 150 * MIB),), ooms=(NOW + 10,), requests=Resources(0.5, 1000 * MIB))
    _, state = vpa.decide(big, vpa.initial_state(), NOW + 10)
    assert state.oom_peak == pytest.approx(1200 * MIB)


@pytest.mark.parametrize(
    ("mode", "requests", "creating", "age", "action"),
    [
        ("Off", Resources(0.1, 100 * MIB), False, DAY, "none"),
        ("Initial", None, True, 0.0, "set-on-create"),
        ("Initial", Resources(0.1, 100 * MIB), False, DAY, "none"),
        ("Recreate", Resources(0.1, 100 * MIB), False, 60.0, "evict"),  # far below the lower bound
        ("InPlaceOrRecreate", Resources(0.1, 100 * MIB), False, 60.0, "resize-in-place"),
        ("Recreate", Resources(0.6, 800 * MIB), False, 60.0, "none"),  # inside [lower, upper], young pod
    ],
)
def test_update_modes(mode: str, requests: Resources | None, creating: bool, age: float, action: str) -> None:
    vpa = VPA(VpaConfig(update_mode=mode))  # type: ignore[arg-type]
    _, state = vpa.decide(steady(0.5, 600 * MIB, 1441), vpa.initial_state(), NOW + DAY)
    d, _ = vpa.decide(VpaObservation(requests=requests, creating=creating, pod_age=age), state, NOW + DAY)
    assert d.action == action


def test_min_and_max_allowed_from_the_spec_cap_all_three() -> None:
    spec = VerticalSpec(updateMode="Recreate", minAllowed={"cpu": "1"}, maxAllowed={"memory": "256Mi"})
    vpa = VPA(vpa_config_from_spec(spec))
    d, _ = vpa.decide(steady(0.5, 600 * MIB, 1441), vpa.initial_state(), NOW + DAY)
    assert d.target.cpu == d.lower_bound.cpu == 1.0
    assert d.upper_bound.memory == d.target.memory == 256 * MIB
    assert d.uncapped_target.cpu < 1.0


@pytest.mark.parametrize("max_allowed", [None, {"cpu": "1500m"}, {"cpu": "8", "memory": "100Gi"}])
def test_the_machine_caps_the_bounds_with_max_allowed_whichever_is_lower(max_allowed: dict[str, str] | None) -> None:
    # 20 s of history: the upper bound is many times the usage (low confidence) -- not above the machine
    spec = VerticalSpec(maxAllowed=max_allowed) if max_allowed else VerticalSpec()
    vpa = VPA(vpa_config_from_spec(spec, capacity=Resources(2.0, 4 * 1024 * MIB)))
    d, _ = vpa.decide(steady(0.9, 600 * MIB, 3), vpa.initial_state(), NOW + 20)
    cpu_cap = 1.5 if max_allowed == {"cpu": "1500m"} else 2.0
    assert d.upper_bound.cpu == cpu_cap and d.upper_bound.memory == 4 * 1024 * MIB
    assert d.uncapped_target.cpu <= d.target.cpu or d.target.cpu == cpu_cap
    assert all(r.cpu <= cpu_cap and r.memory <= 4 * 1024 * MIB for r in (d.target, d.lower_bound, d.upper_bound))
