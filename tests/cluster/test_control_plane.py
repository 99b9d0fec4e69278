"""The CRD, the operator and `deploy` against a real API server, controllers and scheduler (../shared/k8s, started
for the session by conftest.py; no kubelet: the pod driver marks scheduled pods Ready)."""

from __future__ import annotations

from typing import Any

import pytest
from controlplane_kit import Kube, PodDriver, wait_for

pytestmark = [pytest.mark.controlplane, pytest.mark.timeout(300)]

GROUP, VERSION, PLURAL = "kubeinfer.io", "v1alpha1", "inferenceservices"


def _cr(name: str, ns: str, spec: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations or {}},
        "spec": spec,
    }


SPEC = {"model": {"format": "sklearn", "uri": "./model.joblib"}, "autoscaling": {"policy": "none"}}


def test_the_api_server_rejects_bad_specs_with_the_messages_of_validate(
    kube: Kube, crd_installed: str, namespace: str
) -> None:
    from kubernetes import client

    from kubeinfer.spec import SpecError, validate_spec

    bounds = {**SPEC, "autoscaling": {"minReplicas": 5, "maxReplicas": 2}}
    with pytest.raises(client.ApiException) as e:
        kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _cr("bad", namespace, bounds))
    assert e.value.status == 422
    with pytest.raises(SpecError) as v:
        validate_spec(_cr("bad", namespace, bounds), "x")
    cli_message = v.value.errors[0].message  # "minReplicas (5) is larger than maxReplicas (2)"
    assert "is larger than maxReplicas" in cli_message
    assert "minReplicas is larger than maxReplicas" in e.value.body, e.value.body  # the same words from both

    typed = {**SPEC, "autoscaling": {"maxReplicas": "many"}}
    with pytest.raises(client.ApiException) as e:
        kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _cr("bad2", namespace, typed))
    assert e.value.status == 422 and "maxReplicas" in e.value.body

    # Left out, the bounds take their defaults (1 and 1): accepted; and maxReplicas alone below the default min is
    # refused by the same rule.
    kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _cr("ok", namespace, SPEC))
    low = {**SPEC, "autoscaling": {"minReplicas": 3}}
    with pytest.raises(client.ApiException) as e:
        kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _cr("bad3", namespace, low))
    assert e.value.status == 422 and "minReplicas is larger than maxReplicas" in e.value.body


def test_the_operator_does_not_roll_out_again_without_a_spec_change(
    kube: Kube, crd_installed: str, namespace: str
) -> None:
    """Reconciles after tools rewrite their bookkeeping annotations (kubectl's last-applied configuration, kopf's
    diff base and progress) keep the Deployment at its generation; a spec change rolls it exactly once."""
    from kubeinfer.kube.api import connect
    from kubeinfer.kube.operator import reconcile

    api = connect()
    body = kube.custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        _cr("svc", namespace, SPEC, {"kubectl.kubernetes.io/last-applied-configuration": '{"v": 1}', "team": "ml"}),
    )
    reconcile(body, api, "2026-01-01T00:00:00Z")
    dep = wait_for("the Deployment", lambda: kube.apps.read_namespaced_deployment("svc", namespace))
    assert dep.metadata.generation == 1
    assert dep.spec.template.metadata.annotations.get("team") == "ml" or dep.metadata.annotations.get("team") == "ml"
    for i in range(4):
        patch = {
            "metadata": {
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": f'{{"v": {i + 2}}}',
                    "kubeinfer.io/last-handled-configuration": f'{{"spec": {i}}}',
                    "kubeinfer.io/reconcile": f'{{"started": "{i}"}}',
                }
            }
        }
        body = kube.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "svc", patch)
        reconcile(body, api, f"2026-01-01T00:00:0{i + 1}Z")
    assert kube.apps.read_namespaced_deployment("svc", namespace).metadata.generation == 1

    spec = {**SPEC, "batching": {"maxBatchSize": 16}}
    body = kube.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "svc", {"spec": spec})
    reconcile(body, api, "2026-01-01T00:01:00Z")
    reconcile(body, api, "2026-01-01T00:01:01Z")
    assert kube.apps.read_namespaced_deployment("svc", namespace).metadata.generation == 2


