"""The controller runs a canary against fakes (a fake clock, processes, probes and router): replicas per step, the
split it gives the router, promotion, rollback on a failed gate or a model that does not load, and the events."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from kubeinfer.lifecycle.backoff import BackoffConfig
from kubeinfer.lifecycle.canary import LATENCY_BOUNDS, Counters, latency_bucket
from kubeinfer.local.controller import ServiceController
from kubeinfer.local.settings import LocalSettings
from kubeinfer.spec import InferenceService, validate_spec
from kubeinfer.testing.local import FakeBackend, FakeClock, FakeGpuInventory, FakeMetrics, FakeRouter, FakeRunner

PROBES = {
    "startup": {"periodSeconds": 0.5, "failureThreshold": 4},
    "readiness": {"periodSeconds": 0.5, "failureThreshold": 1},
    "liveness": {"periodSeconds": 0.5, "failureThreshold": 2},
}
CANARY = {"steps": [25, 50], "analysisSeconds": 5, "minRequests": 10, "maxErrorPercent": 5, "maxP99Ms": 200}


def service(version: str = "1", cls: str = "m:M", canary: dict[str, Any] | None = CANARY) -> InferenceService:
    return validate_spec(
        {
            "apiVersion": "kubeinfer.io/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": "svc"},
            "spec": {
                "model": {"format": "python", "className": cls, "version": version},
                "autoscaling": {"policy": "none"},
                "replicas": 4,
                "probes": PROBES,
                "server": {"limits": {"drainTimeoutSeconds": 1}},
                "rollout": {"progressDeadlineSeconds": 30, **({"canary": canary} if canary else {})},
            },
        }
    )


def counters(requests: int, errors: int = 0, latency_s: float = 0.01) -> Counters:
    lat = [0] * (len(LATENCY_BOUNDS) + 1)
    lat[latency_bucket(latency_s)] = requests
    return Counters(requests, errors, tuple(lat))


class Harness:
    def __init__(self, tmp: Path) -> None:
        self.clock = FakeClock()
        self.runner = FakeRunner()
        self.router = FakeRouter()
        self.metrics = FakeMetrics()
        self.c = ServiceController(
            service(),
            tmp,
            settings=LocalSettings(home=tmp, backoff=BackoffConfig(1.0, 4.0, 60.0), grace_margin=1.0),
            runner=self.runner,
            router=self.router,
            metrics=self.metrics,
            gpus=FakeGpuInventory(),
            clock=self.clock,
            backend_factory=FakeBackend,
            cpus=[0, 1, 2, 3],
        )

    async def run(self, seconds: float, step: float = 0.25) -> None:
        t = 0.0
        while t < seconds:
            self.c.tick()
            for _ in range(5):
                await asyncio.sleep(0)
            self.clock.advance(step)
            t += step

    def versions(self) -> list[str]:
        """The model version of each backend in the router, sorted."""
        return sorted(b.version for b in self.router.backends)

    def events(self, reason: str) -> list[str]:
        return [e.message for e in self.c.events.list() if e.reason == reason]


def run(tmp_path: Path, body: Callable[[Harness], Awaitable[None]]) -> None:
    async def main() -> None:
        h = Harness(tmp_path)
        try:
            await h.run(2)
            await body(h)
        finally:
            for p in h.runner.alive():
                p.exit(0)
            await asyncio.sleep(0)

    asyncio.run(main())


def test_a_healthy_canary_steps_through_its_weights_and_is_promoted(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        msg = h.c.apply(service("2"), tmp_path)
        assert "canary of revision 2" in msg and "25%, 50%" in msg
        assert h.router.splits[-1] == ((1, 100), (2, 0))  # no traffic before the canary is ready
        await h.run(2)
        # Step 1: one canary replica (25% of 4), the stable replicas all kept.
        assert h.versions() == ["1", "1", "1", "1", "2"]
        assert h.router.splits[-1] == ((1, 75), (2, 25))
        status = h.c.status()
        assert status["canary"]["weight"] == 25 and status["canary"]["phase"] == "Analyzing"
        assert not status["ready"]
        h.router.load.revisions[2] = counters(50)
        await h.run(5.5)
        # Step 2: two canary replicas, 50%, once they are ready.
        await h.run(2)
        assert h.versions() == ["1", "1", "1", "1", "2", "2"]
        assert h.router.splits[-1] == ((1, 50), (2, 50))
        (step2,) = [m for m in h.events("CanaryStep") if "step 2/2" in m]
        assert "step 1/2 passed (error rate 0.00% (0/50 requests)" in step2
        h.router.load.revisions[2] = counters(150, errors=2)
        await h.run(6)
        (promoted,) = h.events("CanaryPromoted")
        assert "passed all 2 steps" in promoted and "error rate 2.00% (2/100 requests)" in promoted
        assert h.router.splits[-1] is None  # the rolling update spreads traffic over every ready replica
        await h.run(10)
        assert h.versions() == ["2", "2", "2", "2"] and "RolloutComplete" in [e.reason for e in h.c.events.list()]
        assert h.c.status()["revision"] == 2 and "canary" not in h.c.status()

    run(tmp_path, body)


def test_a_canary_failing_its_error_gate_is_rolled_back_and_the_stable_replicas_never_left(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        h.c.apply(service("2"), tmp_path)
        await h.run(2)
        stable_ids = sorted(b.id for b in h.router.backends if b.version == "1")
        h.router.load.revisions[2] = counters(12, errors=12)
        await h.run(0.5)
        (why,) = h.events("CanaryRolledBack")
        assert "failed the error gate at step 1/2 (25%)" in why and "error rate 100.00% (12/12 requests)" in why
        assert why.endswith("all traffic back to revision 1")
        assert h.router.splits[-1] == ((1, 100), (2, 0))  # held while the canary's requests finish
        assert h.versions() == ["1", "1", "1", "1"]
        await h.run(4)
        assert h.router.splits[-1] is None  # its replicas ended: no split any more
        assert sorted(b.id for b in h.router.backends) == stable_ids
        assert h.c.status()["revision"] == 1 and len(h.runner.alive()) == 4

    run(tmp_path, body)


def test_a_canary_failing_its_latency_gate_is_rolled_back_at_the_end_of_the_window(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        h.c.apply(service("2"), tmp_path)
        await h.run(2)
        h.router.load.revisions[2] = counters(40, latency_s=0.5)
        await h.run(3)
        assert not h.events("CanaryRolledBack")
        await h.run(3)
        (why,) = h.events("CanaryRolledBack")
        assert "failed the latency gate" in why and "p99" in why

    run(tmp_path, body)


def test_a_canary_whose_model_does_not_load_is_rolled_back_without_waiting(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        old_ports = {p.port for p in h.runner.processes}
        h.metrics.failing["/startupz"] = set(range(20_000, 30_000)) - old_ports
        h.metrics.reason = "model 'svc' failed to load: cannot import module 'm2'"
        h.c.apply(service("2", cls="m2:M"), tmp_path)
        await h.run(3)
        (why,) = h.events("CanaryRolledBack")
        assert "could not load its model" in why and "cannot import module 'm2'" in why
        assert h.versions() == ["1", "1", "1", "1"]

    run(tmp_path, body)


def test_without_a_canary_spec_a_new_revision_rolls_out_replica_by_replica(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        msg = h.c.apply(service("2", canary=None), tmp_path)
        assert msg.startswith("rolling out revision 2")
        assert h.router.splits == []

    run(tmp_path, body)


def test_a_new_spec_during_the_canary_aborts_it(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        h.c.apply(service("2"), tmp_path)
        await h.run(2)
        h.c.apply(service("3"), tmp_path)
        (why,) = h.events("CanaryRolledBack")
        assert "a new spec was applied during the analysis" in why
        assert h.router.splits[-1] == ((1, 100), (3, 0))
        await h.run(3)
        assert h.versions() == ["1", "1", "1", "1", "3"]

    run(tmp_path, body)
