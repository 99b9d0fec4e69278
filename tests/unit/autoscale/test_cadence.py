"""sync_period and bounded: the one cadence and the one set of bounds of the controller, the operator and the simulator."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from kubeinfer.autoscale import (
    KPA_TICK_SECONDS,
    Decision,
    FixedReplicas,
    Observation,
    bounded,
    policy_from_spec,
    sync_period,
)
from kubeinfer.autoscale.predictive import predictive_config_from_spec
from kubeinfer.spec.service import AutoscalingSpec

PREDICTIVE = {"capacityRps": 5.0}


def auto(**kw: Any) -> AutoscalingSpec:
    return AutoscalingSpec.model_validate({"maxReplicas": 4, "predictive": PREDICTIVE, **kw})


@pytest.mark.parametrize(("policy", "want"), [("none", 15.0), ("hpa", 15.0), ("kpa", 2.0), ("predictive", 5.0)])
def test_default_periods(policy: str, want: float) -> None:
    """The HPA's 15 s (the controller manager's default), Knative's 2 s, predictive's own 5 s."""
    assert sync_period(auto(policy=policy)) == want


@pytest.mark.parametrize(("policy", "want"), [("none", 7.0), ("hpa", 7.0), ("kpa", 2.0), ("predictive", 3.0)])
def test_each_policy_reads_its_own_setting(policy: str, want: float) -> None:
    a = auto(policy=policy, syncPeriodSeconds=7, predictive={**PREDICTIVE, "syncPeriodSeconds": 3})
    assert sync_period(a) == want


@pytest.mark.parametrize("hpa_period", [0.5, 1.0, 2.0, 30.0])
def test_kpa_ticks_every_two_seconds_whatever_the_hpa_period(hpa_period: float) -> None:
    """Knative's tick is a constant of its autoscaler; the local controller used to take min(syncPeriodSeconds, 2)."""
    assert sync_period(auto(policy="kpa", syncPeriodSeconds=hpa_period)) == KPA_TICK_SECONDS == 2.0


def test_predictive_sizes_its_lead_on_the_period_it_runs_on() -> None:
    a = auto(policy="predictive", predictive={**PREDICTIVE, "syncPeriodSeconds": 4})
    assert predictive_config_from_spec(a).sync_period == sync_period(a) == 4.0


@pytest.mark.parametrize("policy", ["hpa", "kpa", "predictive"])
def test_bounded_clamps_to_the_policys_bounds(policy: str) -> None:
    p = policy_from_spec(auto(policy=policy, minReplicas=1, maxReplicas=4, metric="concurrency", target=2))
    assert [bounded(n, p) for n in (0, 1, 3, 4, 9)] == [1, 1, 3, 4, 4]
    zero = policy_from_spec(auto(policy=policy, minReplicas=0, maxReplicas=4, metric="concurrency", target=2))
    assert bounded(0, zero) == 0


def test_bounded_holds_policy_none_at_its_count() -> None:
    for fixed in (0, 3):
        p = policy_from_spec(auto(policy="none"), fixed_replicas=fixed)
        assert isinstance(p, FixedReplicas)
        assert [bounded(n, p) for n in (0, 1, 3, 9)] == [fixed] * 4
    assert bounded(9, policy_from_spec(auto(policy="none", minReplicas=2))) == 2  # no spec.replicas: minReplicas


# -- the three callers ----------------------------------------------------------------------------------------------

HORIZON = 12.0


def _controller_times(tmp: Path, a: AutoscalingSpec) -> list[float]:
    """When ``kubeinfer up``'s autoscale loop decides over HORIZON seconds from its start (each wait: one second)."""
    from kubeinfer.local.controller import ServiceController
    from kubeinfer.local.settings import LocalSettings
    from kubeinfer.spec import validate_spec
    from kubeinfer.testing.local import FakeBackend, FakeClock, FakeGpuInventory, FakeMetrics, FakeRouter, FakeRunner

    svc = validate_spec(
        {
            "apiVersion": "kubeinfer.io/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": "svc"},
            "spec": {
                "model": {"format": "python", "className": "m:M", "version": "1"},
                "autoscaling": a.model_dump(mode="json", exclude_unset=True),
            },
        }
    )
    clock = FakeClock(0.0)
    c = ServiceController(
        svc,
        tmp,
        settings=LocalSettings(home=tmp),
        runner=FakeRunner(),
        router=FakeRouter(),
        metrics=FakeMetrics(),
        gpus=FakeGpuInventory(),
        clock=clock,
        backend_factory=FakeBackend,
        cpus=[0, 1],
    )
    times: list[float] = []

    async def sync(now: float, loads: Any) -> Decision:
        times.append(now)
        return Decision(c.desired, "Recorded")

    class OneSecond:
        """The loop's wake event, never set: each wait is the loop's 1 s timeout on the fake clock."""

        async def wait(self) -> None:
            clock.advance(1.0)
            c._closing = clock.now >= HORIZON

        def is_set(self) -> bool:
            return False

        def clear(self) -> None:
            pass

    c.sync = sync  # type: ignore[method-assign]
    c._wake = OneSecond()  # type: ignore[assignment]
    asyncio.run(c._autoscale_loop())
    return times


