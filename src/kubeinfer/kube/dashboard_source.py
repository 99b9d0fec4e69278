"""The web dashboard's source on a cluster (``kubeinfer dashboard``): InferenceServices read from the API server.

Each interval the source lists, in one namespace (or all), the InferenceServices, the Deployments, ReplicaSets,
Pods and HorizontalPodAutoscalers kubeinfer manages (label ``app.kubernetes.io/managed-by=kubeinfer``) and the
Events, and turns each service into the status document the local platform's ``GET /v1/status`` answers
(:func:`service_status`, pure), so the same page shows both. What only a cluster has rides along: the namespace, the
InferenceService's conditions as the operator wrote them, the rollout's state read live from the Deployment and its
pods (:func:`kubeinfer.kube.status.interpret`, as ``kubeinfer status`` does) and the HPA's status.

The counts are the Deployment's (``spec.replicas`` desired, ``status.readyReplicas`` ready): what the cluster does
now, not what the operator last wrote (every ``--interval`` of the operator). Each pod that runs is a replica to
scrape at ``podIP:http`` (the container port named ``http``): a dashboard in the cluster's network (the operator's
pod) reads the pods' latency, queue and request counters; one outside it (a laptop with a kubeconfig) cannot, and the
page says so and shows the status alone.

The reads go through :class:`~kubeinfer.kube.api.KubeApi` (the official client's dynamic client, in a worker thread:
the client blocks). They need ``get``/``list`` on those kinds; nothing is written.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from kubeinfer.kube.api import KubeApi, KubeError, Manifest
from kubeinfer.kube.crd import PLURAL
from kubeinfer.kube.names import CONTAINER, GROUP, SERVICE_LABEL
from kubeinfer.kube.render import TRACK_LABEL, http_port
from kubeinfer.kube.status import interpret
from kubeinfer.spec import SpecError, validate_spec

__all__ = ["READS", "UNREACHABLE", "ClusterSource", "service_status", "unreachable"]

MANAGED = "app.kubernetes.io/managed-by=kubeinfer"
API_VERSION = f"{GROUP}/v1alpha1"
EVENTS_KEPT = 500
UNREACHABLE = (
    "the pods' /metrics (pod IP, port http) did not answer from where this dashboard runs: status only (request "
    "rate, errors, latency and queue need the dashboard inside the cluster, e.g. the operator chart's "
    "dashboard.enabled)"
)
READS: tuple[tuple[str, str], ...] = (
    (GROUP, PLURAL),
    ("apps", "deployments"),
    ("apps", "replicasets"),
    ("", "pods"),
    ("", "events"),
    ("autoscaling", "horizontalpodautoscalers"),
)
"""(API group, resource) of everything the source reads: its RBAC rules are get/list/watch on these."""


def _seconds(value: Any) -> float | None:
    """Wall-clock seconds of an RFC 3339 time (a string, or a datetime from the client)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _get(d: Any, *path: str, default: Any = None) -> Any:
    for p in path:
        if not isinstance(d, Mapping):
            return default
        d = d.get(p)
    return default if d is None else d


def _condition(obj: Mapping[str, Any], ctype: str) -> Mapping[str, Any] | None:
    return next((c for c in _get(obj, "status", "conditions", default=[]) if c.get("type") == ctype), None)


