"""What a rollout is doing, and why it is stuck: pure interpretation of a Deployment, its pods and their events.

Used by ``kubeinfer deploy`` (waiting), ``kubeinfer status`` and the operator (status conditions). The rules follow
what ``kubectl rollout status`` checks (observedGeneration, updated/available replicas, the Progressing condition's
``ProgressDeadlineExceeded``) and add the reasons people otherwise dig out of ``kubectl describe pod``: image pulls,
pods that do not fit for lack of GPUs, crash loops (with the last exit reason, e.g. OOMKilled), failing probes,
bad container config. A *terminal* status will not fix itself without a change (a missing image, a crash loop);
``Unschedulable`` is not terminal while the cluster autoscaler is adding a node.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Phase", "RolloutStatus", "interpret"]

Phase = Literal["Ready", "Progressing", "Failed"]

_GPU_RESOURCE = re.compile(r"Insufficient ((?:nvidia\.com|amd\.com|habana\.ai|gpu\.intel\.com)/[\w.\-]+)")
_IMAGE_PULL = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
_CONFIG = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}


@dataclass(frozen=True)
class RolloutStatus:
    phase: Phase
    reason: str
    message: str
    desired: int = 0
    updated: int = 0
    ready: int = 0
    available: int = 0
    terminal: bool = False

    @property
    def summary(self) -> str:
        return f"{self.ready}/{self.desired} ready, {self.updated} updated: {self.reason}"


def _get(d: Mapping[str, Any] | None, *path: str, default: Any = None) -> Any:
    cur: Any = d
    for p in path:
        if not isinstance(cur, Mapping):
            return default
        cur = cur.get(p)
    return default if cur is None else cur


def _condition(obj: Mapping[str, Any], ctype: str) -> Mapping[str, Any] | None:
    for c in _get(obj, "status", "conditions", default=[]):
        if c.get("type") == ctype:
            return c  # type: ignore[no-any-return]
    return None


def _pod_problem(pod: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> RolloutStatus | None:
    name = _get(pod, "metadata", "name", default="?")
    if _get(pod, "metadata", "deletionTimestamp"):
        return None
    scheduled = _condition(pod, "PodScheduled")
    if scheduled is not None and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        msg = str(scheduled.get("message", ""))
        scaling_up = any(e.get("reason") == "TriggeredScaleUp" for e in events if _involves(e, name))
        gpu = _GPU_RESOURCE.search(msg)
        if gpu:
            return RolloutStatus(
                "Progressing",
                "InsufficientGPU",
                f"pod {name} does not fit: no node has a free {gpu.group(1)}"
                + (" (the cluster autoscaler is adding a node)" if scaling_up else "")
                + f" [{msg}]",
                terminal=False,
            )
        return RolloutStatus(
            "Progressing",
            "Unschedulable",
            f"pod {name} cannot be scheduled"
            + (" (the cluster autoscaler is adding a node)" if scaling_up else "")
            + f": {msg}",
        )
    statuses = list(_get(pod, "status", "initContainerStatuses", default=[])) + list(
        _get(pod, "status", "containerStatuses", default=[])
    )
    for cs in statuses:
        waiting = _get(cs, "state", "waiting")
        if waiting:
            reason = waiting.get("reason", "")
            msg = waiting.get("message", "")
            if reason in _IMAGE_PULL:
                return RolloutStatus(
                    "Failed",
                    "ImagePullFailed",
                    f"pod {name}: cannot pull image {cs.get('image', '')!r} ({reason}){': ' + msg if msg else ''}",
                    terminal=reason != "ErrImagePull",  # the first failure may be transient; the back-off is not
                )
            if reason == "CrashLoopBackOff":
                last = _get(cs, "lastState", "terminated", default={})
                why = last.get("reason", "Error")
                code = last.get("exitCode")
                return RolloutStatus(
                    "Failed",
                    "OOMKilled" if why == "OOMKilled" else "CrashLoop",
                    f"pod {name}: container {cs.get('name')} keeps crashing ({why}"
                    + (f", exit code {code}" if code is not None else "")
                    + f", {cs.get('restartCount', 0)} restarts)"
                    + (": raise resources.limits.memory" if why == "OOMKilled" else "; see kubectl logs --previous"),
                    terminal=True,
                )
            if reason in _CONFIG:
                return RolloutStatus("Failed", "ContainerConfigError", f"pod {name}: {reason}: {msg}", terminal=True)
        if "running" in (cs.get("state") or {}) and not cs.get("ready"):
            probe = [
                e
                for e in events
                if _involves(e, name) and e.get("reason") == "Unhealthy" and "probe failed" in str(e.get("message", ""))
            ]
            if probe:
                latest = probe[-1]
                kind = str(latest.get("message", "")).split(" probe failed")[0]
                return RolloutStatus(
                    "Progressing",
                    "ProbeFailing",
                    f"pod {name}: {kind.lower()} probe failing ({latest.get('count', 1)}x): {latest.get('message', '')}",
                    terminal=False,
                )
    return None


def _involves(event: Mapping[str, Any], pod_name: str) -> bool:
    return bool(_get(event, "involvedObject", "name") == pod_name or _get(event, "regarding", "name") == pod_name)


def interpret(
    deployment: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]] = (),
    events: Sequence[Mapping[str, Any]] = (),
) -> RolloutStatus:
    """The state of a Deployment's rollout. ``pods`` are those of the current ReplicaSet first (any order works)."""
    if deployment is None:
        return RolloutStatus("Failed", "NotFound", "the Deployment does not exist: run kubeinfer deploy", terminal=True)
    spec_replicas = _get(deployment, "spec", "replicas", default=1)
    st = _get(deployment, "status", default={})
    counts = {
        "desired": int(spec_replicas),
        "updated": int(st.get("updatedReplicas", 0)),
        "ready": int(st.get("readyReplicas", 0)),
        "available": int(st.get("availableReplicas", 0)),
    }
    generation = _get(deployment, "metadata", "generation", default=0)
    observed = st.get("observedGeneration", 0)
    progressing = _condition(deployment, "Progressing")
    replica_failure = _condition(deployment, "ReplicaFailure")

    def make(phase: Phase, reason: str, message: str, terminal: bool = False) -> RolloutStatus:
        return RolloutStatus(phase, reason, message, terminal=terminal, **counts)

    if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
        cause = next((p for p in (_pod_problem(pod, events) for pod in pods) if p is not None), None)
        detail = f"; {cause.message}" if cause else ""
        return make(
            "Failed",
            cause.reason if cause else "ProgressDeadlineExceeded",
            f"rollout exceeded its progress deadline{detail}",
            True,
        )
    if replica_failure is not None and replica_failure.get("status") == "True":
        return make(
            "Failed",
            str(replica_failure.get("reason", "ReplicaFailure")),
            str(replica_failure.get("message", "")),
            True,
        )
    if observed < generation:
        return make("Progressing", "Pending", "waiting for the Deployment controller to observe the new spec")
    done = (
        counts["updated"] >= counts["desired"]
        and int(st.get("replicas", 0)) <= counts["updated"]
        and counts["available"] >= counts["desired"]
    )
    if done:
        if counts["desired"] == 0:
            return make("Ready", "ScaledToZero", "scaled to zero; the next request scales it up")
        return make("Ready", "Available", f"{counts['available']} of {counts['desired']} replicas available")
    for pod in pods:
        problem = _pod_problem(pod, events)
        if problem is not None:
            return make(problem.phase, problem.reason, problem.message, problem.terminal)
    if counts["updated"] < counts["desired"]:
        return make("Progressing", "Updating", f"{counts['updated']} of {counts['desired']} replicas updated")
    if int(st.get("replicas", 0)) > counts["updated"]:
        old = int(st.get("replicas", 0)) - counts["updated"]
        return make("Progressing", "Terminating", f"{old} old replicas pending termination")
    return make("Progressing", "Starting", f"{counts['available']} of {counts['desired']} replicas available")
