"""The controller shell against fakes: probes drive router membership, crashes back off, rollouts, scale from zero."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from kubeinfer.lifecycle.backoff import BackoffConfig
from kubeinfer.local.controller import ControllerError, ServiceController
from kubeinfer.local.controller.observer import peak_window
from kubeinfer.local.gpu import GpuError
from kubeinfer.local.metrics import ReplicaMetrics
from kubeinfer.local.resources import CgroupV2, CpuQuota
from kubeinfer.local.settings import LocalSettings
from kubeinfer.spec import InferenceService, validate_spec
from kubeinfer.testing.local import (
    FakeBackend,
    FakeClock,
    FakeGpuInventory,
    FakeMetrics,
    FakeRouter,
    FakeRunner,
)

PROBES = {
    "startup": {"periodSeconds": 0.5, "failureThreshold": 4},
    "readiness": {"periodSeconds": 0.5, "failureThreshold": 1},
    "liveness": {"periodSeconds": 0.5, "failureThreshold": 2},
}


def service(**spec: Any) -> InferenceService:
    doc = {
        "apiVersion": "kubeinfer.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "svc"},
        "spec": {
            "model": {"format": "python", "className": "m:M", "version": "1"},
            "autoscaling": {"policy": "none"},
            "replicas": 2,
            "probes": PROBES,
            "server": {"limits": {"drainTimeoutSeconds": 1}},
            **spec,
        },
    }
    return validate_spec(doc)


class Harness:
    def __init__(
        self,
        tmp: Path,
        svc: InferenceService,
        gpus: FakeGpuInventory | None = None,
        *,
        unix_only: bool = False,
        replica_tcp: bool = False,
    ) -> None:
        self.clock = FakeClock()
        self.runner = FakeRunner(unix_only=unix_only)
        self.router = FakeRouter()
        self.metrics = FakeMetrics()
        settings = LocalSettings(
            home=tmp, backoff=BackoffConfig(1.0, 4.0, 60.0), grace_margin=1.0, replica_tcp=replica_tcp
        )
        self.c = ServiceController(
            svc,
            tmp,
            settings=settings,
            runner=self.runner,
            router=self.router,
            metrics=self.metrics,
            gpus=gpus or FakeGpuInventory(),
            clock=self.clock,
            backend_factory=FakeBackend,
            cpus=[0, 1, 2, 3],
        )

    async def run(self, seconds: float, step: float = 0.25) -> None:
        """Advance the fake clock, ticking and letting the spawned tasks run after each step."""
        t = 0.0
        while t < seconds:
            self.c.tick()
            for _ in range(5):
                await asyncio.sleep(0)
            self.clock.advance(step)
            t += step

    def ready_ids(self) -> list[str]:
        return [b.id for b in self.router.backends]

    def reasons(self) -> list[str]:
        return [e.reason for e in self.c.events.list()]


def run(
    tmp_path: Path, body: Callable[[Harness], Awaitable[None]], svc: InferenceService | None = None, **kw: Any
) -> None:
    async def main() -> None:
        h = Harness(tmp_path, svc or service(), **kw)
        try:
            await body(h)
        finally:
            for p in h.runner.alive():
                p.exit(0)
            await asyncio.sleep(0)

    asyncio.run(main())


def test_replicas_join_the_router_only_once_ready(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        await h.run(0.25)
        assert len(h.runner.processes) == 2 and h.ready_ids() == []
        await h.run(2)
        assert len(h.ready_ids()) == 2
        argv = h.runner.processes[0].argv
        assert "kubeinfer.local.launch" in argv and "serve" in argv and "--uds" in argv
        assert h.c.status()["ready"]

    run(tmp_path, body)


def test_replicas_get_no_tcp_port_and_are_probed_routed_and_shown_by_their_unix_socket(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        await h.run(2)
        assert len(h.ready_ids()) == 2
        p = h.runner.processes[0]
        argv = p.argv
        assert "--no-tcp" in argv and "--port" not in argv
        sock = argv[argv.index("--uds") + 1]
        assert Path(sock).is_absolute() and sock.endswith(".sock")
        assert p.port is None and sock in h.metrics.probed
        backend = next(b for b in h.router.backends if b.uds == sock)
        assert backend.port is None and backend.grpc_port is None
        mine = next(r for r in h.c.status()["replicas"] if r["pid"] == p.pid)
        assert mine["port"] is None and mine["uds"] == sock
        # a failing readiness probe at the socket takes the replica out of the router
        h.metrics.failing["/readyz"].add(sock)
        await h.run(1)
        assert backend.id not in h.ready_ids() and len(h.ready_ids()) == 1

    run(tmp_path, body, unix_only=True)


def test_replica_tcp_setting_keeps_a_tcp_port(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        await h.run(2)
        argv = h.runner.processes[0].argv
        assert "--port" in argv and "--no-tcp" not in argv and "--uds" in argv
        assert h.metrics.probed == {p.port for p in h.runner.processes}

    run(tmp_path, body, replica_tcp=True)


def test_a_socket_path_too_long_for_sun_path_keeps_tcp_for_that_replica(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 90)
    deep.mkdir()

    async def body(h: Harness) -> None:
        await h.run(2)
        assert len(h.ready_ids()) == 2
        argv = h.runner.processes[0].argv
        assert "--port" in argv and "--no-tcp" not in argv and "--uds" not in argv
        assert all(b.port is not None and b.uds is None for b in h.router.backends)

    run(deep, body, unix_only=True)


def test_a_crashed_replica_leaves_the_router_backs_off_and_comes_back(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        await h.run(2)
        victim = h.runner.processes[0]
        victim.exit(-signal.SIGKILL)
        await h.run(0.25)
        assert len(h.ready_ids()) == 1
        st = {r["id"]: r for r in h.c.status()["replicas"]}
        crashed = next(r for r in st.values() if r["restarts"] == 1)
        assert crashed["state"] in ("CrashLoopBackOff", "Starting") and "BackOff" in h.reasons()
        await h.run(3)
        assert len(h.ready_ids()) == 2 and len(h.runner.processes) == 3

    run(tmp_path, body)


def test_liveness_failure_restarts_readiness_failure_only_removes(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        await h.run(2)
        a, b = h.runner.processes
        h.metrics.failing["/readyz"].add(a.port)
        await h.run(1)
        assert len(h.ready_ids()) == 1 and not a.signals
        h.metrics.failing["/healthz"].add(b.port)
        b.exit_on_term = False  # a hung process ignores SIGTERM: SIGKILL after the grace period
        await h.run(1.5)
        assert signal.SIGTERM in b.signals and "Killing" in h.reasons()
        await h.run(2.5)
        assert signal.SIGKILL in b.signals
        msgs = [e.message for e in h.c.events.list() if e.reason == "Killing"]
        assert any("liveness probe failed" in m for m in msgs)

    run(tmp_path, body)


def test_rolling_update_keeps_ready_capacity_and_ends_on_the_new_version(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        await h.run(2)
        seen_ready: list[int] = []
        h.c.apply(service(model={"format": "python", "className": "m:M", "version": "2"}), tmp_path)
        for _ in range(40):
            await h.run(0.25)
            seen_ready.append(len(h.ready_ids()))
        assert min(seen_ready) >= 2  # maxUnavailable 0
        assert {b.version for b in h.router.backends} == {"2"} and len(h.ready_ids()) == 2
        assert "RolloutComplete" in h.reasons() and len(h.runner.alive()) == 2

    run(tmp_path, body)


def test_a_version_that_never_gets_ready_is_rolled_back(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        await h.run(2)
        old_ports = {p.port for p in h.runner.processes}
        h.metrics.failing["/startupz"] = set(range(20_000, 30_000)) - old_ports
        bad = service(
            model={"format": "python", "className": "m:M", "version": "2"}, rollout={"progressDeadlineSeconds": 3}
        )
        h.c.apply(bad, tmp_path)
        for _ in range(30):
            await h.run(0.25)
            assert len(h.ready_ids()) == 2
        assert "ProgressDeadlineExceeded" in h.reasons()
        assert {b.version for b in h.router.backends} == {"1"}
        assert all(r["version"] == "1" for r in h.c.status()["replicas"])

    run(tmp_path, body)


def test_a_version_whose_model_fails_to_load_is_rolled_back_without_waiting_the_deadline(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        await h.run(2)
        old_ports = {p.port for p in h.runner.processes}
        h.metrics.failing["/startupz"] = set(range(20_000, 30_000)) - old_ports
        h.metrics.reason = "model 'svc' failed to load: cannot import module 'm2'"
        bad = service(
            model={"format": "python", "className": "m2:M", "version": "2"}, rollout={"progressDeadlineSeconds": 600}
        )
        h.c.apply(bad, tmp_path)
        await h.run(3)
        assert "ModelLoadFailed" in h.reasons() and "ProgressDeadlineExceeded" not in h.reasons()
        event = next(e for e in h.c.events.list() if e.reason == "ModelLoadFailed")
        assert "cannot import module 'm2'" in event.message and "rolling back to revision 1" in event.message
        await h.run(2)
        assert all(r["version"] == "1" for r in h.c.status()["replicas"])
        assert len(h.ready_ids()) == 2

    run(tmp_path, body)


def test_scale_from_zero_wakes_on_a_buffered_request_and_reports_the_wait(tmp_path: Path) -> None:
    svc = service(
        replicas=None,
        autoscaling={
            "policy": "kpa",
            "metric": "concurrency",
            "target": 1,
            "minReplicas": 0,
            "maxReplicas": 2,
            "kpa": {"initialScale": 0},
        },
    )

    async def body(h: Harness) -> None:
        await h.run(1)
        assert h.runner.processes == [] and h.c.desired == 0
        h.router.load.buffered = 1
        h.c.on_buffered()
        await h.c.sync(h.clock.monotonic(), (h.c._sample_load(h.clock.monotonic()),))
        assert h.c.desired >= 1
        await h.run(2)
        assert len(h.ready_ids()) >= 1
        assert len(h.c.status()["cold_starts"]) == 1 and "ColdStart" in h.reasons()

    run(tmp_path, body, svc)


def test_memory_over_the_limit_is_killed_and_reported_as_oomkilled(tmp_path: Path) -> None:
    svc = service(replicas=1, resources={"limits": {"memory": "100Mi"}})

    async def body(h: Harness) -> None:
        await h.run(2)
        p = h.runner.processes[0]
        h.metrics.values[p.port] = ReplicaMetrics(rss=200 * 2**20, cpu_seconds=1.0)
        await h.c.sync(h.clock.monotonic(), ())
        await h.run(0.5)
        assert signal.SIGKILL in p.signals and "OOMKilling" in h.reasons()
        rep = h.c.status()["replicas"][0]
        assert rep["last_exit"]["reason"] == "OOMKilled"
        vpa = h.c.status()["vpa"]
        assert vpa is not None and vpa["target"]["memory"] > 100 * 2**20

    run(tmp_path, body, svc)


def test_scale_outside_the_bounds_names_the_fix(tmp_path: Path) -> None:
    svc = service(replicas=None, autoscaling={"policy": "hpa", "minReplicas": 1, "maxReplicas": 3})

    async def body(h: Harness) -> None:
        with pytest.raises(ControllerError, match=r"outside the autoscaling bounds \[1, 3\].*maxReplicas"):
            h.c.scale(5)
        h.c.scale(3)
        await h.run(0.5)
        assert len(h.runner.processes) == 3

    run(tmp_path, body, svc)


def test_a_gpu_spec_without_a_gpu_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(GpuError, match="no NVIDIA GPU was found"):
        Harness(tmp_path, service(resources={"gpu": {"count": 1}}), FakeGpuInventory(error="NVML: no driver"))


def test_gpu_env_reaches_the_replica(tmp_path: Path) -> None:
    from kubeinfer.local.gpu import GpuDevice

    async def body(h: Harness) -> None:
        await h.run(0.5)
        envs = [p.env["CUDA_VISIBLE_DEVICES"] for p in h.runner.processes]
        assert envs == ["GPU-0", "GPU-0"]
        assert h.runner.processes[0].env["KUBEINFER_GPU_MEMORY_FRACTION"] == "0.5"

    async def main() -> None:
        svc = service(resources={"gpu": {"sharing": "time-slicing", "fraction": 0.5}})
        h = Harness(tmp_path, svc, FakeGpuInventory([GpuDevice(0, "GPU-0", "T4", 16 * 2**30)]))
        await body(h)

    asyncio.run(main())


def test_policy_none_held_at_zero_is_not_woken_by_waiting_requests(tmp_path: Path) -> None:
    """The router wakes a service at zero only within its bounds: policy none at 0 replicas means off.

    (The cadence of the autoscale loop is tested with the operator's and the simulator's in
    tests/unit/autoscale/test_cadence.py.)"""

    async def body(h: Harness) -> None:
        await h.run(1)
        assert h.runner.processes == [] and h.c.desired == 0
        h.router.load.buffered = 1
        h.c.on_buffered()
        now = h.clock.monotonic()
        decision = await h.c.sync(now, (h.c._sample_load(now),))
        assert decision.reason == "Fixed" and h.c.desired == 0
        await h.run(2)
        assert h.runner.processes == [] and "ScalingReplicaSet" not in h.reasons()

    run(tmp_path, body, service(replicas=0))


def test_load_samples_carry_the_replicas_busy_time_as_work(tmp_path: Path) -> None:
    svc = service(replicas=1)

    async def body(h: Harness) -> None:
        await h.run(2)
        p = h.runner.processes[0]
        h.metrics.values[p.port] = ReplicaMetrics(busy_seconds=10.0)
        await h.c.sync(h.clock.monotonic(), ())
        h.clock.advance(2.0)
        h.metrics.values[p.port] = ReplicaMetrics(busy_seconds=11.5)
        await h.c.sync(h.clock.monotonic(), ())
        sample = h.c._sample_load(h.clock.monotonic())
        assert sample.work == pytest.approx(0.75)  # 1.5 busy seconds over 2 s

    run(tmp_path, body, svc)


def test_load_samples_carry_the_routers_peak_arrivals_for_the_policy(tmp_path: Path) -> None:
    """The router's most requests within its window (the SLO's length) reaches the policy's observation as
    LoadSample.peak, as the simulator reports it; a router that counts none reports no peak."""
    svc = service(
        replicas=1, autoscaling={"policy": "predictive", "predictive": {"sloLatencyMs": 250, "capacityRps": 20}}
    )

    async def body(h: Harness) -> None:
        await h.run(2)
        window = peak_window(h.c.svc.spec)
        assert window == 0.25
        h.router.load.rps, h.router.load.peak, h.router.load.peak_window = 10.0, 7, window
        now = h.clock.monotonic()
        sample = h.c._sample_load(now)
        assert (sample.rps, sample.peak, sample.peak_window) == (10.0, 7.0, 0.25)
        obs = h.c.observer.observation(h.c.supervisor.live(), (sample,), now, h.c.svc.spec, h.c.desired)
        assert obs.load[-1].peak == 7.0
        h.router.load.peak_window = 0.0
        sample = h.c._sample_load(h.clock.monotonic())
        assert (sample.peak, sample.peak_window) == (None, 0.0)

    run(tmp_path, body, svc)


def test_a_cpu_limit_puts_each_replica_in_its_own_quota_group_removed_when_it_exits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    removed: list[str] = []
    monkeypatch.setattr(CgroupV2, "remove", staticmethod(removed.append))
    root = tmp_path / "cgroup"
    (root / "cpu" / "pod").mkdir(parents=True)
    (root / "cpu" / "pod" / "cpu.cfs_quota_us").write_text("-1")
    (root / "self").write_text("3:cpu:/pod\n")
    svc = service(resources={"limits": {"cpu": "500m"}})

    async def main() -> None:
        h = Harness(tmp_path, svc)
        h.c.cpu_quota = CpuQuota(root=root, proc_cgroup=root / "self")
        await h.run(2)
        groups = []
        for p in h.runner.processes:
            plan = json.loads(p.argv[p.argv.index("kubeinfer.local.launch") + 1])
            (group,) = plan["cgroups"]
            assert (Path(group) / "cpu.cfs_quota_us").read_text() == "50000"
            groups.append(group)
        assert len(set(groups)) == 2
        assert all(r["cpu_throttled_seconds"] == 0.0 for r in h.c.status()["replicas"])
        h.runner.processes[0].exit(0)
        await h.run(0.5)
        assert removed == [groups[0]]
        for p in h.runner.alive():
            p.exit(0)
        await asyncio.sleep(0)

    asyncio.run(main())


def test_a_replica_whose_start_raises_is_restarted_with_a_warning_not_left_starting(tmp_path: Path) -> None:
    # Any exception while supervising a replica (out of file descriptors for its log, a full disk) used to kill the
    # supervising task and leave the replica in Starting for good.
    async def body(h: Harness) -> None:
        real = h.runner.spawn
        fail = [2]

        async def flaky(*args: Any, **kw: Any) -> Any:
            if fail[0]:
                fail[0] -= 1
                raise RuntimeError("[Errno 24] Too many open files")
            return await real(*args, **kw)

        h.runner.spawn = flaky  # type: ignore[method-assign]
        await h.run(0.5)
        assert "SupervisorError" in h.reasons()
        warning = next(e for e in h.c.events.list() if e.reason == "SupervisorError")
        assert warning.type == "Warning" and "Too many open files" in warning.message
        await h.run(6)
        assert len(h.ready_ids()) == 2, h.c.status()

    run(tmp_path, body)


def test_a_policy_that_raises_is_reported_and_the_loops_go_on(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        calls = [0]

        def broken(obs: Any, state: Any, now: float) -> Any:
            calls[0] += 1
            raise ZeroDivisionError("division by zero")

        h.c.policy.decide = broken  # type: ignore[method-assign]
        task = asyncio.create_task(h.c.run())
        try:
            for _ in range(40):
                h.clock.advance(0.25)
                await asyncio.sleep(0.03)
            assert calls[0] >= 1
            events = [e for e in h.c.events.list() if e.reason == "ControllerError"]
            assert events and events[0].type == "Warning" and "ZeroDivisionError" in events[0].message
            # The tick loop still runs: the replica was started, probed and joined the router meanwhile.
            assert len(h.ready_ids()) == 1
            assert not task.done()
        finally:
            await h.c.shutdown(timeout=1)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    run(tmp_path, body, service(autoscaling={"policy": "hpa", "syncPeriodSeconds": 0.5}))


def llm_service(autoscaling: dict[str, Any], replicas: int | None = None) -> InferenceService:
    """A generative model's service (format llm; the fake runner loads nothing) autoscaled as ``autoscaling`` says."""
    return service(
        model={"format": "llm", "uri": "./tiny-llm", "version": "1"},
        autoscaling={"policy": "hpa", **autoscaling},
        replicas=replicas,
    )


