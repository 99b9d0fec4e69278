"""The canary state machine, table-driven with a fixed ``now``: steps, analysis windows, gates, the deadline."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kubeinfer.lifecycle.canary import (
    LATENCY_BOUNDS,
    CanaryConfig,
    CanaryState,
    Counters,
    Promote,
    Rollback,
    SetWeight,
    canary_replicas,
    decide,
    latency_bucket,
    quantile,
    start,
)
from kubeinfer.spec.service import CanarySpec

CFG = CanaryConfig(
    steps=(10, 50),
    analysis_seconds=10.0,
    min_requests=20,
    max_error_percent=1.0,
    max_p99_ms=100.0,
    deadline_seconds=60.0,
)


def counters(requests: int, errors: int = 0, latency_s: float = 0.01) -> Counters:
    """``requests`` responses, ``errors`` of them errors, all of latency ``latency_s``."""
    lat = [0] * (len(LATENCY_BOUNDS) + 1)
    lat[latency_bucket(latency_s)] = requests
    return Counters(requests, errors, tuple(lat))


def running(step: int = 0, window_start: float = 0.0, baseline: Counters | None = None) -> CanaryState:
    """A canary at ``step`` whose window opened at ``window_start``."""
    return CanaryState(1, 2, step, CFG.steps[step], window_start, window_start, baseline or Counters())


def test_the_first_step_waits_for_ready_replicas_then_sets_its_weight() -> None:
    """No traffic is moved to a canary without ready replicas; once ready, the first step's weight is set."""
    s = start(1, 2, now=0.0)
    d, s = decide(CFG, s, Counters(), ready=False, now=5.0)
    assert d is None and s.weight == 0
    d, s = decide(CFG, s, Counters(), ready=True, now=6.0)
    assert isinstance(d, SetWeight) and (d.weight, d.step) == (10, 0)
    assert s.weight == 10 and s.window_start == 6.0
    assert "10% of the traffic to revision 2" in d.message and "error rate <= 1%" in d.message


@pytest.mark.parametrize(
    ("name", "window", "now", "expect"),
    [
        ("window still open, healthy", counters(100), 5.0, None),
        ("window over, healthy: next step waits for its replicas", counters(100), 10.0, None),
        ("window over, too few requests: held", counters(19), 30.0, None),
        ("errors above the gate end it before the window does", counters(100, errors=5), 2.0, Rollback),
        ("errors above the gate but too few requests: not judged yet", counters(10, errors=10), 2.0, None),
        ("errors at the gate pass", counters(100, errors=1), 5.0, None),
        ("p99 above the gate at the window's end", counters(100, latency_s=0.5), 10.0, Rollback),
        ("p99 above the gate is not judged before the window ends", counters(100, latency_s=0.5), 5.0, None),
    ],
)
def test_the_first_step_of_two(name: str, window: Counters, now: float, expect: type | None) -> None:
    d, _ = decide(CFG, running(), window, ready=True, now=now)
    assert (type(d) if d is not None else None) is expect, name


def test_a_passed_step_moves_to_the_next_which_sets_its_weight_when_ready() -> None:
    d, s = decide(CFG, running(), counters(100), ready=True, now=10.0)
    assert d is None and s.step == 1 and s.window_start is None and s.weight == 10  # weight held meanwhile
    d, s = decide(CFG, s, counters(100), ready=False, now=11.0)
    assert d is None
    d, s = decide(CFG, s, counters(100), ready=True, now=12.0)
    assert isinstance(d, SetWeight) and d.weight == 50 and d.step == 1
    assert "step 1/2 passed (error rate 0.00% (0/100 requests)" in d.message
    assert s.baseline == counters(100)  # the new window counts from here


def test_the_window_counts_only_what_happened_since_it_opened() -> None:
    """Errors of an earlier step do not count against the next one."""
    base = counters(1000, errors=30)
    now_counters = Counters(1100, 30, tuple(a + b for a, b in zip(base.latency, counters(100).latency, strict=True)))
    d, s = decide(CFG, running(1, 0.0, base), now_counters, ready=True, now=10.0)
    assert isinstance(d, Promote)
    assert s.last is not None and (s.last.requests, s.last.errors) == (100, 0)


