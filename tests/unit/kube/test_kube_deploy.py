"""deploy / status / delete against the in-memory API: server-side apply, prune, add-on skipping, waiting."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner

from conftest import ROOT, make_svc
from kubeinfer.cli.app import app
from kubeinfer.kube.deploy import delete_service, execute, observe, plan, wait_rollout
from kubeinfer.kube.render import RenderOptions, render
from kubeinfer.testing.kube import FakeKubeApi


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def deploy(api: FakeKubeApi, svc: Any, opts: RenderOptions | None = None) -> list[Any]:
    steps = plan(render(svc, opts), api, name=svc.name, namespace=svc.metadata.namespace)
    execute(steps, api)
    return steps


def test_everything_is_server_side_applied_with_one_field_manager() -> None:
    api = FakeKubeApi()
    deploy(api, make_svc())
    assert {c.field_manager for c in api.applies} == {"kubeinfer"}
    assert not any(c.force for c in api.applies)  # conflicts are reported, not overwritten (--force-conflicts)
    assert [c.obj["kind"] for c in api.applies][:3] == ["ConfigMap", "Service", "Deployment"]


def test_missing_addon_kinds_are_skipped_not_fatal() -> None:
    api = FakeKubeApi(unserved={("monitoring.coreos.com/v1", "ServiceMonitor")})
    steps = deploy(api, make_svc())
    skipped = [s for s in steps if s.action == "skip"]
    assert [s.obj["kind"] for s in skipped] == ["ServiceMonitor"]
    assert "Prometheus operator" in skipped[0].reason


def test_objects_the_spec_no_longer_needs_are_pruned() -> None:
    api = FakeKubeApi()
    deploy(api, make_svc(autoscaling={"metric": "concurrency", "target": 4, "maxReplicas": 4}))
    assert "HorizontalPodAutoscaler" in api.kinds()
    steps = deploy(api, make_svc(autoscaling={"policy": "none"}, replicas=2))
    assert [(s.action, s.obj["kind"]) for s in steps if s.action == "prune"] == [("prune", "HorizontalPodAutoscaler")]
    assert "HorizontalPodAutoscaler" not in api.kinds()


def test_objects_of_other_services_and_owned_objects_are_not_pruned() -> None:
    api = FakeKubeApi()
    deploy(api, make_svc())
    other = make_svc()
    other = other.model_copy(update={"metadata": other.metadata.model_copy(update={"name": "other"})})
    deploy(api, other)
    assert not [s for s in plan(render(make_svc()), api, name="svc", namespace="ml") if s.action == "prune"]


def test_dry_run_applies_nothing() -> None:
    api = FakeKubeApi()
    execute(plan(render(make_svc()), api, name="svc", namespace="ml"), api, dry_run=True)
    assert api.applies and all(c.dry_run for c in api.applies)
    assert not api.objects


def set_rollout(api: FakeKubeApi, ready: int) -> None:
    dep = api.objects[("apps/v1", "Deployment", "ml", "svc")]
    n = dep["spec"]["replicas"]
    dep["status"] = {
        "observedGeneration": dep["metadata"]["generation"],
        "replicas": n,
        "updatedReplicas": n,
        "readyReplicas": ready,
        "availableReplicas": ready,
    }


def test_wait_returns_ready_and_reports_progress() -> None:
    api = FakeKubeApi()
    deploy(api, make_svc())
    set_rollout(api, 0)

    class Clock(FakeClock):
        def sleep(self, seconds: float) -> None:
            super().sleep(seconds)
            if self.t >= 4:
                set_rollout(api, 1)  # the pod became ready meanwhile

    seen: list[str] = []
    st = wait_rollout(api, "svc", "ml", Clock(), timeout=60, poll=2, on_update=lambda s: seen.append(s.reason))
    assert st.phase == "Ready"
    assert seen == ["Starting", "Available"]


def test_wait_stops_at_a_terminal_failure_and_times_out_otherwise() -> None:
    api = FakeKubeApi()
    deploy(api, make_svc())
    set_rollout(api, 0)
    api.add(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "svc-abc",
                "namespace": "ml",
                "labels": {"app.kubernetes.io/name": "svc", "app.kubernetes.io/instance": "svc"},
            },
            "status": {
                "containerStatuses": [
                    {"name": "server", "image": "nope:1", "state": {"waiting": {"reason": "ImagePullBackOff"}}}
                ]
            },
        }
    )
    st = wait_rollout(api, "svc", "ml", FakeClock(), timeout=60)
    assert (st.phase, st.reason) == ("Failed", "ImagePullFailed")
    api.objects.pop(("v1", "Pod", "ml", "svc-abc"))
    st = wait_rollout(api, "svc", "ml", FakeClock(), timeout=10)
    assert (st.reason, st.terminal) == ("Timeout", True)


def test_delete_removes_every_labelled_object() -> None:
    api = FakeKubeApi()
    deploy(api, make_svc())
    gone = delete_service(api, "svc", "ml")
    assert "Deployment ml/svc" in gone
    assert not [k for k in api.objects if k[2] == "ml"]
    assert observe(api, "svc", "ml").reason == "NotFound"


def test_cli_dry_run_prints_the_plan_without_a_cluster(monkeypatch: Any) -> None:
    monkeypatch.setenv("KUBECONFIG", "/nonexistent")
    r = CliRunner().invoke(app, ["deploy", str(ROOT / "examples/iris/service.yaml"), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "apply  Deployment default/iris" in r.output
    assert "kind: HorizontalPodAutoscaler" in r.output


def test_cli_without_kubeconfig_fails_clearly(monkeypatch: Any) -> None:
    monkeypatch.setenv("KUBECONFIG", "/nonexistent")
    monkeypatch.setenv("HOME", "/nonexistent")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    r = CliRunner().invoke(app, ["status", str(ROOT / "examples/iris/service.yaml")])
    assert r.exit_code == 1
    assert "no Kubernetes configuration found" in r.output


def test_cli_render_json_and_flags() -> None:
    import json

    r = CliRunner().invoke(
        app, ["render", str(ROOT / "examples/iris/service.yaml"), "-o", "json", "--keda", "--target-version", "1.30"]
    )
    assert r.exit_code == 0, r.output
    start = r.output.index("{")
    kinds = [i["kind"] for i in json.loads(r.output[start:])["items"]]
    assert "ScaledObject" in kinds
    bad = CliRunner().invoke(app, ["render", str(ROOT / "examples/iris/service.yaml"), "--target-version", "1.29"])
    assert bad.exit_code == 2
    assert "1.30" in bad.output