def scrape(h: Harness, index: int, m: ReplicaMetrics) -> None:
    """What the ``index``-th replica's ``/metrics`` answers from now on."""
    p = h.runner.processes[index]
    h.metrics.values[p.port if p.port is not None else p.uds] = m


def test_an_llm_replicas_token_gauges_are_its_pod_metrics_sequences_waiting_and_tokens(tmp_path: Path) -> None:
    """The token signals are the replicas' own gauges, per pod as the Prometheus adapter serves them to the HPA (a
    replica that is not ready included: Prometheus scrapes it too), and summed over the service as a KEDA query sums
    them; a replica that exports none has neither (a missing metric)."""
    svc = llm_service({"metric": "tokens", "target": 50, "minReplicas": 1, "maxReplicas": 6}, replicas=3)

    async def body(h: Harness) -> None:
        await h.run(2)
        assert len(h.ready_ids()) == 3
        scrape(h, 0, ReplicaMetrics(sequences_waiting=2, tokens_per_second=130.0))
        scrape(h, 1, ReplicaMetrics(sequences_waiting=1, tokens_per_second=70.5))
        # the third answers without kubeinfer_generation_* (its engine not loaded, or its scrape failed)
        p = h.runner.processes[1]
        h.metrics.failing["/readyz"].add(p.port if p.port is not None else p.uds)
        await h.run(1)
        assert len(h.ready_ids()) == 2
        now = h.clock.monotonic()
        await h.c.sync(now, ())
        live = h.c.supervisor.live()
        obs = h.c.observer.observation(live, (), now, h.c.svc.spec, h.c.desired)
        by_pod = {p.name: dict(p.metrics) for p in obs.pods}
        first, unready, third = (by_pod[r.id] for r in live)
        assert (first["sequences-waiting"], first["tokens"]) == (2, 130.0)
        assert (unready["sequences-waiting"], unready["tokens"]) == (1, 70.5) and "concurrency" not in unready
        assert "tokens" not in third and "sequences-waiting" not in third and "concurrency" in third
        assert obs.external["tokens"] == 200.5 and obs.external["sequences-waiting"] == 3

    run(tmp_path, body, svc)


