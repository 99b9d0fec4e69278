"""How a kubeinfer metric reaches the HPA, checked against the real HPA controller: the rendered HPA asks the custom
metrics API (``custom.metrics.k8s.io``, served by the Prometheus adapter) for the metric under the adapter's name;
kubeinfer itself serves no metrics APIService -- its operator scales through the scale subresource instead."""

from __future__ import annotations

import pytest
from controlplane_kit import Kube, PodDriver, any_pod_ready, hpa_metric_refused, wait_for

pytestmark = [pytest.mark.controlplane, pytest.mark.timeout(300)]


@pytest.mark.slow  # ~10-25 s; the default run stays under 15 minutes
def test_the_rendered_hpa_asks_the_custom_metrics_api_for_the_adapter_s_metric(
    kube: Kube, namespace: str, pods: PodDriver
) -> None:
    from kubernetes import client

    from kubeinfer.kube.api import connect
    from kubeinfer.kube.deploy import execute, plan
    from kubeinfer.kube.names import METRIC_IN_FLIGHT
    from kubeinfer.kube.render import RenderOptions, render
    from kubeinfer.spec import loads_spec

    # No aggregated metrics API in this control plane (no metrics-server, adapter or KEDA), and kubeinfer adds none.
    groups = {s.spec.group for s in client.ApiregistrationV1Api(kube.api_client).list_api_service().items if s.spec}
    assert not groups & {"custom.metrics.k8s.io", "external.metrics.k8s.io", "metrics.k8s.io"}, groups

    pods.add_node(f"cpu-{namespace}")
    svc = loads_spec(
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: m}\nspec:\n"
        "  model: {format: sklearn, uri: ./model.joblib}\n"
        "  autoscaling: {policy: hpa, metric: concurrency, target: 4, maxReplicas: 4}\n"
    )
    api = connect()
    objs = render(svc, RenderOptions(namespace=namespace, image="kubeinfer/test:never-pulled", monitoring=False))
    execute(plan(objs, api, name="m", namespace=namespace), api)
    hpa = next(o for o in objs if o["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == METRIC_IN_FLIGHT  # the adapter's rule's name
    wait_for("the pod Ready", lambda: pods.run_scheduled(namespace) or any_pod_ready(kube, namespace))

    # The controller asks the custom metrics API for kubeinfer_requests_in_flight (what the adapter would serve).
    active = hpa_metric_refused(kube, namespace, "m")
    assert active.reason == "FailedGetPodsMetric", active
    assert METRIC_IN_FLIGHT in active.message and "custom metrics API" in active.message, active.message