def _deploy(svc: Any, namespace: str) -> Any:
    from kubeinfer.kube.api import connect
    from kubeinfer.kube.deploy import execute, plan
    from kubeinfer.kube.render import RenderOptions, render

    api = connect()
    opts = RenderOptions(namespace=namespace, image="kubeinfer/test:never-pulled", monitoring=False)
    return api, execute(plan(render(svc, opts), api, name=svc.name, namespace=namespace), api)


def _spec(name: str, extra: str = "", autoscaling: str = "{policy: none}") -> Any:
    from kubeinfer.spec import loads_spec

    return loads_spec(
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\n"
        f"metadata: {{name: {name}}}\nspec:\n  model: {{format: sklearn, uri: ./model.joblib}}\n"
        f"  autoscaling: {autoscaling}\n" + extra
    )


def test_deploy_rolls_out_to_ready_and_reapplying_changes_nothing(kube: Kube, namespace: str, pods: PodDriver) -> None:
    from kubeinfer.kube.api import SystemClock
    from kubeinfer.kube.deploy import observe, wait_rollout

    pods.add_node(f"cpu-{namespace}")
    svc = _spec("web", "  replicas: 2\n")
    api, applied = _deploy(svc, namespace)
    assert {o["kind"] for o in applied} >= {"Deployment", "Service", "ConfigMap"}
    assert observe(api, "web", namespace).phase != "Ready"  # no pod is Ready yet
    wait_for(
        "2 pods bound by the scheduler and marked Ready",
        lambda: (pods.run_scheduled(namespace), _ready(kube, namespace) == 2)[1],
    )
    st = wait_rollout(api, "web", namespace, SystemClock(), timeout=60, poll=0.5)
    assert st.phase == "Ready" and st.ready == 2, st
    # Controllers write the Deployment's status meanwhile: compare with the objects as they are just before.
    versions = {
        (o["kind"], o["metadata"]["name"]): api.get(o["apiVersion"], o["kind"], o["metadata"]["name"], namespace)[
            "metadata"
        ]["resourceVersion"]
        for o in applied
    }
    _, again = _deploy(svc, namespace)
    assert {(o["kind"], o["metadata"]["name"]): o["metadata"]["resourceVersion"] for o in again} == versions


def _ready(kube: Kube, namespace: str) -> int:
    return sum(
        any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))
        for p in kube.core.list_namespaced_pod(namespace).items
    )


def test_gpu_replicas_land_on_gpu_nodes_and_too_many_gpus_are_reported_from_the_scheduler(
    kube: Kube, namespace: str, pods: PodDriver
) -> None:
    from kubeinfer.kube.deploy import observe
    from kubeinfer.kube.names import SERVICE_LABEL

    cpu = pods.add_node(f"cpu-{namespace}")
    gpu = pods.add_node(
        f"gpu-{namespace}",
        extra={"nvidia.com/gpu": "1"},
        labels={"nvidia.com/gpu.product": "NVIDIA-L4", "nvidia.com/gpu.present": "true"},
    )
    api, _ = _deploy(_spec("one", "  resources: {gpu: {count: 1}}\n"), namespace)
    pod = wait_for(
        "the GPU pod to be bound",
        lambda: next((p for p in kube.core.list_namespaced_pod(namespace, label_selector=f"{SERVICE_LABEL}=one").items
                      if p.spec.node_name), None),
    )  # fmt: skip
    assert pod.spec.node_name == gpu != cpu

    api, _ = _deploy(_spec("two", "  resources: {gpu: {count: 2}}\n"), namespace)

    def unschedulable() -> Any:
        st = observe(api, "two", namespace)
        return st if "nvidia.com/gpu" in st.message else None

    st = wait_for("the scheduler's refusal in the rollout status", unschedulable)
    assert st.phase != "Ready" and "Insufficient nvidia.com/gpu" in st.message, st


def test_the_disruption_budget_is_honoured_by_the_eviction_api(kube: Kube, namespace: str, pods: PodDriver) -> None:
    """render's PodDisruptionBudget (maxUnavailable 1): the real disruption controller allows one eviction of three
    Ready replicas and refuses (429) the next while the first one's replacement is not Ready."""
    from kubernetes import client

    pods.add_node(f"cpu-{namespace}")
    _deploy(_spec("pdb", "  replicas: 3\n"), namespace)
    wait_for("3 Ready pods", lambda: (pods.run_scheduled(namespace), _ready(kube, namespace) == 3)[1])
    policy = client.PolicyV1Api(kube.api_client)

    def one_allowed() -> Any:
        b = policy.read_namespaced_pod_disruption_budget("pdb", namespace)
        return b if b.status and b.status.disruptions_allowed == 1 else None

    pdb = wait_for("the disruption controller to allow one disruption", one_allowed)
    assert pdb.spec.max_unavailable == 1
    names = [p.metadata.name for p in kube.core.list_namespaced_pod(namespace).items]

    def evict(name: str) -> int:
        body = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=namespace))
        try:
            kube.core.create_namespaced_pod_eviction(name, namespace, body)
            return 201
        except client.ApiException as e:
            return int(e.status)

    assert evict(names[0]) == 201
    assert evict(names[1]) == 429  # a second disruption would leave fewer than 2 of 3 available


