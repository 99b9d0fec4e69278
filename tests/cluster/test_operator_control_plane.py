"""The operator's autoscaler against a real control plane (the cluster in KUBECONFIG, or ../shared/k8s started for the
session by conftest.py; no kubelet or image needed).

The CRD is installed, an InferenceService created, its children applied by `reconcile`, the Deployment controller
makes the pod, and the test marks it Ready through the status subresource (there is no kubelet). Then the kpa
autoscaler scales the Deployment through the real scale subresource; and with a service account that may read but
not scale, the scale call is refused by RBAC and the autoscaler reports it instead of taking the count as applied.
"""

from __future__ import annotations

from typing import Any

import pytest
from controlplane_kit import Kube, wait_for

pytestmark = [pytest.mark.controlplane, pytest.mark.timeout(300)]

METRICS = (
    "# TYPE kubeinfer_requests_in_flight gauge\nkubeinfer_requests_in_flight {n}\n"
    "# TYPE kubeinfer_requests counter\n"
    'kubeinfer_requests_total{{model="m",protocol="rest",code="200"}} 10\n'
)


def _create(kube: Kube, ns: str, name: str, autoscaling: dict[str, Any]) -> dict[str, Any]:
    """Create an InferenceService of ``autoscaling`` in ``ns``, as the API server stored it."""
    body = {
        "apiVersion": "kubeinfer.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"model": {"format": "sklearn", "uri": "./model.joblib"}, "autoscaling": autoscaling},
    }
    return dict(kube.custom.create_namespaced_custom_object("kubeinfer.io", "v1alpha1", ns, "inferenceservices", body))


def _mark_ready(kube: Kube, ns: str, ip: str) -> None:
    """Wait for the Deployment controller's pod and mark it Running and Ready, as a kubelet would."""
    pod = wait_for("the Deployment controller's pod", lambda: kube.core.list_namespaced_pod(ns).items)[0]
    kube.core.patch_namespaced_pod_status(
        pod.metadata.name,
        ns,
        {"status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}},
    )


def test_kpa_scales_through_the_real_scale_subresource_and_reports_a_refused_scale(
    kube: Kube, crd_installed: str, namespace: str
) -> None:
    from kubernetes import client, dynamic

    from kubeinfer.kube.api import ClientKubeApi, connect
    from kubeinfer.kube.operator import ScalerState, autoscale_step, reconcile, spec_of

    admin_client, core, apps, rbac = kube.api_client, kube.core, kube.apps, kube.rbac
    ns = namespace
    created = _create(kube, ns, "svc", {"policy": "kpa", "metric": "concurrency", "target": 2, "maxReplicas": 20})
    api = connect()
    result = reconcile(created, api, "2026-01-01T00:00:00Z")
    assert result.svc is not None
    svc = spec_of(created)
    _mark_ready(kube, ns, "10.0.0.7")

    def scrape(_: Any) -> str:
        return METRICS.format(n=12)

    state = ScalerState()
    decision = None
    for t in range(0, 12, 2):
        decision, state = autoscale_step(svc, api, scrape, state, float(t), 1)
    assert decision is not None and decision.replicas > 1 and state.scale_error is None
    assert apps.read_namespaced_deployment_scale("svc", ns).spec.replicas == decision.replicas
    applied = decision.replicas

    # A service account that may read Deployments and Pods but not scale them.
    core.create_namespaced_service_account(ns, {"metadata": {"name": "reader"}})
    rbac.create_namespaced_role(
        ns,
        {
            "metadata": {"name": "reader"},
            "rules": [
                {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        ns,
        {
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}],
        },
    )
    token = core.create_namespaced_service_account_token("reader", ns, {"spec": {"expirationSeconds": 600}})
    cfg = client.Configuration()
    cfg.host = admin_client.configuration.host
    cfg.ssl_ca_cert = admin_client.configuration.ssl_ca_cert
    cfg.api_key = {"authorization": f"Bearer {token.status.token}"}
    reader = ClientKubeApi(dynamic.DynamicClient(client.ApiClient(cfg)))
    load = [400]  # more than the replicas applied can take: the decision differs from the count applied

    def busier(_: Any) -> str:
        return METRICS.format(n=load[0])

    decision, state = autoscale_step(svc, reader, busier, state, 14.0, 1)
    assert decision is not None and decision.replicas > applied
    assert state.scale_error is not None and "forbidden" in state.scale_error.lower(), state.scale_error
    assert apps.read_namespaced_deployment_scale("svc", ns).spec.replicas == applied


def test_predictive_replicas_are_told_the_slo_and_the_autoscaler_reads_their_misses(
    kube: Kube, crd_installed: str, namespace: str
) -> None:
    """The SLO feedback through a real API server: the Deployment it stores carries ``KUBEINFER_SLO_SECONDS``, and the
    pods' ``kubeinfer_requests_late_total`` reaches the predictive policy as a rate while the autoscaler scales."""
    from kubeinfer.kube.api import connect
    from kubeinfer.kube.operator import ScalerState, autoscale_step, reconcile, spec_of

    apps, custom = kube.apps, kube.custom
    ns = namespace
    created = _create(
        kube,
        ns,
        "fb",
        {"policy": "predictive", "maxReplicas": 20, "predictive": {"capacityRps": 5, "sloLatencyMs": 250}},
    )
    api = connect()
    assert reconcile(created, api, "2026-01-01T00:00:00Z").svc is not None
    stored = apps.read_namespaced_deployment("fb", ns)
    env = {e.name: e.value for e in stored.spec.template.spec.containers[0].env}
    assert env["KUBEINFER_SLO_SECONDS"] == "0.25"
    _mark_ready(kube, ns, "10.0.0.8")
    counts = {"ok": 0, "late": 0}

    def scrape(_: Any) -> str:
        return (
            "# TYPE kubeinfer_requests_in_flight gauge\nkubeinfer_requests_in_flight 3\n"
            "# TYPE kubeinfer_requests counter\n"
            f'kubeinfer_requests_total{{model="m",protocol="rest",code="200"}} {counts["ok"]}\n'
            "# TYPE kubeinfer_requests_late counter\n"
            f"kubeinfer_requests_late_total {counts['late']}\n"
        )

    state = ScalerState()
    decision = None
    for t in range(0, 25, 5):
        counts["ok"] += 100  # 20 req/s, 1 req/s of them late
        counts["late"] += 5
        decision, state = autoscale_step(spec_of(created), api, scrape, state, float(t), 1)
    assert decision is not None and state.scale_error is None
    *_, late = state.policy_state.arrivals[-1]
    assert late == pytest.approx(1.0)
    assert decision.replicas > 1  # 20 req/s at 5 a replica
    assert apps.read_namespaced_deployment_scale("fb", ns).spec.replicas == decision.replicas

    # status.autoscaler as the operator writes it, with the numbers behind the decision: the API server keeps them
    # (an undeclared field would be pruned by the CRD's structural schema)
    from kubeinfer.kube.names import OPERATOR_FIELD_MANAGER
    from kubeinfer.kube.operator import autoscaler_status

    written = autoscaler_status(None, decision, state, "2026-01-01T00:00:25Z")
    assert written["details"]["current_rps"] > 0 and written["details"]["burst_budget_factor"] == 1
    api.patch_status(
        "kubeinfer.io/v1alpha1",
        "InferenceService",
        "fb",
        ns,
        {"autoscaler": written},
        field_manager=OPERATOR_FIELD_MANAGER,
    )
    back = custom.get_namespaced_custom_object("kubeinfer.io", "v1alpha1", ns, "inferenceservices", "fb")
    assert back["status"]["autoscaler"]["details"] == written["details"]
