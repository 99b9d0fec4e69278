"""Helpers for the control-plane tests: the official client's APIs, a poll helper, and the kwok-style pod driver
(see conftest.py for the control plane itself)."""

from __future__ import annotations

import contextlib
import datetime
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Kube", "PodDriver", "any_pod_ready", "hpa_metric_refused", "served", "wait_for"]


@dataclass
class Kube:
    """The official client's APIs for one control plane."""

    api_client: Any
    core: Any
    apps: Any
    ext: Any
    rbac: Any
    custom: Any
    coordination: Any


def wait_for(what: str, fn: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def any_pod_ready(kube: Kube, namespace: str) -> bool:
    return any(
        any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        for p in kube.core.list_namespaced_pod(namespace).items
    )


def hpa_metric_refused(kube: Kube, namespace: str, name: str) -> Any:
    """Wait for the real HPA controller's ``ScalingActive: False`` condition on HPA ``name`` (no metrics API serves
    the metric here) and return it."""
    from kubernetes import client

    hpas = client.AutoscalingV2Api(kube.api_client)

    def refused() -> Any:
        h = hpas.read_namespaced_horizontal_pod_autoscaler(name, namespace)
        cond = {c.type: c for c in (h.status.conditions or [])} if h.status else {}
        active = cond.get("ScalingActive")
        return active if active is not None and active.status == "False" else None

    active = wait_for("the HPA controller's verdict on the metric", refused)
    print(f"\nScalingActive False {active.reason}: {active.message}")
    return active


def served(kube: Kube) -> bool:
    from kubernetes import client

    try:
        kube.custom.list_cluster_custom_object("kubeinfer.io", "v1alpha1", "inferenceservices")
        return True
    except client.ApiException as e:
        if e.status == 404:
            return False
        raise


class PodDriver:
    """The kubelet's part, kwok-style: fake nodes, and scheduled pods marked Running and Ready."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.nodes: list[str] = []
        self.alive: set[str] = set()
        self._beat: threading.Thread | None = None
        self._stop = threading.Event()

    def heartbeat(self, every: float = 2.0) -> None:
        """Renew the node Leases (kube-node-lease) and Ready conditions of every node not failed with
        :meth:`fail`, as kubelets do, in a background thread: without it the real node-lifecycle controller marks
        every fake node NotReady after its grace period."""
        if self._beat is not None:
            return

        def loop() -> None:
            while not self._stop.wait(every):
                for name in list(self.alive):
                    with contextlib.suppress(Exception):
                        self._renew(name)

        for name in list(self.alive):
            self._renew(name)
        self._beat = threading.Thread(target=loop, name="kwok-heartbeat", daemon=True)
        self._beat.start()

    def _renew(self, name: str) -> None:
        from kubernetes import client

        now = datetime.datetime.now(datetime.UTC)
        spec = client.V1LeaseSpec(holder_identity=name, lease_duration_seconds=40, renew_time=now)
        try:
            self.kube.coordination.patch_namespaced_lease(
                name, "kube-node-lease", {"spec": {"renewTime": now.isoformat().replace("+00:00", "Z")}}
            )
        except client.ApiException as e:
            if e.status != 404:
                raise
            self.kube.coordination.create_namespaced_lease(
                "kube-node-lease", client.V1Lease(metadata=client.V1ObjectMeta(name=name), spec=spec)
            )
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        self.kube.core.patch_node_status(
            name,
            {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                        "message": "fake", "lastHeartbeatTime": stamp}]}},
        )  # fmt: skip

    def fail(self, name: str) -> None:
        """Stop renewing ``name``: to the control plane, its kubelet went silent."""
        self.alive.discard(name)

    def add_node(
        self,
        name: str,
        *,
        cpu: str = "16",
        memory: str = "64Gi",
        extra: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        taints: list[dict[str, str]] | None = None,
    ) -> str:
        capacity = {"cpu": cpu, "memory": memory, "pods": "110", **(extra or {})}
        body = {
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": {"taints": taints or []},
        }
        self.kube.core.create_node(body)
        self.nodes.append(name)
        self.alive.add(name)
        self.kube.core.patch_node_status(
            name,
            {
                "status": {
                    "capacity": capacity,
                    "allocatable": capacity,
                    "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "fake"}],
                }
            },
        )
        return name

    def run_scheduled(self, namespace: str) -> int:
        """Mark every pod the scheduler bound (and not yet Ready) Running and Ready; how many were marked."""
        marked = 0
        for pod in self.kube.core.list_namespaced_pod(namespace).items:
            if not pod.spec.node_name or pod.metadata.deletion_timestamp is not None:
                continue
            ready = any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
            if ready:
                continue
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self.kube.core.patch_namespaced_pod_status(
                pod.metadata.name,
                namespace,
                {
                    "status": {
                        "phase": "Running",
                        "podIP": f"10.1.0.{marked + 2}",
                        "startTime": now,
                        "conditions": [
                            {"type": "PodScheduled", "status": "True"},
                            {"type": "Initialized", "status": "True"},
                            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                            {"type": "Ready", "status": "True", "lastTransitionTime": now},
                        ],
                        "containerStatuses": [
                            {
                                "name": c.name,
                                "ready": True,
                                "restartCount": 0,
                                "image": c.image,
                                "imageID": "",
                                "state": {"running": {"startedAt": now}},
                            }
                            for c in pod.spec.containers
                        ],
                    }
                },
            )
            marked += 1
        return marked

    def cleanup(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=10)
        for name in self.nodes:
            with contextlib.suppress(Exception):
                self.kube.core.delete_node(name)
