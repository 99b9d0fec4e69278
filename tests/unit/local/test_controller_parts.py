"""The local controller's parts on their own: the typed status and its JSON, the revision store, the load observer."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import yaml

from kubeinfer.local.controller import ServiceController, ServiceStatus
from kubeinfer.local.controller.observer import LoadObserver
from kubeinfer.local.controller.revisions import RevisionStore
from kubeinfer.local.controller.status import Endpoint, RouterCounters
from kubeinfer.local.settings import LocalSettings
from kubeinfer.spec import InferenceService, validate_spec
from kubeinfer.testing.local import FakeBackend, FakeClock, FakeGpuInventory, FakeMetrics, FakeRouter, FakeRunner

SERVICE_KEYS = [
    "name",
    "revision",
    "version",
    "desired",
    "ready_replicas",
    "ready",
    "replicas",
    "autoscaling",
    "rollout",
    "cold_starts",
    "vpa",
    "events",
]
REPLICA_KEYS = [
    "id",
    "pid",
    "port",
    "grpc_port",
    "uds",
    "grpc_uds",
    "state",
    "reason",
    "ready",
    "version",
    "revision",
    "restarts",
    "age",
    "message",
    "last_exit",
    "cpu",
    "memory",
    "cpus",
    "cpu_throttled_seconds",
    "log",
]


def service(version: str = "1", **spec: Any) -> InferenceService:
    return validate_spec(
        {
            "apiVersion": "kubeinfer.io/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": "svc"},
            "spec": {
                "model": {"format": "python", "className": "m:M", "version": version},
                "autoscaling": {"policy": "none"},
                "replicas": 1,
                **spec,
            },
        }
    )


def controller(tmp: Path, router: FakeRouter | None = None) -> tuple[ServiceController, FakeRunner, FakeClock]:
    clock, runner = FakeClock(), FakeRunner()
    c = ServiceController(
        service(),
        tmp,
        settings=LocalSettings(home=tmp),
        runner=runner,
        router=router or FakeRouter(),
        metrics=FakeMetrics(),
        gpus=FakeGpuInventory(),
        clock=clock,
        backend_factory=FakeBackend,
        cpus=[0, 1],
    )
    return c, runner, clock


def test_the_status_json_keeps_the_keys_the_cli_reads(tmp_path: Path) -> None:
    """The typed status writes the same document as the dict it replaced: keys, order, lists for tuples."""

    async def main() -> None:
        c, runner, clock = controller(tmp_path)
        for _ in range(8):
            c.tick()
            await asyncio.sleep(0)
            clock.advance(0.25)
        snap = c.snapshot()
        assert isinstance(snap, ServiceStatus) and dataclasses.is_dataclass(snap)
        doc = c.status()
        assert list(doc) == SERVICE_KEYS
        (rep,) = doc["replicas"]
        assert list(rep) == REPLICA_KEYS and isinstance(rep["grpc_uds"], list)
        assert list(doc["autoscaling"]) == ["policy", "min", "max", "reason", "message", "buffering", "details"]
        assert doc["autoscaling"]["policy"] == "none" and doc["rollout"] is None and doc["vpa"] is None
        assert doc["events"] and set(doc["events"][0]) == {"time", "type", "reason", "object", "message", "count"}
        for p in runner.alive():
            p.exit(0)
        await asyncio.sleep(0)

    asyncio.run(main())


def test_the_platform_fields_appear_in_the_json_only_once_set(tmp_path: Path) -> None:
    c, _, _ = controller(tmp_path)
    full = dataclasses.replace(
        c.snapshot(),
        endpoint=Endpoint("http://127.0.0.1:8080", None),
        created=12.5,
        spec={"replicas": 1},
        router=RouterCounters(3, 1, 0, 2, 0, 1.5),
    )
    doc = full.to_json()
    assert list(doc) == [*SERVICE_KEYS, "endpoint", "created", "spec", "router"]
    assert doc["endpoint"] == {"http": "http://127.0.0.1:8080", "grpc": None}
    assert doc["router"] == {
        "requests": 3,
        "retries": 1,
        "buffered": 0,
        "buffered_total": 2,
        "rejected": 0,
        "rps": 1.5,
    }
    assert "endpoint" not in c.status()


def test_a_new_template_adds_a_revision_and_the_same_template_updates_in_place(tmp_path: Path) -> None:
    store = RevisionStore(tmp_path / "svc")
    models = tmp_path / "models"
    first = store.add(service(model={"format": "sklearn", "uri": "./iris.joblib", "version": "1"}), models)
    written = yaml.safe_load(first.spec_path.read_text())
    assert written["spec"]["model"]["uri"] == str((models / "iris.joblib").resolve())
    scaled = service(model={"format": "sklearn", "uri": "./iris.joblib", "version": "1"}, replicas=3)
    assert store.same_template(scaled, models)
    assert store.update(scaled) is first and store.target == 1 and first.svc.spec.replicas == 3
    v2 = service(model={"format": "sklearn", "uri": "./iris.joblib", "version": "2"})
    assert not store.same_template(v2, models) and not store.same_template(scaled, tmp_path)
    second = store.add(v2, models)
    assert (second.number, store.target, store.current.version) == (2, 2, "2") and 1 in store
    assert second.spec_path.name == "revision-2.yaml"


def test_an_observation_before_any_load_sample_sees_no_load() -> None:
    """The observer starts with an empty sample (it used to be read back with a getattr default)."""
    router = FakeRouter()
    obs = LoadObserver(router).observation([], (), 0.0, service().spec, 1)
    assert obs.external == {"concurrency": 0.0, "rps": 0.0, "queue-depth": 0}
    router.load.buffered = 2
    observer = LoadObserver(router)
    sample = observer.sample([], 5.0)
    assert sample.concurrency == 2.0 and observer.buffered == 2.0


def test_the_load_sample_carries_the_replicas_rate_of_late_requests_and_the_routers_rejections() -> None:
    """Each replica's ``kubeinfer_requests_late_total`` becomes a rate between two scrapes (a restarted server's
    counter counts from zero); the sample sums the ready replicas' rates, once each has one, plus the requests the
    router itself answered 503 since the last sample."""
    from types import SimpleNamespace

    from kubeinfer.local.metrics import ReplicaMetrics

    def replica(ready: bool = True) -> Any:
        fields = ("cpu_seconds", "cpu_at", "busy_seconds", "busy_at", "busy_rate", "late_total", "late_at", "late_rate")
        return SimpleNamespace(machine=SimpleNamespace(ready=ready), rss=None, metrics=None, **dict.fromkeys(fields))

    router = FakeRouter()
    observer = LoadObserver(router)
    a, b, starting = replica(), replica(), replica(ready=False)
    observer.record_usage(a, ReplicaMetrics(late_total=10.0), 0.0)
    observer.record_usage(b, ReplicaMetrics(late_total=4.0), 0.0)
    assert observer.sample([a, b, starting], 1.0).late is None  # one scrape each: no rate yet
    observer.record_usage(a, ReplicaMetrics(late_total=16.0), 2.0)
    assert observer.sample([a, b, starting], 2.0).late is None  # b has none yet
    observer.record_usage(b, ReplicaMetrics(late_total=1.0), 2.0)  # b restarted: 1 since
    assert (a.late_rate, b.late_rate) == (3.0, 0.5)
    router.load.rejected = 2
    assert observer.sample([a, b, starting], 3.0).late == 3.5 + 2
    assert observer.sample([a, b, starting], 4.0).late == 3.5  # the rejections counted once
    observer.record_usage(a, ReplicaMetrics(), 4.0)  # a scrape without the counter keeps the last rate
    assert observer.sample([a, b], 5.0).late == 3.5


def test_a_predictive_services_replicas_are_told_the_slo() -> None:
    """``kubeinfer up`` sets ``KUBEINFER_SLO_SECONDS`` for a predictive service, as the rendered Deployment does, so
    its replicas count ``kubeinfer_requests_late_total``; other policies' replicas do not count."""
    from types import SimpleNamespace

    from kubeinfer.local.controller.launcher import ReplicaLauncher
    from kubeinfer.server.metrics import SLO_ENV

    def env(autoscaling: dict[str, Any]) -> dict[str, str]:
        svc = service(autoscaling=autoscaling)
        rep = SimpleNamespace(
            revision=SimpleNamespace(svc=svc, base_dir=Path("/srv")), launch=SimpleNamespace(env={}), id="svc-1"
        )
        return ReplicaLauncher.env(rep, {})  # type: ignore[arg-type]

    predictive = {"policy": "predictive", "predictive": {"capacityRps": 10, "sloLatencyMs": 250}}
    assert env(predictive)[SLO_ENV] == "0.25"
    assert SLO_ENV not in env({"policy": "kpa"})
