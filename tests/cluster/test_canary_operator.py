"""Canary rollouts by the operator against a real control plane (the cluster in KUBECONFIG, or ../shared/k8s started
for the session by conftest.py): the Gateway API's HTTPRoute CRD is installed from the schema vendored for the render
tests, the operator's reconcile runs one canary step per call with the time given (the status it writes is the only
state carried from call to call, as from one operator process to the next), the real Deployment controller makes the
pods and the pod driver marks them Ready, as a kubelet would.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from controlplane_kit import Kube, PodDriver, wait_for
from typer.testing import CliRunner

from kubeinfer.cli.app import app

pytestmark = [pytest.mark.controlplane, pytest.mark.timeout(300)]

ROUTE_SCHEMA = Path(__file__).resolve().parents[1] / "unit" / "kube" / "data" / "crd-schemas" / "httproute-v1.yaml"
GROUP, VERSION, PLURAL = "kubeinfer.io", "v1alpha1", "inferenceservices"


@pytest.fixture(scope="module")
def httproute_crd(kube: Kube, crd_installed: str) -> str:
    """The HTTPRoute CRD (gateway.networking.k8s.io/v1, the fields kubeinfer sets), installed and served."""
    from kubernetes import client

    schema = yaml.safe_load(ROUTE_SCHEMA.read_text())["openAPIV3Schema"]
    name = "httproutes.gateway.networking.k8s.io"
    doc = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        # as the published CRD has it: *.k8s.io groups need the approval annotation
        "metadata": {
            "name": name,
            "annotations": {"api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/gateway-api/pull/2466"},
        },
        "spec": {
            "group": "gateway.networking.k8s.io",
            "scope": "Namespaced",
            "names": {
                "plural": "httproutes",
                "singular": "httproute",
                "kind": "HTTPRoute",
                "listKind": "HTTPRouteList",
            },
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}],
        },
    }
    try:
        kube.ext.create_custom_resource_definition(doc)
    except client.ApiException as e:
        if e.status != 409:
            raise

    def served() -> bool:
        try:
            kube.custom.list_cluster_custom_object("gateway.networking.k8s.io", "v1", "httproutes")
            return True
        except client.ApiException as e:
            if e.status == 404:
                return False
            raise

    wait_for("the HTTPRoute CRD to be served", served)
    return name


def _spec(uri: str, canary: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": {"format": "sklearn", "uri": uri},
        "replicas": 4,
        "autoscaling": {"policy": "none"},
        "rollout": {"canary": {"steps": [25, 50], "analysisSeconds": 30, **canary}},
    }


class Cluster:
    """One InferenceService, and the operator's reconcile driven at given times."""

    def __init__(self, kube: Kube, pods: PodDriver, namespace: str, name: str) -> None:
        from kubeinfer.kube.api import connect

        self.kube, self.pods, self.ns, self.name = kube, pods, namespace, name
        self.api = connect()
        self.scrape: Callable[[Mapping[str, Any]], str | None] | None = None

    def create(self, spec: dict[str, Any]) -> None:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceService", "metadata": {"name": self.name}}
        self.kube.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, {**body, "spec": spec})

    def body(self) -> dict[str, Any]:
        return dict(self.kube.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, self.name))

    def patch(self, patch: dict[str, Any]) -> None:
        self.kube.custom.patch_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, self.name, patch)

    def tick(self, t: float) -> dict[str, Any]:
        """One reconcile at ``t`` seconds (of a fixed day), its status written as the operator writes it."""
        from kubeinfer.kube.names import OPERATOR_FIELD_MANAGER
        from kubeinfer.kube.operator import API_VERSION, reconcile

        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_800_000_000 + t))
        result = reconcile(self.body(), self.api, now, scrape=self.scrape)
        self.api.patch_status(
            API_VERSION, "InferenceService", self.name, self.ns, result.status, field_manager=OPERATOR_FIELD_MANAGER
        )
        return result.status

    def deployment(self, name: str) -> Any:
        from kubernetes import client

        try:
            return self.kube.apps.read_namespaced_deployment(name, self.ns)
        except client.ApiException as e:
            if e.status == 404:
                return None
            raise

    def ready(self, name: str, n: int) -> None:
        """Mark the pods of Deployment ``name`` Ready until it has ``n`` ready replicas of its template."""

        def done() -> bool:
            self.pods.run_scheduled(self.ns)
            d = self.deployment(name)
            return bool(
                d is not None
                and (d.status.observed_generation or 0) >= d.metadata.generation
                and (d.status.updated_replicas or 0) >= n
                and (d.status.ready_replicas or 0) >= n
            )

        wait_for(f"{n} ready replicas of {name}", done)

    def weights(self) -> tuple[int, int]:
        route = self.kube.custom.get_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", self.ns, "httproutes", self.name
        )
        refs = {r["name"]: r["weight"] for r in route["spec"]["rules"][-1]["backendRefs"]}
        return refs[f"{self.name}-stable"], refs[f"{self.name}-canary"]

    def config_uri(self, config_map: str) -> str:
        doc = yaml.safe_load(self.kube.core.read_namespaced_config_map(config_map, self.ns).data["service.yaml"])
        return str(doc["spec"]["model"]["uri"])

    def gone(self, name: str) -> None:
        """Deployment ``name`` is deleted (or being deleted: without a kubelet its pods never finish terminating,
        so a foreground deletion waits on them)."""

        def deleted() -> bool:
            d = self.deployment(name)
            return d is None or d.metadata.deletion_timestamp is not None

        wait_for(f"Deployment {name} to be deleted", deleted)