def test_an_hpa_on_tokens_scales_an_llm_service_by_the_replicas_tokens_per_second(tmp_path: Path) -> None:
    """desired = ceil(current x average/target), the reason names the metric; within the 0.1 tolerance nothing
    moves; a replica without the gauge counts 0 on the way up (the HPA's missing-metric rule)."""
    svc = llm_service({"metric": "tokens", "target": 50, "minReplicas": 1, "maxReplicas": 6}, replicas=2)

    async def body(h: Harness) -> None:
        await h.run(2)
        scrape(h, 0, ReplicaMetrics(tokens_per_second=54.0))
        scrape(h, 1, ReplicaMetrics(tokens_per_second=52.0))
        decision = await h.c.sync(h.clock.monotonic(), ())
        assert (decision.replicas, h.c.desired) == (2, 2)  # 53/50 = 1.06: within the tolerance
        scrape(h, 0, ReplicaMetrics(tokens_per_second=130.0))
        scrape(h, 1, ReplicaMetrics(tokens_per_second=70.0))
        decision = await h.c.sync(h.clock.monotonic(), ())
        assert decision.replicas == 4 and decision.reason == "tokens above target"  # ceil(2 x 100/50)
        assert decision.detail("tokens.replicas") == 4.0 and h.c.desired == 4
        assert any("scaled up from 2 to 4: tokens above target" in e.message for e in h.c.events.list())
        await h.run(2)
        assert len(h.ready_ids()) == 4
        # 300 tokens/s on one replica, three without the gauge: ratio 6 on the one, 300/(4 x 50) = 1.5 with the
        # three counted as 0, so ceil(4 x 1.5) = 6
        scrape(h, 1, ReplicaMetrics())
        scrape(h, 0, ReplicaMetrics(tokens_per_second=300.0))
        decision = await h.c.sync(h.clock.monotonic(), ())
        assert decision.replicas == 6 and decision.reason == "tokens above target"

    run(tmp_path, body, svc)


