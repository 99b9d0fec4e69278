"""`kubeinfer get -o json` prints InferenceService objects whose status reads as the operator's on a cluster."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from kubeinfer.cli.objects import as_list, as_object
from kubeinfer.kube.crd import status_schema


def replica(rid: str, **kw: Any) -> dict[str, Any]:
    r = {
        "id": rid,
        "pid": 10,
        "state": "Running",
        "reason": "",
        "ready": True,
        "version": "1",
        "revision": 2,
        "restarts": 0,
        "message": "",
        "last_exit": None,
    }
    return r | kw


def status(replicas: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    ready = sum(1 for r in replicas if r["ready"])
    st = {
        "name": "iris",
        "revision": 2,
        "version": "1",
        "desired": 2,
        "ready_replicas": ready,
        "ready": ready >= 2,
        "replicas": replicas,
        "autoscaling": {"policy": "hpa", "min": 1, "max": 4, "reason": "ScaledUp", "message": ""},
        "rollout": None,
        "endpoint": {"http": "http://127.0.0.1:8080", "grpc": 8081},
        "created": 1_780_000_000.0,
        "spec": {"model": {"format": "sklearn", "uri": "m.joblib"}},
    }
    return st | kw


LOAD_FAILED = replica(
    "iris-r2-2",
    state="Starting",
    reason="ModelLoadFailed",
    ready=False,
    message="startup probe: GET /startupz: HTTP 503 (model 'iris' failed to load: ModelError: no file)",
)
CRASHING = replica(
    "iris-r2-2",
    state="CrashLoopBackOff",
    ready=False,
    restarts=3,
    message="CrashLoopBackOff: back-off 4 s",
    last_exit={"code": 1, "reason": "Error", "message": ""},
)


@pytest.mark.parametrize(
    ("replicas", "ready", "reason"),
    [
        ([replica("iris-r2-1"), replica("iris-r2-2")], "True", "Available"),
        ([replica("iris-r2-1"), LOAD_FAILED], "False", "ModelLoadFailed"),
        ([replica("iris-r2-1"), CRASHING], "False", "CrashLoopBackOff"),
        ([replica("iris-r2-1")], "False", "MinimumReplicasUnavailable"),
    ],
)
def test_the_object_has_the_operators_status_shape(replicas: list[dict[str, Any]], ready: str, reason: str) -> None:
    obj = as_object(status(replicas))
    assert obj["apiVersion"] == "kubeinfer.io/v1alpha1" and obj["kind"] == "InferenceService"
    assert obj["metadata"] == {"name": "iris", "generation": 2, "creationTimestamp": "2026-05-28T20:26:40Z"}
    s = obj["status"]
    # what the CRD declares validates against its schema; the local-only replica list is beside it
    jsonschema.validate({k: v for k, v in s.items() if k != "replicaStatuses"}, status_schema())
    cond = s["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"], cond["observedGeneration"]) == ("Ready", ready, reason, 2)
    assert s["observedGeneration"] == 2 and s["readyReplicas"] == sum(r["ready"] for r in replicas)
    assert s["grpcAddress"] == "127.0.0.1:8081" and s["url"] == "http://127.0.0.1:8080"
    assert [r["name"] for r in s["replicaStatuses"]] == [r["id"] for r in replicas]


def test_replica_statuses_read_as_container_statuses() -> None:
    s = as_object(status([LOAD_FAILED, CRASHING | {"id": "iris-r2-3"}]))["status"]["replicaStatuses"]
    assert s[0]["state"] == {"waiting": {"reason": "ModelLoadFailed", "message": LOAD_FAILED["message"]}}
    assert s[1]["state"]["waiting"]["reason"] == "CrashLoopBackOff" and s[1]["restartCount"] == 3
    assert s[1]["lastState"] == {"terminated": {"exitCode": 1, "reason": "Error", "message": ""}}


def test_a_rollout_is_progressing_and_a_list_is_a_kubernetes_list() -> None:
    obj = as_object(status([replica("iris-r2-1"), replica("iris-r2-2")], rollout={"revision": 3, "previous": 2}))
    assert [c["type"] for c in obj["status"]["conditions"]] == ["Ready", "Progressing"]
    assert [c["reason"] for c in obj["status"]["conditions"]] == ["Available", "RollingOut"]
    assert as_list([obj])["kind"] == "List" and as_list([obj])["items"] == [obj]