@pytest.fixture
def cluster(kube: Kube, pods: PodDriver, namespace: str, httproute_crd: str) -> Cluster:
    pods.add_node(f"node-{namespace}")
    pods.heartbeat()
    return Cluster(kube, pods, namespace, "svc")


def _condition(status: Mapping[str, Any], ctype: str) -> Mapping[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == ctype)


def _started(c: Cluster, canary: dict[str, Any]) -> None:
    """A stable revision serving 4 replicas, then a new model: the canary's first step waits for its replica."""
    c.create(_spec("./v1.joblib", canary))
    c.tick(0)
    c.ready("svc", 4)
    c.tick(1)
    assert "canary" not in c.body()["status"]
    c.patch({"spec": {"model": {"uri": "./v2.joblib"}}})
    status = c.tick(10)
    assert status["canary"]["phase"] == "Waiting" and status["canary"]["step"] == 1
    assert status["canary"]["stableRevision"] == 1 and status["canary"]["canaryRevision"] == 2
    assert c.weights() == (100, 0)
    assert c.deployment("svc-canary").spec.replicas == 1  # ceil(4 x 25%)
    # the stable Deployment and the spec its pods read stay on the old model; the canary reads the new one
    assert c.config_uri("svc-spec").endswith("v1.joblib") and c.config_uri("svc-canary-spec").endswith("v2.joblib")
    assert c.deployment("svc").metadata.generation == 1
    c.ready("svc-canary", 1)


def test_weights_move_step_by_step_on_time_and_the_canary_is_promoted(cluster: Cluster) -> None:
    """Analysis off (no gates): each step's weight is set once its replicas are ready, held for analysisSeconds,
    then the next; after the last the stable Deployment takes the new template and the canary is deleted."""
    c = cluster
    _started(c, {"maxErrorPercent": None})
    status = c.tick(11)
    assert c.weights() == (75, 25) and status["canary"]["phase"] == "Analyzing"
    progressing = _condition(status, "Progressing")
    assert progressing["status"] == "True" and progressing["reason"] == "Canary"
    assert progressing["message"] == "revision 2 gets 25% of the traffic (step 1/2, analyzing)"
    shown = CliRunner().invoke(app, ["status", "svc", "-n", c.ns])
    assert "canary: revision 1 75% / revision 2 25% (step 1/2, analyzing)" in shown.output, shown.output
    c.tick(30)  # held: 19 s of 30
    assert c.weights() == (75, 25) and c.body()["status"]["canary"]["step"] == 1
    status = c.tick(42)  # the step passed: the second waits for its replicas at the old weight
    assert status["canary"]["step"] == 2 and status["canary"]["phase"] == "Waiting" and c.weights() == (75, 25)
    assert c.deployment("svc-canary").spec.replicas == 2
    c.ready("svc-canary", 2)
    c.tick(43)
    assert c.weights() == (50, 50)
    status = c.tick(80)
    assert "canary" not in status and c.weights() == (100, 0)
    assert c.config_uri("svc-spec").endswith("v2.joblib")
    names = {
        m.metadata.name
        for m in c.kube.core.list_namespaced_config_map(c.ns).items
        if m.metadata.deletion_timestamp is None
    }
    assert "svc-canary-spec" not in names
    c.gone("svc-canary")
    assert c.deployment("svc").metadata.generation == 2  # the stable Deployment rolls to the new template
    c.ready("svc", 4)
    status = c.tick(81)
    assert _condition(status, "Ready")["status"] == "True" and _condition(status, "Progressing")["reason"] != "Canary"
    c.gone("svc-canary")