def test_the_larger_of_sequences_waiting_and_tokens_wins_and_a_scale_down_waits_out_the_window(tmp_path: Path) -> None:
    """Two token metrics: the highest proposal wins and names its metric; when the load ends the count holds for the
    HPA's 300 s scale-down stabilization window, then falls to minReplicas."""
    metrics = [{"type": "sequences-waiting", "target": 2}, {"type": "tokens", "target": 100}]
    svc = llm_service({"metrics": metrics, "minReplicas": 1, "maxReplicas": 5})

    async def body(h: Harness) -> None:
        await h.run(2)
        assert len(h.ready_ids()) == 1
        scrape(h, 0, ReplicaMetrics(sequences_waiting=5, tokens_per_second=150.0))
        t0 = h.clock.monotonic()
        decision = await h.c.sync(t0, ())
        assert decision.replicas == 3 and decision.reason == "sequences-waiting above target"  # ceil(5/2) > ceil(1.5)
        assert dict(decision.details) == {"sequences-waiting.replicas": 3.0, "tokens.replicas": 2.0}
        await h.run(2)
        assert len(h.ready_ids()) == 3
        for i in range(3):
            scrape(h, i, ReplicaMetrics(sequences_waiting=0, tokens_per_second=0.0))
        decision = await h.c.sync(t0 + 150, ())
        assert decision.replicas == 3 and decision.recommended == 0  # ceil(3 x 0/target), held by the window
        assert decision.reason == "All metrics below target; ScaleDownStabilized"
        decision = await h.c.sync(t0 + 301, ())
        assert decision.replicas == 1 and h.c.desired == 1
        assert decision.reason == "All metrics below target; TooFewReplicas"  # 0 recommended, minReplicas 1

    run(tmp_path, body, svc)


def test_an_hpa_on_tokens_at_zero_replicas_is_woken_by_a_buffered_request(tmp_path: Path) -> None:
    """At zero no replica reports tokens (the HPA cannot get the metric): the router, as the activator, wakes the
    service; from one replica on, its gauge decides."""
    svc = llm_service({"metric": "tokens", "target": 50, "minReplicas": 0, "maxReplicas": 3}, replicas=0)

    async def body(h: Harness) -> None:
        await h.run(1)
        assert h.runner.processes == [] and h.c.desired == 0
        h.router.load.buffered = 1
        h.c.on_buffered()
        now = h.clock.monotonic()
        decision = await h.c.sync(now, (h.c._sample_load(now),))
        assert decision.reason == "ScaleFromZero" and h.c.desired == 1
        await h.run(2)
        h.router.load.buffered = 0
        scrape(h, 0, ReplicaMetrics(sequences_waiting=0, tokens_per_second=140.0))
        now = h.clock.monotonic()
        decision = await h.c.sync(now, (h.c._sample_load(now),))
        assert decision.replicas == 3 and decision.reason == "tokens above target"

    run(tmp_path, body, svc)
