"""Shared fixtures for the Kubernetes backend tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeinfer.kube.operator import reconcile
from kubeinfer.kube.render import render_all
from kubeinfer.spec import InferenceService, load_spec, validate_spec
from kubeinfer.testing.kube import FakeKubeApi

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*/service.yaml"))


def make_svc(**spec: object) -> InferenceService:
    """A spec with a sklearn model and the given spec fields."""
    doc = {
        "apiVersion": "kubeinfer.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "svc", "namespace": "ml"},
        "spec": {"model": {"format": "sklearn", "uri": "./model.joblib"}, **spec},
    }
    return validate_spec(doc)


@pytest.fixture
def iris() -> InferenceService:
    return load_spec(ROOT / "examples" / "iris" / "service.yaml")


def predictive_service_with_a_ready_pod(api: FakeKubeApi) -> InferenceService:
    """Reconcile a predictive InferenceService (capacityRps 100, up to 5 replicas) into ``api`` and add one ready pod
    of it, for the operator's autoscaling step to scrape."""
    body = {
        "apiVersion": "kubeinfer.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "svc", "namespace": "ml", "uid": "cr-uid", "generation": 1},
        "spec": {
            "model": {"format": "sklearn", "uri": "./model.joblib"},
            "autoscaling": {"policy": "predictive", "maxReplicas": 5, "predictive": {"capacityRps": 100}},
        },
    }
    svc = reconcile(body, api, "2025-01-01T00:00:00Z").svc
    assert svc is not None
    api.add(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "svc-a",
                "namespace": "ml",
                "labels": {"app.kubernetes.io/name": "svc", "app.kubernetes.io/instance": "svc"},
            },
            "status": {"podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]},
        }
    )
    return svc


SCRAPE = """# HELP kubeinfer_requests_in_flight Requests inside the server.
# TYPE kubeinfer_requests_in_flight gauge
kubeinfer_requests_in_flight 1
# HELP kubeinfer_requests Requests by model, protocol and status code.
# TYPE kubeinfer_requests counter
kubeinfer_requests_total{{model="m",protocol="v2",code="200"}} {ok}
"""
"""A replica's /metrics with one in-flight request and ``ok`` requests answered (``SCRAPE.format(ok=...)``)."""


def server_env(autoscaling: dict[str, object]) -> dict[str, object]:
    """The server container's environment in the Deployment rendered for ``autoscaling``."""
    objs = render_all(make_svc(autoscaling=autoscaling)).objects
    [dep] = [o for o in objs if o["kind"] == "Deployment"]
    return {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
