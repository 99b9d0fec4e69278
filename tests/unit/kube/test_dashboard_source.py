"""The cluster dashboard's status documents, from objects as the API server returns them (pure), and the source's
reads through the in-memory KubeApi: pod states in the local replicas' words, revisions from the ReplicaSets, the
service's events only, the autoscaler's reason per policy, a bad spec, what is scraped."""

from __future__ import annotations

from typing import Any

from kubeinfer.kube.dashboard_source import UNREACHABLE, ClusterSource, service_status
from kubeinfer.testing import FakeKubeApi

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
T0 = "2026-01-01T00:00:00Z"
LABELS = {"app.kubernetes.io/managed-by": "kubeinfer"}


def isvc(name: str = "iris", policy: str = "kpa", status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubeinfer.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": "ml", "generation": 3, "creationTimestamp": T0},
        "spec": {
            "model": {"format": "sklearn", "uri": "./m.joblib", "version": "2"},
            "autoscaling": {"policy": policy, "minReplicas": 1, "maxReplicas": 5},
            **spec,
        },
        "status": status or {},
    }


def labels(service: str, **extra: str) -> dict[str, str]:
    return {**LABELS, "kubeinfer.io/service": service, **extra}


def deployment(name: str = "iris", replicas: int = 2, ready: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "ml", "generation": 1, "labels": labels(name)},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app.kubernetes.io/name": name}}},
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
        },
    }


def replicaset(name: str, hash_: str, revision: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{name}-{hash_}",
            "namespace": "ml",
            "labels": labels(name, **{"pod-template-hash": hash_}),
            "annotations": {"deployment.kubernetes.io/revision": str(revision)},
        },
    }


def pod(name: str, service: str = "iris", hash_: str = "7d9f8c6b5", **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "ml",
            "uid": f"uid-{name}",
            "creationTimestamp": T0,
            "labels": labels(service, **{"pod-template-hash": hash_, "app.kubernetes.io/version": "2"}),
        },
        "spec": {
            "nodeName": "n1",
            "containers": [{"name": "server", "ports": [{"name": "http", "containerPort": 9000}]}],
        },
        "status": status,
    }


RUNNING = {
    "phase": "Running",
    "podIP": "10.0.0.5",
    "startTime": "2025-12-31T23:59:00Z",
    "conditions": [{"type": "Ready", "status": "True"}],
    "containerStatuses": [{"name": "server", "ready": True, "restartCount": 0, "state": {"running": {}}}],
}


def event(kind: str, name: str, reason: str, when: str = T0, **more: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{name}.{reason}", "namespace": "ml"},
        "involvedObject": {"kind": kind, "name": name, "namespace": "ml"},
        "reason": reason,
        "message": f"{reason} of {name}",
        "type": "Normal",
        "lastTimestamp": when,
        **more,
    }


def test_a_service_reads_as_the_local_status_with_its_namespace_conditions_and_rollout() -> None:
    cond = {"type": "Ready", "status": "True", "reason": "Available", "message": "2/2", "lastTransitionTime": T0}
    st = service_status(
        isvc(status={"conditions": [cond], "url": "http://iris.ml.svc.cluster.local:9000", "autoscaler": {
            "desiredReplicas": 2, "reason": "ScaleUp: 9 in flight",
            "details": {"current_rps": 12.5, "need_now": 3, "edited": "by hand", "flag": True}}}),
        [deployment()],
        [replicaset("iris", "7d9f8c6b5", 4)],
        [pod("iris-7d9f8c6b5-abcde", **RUNNING)],
        [],
        [],
        NOW,
    )  # fmt: skip
    assert (st["name"], st["namespace"], st["source"], st["revision"], st["version"]) == (
        "iris",
        "ml",
        "cluster",
        3,
        "2",
    )
    assert (st["desired"], st["ready_replicas"]) == (2, 1)
    assert st["conditions"] == [cond] and st["endpoint"]["http"] == "http://iris.ml.svc.cluster.local:9000"
    assert st["autoscaling"] == {
        "policy": "kpa", "min": 1, "max": 5, "reason": "ScaleUp: 9 in flight", "message": "", "buffering": False,
        "details": {"current_rps": 12.5, "need_now": 3.0},  # the numbers the operator wrote, nothing else
    }  # fmt: skip
    assert st["rollout_status"]["phase"] == "Progressing"  # 1 of 2 available
    (r,) = st["replicas"]
    assert (r["id"], r["state"], r["ready"], r["revision"], r["version"]) == (
        "iris-7d9f8c6b5-abcde",
        "Running",
        True,
        4,
        "2",
    )
    assert (r["ip"], r["port"], r["node"], r["age"]) == ("10.0.0.5", 9000, "n1", 60.0)
    assert st["created"] == NOW and st["spec"]["model"]["version"] == "2"


