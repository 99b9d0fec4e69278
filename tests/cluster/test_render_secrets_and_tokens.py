"""API keys and TLS from Secrets, and token autoscaling, against the real API server and controllers: the rendered
Deployment with its Secret volumes is applied (server-side dry run, then for real) beside real Secrets and its pod
scheduled; the token HPA is read by the real HPA controller, which asks the custom metrics API for the generation
gauge; the KEDA ScaledObject is checked by the API server against KEDA's own CRD schema (the vendored copy)."""

from __future__ import annotations

import base64
import contextlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from controlplane_kit import Kube, PodDriver, any_pod_ready, hpa_metric_refused, wait_for

pytestmark = [pytest.mark.controlplane, pytest.mark.timeout(300)]

KEDA_SCHEMA = (
    Path(__file__).resolve().parents[1] / "unit" / "kube" / "data" / "crd-schemas" / "scaledobject-v1alpha1.yaml"
)


def _spec(text: str) -> Any:
    from kubeinfer.spec import loads_spec

    return loads_spec(
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: chat}\nspec:\n" + text
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_a_deployment_mounting_tls_and_api_key_secrets_is_accepted_and_scheduled(
    kube: Kube, namespace: str, pods: PodDriver
) -> None:
    from kubeinfer.kube.api import connect
    from kubeinfer.kube.deploy import execute, plan
    from kubeinfer.kube.render import RenderOptions, render

    # Real Secrets: the API server checks that a kubernetes.io/tls Secret has tls.crt and tls.key.
    kube.core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "chat-tls"},
            "type": "kubernetes.io/tls",
            "data": {
                "tls.crt": _b64(b"-----BEGIN CERTIFICATE-----\n"),
                "tls.key": _b64(b"-----BEGIN PRIVATE KEY-----\n"),
            },
        },
    )
    kube.core.create_namespaced_secret(namespace, {"metadata": {"name": "chat-keys"}, "stringData": {"keys": "k-1\n"}})
    svc = _spec(
        "  model: {format: llm, uri: ./model}\n"
        "  server:\n"
        "    tls: {secretName: chat-tls}\n"
        "    auth: {apiKeysSecret: {name: chat-keys, key: keys}}\n"
        "  autoscaling: {metric: tokens, target: 300, maxReplicas: 3}\n"
    )
    objs = render(svc, RenderOptions(namespace=namespace, image="kubeinfer/test:never-pulled", monitoring=False))
    api = connect()
    steps = plan(objs, api, name="chat", namespace=namespace)
    execute(steps, api, dry_run=True)  # server-side dry run: admission and schema, nothing stored
    assert kube.apps.list_namespaced_deployment(namespace).items == []
    execute(steps, api)

    dep = kube.api_client.sanitize_for_serialization(kube.apps.read_namespaced_deployment("chat", namespace))
    template = dep["spec"]["template"]["spec"]
    rendered = next(o for o in objs if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    secret_volumes = [v for v in template["volumes"] if "secret" in v]
    # Stored as rendered (nothing pruned or defaulted away): names, items, mode.
    assert secret_volumes == [v for v in rendered["volumes"] if "secret" in v]
    assert {v["secret"]["secretName"] for v in secret_volumes} == {"chat-tls", "chat-keys"}
    [server] = template["containers"]
    assert {p: server[p]["httpGet"]["scheme"] for p in ("startupProbe", "readinessProbe", "livenessProbe")} == {
        "startupProbe": "HTTPS",
        "readinessProbe": "HTTPS",
        "livenessProbe": "HTTPS",
    }
    service = kube.core.read_namespaced_service("chat", namespace)
    assert [(p.name, p.app_protocol) for p in service.spec.ports] == [("https", "https"), ("grpc-tls", "https")]

    # The ReplicaSet controller makes the pod from the template, the scheduler binds it.
    pods.add_node(f"cpu-{namespace}")

    def bound() -> Any:
        items = kube.core.list_namespaced_pod(namespace).items
        return next((p for p in items if p.spec.node_name), None)

    pod = wait_for("the pod bound to the node", bound)
    mounts = {m.name: m for m in pod.spec.containers[0].volume_mounts}
    assert mounts["tls"].read_only and mounts["api-keys"].read_only
    assert mounts["tls"].sub_path is None and mounts["api-keys"].sub_path is None


@pytest.mark.slow  # ~10-25 s; the default run stays under 15 minutes
def test_the_token_hpa_asks_the_custom_metrics_api_for_the_generation_gauge(
    kube: Kube, namespace: str, pods: PodDriver
) -> None:

    from kubeinfer.kube.api import connect
    from kubeinfer.kube.deploy import execute, plan
    from kubeinfer.kube.names import METRIC_GENERATION_WAITING
    from kubeinfer.kube.render import RenderOptions, render

    pods.add_node(f"cpu-{namespace}")
    svc = _spec(
        "  model: {format: llm, uri: ./model}\n  autoscaling: {metric: sequences-waiting, target: 4, maxReplicas: 4}\n"
    )
    objs = render(svc, RenderOptions(namespace=namespace, image="kubeinfer/test:never-pulled", monitoring=False))
    api = connect()
    execute(plan(objs, api, name="chat", namespace=namespace), api)
    wait_for("the pod Ready", lambda: pods.run_scheduled(namespace) or any_pod_ready(kube, namespace))

    active = hpa_metric_refused(kube, namespace, "chat")
    assert active.reason == "FailedGetPodsMetric", active
    assert METRIC_GENERATION_WAITING in active.message, active.message


def _strip_local_marks(node: Any) -> Any:
    """The vendored schema marks elided subtrees with ``x-kubeinfer-elided``; a CRD may not carry that key."""
    if isinstance(node, dict):
        return {k: _strip_local_marks(v) for k, v in node.items() if not k.startswith("x-kubeinfer-")}
    if isinstance(node, list):
        return [_strip_local_marks(v) for v in node]
    return node


def test_the_keda_scaled_object_passes_keda_s_crd_schema_in_the_api_server(kube: Kube, namespace: str) -> None:
    from kubernetes import client

    from kubeinfer.kube.render import RenderOptions, render

    name = "scaledobjects.keda.sh"
    created = False
    try:
        kube.ext.read_custom_resource_definition(name)  # a cluster with KEDA: its own CRD checks the object
    except client.ApiException as e:
        if e.status != 404:
            raise
        schema = _strip_local_marks(yaml.safe_load(KEDA_SCHEMA.read_text())["openAPIV3Schema"])
        kube.ext.create_custom_resource_definition(
            {
                "metadata": {"name": name},
                "spec": {
                    "group": "keda.sh",
                    "scope": "Namespaced",
                    "names": {"plural": "scaledobjects", "singular": "scaledobject", "kind": "ScaledObject"},
                    "versions": [
                        {"name": "v1alpha1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}
                    ],
                },
            }
        )
        created = True
    try:
        wait_for(
            "the KEDA CRD established",
            lambda: any(
                c.type == "Established" and c.status == "True"
                for c in (kube.ext.read_custom_resource_definition(name).status.conditions or [])
            ),
        )
        svc = _spec(
            "  model: {format: llm, uri: ./model}\n"
            "  autoscaling:\n"
            "    minReplicas: 0\n"
            "    maxReplicas: 5\n"
            "    metrics: [{type: sequences-waiting, target: 2}, {type: tokens, target: 500}]\n"
            "    keda: {serverAddress: 'http://prometheus.obs.svc:9090', authenticationRef: prom}\n"
            "    behavior: {scaleDown: {stabilizationWindowSeconds: 60}}\n"
        )
        so = next(o for o in render(svc, RenderOptions(namespace=namespace)) if o["kind"] == "ScaledObject")

        def create(body: dict[str, Any]) -> Any:
            return kube.custom.create_namespaced_custom_object(
                "keda.sh", "v1alpha1", namespace, "scaledobjects", body, dry_run="All", field_validation="Strict"
            )

        wait_for("the ScaledObject resource served", lambda: _served_or_none(create, so))
        stored = create(so)
        assert stored["spec"]["triggers"] == so["spec"]["triggers"]  # nothing pruned
        # The same API server refuses what KEDA's schema refuses: a misspelt field, a bad type.
        bad = yaml.safe_load(yaml.safe_dump(so))
        bad["spec"]["triggers"][0]["metricTyp"] = "AverageValue"
        with pytest.raises(client.ApiException) as e:
            create(bad)
        assert e.value.status in (400, 422) and "metricTyp" in str(e.value.body)
        bad = yaml.safe_load(yaml.safe_dump(so))
        bad["spec"]["maxReplicaCount"] = "five"
        with pytest.raises(client.ApiException) as e:
            create(bad)
        assert e.value.status == 422
    finally:
        if created:
            with contextlib.suppress(Exception):
                kube.ext.delete_custom_resource_definition(name)


def _served_or_none(create: Any, body: dict[str, Any]) -> bool:
    from kubernetes import client

    try:
        create(body)
        return True
    except client.ApiException as e:
        if e.status == 404:
            return False
        raise


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (
            {"server": {"tls": {"certFile": "a.crt", "keyFile": "a.key", "secretName": "t"}}},
            "certFile/keyFile and secretName both set",
        ),
        (
            {"server": {"auth": {"apiKeysFile": "k", "apiKeysSecret": {"name": "k"}}}},
            "apiKeysFile and apiKeysSecret both set",
        ),
        ({"autoscaling": {"policy": "kpa", "keda": {}}}, "keda needs policy hpa"),
    ],
    ids=["tls", "auth", "keda"],
)
def test_the_api_server_refuses_what_validate_refuses(
    kube: Kube, crd_installed: str, namespace: str, spec: dict[str, Any], words: str
) -> None:
    """The CRD's CEL rules say what ``kubeinfer validate`` says; the same fields given one at a time (or as null)
    are accepted."""
    from kubernetes import client

    from kubeinfer.kube.names import GROUP
    from kubeinfer.spec import SpecError, validate_spec

    def body(name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"model": {"format": "llm", "uri": "./model"}, **spec},
        }

    def create(name: str, spec: dict[str, Any]) -> Any:
        return kube.custom.create_namespaced_custom_object(
            GROUP, "v1alpha1", namespace, "inferenceservices", body(name, spec), dry_run="All"
        )

    with pytest.raises(SpecError) as v:
        validate_spec(body("bad", spec))
    assert words in str(v.value)
    with pytest.raises(client.ApiException) as e:
        create("bad", spec)
    assert e.value.status == 422 and words in e.value.body, e.value.body

    create("tls", {"server": {"tls": {"secretName": "t", "certFile": None, "keyFile": None}}})
    create("files", {"server": {"tls": {"certFile": "a.crt", "keyFile": "a.key"}}})
    create("auth", {"server": {"auth": {"apiKeysSecret": {"name": "k"}, "apiKeysFile": None}}})
    create("keda", {"autoscaling": {"keda": {}}})
