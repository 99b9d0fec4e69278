"""A running local service as Kubernetes would show it: ``kubeinfer get -o json|yaml`` prints an ``InferenceService``
object (apiVersion, kind, metadata, spec, status) with the status fields the operator writes on a cluster
(``observedGeneration``, ``conditions``, ``url``, ``replicas``, ``readyReplicas``, ``autoscaler``), so a script that
reads one reads the other. What only a local service has (its replica processes) is under ``status.replicaStatuses``,
shaped like a pod's ``containerStatuses``. Several services are a ``List``, as ``kubectl get -o json`` prints.

Pure functions over the platform's status answer (``GET /v1/status``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubeinfer.spec.service import API_VERSION

__all__ = ["as_list", "as_object", "ready_condition", "timestamp"]


def timestamp(wall: float | None) -> str | None:
    """RFC 3339 in UTC, as Kubernetes writes ``creationTimestamp``."""
    if wall is None:
        return None
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(ctype: str, ok: bool, reason: str, message: str, generation: int) -> dict[str, Any]:
    return {
        "type": ctype,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def ready_condition(st: dict[str, Any]) -> dict[str, Any]:
    """The ``Ready`` condition of a service's status answer (what ``get`` shows in STATUS, too)."""
    generation = int(st["revision"])
    ready, desired = st["ready_replicas"], st["desired"]
    # Ready is "serves as asked": during a rollout the old revision serves (Progressing says the rest), and a
    # service scaled to zero is ready (its first request starts a replica), as a Knative revision is.
    if ready >= desired:
        return _condition("Ready", True, "Available", f"{ready}/{desired} replicas ready", generation)
    failed = next((r for r in st["replicas"] if r.get("reason")), None)
    if failed is not None:
        return _condition("Ready", False, failed["reason"], f"{failed['id']}: {failed['message']}", generation)
    crash = next((r for r in st["replicas"] if r["state"] == "CrashLoopBackOff"), None)
    if crash is not None:
        return _condition("Ready", False, "CrashLoopBackOff", f"{crash['id']}: {crash['message']}", generation)
    return _condition("Ready", False, "MinimumReplicasUnavailable", f"{ready}/{desired} ready", generation)


def _replica_status(r: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, Any]
    if r["state"] in ("Running", "Starting") and not r.get("reason"):
        state = {"running": {"phase": r["state"]}}
    elif r["state"] == "Terminated":
        state = {"terminated": {"reason": (r["last_exit"] or {}).get("reason", "Completed")}}
    else:
        state = {"waiting": {"reason": r.get("reason") or r["state"], "message": r["message"]}}
    out: dict[str, Any] = {
        "name": r["id"],
        "ready": r["ready"],
        "restartCount": r["restarts"],
        "state": state,
        "pid": r["pid"],
        "revision": r["revision"],
        "modelVersion": r["version"],
    }
    if r["last_exit"]:
        le = r["last_exit"]
        out["lastState"] = {"terminated": {"exitCode": le["code"], "reason": le["reason"], "message": le["message"]}}
    return out


def as_object(st: dict[str, Any]) -> dict[str, Any]:
    """One service's status answer as an ``InferenceService`` object."""
    generation = int(st["revision"])
    ready = ready_condition(st)
    a = st["autoscaling"]
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": [ready],
        "url": st["endpoint"]["http"],
        "replicas": sum(1 for r in st["replicas"] if r["state"] != "Terminated"),
        "readyReplicas": st["ready_replicas"],
        "autoscaler": {
            "desiredReplicas": st["desired"],
            "reason": a["reason"],
            **({"details": a["details"]} if a.get("details") else {}),
        },
        "replicaStatuses": [_replica_status(r) for r in st["replicas"]],
    }
    if st.get("rollout"):
        status["conditions"].append(
            _condition(
                "Progressing", True, "RollingOut", f"revision {st['rollout']['revision']} rolling out", generation
            )
        )
    c = st.get("canary")
    if c:
        status["canary"] = {
            "stableRevision": c["stable"],
            "canaryRevision": c["canary"],
            "weight": c["weight"],
            "step": c["step"],
            "steps": c["steps"],
            "phase": c["phase"],
            "analysis": c["analysis"],
        }
        status["conditions"].append(
            _condition(
                "Progressing",
                True,
                "Canary",
                f"revision {c['canary']} gets {c['weight']}% of the traffic (step {c['step']}/{len(c['steps'])}, "
                f"{c['phase'].lower()})",
                generation,
            )
        )
    if st["endpoint"].get("grpc"):
        status["grpcAddress"] = f"127.0.0.1:{st['endpoint']['grpc']}"
    metadata: dict[str, Any] = {"name": st["name"], "generation": generation}
    created = timestamp(st.get("created"))
    if created is not None:
        metadata["creationTimestamp"] = created
    return {
        "apiVersion": API_VERSION,
        "kind": "InferenceService",
        "metadata": metadata,
        "spec": st.get("spec", {}),
        "status": status,
    }


def as_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Several objects, as ``kubectl get -o json`` prints a list (also when it is empty)."""
    return {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}}
