"""How long one read of the cluster dashboard's source takes (``ClusterSource.read``: six list calls and the status
documents), against the control plane in ``$KUBECONFIG`` (e.g. ``eval "$(../shared/k8s/control-plane.sh env)"``).

It creates N InferenceServices (policy none, 2 replicas) in a new namespace, applies their children with the
operator's ``reconcile``, marks their pods Running (no kubelet: a fake node, as tests/cluster does), times 20 reads
and deletes what it made.

    .venv/bin/python bench/dashboard/cluster_read.py 20
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "cluster"))

from controlplane_kit import Kube, PodDriver, wait_for
from kubernetes import client, config

from kubeinfer.kube.api import connect
from kubeinfer.kube.crd import crd
from kubeinfer.kube.dashboard_source import ClusterSource
from kubeinfer.kube.operator import reconcile


def main(n: int) -> None:
    kc = os.environ["KUBECONFIG"]
    c = config.new_client_from_config(kc)
    kube = Kube(c, client.CoreV1Api(c), client.AppsV1Api(c), client.ApiextensionsV1Api(c),
                client.RbacAuthorizationV1Api(c), client.CustomObjectsApi(c), client.CoordinationV1Api(c))  # fmt: skip
    try:
        kube.ext.create_custom_resource_definition(crd())
    except client.ApiException as e:
        if e.status != 409:
            raise
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    kube.core.create_namespace({"metadata": {"name": ns}})
    api = connect()
    pods = PodDriver(kube)
    try:
        for i in range(n):
            body = {
                "apiVersion": "kubeinfer.io/v1alpha1",
                "kind": "InferenceService",
                "metadata": {"name": f"s{i}", "namespace": ns},
                "spec": {"model": {"format": "sklearn", "uri": "./m.joblib"}, "autoscaling": {"policy": "none"},
                         "replicas": 2},
            }  # fmt: skip
            created = wait_for("the CRD served", lambda b=body: _create(kube, ns, b))
            r = reconcile(dict(created), api, "2026-01-01T00:00:00Z")
            api.patch_status("kubeinfer.io/v1alpha1", "InferenceService", f"s{i}", ns, r.status,
                             field_manager="kubeinfer-operator")  # fmt: skip
        pods.add_node(f"n-{ns}", cpu="400", memory="1600Gi")
        wait_for("the pods", lambda: len(kube.core.list_namespaced_pod(ns).items) == 2 * n, 120)
        wait_for("the pods running", lambda: pods.run_scheduled(ns) >= 0 and all(
            p.status.phase == "Running" for p in kube.core.list_namespaced_pod(ns).items), 120)  # fmt: skip
        source = ClusterSource(api, ns)
        times = []
        for _ in range(20):
            t = time.perf_counter()
            out = source.read()
            times.append(time.perf_counter() - t)
        print(
            f"{n} services, {sum(len(s['replicas']) for s in out)} pods, {sum(len(s['events']) for s in out)} events: "
            f"read median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms"
        )
    finally:
        pods.cleanup()
        kube.core.delete_namespace(ns)


def _create(kube: Kube, ns: str, body: dict[str, object]) -> object:
    try:
        return kube.custom.create_namespaced_custom_object("kubeinfer.io", "v1alpha1", ns, "inferenceservices", body)
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