def _operator_times(monkeypatch: pytest.MonkeyPatch, a: AutoscalingSpec) -> list[float]:
    """When the operator's kopf timer (every 1 s) runs the autoscaler over HORIZON seconds after seeing the service."""
    kopf = pytest.importorskip("kopf")
    from kubeinfer.kube import operator_kopf
    from kubeinfer.kube.operator import ScalerState
    from kubeinfer.kube.render import RenderOptions
    from kubeinfer.testing.kube import FakeKubeApi

    now = [0.0]
    times: list[float] = []

    class Clock:
        @staticmethod
        def monotonic() -> float:
            return now[0]

    def step(svc: Any, api: Any, scrape: Any, state: Any, t: float, generation: int = 0) -> Any:
        times.append(t)
        return None, ScalerState()

    body = {
        "apiVersion": "kubeinfer.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "svc", "namespace": "ml", "uid": "uid-1", "generation": 1},
        "spec": {
            "model": {"format": "sklearn", "uri": "./model.joblib"},
            "autoscaling": a.model_dump(mode="json", exclude_unset=True),
        },
    }
    api = FakeKubeApi()
    api.add(body)
    monkeypatch.setattr(operator_kopf, "connect", lambda context=None: api)
    monkeypatch.setattr(operator_kopf, "time", Clock)
    monkeypatch.setattr(operator_kopf, "autoscale_step", step)
    monkeypatch.setattr(kopf, "run", lambda **kw: None)
    registry = kopf.OperatorRegistry()
    monkeypatch.setattr(kopf._core.intents.registries, "_default_registry", registry)
    operator_kopf.run(["ml"], RenderOptions(), None, 3600.0)
    [timer] = [h for h in registry._spawning.get_all_handlers() if type(h).__name__ == "TimerHandler"]
    while now[0] <= HORIZON:
        timer.fn(body=body)
        now[0] += 1.0
    return times


def _simulator_times(monkeypatch: pytest.MonkeyPatch, a: AutoscalingSpec) -> list[float]:
    """When ``kubeinfer simulate`` calls the policy over the first HORIZON seconds of a trace."""
    from kubeinfer.sim import SimOptions, compare, generate, scenario
    from kubeinfer.sim.engine import simulate_policy as real
    from kubeinfer.spec.service import ServiceSpec

    times: list[float] = []

    class Recording:
        def __init__(self, inner: Any) -> None:
            self.inner = inner
            self.min_replicas, self.max_replicas = inner.min_replicas, inner.max_replicas

        def initial_state(self) -> Any:
            return self.inner.initial_state()

        def decide(self, obs: Observation, state: Any, now: float) -> tuple[Decision, Any]:
            times.append(now)
            return self.inner.decide(obs, state, now)  # type: ignore[no-any-return]

    def recorded(
        arrivals: Any, service: Any, duration: float, policy: Any, config: Any, progress: Any = None, tokens: Any = None
    ) -> Any:
        return real(arrivals, service, duration, Recording(policy), config, progress, tokens)

    monkeypatch.setattr(scenario, "simulate_policy", recorded)
    spec = ServiceSpec.model_validate(
        {"model": {"format": "python", "className": "m:C"}, "autoscaling": a.model_dump(exclude_unset=True)}
    )
    trace = generate("poisson", {"rate": 2, "duration": HORIZON + 1}, seed=1)
    compare(spec, trace, [a.policy], SimOptions(references=False))
    return times


@pytest.mark.parametrize(
    "a",
    [
        # kpa with an HPA period under 2 s: the case the three copies disagreed on (1 s, 2 s, 2 s)
        auto(policy="kpa", syncPeriodSeconds=1, metric="concurrency", target=2),
        auto(policy="predictive", predictive={**PREDICTIVE, "syncPeriodSeconds": 3}),
        auto(policy="hpa", syncPeriodSeconds=4, metric="concurrency", target=2),
    ],
    ids=["kpa", "predictive", "hpa"],
)
def test_up_the_operator_and_simulate_decide_at_the_same_instants(
    a: AutoscalingSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every sync_period, the first one period after start (Knative's ticker, the HPA's resync delay) -- in all three.

    The operator used to decide at once when it first saw a service; the local controller ran kpa every
    min(syncPeriodSeconds, 2) s."""
    period = sync_period(a)
    want = [period * k for k in range(1, int(HORIZON // period) + 1)]
    controller = _controller_times(tmp_path, a)
    simulator = _simulator_times(monkeypatch, a)
    assert controller == want
    assert simulator == want
    if a.policy != "hpa":  # on a cluster the HPA is Kubernetes' own; the operator runs kpa and predictive
        assert _operator_times(monkeypatch, a) == want


def test_the_callers_take_the_functions_from_kubeinfer_autoscale() -> None:
    """No private copy left: each caller's module holds the very functions this package defines."""
    from kubeinfer.kube import operator, operator_kopf
    from kubeinfer.local import controller
    from kubeinfer.sim import scenario

    callers = (vars(controller), vars(scenario), vars(operator_kopf))
    assert all(c["sync_period"] is sync_period for c in callers)
    assert all(c["bounded"] is bounded for c in callers[:2])
    for c in (*callers, vars(operator)):
        assert "_tick" not in c and "autoscale_period" not in c
    assert not hasattr(controller.ServiceController, "_sync_period")
