"""Rollout status interpretation: each way a rollout gets stuck is named, with the detail people need."""

from __future__ import annotations

from typing import Any

import pytest

from kubeinfer.kube.status import interpret


def deployment(
    replicas: int = 2,
    updated: int = 2,
    ready: int = 2,
    available: int = 2,
    total: int | None = None,
    generation: int = 3,
    observed: int = 3,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"name": "svc", "generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "replicas": updated if total is None else total,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available,
            "conditions": conditions or [],
        },
    }


def pod(
    name: str = "svc-1",
    waiting: str | None = None,
    last: dict[str, Any] | None = None,
    running_unready: bool = False,
    unschedulable: str | None = None,
) -> dict[str, Any]:
    cs: dict[str, Any] = {"name": "server", "image": "kubeinfer/iris:1", "restartCount": 4, "ready": False, "state": {}}
    if waiting:
        cs["state"] = {"waiting": {"reason": waiting, "message": "details"}}
    if last:
        cs["lastState"] = {"terminated": last}
    if running_unready:
        cs["state"] = {"running": {}}
    status: dict[str, Any] = {"containerStatuses": [cs]}
    if unschedulable:
        status = {
            "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": unschedulable}
            ]
        }
    return {"metadata": {"name": name}, "status": status}


def test_ready_when_all_updated_and_available() -> None:
    st = interpret(deployment())
    assert (st.phase, st.reason, st.ready, st.desired) == ("Ready", "Available", 2, 2)


def test_waits_for_the_controller_to_observe_the_spec() -> None:
    assert interpret(deployment(observed=2)).reason == "Pending"


def test_missing_deployment() -> None:
    st = interpret(None)
    assert st.phase == "Failed" and st.terminal


@pytest.mark.parametrize(
    ("pods", "events", "reason", "terminal", "fragment"),
    [
        ([pod(waiting="ImagePullBackOff")], [], "ImagePullFailed", True, "kubeinfer/iris:1"),
        ([pod(waiting="ErrImagePull")], [], "ImagePullFailed", False, "cannot pull"),
        (
            [pod(waiting="CrashLoopBackOff", last={"reason": "Error", "exitCode": 2})],
            [],
            "CrashLoop",
            True,
            "exit code 2",
        ),
        (
            [pod(waiting="CrashLoopBackOff", last={"reason": "OOMKilled", "exitCode": 137})],
            [],
            "OOMKilled",
            True,
            "limits.memory",
        ),
        ([pod(waiting="CreateContainerConfigError")], [], "ContainerConfigError", True, "CreateContainerConfigError"),
        (
            [pod(unschedulable="0/3 nodes are available: 3 Insufficient nvidia.com/gpu.")],
            [],
            "InsufficientGPU",
            False,
            "nvidia.com/gpu",
        ),
        (
            [pod(unschedulable="0/3 nodes are available: 3 Insufficient nvidia.com/mig-1g.10gb.")],
            [],
            "InsufficientGPU",
            False,
            "mig-1g.10gb",
        ),
        (
            [pod(unschedulable="0/3 nodes are available: 3 Insufficient cpu.")],
            [],
            "Unschedulable",
            False,
            "Insufficient cpu",
        ),
        (
            [pod(unschedulable="0/1 nodes: Insufficient nvidia.com/gpu")],
            [{"involvedObject": {"name": "svc-1"}, "reason": "TriggeredScaleUp"}],
            "InsufficientGPU",
            False,
            "adding a node",
        ),
        (
            [pod(running_unready=True)],
            [
                {
                    "involvedObject": {"name": "svc-1"},
                    "reason": "Unhealthy",
                    "message": "Readiness probe failed: HTTP probe failed with statuscode: 503",
                    "count": 7,
                }
            ],
            "ProbeFailing",
            False,
            "readiness probe failing (7x)",
        ),
    ],
)
def test_stuck_rollouts_are_explained(
    pods: list[dict[str, Any]], events: list[dict[str, Any]], reason: str, terminal: bool, fragment: str
) -> None:
    st = interpret(deployment(updated=2, ready=1, available=1), pods, events)
    assert st.reason == reason
    assert st.terminal is terminal
    assert fragment in st.message


def test_progress_deadline_exceeded_names_the_cause() -> None:
    dep = deployment(
        updated=1,
        ready=1,
        available=1,
        conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}],
    )
    st = interpret(dep, [pod(unschedulable="Insufficient nvidia.com/gpu")])
    assert (st.phase, st.reason, st.terminal) == ("Failed", "InsufficientGPU", True)
    assert "progress deadline" in st.message


def test_replica_failure_is_reported() -> None:
    dep = deployment(
        updated=0,
        ready=0,
        available=0,
        conditions=[
            {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": "exceeded quota"}
        ],
    )
    st = interpret(dep)
    assert (st.phase, st.reason, st.message) == ("Failed", "FailedCreate", "exceeded quota")


def test_updating_and_terminating_old_replicas() -> None:
    assert interpret(deployment(updated=1, ready=2, available=2)).reason == "Updating"
    assert interpret(deployment(updated=2, total=3)).reason == "Terminating"


def test_scaled_to_zero_is_ready() -> None:
    st = interpret(deployment(replicas=0, updated=0, ready=0, available=0))
    assert (st.phase, st.reason) == ("Ready", "ScaledToZero")