def test_the_rendered_hpa_is_read_by_the_real_hpa_controller(kube: Kube, namespace: str, pods: PodDriver) -> None:
    from kubernetes import client

    pods.add_node(f"cpu-{namespace}")
    _deploy(_spec("auto", autoscaling="{policy: hpa, metric: cpu, target: 70, maxReplicas: 4}"), namespace)
    hpa_api = client.AutoscalingV2Api(kube.api_client)
    hpa = wait_for(
        "the HPA controller's conditions",
        lambda: (lambda h: h if h.status and h.status.conditions else None)(
            hpa_api.read_namespaced_horizontal_pod_autoscaler("auto", namespace)
        ),
    )
    kinds = {c.type: c for c in hpa.status.conditions}
    # The controller found the Deployment through the scale subresource; without a metrics API it says why it
    # cannot compute a recommendation, in Kubernetes' own words.
    assert kinds["AbleToScale"].status == "True", kinds
    assert hpa.spec.scale_target_ref.kind == "Deployment" and hpa.spec.scale_target_ref.name == "auto"


@pytest.mark.slow  # 35-125 s: opt-in (-m slow), to keep the default run within its time budget
def test_a_failed_node_s_replicas_are_replaced_on_healthy_nodes(kube: Kube, namespace: str, pods: PodDriver) -> None:
    """Stop one node's heartbeats: the real node-lifecycle controller marks it NotReady and taints it, the replicas
    there are evicted after the spec's ``rollout.nodeFailureSeconds`` (3 s here, 300 s by Kubernetes' default),
    and the Deployment controller and scheduler put their replacements on the healthy node."""
    import time

    a = pods.add_node(f"a-{namespace}")
    b = pods.add_node(f"b-{namespace}")
    pods.heartbeat()
    _deploy(_spec("ha", "  replicas: 2\n  rollout: {nodeFailureSeconds: 3}\n"), namespace)
    wait_for("2 Ready pods", lambda: (pods.run_scheduled(namespace), _ready(kube, namespace) == 2)[1])
    # Topology spread is a preference (ScheduleAnyway): fail the node that holds the first replica.
    placed = [p.spec.node_name for p in kube.core.list_namespaced_pod(namespace).items]
    failed = placed[0]
    healthy = b if failed == a else a
    failed_at = time.monotonic()
    pods.fail(failed)

    def replaced() -> bool:
        pods.run_scheduled(namespace)
        live = [p for p in kube.core.list_namespaced_pod(namespace).items if p.metadata.deletion_timestamp is None]
        ready_on_b = [
            p for p in live
            if p.spec.node_name == healthy and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        ]  # fmt: skip
        return len(ready_on_b) == 2

    wait_for("both replicas Ready on the healthy node", replaced, timeout=180)
    took = time.monotonic() - failed_at
    node = kube.core.read_node(failed)
    assert any(t.key.startswith("node.kubernetes.io/") for t in node.spec.taints or []), node.spec.taints
    # node-monitor grace (50 s by default) + toleration 3 s + scheduling: well under Kubernetes' default 5 minutes.
    assert took < 50 + 3 + 60, took


GPU_CASES = [
    ("whole", "{count: 1}", None),
    ("whole-gke", "{count: 1}", "gke"),
    ("whole-eks", "{count: 1}", "eks"),
    ("whole-aks", "{count: 1}", "aks"),
    ("mig", "{sharing: mig, migProfile: 1g.10gb}", None),
    ("time-slicing-gke", "{sharing: time-slicing, fraction: 0.25}", "gke"),
    ("mps", "{sharing: mps, fraction: 0.5}", None),
    ("amd", "{count: 1, vendor: amd}", None),
    ("gaudi", "{count: 1, vendor: intel}", None),
]


