"""Upgrades against the real Deployment controller: `kubeinfer deploy` of a new image over a running service rolls the
pods (the pod driver marks each new one Ready, as a kubelet would) and, sampled throughout, the available replicas
never drop below what the Deployment's rolling-update rule and the PodDisruptionBudget promise; and the CRD serves
the one version kubeinfer reads and writes."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from controlplane_kit import Kube, PodDriver, wait_for
from typer.testing import CliRunner

pytestmark = [pytest.mark.controlplane, pytest.mark.timeout(300)]


def _write(path: Path, image: str, replicas: int) -> Path:
    path.write_text(
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: up}\nspec:\n"
        f"  image: {image}\n  replicas: {replicas}\n"
        "  model: {format: sklearn, uri: ./model.joblib}\n  autoscaling: {policy: none}\n"
    )
    return path


def _deploy(spec: Path, namespace: str) -> None:
    from kubeinfer.cli.app import app

    r = CliRunner().invoke(app, ["deploy", str(spec), "-n", namespace, "--no-wait"])
    assert r.exit_code == 0, r.output


def _serving(kube: Kube, namespace: str) -> list[Any]:
    """Pods Ready and not terminating: what the Service's endpoints would route to."""
    return [p for p in kube.core.list_namespaced_pod(namespace).items if _is_serving(p)]


class PodWatch:
    """Every change of the namespace's pods, in the API server's order (a watch from a list's resourceVersion): the
    number of serving pods after each event -- every state the rollout passed through, not samples of it."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        pods = kube.core.list_namespaced_pod(namespace)
        self._serving = {p.metadata.name: _is_serving(p) for p in pods.items}
        self.counts = [sum(self._serving.values())]
        self._rv = pods.metadata.resource_version
        self._kube, self._namespace = kube, namespace
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="pod-watch", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        from kubernetes import watch

        while not self._done.is_set():
            w = watch.Watch()
            for ev in w.stream(
                self._kube.core.list_namespaced_pod, self._namespace, resource_version=self._rv, timeout_seconds=1
            ):
                p = ev["object"]
                self._rv = p.metadata.resource_version
                if ev["type"] == "DELETED":
                    self._serving.pop(p.metadata.name, None)
                else:
                    self._serving[p.metadata.name] = _is_serving(p)
                self.counts.append(sum(self._serving.values()))

    def stop(self) -> list[int]:
        time.sleep(1.5)  # events already written reach the stream
        self._done.set()
        self._thread.join(timeout=10)
        return self.counts


def _is_serving(p: Any) -> bool:
    return p.metadata.deletion_timestamp is None and any(
        c.type == "Ready" and c.status == "True" for c in p.status.conditions or []
    )


def test_a_new_image_rolls_the_pods_and_availability_never_drops_below_the_budget(
    kube: Kube, namespace: str, pods: PodDriver, tmp_path: Path, record_property: Any
) -> None:
    from kubernetes import client

    from kubeinfer.kube.api import SystemClock, connect
    from kubeinfer.kube.deploy import wait_rollout

    pods.add_node(f"cpu-{namespace}")
    spec = _write(tmp_path / "up.yaml", "registry.example/iris:1", 3)
    _deploy(spec, namespace)
    wait_for(
        "3 Ready pods of version 1", lambda: (pods.run_scheduled(namespace), len(_serving(kube, namespace)) == 3)[1]
    )
    api = connect()
    assert wait_rollout(api, "up", namespace, SystemClock(), timeout=60, poll=0.5).phase == "Ready"

    dep = kube.apps.read_namespaced_deployment("up", namespace)
    rolling = dep.spec.strategy.rolling_update
    max_surge, max_unavailable = int(rolling.max_surge), int(rolling.max_unavailable)
    pdb = client.PolicyV1Api(kube.api_client).read_namespaced_pod_disruption_budget("up", namespace)
    replicas = 3
    floor = replicas - max_unavailable  # the Deployment's rule (maxUnavailable 0 by default: 3)
    budget = replicas - int(pdb.spec.max_unavailable)  # the PDB's (maxUnavailable 1: 2)
    assert floor >= budget

    watcher = PodWatch(kube, namespace)
    _deploy(_write(spec, "registry.example/iris:2", 3), namespace)
    started = time.monotonic()
    lowest_reported = replicas
    samples = 0
    while True:
        pods.run_scheduled(namespace)
        serving = _serving(kube, namespace)
        dep = kube.apps.read_namespaced_deployment("up", namespace)
        s = dep.status
        lowest_reported = min(lowest_reported, s.available_replicas or 0)
        samples += 1
        done = (
            (s.observed_generation or 0) >= dep.metadata.generation
            and s.updated_replicas == replicas
            and s.replicas == replicas
            and s.available_replicas == replicas
        )
        if done and all(p.spec.containers[0].image.endswith(":2") for p in serving) and len(serving) == replicas:
            break
        assert time.monotonic() - started < 120, f"rollout not done: {s}"
        time.sleep(0.05)
    took = time.monotonic() - started
    counts = watcher.stop()
    lowest, highest = min(counts), max(counts)
    record_property("rollout_pod_events", len(counts))
    record_property("rollout_min_serving", lowest)
    record_property("rollout_min_available_reported", lowest_reported)
    print(f"\nrollout of 3 replicas in {took:.1f} s: serving pods after each of {len(counts)} pod events "
          f"{counts}; fewest {lowest}, most {highest}; fewest available in the Deployment's status over "
          f"{samples} polls {lowest_reported}")  # fmt: skip
    assert lowest >= floor >= budget, (counts, floor, budget)
    assert lowest_reported >= floor, lowest_reported
    assert highest == replicas + max_surge, counts  # the surge was used: the rollout really went through the pods
    assert wait_rollout(api, "up", namespace, SystemClock(), timeout=60, poll=0.5).phase == "Ready"

    # A replica count is not something the server reads: changing it scales the ReplicaSet, it does not roll pods.
    template_hash = kube.apps.read_namespaced_deployment("up", namespace).spec.template.metadata.annotations
    _deploy(_write(spec, "registry.example/iris:2", 4), namespace)
    dep = kube.apps.read_namespaced_deployment("up", namespace)
    assert dep.spec.replicas == 4 and dep.spec.template.metadata.annotations == template_hash
    wait_for("the 4th replica", lambda: (pods.run_scheduled(namespace), len(_serving(kube, namespace)) == 4)[1])
    images = {p.spec.containers[0].image for p in _serving(kube, namespace)}
    assert images == {"registry.example/iris:2"}


def test_the_crd_serves_and_stores_exactly_the_version_kubeinfer_reads(kube: Kube, crd_installed: str) -> None:
    """One version (see docs/kubernetes.md, "CRD versions"): the spec files, the operator's watch and the stored
    objects all use v1alpha1; another version is not served (404), so nothing needs converting."""
    from kubernetes import client

    from kubeinfer.kube.crd import VERSION
    from kubeinfer.spec.service import API_VERSION

    crd = kube.ext.read_custom_resource_definition(crd_installed)
    assert [(v.name, v.served, v.storage) for v in crd.spec.versions] == [(VERSION, True, True)]
    assert crd.status.stored_versions == [VERSION] and f"kubeinfer.io/{VERSION}" == API_VERSION
    assert crd.spec.conversion is None or crd.spec.conversion.strategy == "None"
    with pytest.raises(client.ApiException) as e:
        kube.custom.list_cluster_custom_object("kubeinfer.io", "v1beta1", "inferenceservices")
    assert e.value.status == 404