def test_pod_states_read_as_the_local_replicas_states_with_reason_and_last_exit() -> None:
    pods = [
        pod("iris-h-unsch", status=None, phase="Pending",
            conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                         "message": "0/3 nodes: Insufficient nvidia.com/gpu"}]),
        pod("iris-h-crash", phase="Running", podIP="10.0.0.6", conditions=[{"type": "Ready", "status": "False"}],
            containerStatuses=[{"name": "server", "ready": False, "restartCount": 4,
                                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]),
        pod("iris-h-pull", phase="Pending",
            containerStatuses=[{"name": "server", "ready": False, "restartCount": 0,
                                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}}]),
        pod("iris-h-start", phase="Running", podIP="10.0.0.7", conditions=[{"type": "Ready", "status": "False"}],
            containerStatuses=[{"name": "server", "ready": False, "restartCount": 0, "state": {"running": {}}}]),
        {**pod("iris-h-stop", **RUNNING), "metadata": {**pod("iris-h-stop")["metadata"], "deletionTimestamp": T0}},
        pod("iris-h-done", phase="Failed", reason="Evicted"),
    ]  # fmt: skip
    st = service_status(isvc(), [deployment()], [], pods, [], [], NOW)
    got = {r["id"]: (r["state"], r["reason"], r["restarts"]) for r in st["replicas"]}
    assert got == {
        "iris-h-unsch": ("Pending", "Unschedulable", 0),
        "iris-h-crash": ("CrashLoopBackOff", "CrashLoopBackOff", 4),
        "iris-h-pull": ("Pending", "ImagePullBackOff", 0),
        "iris-h-start": ("Starting", "", 0),
        "iris-h-stop": ("Terminating", "", 0),
        "iris-h-done": ("Terminated", "Evicted", 0),
    }
    crash = next(r for r in st["replicas"] if r["id"] == "iris-h-crash")
    assert crash["last_exit"] == {"code": 137, "reason": "OOMKilled", "message": ""}
    unsch = next(r for r in st["replicas"] if r["id"] == "iris-h-unsch")
    assert "Insufficient nvidia.com/gpu" in unsch["message"]
    # scraped: the pods whose server runs, at their address, by pod uid; the others have nothing to answer
    scraped = ClusterSource(FakeKubeApi(), "ml").scrape_list(st)
    assert scraped == [
        ("iris-h-start:uid-iris-h-start", 9000, "10.0.0.7"),
        ("iris-h-stop:uid-iris-h-stop", 9000, "10.0.0.5"),
    ]


def test_only_the_services_own_events_in_time_order_a_deleted_pods_included() -> None:
    events = [
        event("Deployment", "iris", "ScalingReplicaSet", "2026-01-01T00:00:02Z"),
        event("Pod", "iris-7d9f8c6b5-zzzzz", "Killing", "2026-01-01T00:00:01Z"),  # a pod deleted since
        event("InferenceService", "iris", "Reconciled", "2026-01-01T00:00:03Z"),
        event("HorizontalPodAutoscaler", "iris", "SuccessfulRescale", "2026-01-01T00:00:04Z", count=3),
        event("Deployment", "iris-canary", "ScalingReplicaSet", "2026-01-01T00:00:05Z"),
        event("Deployment", "iris-two", "ScalingReplicaSet"),  # another service, whose name starts the same
        event("Pod", "iris-two-7d9f8c6b5-abcde", "Scheduled"),
        event("Deployment", "other", "ScalingReplicaSet"),
        {**event("Deployment", "iris", "ScalingReplicaSet"), "metadata": {"name": "x", "namespace": "elsewhere"}},
    ]
    st = service_status(isvc(), [deployment()], [], [], events, [], NOW)
    assert [(e["kind"], e["object"], e["reason"]) for e in st["events"]] == [
        ("Pod", "iris-7d9f8c6b5-zzzzz", "Killing"),
        ("Deployment", "iris", "ScalingReplicaSet"),
        ("InferenceService", "iris", "Reconciled"),
        ("HorizontalPodAutoscaler", "iris", "SuccessfulRescale"),
        ("Deployment", "iris-canary", "ScalingReplicaSet"),
    ]
    assert st["events"][3]["count"] == 3 and st["events"][0]["time"] == NOW + 1