def test_the_last_step_passing_promotes_with_its_values() -> None:
    d, _ = decide(CFG, running(1), counters(200, errors=1), ready=True, now=10.0)
    assert isinstance(d, Promote)
    assert d.measured.requests == 200 and d.measured.error_percent == pytest.approx(0.5)
    assert "passed all 2 steps" in d.message


def test_a_rollback_says_which_gate_failed_and_the_values() -> None:
    d, _ = decide(CFG, running(1), counters(40, errors=40), ready=True, now=1.0)
    assert isinstance(d, Rollback) and d.measured is not None
    assert "failed the error gate at step 2/2 (50%)" in d.message
    assert "error rate 100.00% (40/40 requests)" in d.message
    d, _ = decide(CFG, running(0), counters(40, latency_s=0.3), ready=True, now=10.0)
    assert isinstance(d, Rollback) and "failed the latency gate" in d.message and "p99 " in d.message


def test_replicas_never_ready_roll_back_after_the_deadline() -> None:
    s = start(1, 2, now=0.0)
    d, s = decide(CFG, s, Counters(), ready=False, now=60.0)
    assert d is None
    d, _ = decide(CFG, s, Counters(), ready=False, now=60.5)
    assert isinstance(d, Rollback) and "no ready replicas" in d.message and d.measured is None


def test_no_gates_promote_on_traffic_alone() -> None:
    cfg = CanaryConfig((100,), 1.0, 1, None, None, 60.0)
    d, _ = decide(cfg, CanaryState(1, 2, 0, 100, 0.0, 0.0, Counters()), counters(5, errors=5), True, 1.0)
    assert isinstance(d, Promote)


@pytest.mark.parametrize(
    ("desired", "weight", "replicas"), [(1, 10, 1), (4, 10, 1), (4, 50, 2), (10, 25, 3), (0, 5, 1)]
)
def test_canary_replicas_are_the_weights_share_rounded_up(desired: int, weight: int, replicas: int) -> None:
    assert canary_replicas(desired, weight) == replicas


def test_quantile_reads_the_histogram_within_a_bucket() -> None:
    lat = [0] * (len(LATENCY_BOUNDS) + 1)
    assert quantile(lat, 0.99) is None
    lat[latency_bucket(0.010)] = 99
    lat[latency_bucket(1.0)] = 1
    p99 = quantile(lat, 0.99)
    assert p99 is not None and 0.008 <= p99 <= 0.0125  # the 99th of 100 is in the 10 ms bucket
    p100 = quantile(lat, 1.0)
    assert p100 is not None and 1.0 <= p100 <= 1.25  # the bucket of 1 s ends within 25% above it
    lat[-1] = 1_000  # above the last bound: the bound is reported
    assert quantile(lat, 0.99) == LATENCY_BOUNDS[-1]


def test_counters_minus_an_empty_baseline_is_itself() -> None:
    c = counters(5, 1)
    assert c.minus(Counters()) == c
    assert Counters().minus(Counters()) == Counters()


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({"steps": []}, "at least 1 item"),
        ({"steps": [50, 10]}, "strictly increasing"),
        ({"steps": [0]}, "greater than or equal to 1"),
        ({"steps": [101]}, "less than or equal to 100"),
        ({"steps": [10], "maxErrorPercent": 120}, "less than or equal to 100"),
        ({"steps": [10], "analysisSeconds": 0}, "greater than 0"),
    ],
)
def test_the_canary_spec_refuses_what_cannot_run(doc: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        CanarySpec.model_validate(doc)


def test_config_from_the_spec() -> None:
    spec = CanarySpec.model_validate({"steps": [20, 60], "analysisSeconds": 5, "maxP99Ms": 250})
    cfg = CanaryConfig.from_spec(spec, deadline_seconds=30)
    assert cfg == CanaryConfig((20, 60), 5.0, 20, 1.0, 250.0, 30.0)
