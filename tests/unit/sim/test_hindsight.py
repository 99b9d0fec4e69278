"""The attainable references: the hindsight schedule and the static frontier, both replayed in the engine."""

from __future__ import annotations

import numpy as np
import pytest

from kubeinfer.sim import ServiceModel, SimOptions, compare, generate
from kubeinfer.sim.hindsight import pods_for
from kubeinfer.spec.service import ServiceSpec

SPEC = ServiceSpec.model_validate(
    {
        "model": {"format": "python", "className": "m:C"},
        "server": {"workers": 4},
        "autoscaling": {"policy": "hpa", "metric": "concurrency", "target": 2, "maxReplicas": 20},
    }
)
TRACES = {
    "step": ("step", {"base": 20, "high": 150, "at": 300, "duration": 900}),
    "spike": ("spike", {"base": 10, "high": 200, "at": 400, "length": 60, "ramp": 5, "duration": 900}),
    "onoff": ("onoff", {"rate": 120, "base": 5, "on": 60, "off": 120, "duration": 900}),
}


def test_a_replica_is_created_startup_seconds_ahead_and_kept_through_short_gaps() -> None:
    need = np.array([0] * 10 + [1] * 5 + [0] * 3 + [1] * 5 + [0] * 20 + [2] * 3, dtype=np.int64)
    pods = pods_for(need, startup=4.0)
    assert list(pods[6:10]) == [1, 1, 1, 1]  # created 4 s before it is needed
    assert list(pods[15:18]) == [1, 1, 1]  # a 3 s gap, shorter than a start-up: kept
    assert pods[30] == 0  # a long gap: removed, and created again ahead of the next need
    assert list(pods[39:43]) == [2, 2, 2, 2] and pods[38] == 0


@pytest.mark.parametrize("family", list(TRACES))
def test_the_references_are_replayed_and_meet_the_slo(family: str) -> None:
    kind, params = TRACES[family]
    opts = SimOptions(service=ServiceModel(fixed_ms=40, distribution="lognormal", cv=0.5), slo_ms=200, startup_s=20)
    c = compare(SPEC, generate(kind, params, seed=3), ["predictive"], opts)
    hind, static = c.hindsight, c.static
    assert hind is not None and static is not None
    assert static.attainment >= 0.99 and hind.attainment >= 0.99
    n = int(static.need[0])
    # The frontier is the fewest: one replica less misses the target (when there is one to take away).
    if n > 1:
        from kubeinfer.sim.engine import EngineConfig
        from kubeinfer.sim.hindsight import static_frontier

        cfg = EngineConfig(slots=4, startup=20, tick=1.0, request_timeout=30)
        fewer = static_frontier(
            c.trace.arrivals,
            c.runs["predictive"].service,
            c.trace.duration,
            cfg,
            slo_s=0.2,
            basis="latency",
            target=0.99,
            max_replicas=n - 1,
        )
        assert fewer.attainment < 0.99
    # A schedule that knows the trace is never dearer than the best constant.
    assert hind.replica_seconds <= static.replica_seconds + 1e-6
    doc = c.to_json()
    assert doc["hindsight"]["slo_attainment"] == hind.attainment
    assert doc["static_frontier"]["name"] == f"static-{n}"


@pytest.mark.parametrize("family", list(TRACES))
def test_replay_of_a_constant_schedule_is_the_static_frontier_replay_of_that_count(family: str) -> None:
    from kubeinfer.sim.scenario import replay

    kind, params = TRACES[family]
    opts = SimOptions(service=ServiceModel(fixed_ms=40, distribution="lognormal", cv=0.5), slo_ms=200, startup_s=20)
    trace = generate(kind, params, seed=3)
    c = compare(SPEC, trace, [], opts)
    assert c.static is not None and c.static.tried
    seconds = int(np.ceil(trace.duration))
    for n, replica_seconds, attainment in c.static.tried:
        got = replay(SPEC, trace, np.full(seconds, n), opts)
        assert got.attainment == attainment and got.replica_seconds == replica_seconds
    # A schedule that drops to one replica half-way misses what the frontier's count met.
    n = int(c.static.need[0])
    if n > 1:
        half = np.where(np.arange(seconds) < seconds // 2, n, 1)
        assert replay(SPEC, trace, half, opts).attainment < c.static.attainment


@pytest.mark.parametrize("pods", [[], [[1, 2]], [3, -1]])
def test_replay_refuses_a_schedule_that_is_not_a_count_per_second(pods: object) -> None:
    from kubeinfer.sim.scenario import replay

    with pytest.raises(ValueError, match="one per second"):
        replay(SPEC, generate("poisson", {"rate": 5, "duration": 60}, seed=1), pods)
