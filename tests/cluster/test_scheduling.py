"""Scheduling beyond GPU pools, by the real kube-scheduler: taints and tolerations on GPU nodes, and render's topology
spread constraints (no kubelet: pods are only bound, which is all these checks need)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from controlplane_kit import Kube, PodDriver, wait_for

pytestmark = [pytest.mark.controlplane, pytest.mark.timeout(300)]

GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


def _svc(name: str, body: str) -> Any:
    from kubeinfer.spec import loads_spec

    return loads_spec(
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\n"
        f"metadata: {{name: {name}}}\nspec:\n  model: {{format: sklearn, uri: ./model.joblib}}\n"
        "  autoscaling: {policy: none}\n" + body
    )


def _deploy(svc: Any, namespace: str) -> tuple[Any, list[dict[str, Any]]]:
    from kubeinfer.kube.api import connect
    from kubeinfer.kube.deploy import execute, plan
    from kubeinfer.kube.render import RenderOptions, render

    api = connect()
    objs = render(svc, RenderOptions(namespace=namespace, image="kubeinfer/test:never-pulled", monitoring=False))
    execute(plan(objs, api, name=svc.name, namespace=namespace), api)
    return api, objs


def _pods(kube: Kube, namespace: str, name: str) -> list[Any]:
    from kubeinfer.kube.names import SERVICE_LABEL

    return list(kube.core.list_namespaced_pod(namespace, label_selector=f"{SERVICE_LABEL}={name}").items)


def _bound(kube: Kube, namespace: str, name: str, n: int) -> list[Any]:
    return wait_for(
        f"{n} pods of {name} bound",
        lambda: (lambda ps: ps if len(ps) == n and all(p.spec.node_name for p in ps) else None)(
            _pods(kube, namespace, name)
        ),
    )


def test_a_tainted_gpu_node_takes_only_pods_rendered_with_the_toleration(
    kube: Kube, namespace: str, pods: PodDriver
) -> None:
    """GPU nodes carry ``nvidia.com/gpu=present:NoSchedule`` (GKE does it, the GPU operator's docs advise it): render
    tolerates it for GPU replicas only. A CPU replica never lands there -- with the GPU node alone it stays Pending and
    the status gives the scheduler's reason -- and a GPU node with a taint render does not tolerate is refused too."""
    from kubeinfer.kube.deploy import observe

    gpu_node = pods.add_node(f"gpu-{namespace}", extra={"nvidia.com/gpu": "8"}, taints=[GPU_TAINT])
    api, objs = _deploy(_svc("gpu", "  resources: {gpu: {count: 1}}\n"), namespace)
    tolerations = next(o for o in objs if o["kind"] == "Deployment")["spec"]["template"]["spec"]["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations
    assert _bound(kube, namespace, "gpu", 1)[0].spec.node_name == gpu_node

    api, objs = _deploy(_svc("cpu", ""), namespace)
    assert "tolerations" not in next(o for o in objs if o["kind"] == "Deployment")["spec"]["template"]["spec"]

    def refused() -> Any:
        st = observe(api, "cpu", namespace)
        return st if "untolerated taint" in st.message else None

    st = wait_for("the scheduler's refusal of the CPU pod", refused)
    assert "0/1 nodes are available: 1 node(s) had untolerated taint(s)" in st.message and st.phase != "Ready", st
    assert not any(p.spec.node_name for p in _pods(kube, namespace, "cpu"))
    cpu_node = pods.add_node(f"cpu-{namespace}")
    assert _bound(kube, namespace, "cpu", 1)[0].spec.node_name == cpu_node

    # A second GPU pool reserved for something else: its taint is not one render tolerates.
    pods.add_node(f"reserved-{namespace}", extra={"nvidia.com/gpu": "8"},
                  taints=[GPU_TAINT, {"key": "dedicated", "value": "training", "effect": "NoSchedule"}])  # fmt: skip
    kube.core.patch_node(gpu_node, {"spec": {"unschedulable": True}})  # cordon the pool that fits
    api, _ = _deploy(_svc("gpu2", "  resources: {gpu: {count: 1}}\n"), namespace)

    def refused_gpu() -> Any:
        st = observe(api, "gpu2", namespace)
        return st if "untolerated taint" in st.message else None

    # The scheduler's words for the three nodes: the cordoned pool, the reserved pool's taint, the CPU node's lack.
    st = wait_for("the scheduler's refusal of the reserved pool", refused_gpu)
    assert "0/3 nodes are available" in st.message and "1 node(s) had untolerated taint(s)" in st.message, st
    assert "1 node(s) were unschedulable" in st.message and "Insufficient nvidia.com/gpu" in st.message, st
    assert not any(p.spec.node_name for p in _pods(kube, namespace, "gpu2"))


def test_topology_spread_puts_one_replica_in_each_zone_and_never_blocks_scheduling(
    kube: Kube, namespace: str, pods: PodDriver
) -> None:
    """render spreads replicas over hostnames and zones with ``maxSkew: 1`` and ``whenUnsatisfiable: ScheduleAnyway``:
    a scoring preference, not a filter. With three equal nodes in three zones the real scheduler puts the three
    replicas one per zone; what ScheduleAnyway guarantees is that a skew never leaves a replica Pending -- with two
    zones cordoned, three more replicas all go to the one node left (skew 3 > maxSkew), where DoNotSchedule would
    refuse them."""
    zones = {}
    for z in ("a", "b", "c"):
        zones[pods.add_node(f"{z}-{namespace}", labels={"topology.kubernetes.io/zone": f"zone-{z}"})] = f"zone-{z}"
    # A new node carries the node-lifecycle controller's not-ready taint until it sees the Ready condition: the three
    # must be open before the replicas come, or all of them go to the first node untainted.
    wait_for(
        "the nodes to lose the not-ready taint", lambda: not any(kube.core.read_node(n).spec.taints for n in zones)
    )
    _, objs = _deploy(_svc("spread", "  replicas: 3\n"), namespace)
    constraints = next(o for o in objs if o["kind"] == "Deployment")["spec"]["template"]["spec"][
        "topologySpreadConstraints"
    ]
    assert {(c["topologyKey"], c["maxSkew"], c["whenUnsatisfiable"]) for c in constraints} == {
        ("kubernetes.io/hostname", 1, "ScheduleAnyway"),
        ("topology.kubernetes.io/zone", 1, "ScheduleAnyway"),
    }
    placed = Counter(zones[p.spec.node_name] for p in _bound(kube, namespace, "spread", 3))
    assert placed == Counter({"zone-a": 1, "zone-b": 1, "zone-c": 1}), placed

    for node in list(zones)[1:]:
        kube.core.patch_node(node, {"spec": {"unschedulable": True}})
    kube.apps.patch_namespaced_deployment_scale("spread", namespace, {"spec": {"replicas": 6}})
    placed = Counter(zones[p.spec.node_name] for p in _bound(kube, namespace, "spread", 6))
    assert placed == Counter({"zone-a": 4, "zone-b": 1, "zone-c": 1}), placed