def test_the_abort_annotation_sends_all_traffic_back_and_no_canary_restarts(cluster: Cluster) -> None:
    c = cluster
    _started(c, {"maxErrorPercent": None})
    c.tick(11)
    assert c.weights() == (75, 25)
    c.patch({"metadata": {"annotations": {"kubeinfer.io/abort-canary": "true"}}})
    status = c.tick(12)
    assert c.weights() == (100, 0) and status["canary"]["phase"] == "Aborted"
    assert _condition(status, "Degraded")["reason"] == "CanaryAborted"
    c.gone("svc-canary")
    c.patch({"metadata": {"annotations": {"kubeinfer.io/abort-canary": None}}})
    c.tick(60)  # the aborted template is not tried again
    c.gone("svc-canary")
    assert c.weights() == (100, 0)
    assert c.config_uri("svc-spec").endswith("v1.joblib") and c.deployment("svc").metadata.generation == 1
    c.patch({"spec": {"model": {"uri": "./v3.joblib"}}})  # a new template: a new canary
    status = c.tick(70)
    assert status["canary"]["phase"] == "Waiting" and status["canary"]["canaryRevision"] == 3


def _metrics(ok: int, failed: int) -> str:
    """/metrics as the replica server writes it: requests by status code, and the latency histogram (all 10 ms)."""
    total = ok + failed
    return (
        "# TYPE kubeinfer_requests counter\n"
        f'kubeinfer_requests_total{{model="m",protocol="rest",code="200"}} {ok}\n'
        f'kubeinfer_requests_total{{model="m",protocol="rest",code="500"}} {failed}\n'
        "# TYPE kubeinfer_request_duration_seconds histogram\n"
        f'kubeinfer_request_duration_seconds_bucket{{model="m",protocol="rest",le="0.005"}} 0\n'
        f'kubeinfer_request_duration_seconds_bucket{{model="m",protocol="rest",le="0.01"}} {total}\n'
        f'kubeinfer_request_duration_seconds_bucket{{model="m",protocol="rest",le="+Inf"}} {total}\n'
        f'kubeinfer_request_duration_seconds_count{{model="m",protocol="rest"}} {total}\n'
        f'kubeinfer_request_duration_seconds_sum{{model="m",protocol="rest"}} {total * 0.01}\n'
    )


def test_a_failing_error_gate_rolls_back(cluster: Cluster) -> None:
    """With gates the canary pods' /metrics are read: a canary answering 500s is rolled back."""
    counts = [20, 0]
    c = cluster
    c.scrape = lambda pod: _metrics(*counts)
    _started(c, {"maxErrorPercent": 5, "minRequests": 10})
    c.tick(11)  # the window opens: its baseline is the 20 requests so far
    assert c.weights() == (75, 25)
    counts[:] = [30, 10]
    status = c.tick(15)
    assert status["canary"]["phase"] == "Aborted" and c.weights() == (100, 0)
    assert "failed the error gate" in status["canary"]["message"] and "10/20 requests" in status["canary"]["message"]
    assert status["canary"]["analysis"]["errors"] == 10
    c.gone("svc-canary")


@pytest.mark.slow  # 35-125 s: opt-in (-m slow), to keep the default run within its time budget
def test_a_restarted_operator_resumes_the_canary(cluster: Cluster, tmp_path: Path) -> None:
    """The real operator (kopf) runs a canary; it is killed mid-canary and started again: the new process reads the
    step from status.canary and goes on to promote (no step is repeated from the start)."""
    c = cluster
    c.create(_spec("./v1.joblib", {"maxErrorPercent": None, "steps": [50], "analysisSeconds": 3}))

    def operator() -> subprocess.Popen[bytes]:
        with (tmp_path / "operator.log").open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "kubeinfer", "operator", "-n", c.ns, "--no-leader-elect", "--interval", "1"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    proc = operator()
    try:
        c.ready("svc", 4)
        c.patch({"spec": {"model": {"uri": "./v2.joblib"}}})
        c.ready("svc-canary", 2)
        first = wait_for(
            "the canary's analysis",
            lambda: (c.body().get("status") or {}).get("canary", {}).get("phase") == "Analyzing" and c.body(),
        )
        proc.terminate()
        proc.wait(timeout=30)
        assert c.weights() == (50, 50)
        proc = operator()
        wait_for("the promotion", lambda: "canary" not in (c.body().get("status") or {}), timeout=90)
        assert c.config_uri("svc-spec").endswith("v2.joblib") and c.weights() == (100, 0)
        c.gone("svc-canary")
        start = first["status"]["canary"]["windowStart"]
        assert start  # the window the first process opened is the one the second closed
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    log = (tmp_path / "operator.log").read_text()
    assert log.count("canary of revision 2 over revision 1") == 1, log[-3000:]