def _container_status(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    statuses = _get(pod, "status", "containerStatuses", default=[])
    return next((c for c in statuses if c.get("name") == CONTAINER), statuses[0] if statuses else {})


def _pod_state(pod: Mapping[str, Any]) -> tuple[str, str, str, bool]:
    """(state, reason, message, ready) of a pod, in the local replicas' words: Pending, Starting, Running,
    CrashLoopBackOff, Terminating, Terminated."""
    ready = _get(_condition(pod, "Ready"), "status") == "True"
    phase = _get(pod, "status", "phase", default="Pending")
    cs = _container_status(pod)
    waiting = _get(cs, "state", "waiting", default={})
    if _get(pod, "metadata", "deletionTimestamp"):
        return "Terminating", "", "", ready
    if phase in ("Succeeded", "Failed"):
        terminated = _get(cs, "state", "terminated", default={})
        return "Terminated", str(_get(pod, "status", "reason") or terminated.get("reason", phase)), "", False
    scheduled = _condition(pod, "PodScheduled")
    if scheduled is not None and scheduled.get("status") == "False":
        return "Pending", str(scheduled.get("reason", "")), str(scheduled.get("message", "")), False
    if waiting.get("reason") == "CrashLoopBackOff":
        return "CrashLoopBackOff", "CrashLoopBackOff", str(waiting.get("message", "")), False
    if phase == "Pending" or waiting:
        return "Pending", str(waiting.get("reason", "")), str(waiting.get("message", "")), False
    if ready:
        return "Running", "", "", True
    return "Starting", "", "", False


def _http_port(pod: Mapping[str, Any], default: int) -> int:
    for c in _get(pod, "spec", "containers", default=[]):
        for p in c.get("ports") or []:
            if p.get("name") == "http":
                return int(p["containerPort"])
    return default


def _replica(pod: Manifest, revisions: Mapping[str, int], http_port: int, now: float) -> dict[str, Any]:
    meta = pod["metadata"]
    labels = meta.get("labels") or {}
    state, reason, message, ready = _pod_state(pod)
    statuses = _get(pod, "status", "containerStatuses", default=[])
    last = _get(_container_status(pod), "lastState", "terminated")
    started = _seconds(_get(pod, "status", "startTime")) or _seconds(meta.get("creationTimestamp"))
    return {
        "id": meta["name"],
        "uid": meta.get("uid"),
        "pid": None,
        "port": _http_port(pod, http_port),
        "uds": None,
        "ip": _get(pod, "status", "podIP"),
        "node": _get(pod, "spec", "nodeName"),
        "track": labels.get(TRACK_LABEL, "stable"),
        "state": state,
        "reason": reason,
        "message": message,
        "ready": ready,
        "version": labels.get("app.kubernetes.io/version", ""),
        "revision": revisions.get(labels.get("pod-template-hash", "")),
        "restarts": sum(int(c.get("restartCount", 0)) for c in statuses),
        "age": None if started is None else round(max(0.0, now - started), 1),
        "last_exit": None
        if not last
        else {"code": last.get("exitCode"), "reason": last.get("reason", ""), "message": last.get("message", "")},
        "cpu": None,
        "memory": None,
    }


def _event(e: Manifest) -> dict[str, Any]:
    involved = e.get("involvedObject") or e.get("regarding") or {}
    when = (
        _seconds(e.get("lastTimestamp"))
        or _seconds(e.get("eventTime"))
        or _seconds(e.get("firstTimestamp"))
        or _seconds(_get(e, "metadata", "creationTimestamp"))
        or 0.0
    )
    return {
        "time": when,
        "type": e.get("type", "Normal"),
        "reason": e.get("reason", ""),
        "kind": involved.get("kind", ""),
        "object": involved.get("name", ""),
        "message": e.get("message") or e.get("note") or "",
        "count": int(e.get("count") or _get(e, "series", "count", default=1) or 1),
    }


def _hpa(hpa: Manifest | None) -> tuple[dict[str, Any] | None, str, str]:
    """The HPA's status for the page, and the reason and message of its latest say: a condition that stops it
    (ScalingActive False: no metrics), else the limit it hit (ScalingLimited True), else AbleToScale's."""
    if hpa is None:
        return None, "", ""
    st = hpa.get("status") or {}
    conds = st.get("conditions") or []
    by = {c.get("type"): c for c in conds}
    pick = None
    if _get(by, "ScalingActive", "status") == "False":
        pick = by["ScalingActive"]
    elif _get(by, "ScalingLimited", "status") == "True":
        pick = by["ScalingLimited"]
    else:
        pick = by.get("AbleToScale")
    out = {
        "name": hpa["metadata"]["name"],
        "current": st.get("currentReplicas"),
        "desired": st.get("desiredReplicas"),
        "lastScaleTime": st.get("lastScaleTime"),
        "metrics": st.get("currentMetrics") or [],
        "conditions": [
            {k: c.get(k) for k in ("type", "status", "reason", "message", "lastTransitionTime")} for c in conds
        ],
    }
    return out, str((pick or {}).get("reason", "")), str((pick or {}).get("message", ""))


def _belongs(name: str, kind: str, obj: str, known: set[tuple[str, str]]) -> bool:
    """Whether an event's object is the service's: one it lists, or a pod or ReplicaSet named after its
    Deployments (one deleted since has no object left to list)."""
    if (kind, obj) in known:
        return True
    return (
        kind in ("Pod", "ReplicaSet")
        and re.fullmatch(rf"{re.escape(name)}(-canary)?-[a-z0-9]{{5,10}}(-[a-z0-9]{{5}})?", obj) is not None
    )


def _spec_facts(raw: Mapping[str, Any], name: str, ns: str) -> tuple[str, int, int, str, int, str]:
    """(policy, minReplicas, maxReplicas, model version, http port, spec error) of a spec, with the spec's
    defaults; a spec the operator would refuse still shows, with what it says and the error."""
    try:
        doc = {"apiVersion": API_VERSION, "kind": "InferenceService", "metadata": {"name": name, "namespace": ns}}
        svc = validate_spec({**doc, "spec": raw}, f"InferenceService {ns}/{name}")
    except SpecError as e:
        found = raw.get("autoscaling")
        auto: Mapping[str, Any] = found if isinstance(found, Mapping) else {}

        def whole(v: Any, default: int) -> int:
            return v if isinstance(v, int) and not isinstance(v, bool) else default

        return (
            str(auto.get("policy", "hpa")),
            whole(auto.get("minReplicas"), 1),
            whole(auto.get("maxReplicas"), 1),
            str(_get(raw, "model", "version", default="")),
            whole(_get(raw, "server", "port"), 8080),
            "; ".join(f"{err.path}: {err.message}" for err in e.errors),
        )
    a = svc.spec.autoscaling
    return a.policy, a.minReplicas, a.maxReplicas, svc.spec.model.version, http_port(svc), ""


def service_status(
    isvc: Manifest,
    deployments: Sequence[Manifest],
    replicasets: Sequence[Manifest],
    pods: Sequence[Manifest],
    events: Sequence[Manifest],
    hpas: Sequence[Manifest],
    now: float,
) -> dict[str, Any]:
    """One InferenceService as the dashboard's status document. The other arguments may hold other services'
    objects (of the same namespace): those of this one are picked by the ``kubeinfer.io/service`` label and by name.
    ``now``: wall-clock seconds (pod ages)."""
    meta = isvc["metadata"]
    name, ns = meta["name"], meta.get("namespace", "default")
    raw_spec = isvc.get("spec") or {}
    policy, lo, hi, version, port, spec_error = _spec_facts(raw_spec, name, ns)

    def mine(o: Manifest) -> bool:
        return bool(
            _get(o, "metadata", "namespace") == ns
            and (_get(o, "metadata", "labels", default={}).get(SERVICE_LABEL) == name)
        )

    dep = next((d for d in deployments if mine(d) and d["metadata"]["name"] == name), None)
    canary_dep = next((d for d in deployments if mine(d) and d["metadata"]["name"] == f"{name}-canary"), None)
    my_rs = [r for r in replicasets if mine(r)]
    revisions = {}
    for r in my_rs:
        h = _get(r, "metadata", "labels", default={}).get("pod-template-hash")
        rev = _get(r, "metadata", "annotations", default={}).get("deployment.kubernetes.io/revision")
        if h and rev and str(rev).isdigit():
            revisions[h] = int(rev)
    my_pods = sorted((p for p in pods if mine(p)), key=lambda p: p["metadata"]["name"])
    replicas = [_replica(p, revisions, port, now) for p in my_pods]
    hpa_obj = next((h for h in hpas if mine(h) and h["metadata"]["name"] == name), None)
    known = {("InferenceService", name), ("Deployment", name), ("Deployment", f"{name}-canary")}
    known |= {("HorizontalPodAutoscaler", name)}
    known |= {("ReplicaSet", r["metadata"]["name"]) for r in my_rs}
    known |= {("Pod", p["metadata"]["name"]) for p in my_pods}
    names = {p["metadata"]["name"] for p in my_pods}
    my_events = [
        _event(e)
        for e in events
        if _get(e, "metadata", "namespace", default=ns) == ns
        and _belongs(
            name,
            str(_get(e, "involvedObject", "kind", default=_get(e, "regarding", "kind", default=""))),
            str(_get(e, "involvedObject", "name", default=_get(e, "regarding", "name", default=""))),
            known,
        )
    ]
    my_events.sort(key=lambda e: e["time"])
    stable_pods = [p for p in my_pods if _get(p, "metadata", "labels", default={}).get(TRACK_LABEL) != "canary"]
    pod_events = [
        e for e in events if _get(e, "involvedObject", "kind") == "Pod" and _get(e, "involvedObject", "name") in names
    ]
    rollout = interpret(dep, stable_pods, pod_events)
    status = isvc.get("status") or {}
    hpa, hpa_reason, hpa_message = _hpa(hpa_obj)
    details: dict[str, float] = {}
    if policy in ("kpa", "predictive"):
        reason, message = str(_get(status, "autoscaler", "reason", default="")), ""
        raw = _get(status, "autoscaler", "details", default={})
        if isinstance(raw, Mapping):  # what the operator wrote; anything else someone else did is left out
            details = {
                str(k): float(v)
                for k, v in raw.items()
                if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            }
    elif policy == "hpa":
        reason, message = hpa_reason, hpa_message
    else:
        reason, message = "", ""
    desired = int(_get(dep, "spec", "replicas", default=1)) if dep is not None else 0
    ready = int(_get(dep, "status", "readyReplicas", default=0)) if dep is not None else 0
    canary = status.get("canary")
    doc: dict[str, Any] = {
        "name": name,
        "namespace": ns,
        "source": "cluster",
        "revision": int(meta.get("generation", 1)),
        "observed_generation": status.get("observedGeneration"),
        "version": version,
        "desired": desired,
        "ready_replicas": ready,
        "ready": rollout.phase == "Ready" and ready >= desired,
        "replicas": replicas,
        "autoscaling": {
            "policy": policy,
            "min": lo,
            "max": hi,
            "reason": reason,
            "message": message,
            "buffering": False,
            "details": details,
        },
        "rollout": None,
        "rollout_status": {"phase": rollout.phase, "reason": rollout.reason, "message": rollout.message},
        "conditions": list(status.get("conditions") or []),
        "cold_starts": [],
        "vpa": None,
        "hpa": hpa,
        "events": my_events[-EVENTS_KEPT:],
        "endpoint": {
            "http": status.get("url") or f"http://{name}.{ns}.svc.cluster.local:{port}",
            "grpc": status.get("grpcAddress"),
        },
        "created": _seconds(meta.get("creationTimestamp")),
        "spec": raw_spec,
    }
    if spec_error:
        doc["spec_error"] = spec_error
    if canary:
        doc["canary"] = {
            "stable": canary.get("stableRevision"),
            "canary": canary.get("canaryRevision"),
            "weight": canary.get("weight"),
            "step": canary.get("step"),
            "steps": canary.get("steps"),
            "phase": canary.get("phase"),
            "analysis": canary.get("analysis"),
        }
        if canary_dep is not None:
            doc["canary"]["ready_replicas"] = int(_get(canary_dep, "status", "readyReplicas", default=0))
    return doc


def unreachable(e: Exception) -> str:
    """A transport error of the client (urllib3's), in one line."""
    reason = getattr(e, "reason", None) or e
    return f"the API server did not answer: {reason}"


class ClusterSource:
    """The dashboard's :class:`~kubeinfer.local.dashboard.Source` on a cluster: the InferenceServices of
    ``namespace`` (None: every namespace), or only ``service`` in it."""

    unreachable = UNREACHABLE

    def __init__(self, api: KubeApi, namespace: str | None, service: str | None = None) -> None:
        self.api = api
        self.namespace = namespace
        self.service = service

    def read(self) -> list[dict[str, Any]]:
        """The status documents now (blocking: the client's calls). Raises :class:`~kubeinfer.kube.api.KubeError`
        when a read is refused (no CRD, no permission) or the API server does not answer."""
        from urllib3.exceptions import HTTPError

        try:
            return self._read()
        except HTTPError as e:
            raise KubeError(unreachable(e)) from e

    def _read(self) -> list[dict[str, Any]]:
        import time

        ns = self.namespace
        if self.service is not None:
            one = self.api.get(API_VERSION, "InferenceService", self.service, ns or "default")
            isvcs = [one] if one is not None else []
        else:
            isvcs = self.api.list(API_VERSION, "InferenceService", ns)
        if not isvcs:
            return []
        deployments = self.api.list("apps/v1", "Deployment", ns, MANAGED)
        replicasets = self.api.list("apps/v1", "ReplicaSet", ns, MANAGED)
        pods = self.api.list("v1", "Pod", ns, MANAGED)
        hpas = self.api.list("autoscaling/v2", "HorizontalPodAutoscaler", ns, MANAGED)
        events = self.api.list("v1", "Event", ns)
        now = time.time()
        # each service's objects first (by label, and events by the name of their object), so that a status is
        # made from its own few, not from all of the namespace's
        labelled: dict[tuple[str, str], list[list[Manifest]]] = defaultdict(lambda: [[], [], [], []])
        for i, objs in enumerate((deployments, replicasets, pods, hpas)):
            for o in objs:
                meta = o["metadata"]
                labelled[meta.get("namespace", ""), (meta.get("labels") or {}).get(SERVICE_LABEL, "")][i].append(o)
        by_object: dict[tuple[str, str], list[Manifest]] = defaultdict(list)
        for e in events:
            involved = e.get("involvedObject") or e.get("regarding") or {}
            by_object[_get(e, "metadata", "namespace", default=""), str(involved.get("name", ""))].append(e)
        out = []
        for isvc in isvcs:
            meta = isvc["metadata"]
            name, in_ns = meta["name"], meta.get("namespace", "default")
            deps, rss, pds, hs = labelled[in_ns, name]
            evs = [
                e
                for (ens, obj), es in by_object.items()
                if ens == in_ns and (obj == name or obj.startswith(name + "-"))
                for e in es
            ]
            out.append(service_status(isvc, deps, rss, pds, evs, hs, now))
        out.sort(key=lambda s: (s["namespace"], s["name"]))
        return out

    async def statuses(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.read)

    def scrape_list(self, status: dict[str, Any]) -> list[tuple[str, int, str]]:
        """Each pod that runs, at ``podIP:http``; keyed by the pod's uid (a new pod is a new key)."""
        return [
            (f"{r['id']}:{r['uid']}", int(r["port"]), str(r["ip"]))
            for r in status.get("replicas", ())
            if r.get("ip") and r.get("port") and r.get("state") in ("Starting", "Running", "Terminating")
        ]

    def router(self, status: dict[str, Any]) -> None:
        """No router on a cluster: the Service spreads requests, the pods count them."""
        return None