def hpa(**conds: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "iris", "namespace": "ml", "labels": labels("iris")},
        "status": {
            "currentReplicas": 2,
            "desiredReplicas": 3,
            "conditions": [{"type": t, "status": s, "reason": r, "message": m} for t, (s, r, m) in conds.items()],
        },
    }


def test_an_hpa_services_reason_is_what_stops_the_hpa_else_its_limit_else_its_last_rescale() -> None:
    def reason(h: dict[str, Any]) -> tuple[str, str]:
        st = service_status(isvc(policy="hpa"), [deployment()], [], [], [], [h], NOW)
        assert st["hpa"]["current"] == 2 and st["hpa"]["desired"] == 3
        return st["autoscaling"]["reason"], st["autoscaling"]["message"]

    able = ("True", "SucceededRescale", "scaled to 3")
    assert reason(hpa(AbleToScale=able, ScalingActive=("True", "ValidMetricFound", ""))) == (
        "SucceededRescale",
        "scaled to 3",
    )
    assert reason(hpa(AbleToScale=able, ScalingLimited=("True", "TooManyReplicas", "at max 5")))[0] == "TooManyReplicas"
    assert reason(hpa(AbleToScale=able, ScalingActive=("False", "FailedGetPodsMetric", "no metrics API"))) == (
        "FailedGetPodsMetric",
        "no metrics API",
    )
    # policy none: no reason of its own (the dashboard then takes the service's latest event)
    st = service_status(isvc(policy="none"), [deployment()], [], [], [], [hpa(AbleToScale=able)], NOW)
    assert st["autoscaling"]["reason"] == ""


def test_a_bad_spec_still_shows_with_the_error_and_without_a_deployment_nothing_is_desired() -> None:
    bad = isvc()
    bad["spec"]["batching"] = {"maxBatchSize": -1}
    st = service_status(bad, [], [], [], [], [], NOW)
    assert "batching.maxBatchSize" in st["spec_error"] and st["autoscaling"]["policy"] == "kpa"
    assert (st["desired"], st["ready_replicas"], st["replicas"]) == (0, 0, [])
    assert st["rollout_status"]["reason"] == "NotFound"
    # whatever the spec holds, the other services still show: one status never stops the read
    worse = isvc()
    worse["spec"]["autoscaling"] = {"policy": "kpa", "minReplicas": "many", "maxReplicas": True}
    worse["spec"]["server"] = {"port": "http"}
    st = service_status(worse, [], [], [], [], [], NOW)
    assert st["spec_error"] and (st["autoscaling"]["min"], st["autoscaling"]["max"]) == (1, 1)
    assert st["endpoint"]["http"].endswith(":8080")


def test_the_source_reads_a_namespaces_services_through_the_kube_api() -> None:
    api = FakeKubeApi()
    for name in ("b", "a"):
        api.apply(isvc(name), field_manager="t")
        api.apply(deployment(name, 1, 1), field_manager="t")
    api.apply({**pod("a-7d9f8c6b5-abcde", service="a", **RUNNING)}, field_manager="t")
    other = isvc("c")
    other["metadata"]["namespace"] = "elsewhere"
    api.apply(other, field_manager="t")
    source = ClusterSource(api, "ml")
    got = source.read()
    assert [(s["namespace"], s["name"]) for s in got] == [("ml", "a"), ("ml", "b")]
    assert [r["id"] for r in got[0]["replicas"]] == ["a-7d9f8c6b5-abcde"] and got[1]["replicas"] == []
    assert [(s["namespace"], s["name"]) for s in ClusterSource(api, None).read()] == [
        ("elsewhere", "c"),
        ("ml", "a"),
        ("ml", "b"),
    ]
    assert [s["name"] for s in ClusterSource(api, "ml", "b").read()] == ["b"]
    assert ClusterSource(api, "ml", "nope").read() == []
    assert source.router(got[0]) is None and source.unreachable == UNREACHABLE