def _node_for(pod_spec: dict[str, Any]) -> tuple[dict[str, str], dict[str, str], list[dict[str, str]]]:
    """What a node must have for this pod, read from the rendered pod spec: its extended resources, the labels its
    node selector and required affinity ask for, and the taints it tolerates (a GPU node pool's)."""
    limits = pod_spec["containers"][0]["resources"].get("limits", {})
    extra = {k: "8" for k in limits if k not in ("cpu", "memory", "ephemeral-storage")}
    labels = dict(pod_spec.get("nodeSelector") or {})
    required = (
        (pod_spec.get("affinity") or {}).get("nodeAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution")
    )
    for term in (required or {}).get("nodeSelectorTerms", [])[:1]:
        for e in term.get("matchExpressions", []):
            if e["operator"] == "In":
                labels[e["key"]] = e["values"][0]
            elif e["operator"] == "Exists":
                labels[e["key"]] = "true"
    taints = [
        {"key": t["key"], "value": t.get("value", "present"), "effect": t["effect"]}
        for t in pod_spec.get("tolerations") or []
        if t.get("effect") == "NoSchedule" and t.get("key")
    ]
    return extra, labels, taints


@pytest.mark.parametrize(("case", "gpu", "cloud"), GPU_CASES, ids=[c[0] for c in GPU_CASES])
def test_every_gpu_mode_is_placed_by_the_real_scheduler_on_the_node_that_fits(
    kube: Kube, namespace: str, pods: PodDriver, case: str, gpu: str, cloud: str | None
) -> None:
    """For each GPU mode and cloud preset, the real scheduler binds the rendered pod to the node with the device
    resource, labels and taints it asks for -- not to a node of the same pool without the resource, nor to one with
    the resource but not the labels."""
    from kubeinfer.kube.api import connect
    from kubeinfer.kube.deploy import execute, plan
    from kubeinfer.kube.names import SERVICE_LABEL
    from kubeinfer.kube.render import RenderOptions, render

    svc = _spec("g", f"  resources: {{gpu: {gpu}}}\n")
    objs = render(svc, RenderOptions(namespace=namespace, image="kubeinfer/test:never-pulled", monitoring=False,
                                     cloud=cloud))  # fmt: skip
    # The device plugin's sharing config (time-slicing, MPS) goes to the GPU operator's namespace: the admin's.
    objs = [o for o in objs if o["metadata"].get("namespace", namespace) == namespace]
    pod_spec = next(o for o in objs if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    extra, labels, taints = _node_for(pod_spec)
    device = {"mig": "nvidia.com/mig-1g.10gb", "amd": "amd.com/gpu", "gaudi": "habana.ai/gaudi"}.get(
        case, "nvidia.com/gpu"
    )
    assert device in extra, (case, extra)
    fits = pods.add_node(f"fits-{namespace}", extra=extra, labels=labels, taints=taints)
    pods.add_node(f"nodev-{namespace}", labels=labels, taints=taints)  # the pool's labels, no device
    if labels:
        pods.add_node(f"nolabel-{namespace}", extra=extra, taints=taints)  # the device, not the labels
    api = connect()
    execute(plan(objs, api, name=svc.name, namespace=namespace), api)
    pod = wait_for(
        f"{case}: the pod to be bound",
        lambda: next((p for p in kube.core.list_namespaced_pod(namespace, label_selector=f"{SERVICE_LABEL}=g").items
                      if p.spec.node_name), None),
    )  # fmt: skip
    assert pod.spec.node_name == fits, (case, pod.spec.node_name, extra, labels)


def test_a_rollout_past_its_progress_deadline_is_reported_with_its_cause(kube: Kube, namespace: str) -> None:
    """No node can take the pod: the real Deployment controller gives up after ``progressDeadlineSeconds`` and the
    rollout status says so, terminal, with the pod's cause as the scheduler wrote it."""
    from kubeinfer.kube.deploy import observe

    api, _ = _deploy(_spec("stuck", "  rollout: {progressDeadlineSeconds: 3}\n"), namespace)
    st = wait_for(
        "the progress deadline", lambda: (lambda s: s if s.terminal else None)(observe(api, "stuck", namespace))
    )
    # The deadline, and the cause Kubernetes gives for the pod (what `kubectl describe pod` would show), in one line.
    assert st.phase == "Failed" and st.reason == "Unschedulable", st
    assert "progress deadline" in st.message and "no nodes available to schedule pods" in st.message, st
