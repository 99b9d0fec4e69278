"""Apply rendered objects (server-side apply), prune what the spec no longer needs, wait for the rollout.

Server-side apply with one field manager (``kubeinfer``; the operator uses ``kubeinfer-operator``) makes every
deploy idempotent and leaves fields other controllers own alone: the Deployment's ``replicas`` is not rendered
when an autoscaler owns it. A field another manager has set since (``kubectl scale``, ``kubectl edit``, another
tool's apply) and the spec would change is a conflict: ``deploy`` stops and names the field and its manager
(:func:`explain_conflict`) unless told to take the fields over (``force``, ``--force-conflicts``), as ``kubectl
apply --server-side`` does; the operator, a controller that owns its children, always takes them over. Every object of a service carries ``kubeinfer.io/service=<name>`` and
``app.kubernetes.io/managed-by=kubeinfer``; prune lists the kinds kubeinfer renders by that selector and deletes
those not in the new render (``kubectl apply --prune`` with a label, without its allow-list pitfalls). Add-on kinds
whose CRD the cluster lacks (VPA, ServiceMonitor, KEDA) are skipped with a note rather than failing the deploy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from kubeinfer.kube.api import ApplyConflictError, Clock, KubeApi, KubeError, Manifest
from kubeinfer.kube.names import FIELD_MANAGER, SERVICE_LABEL
from kubeinfer.kube.render import TRACK_LABEL
from kubeinfer.kube.status import RolloutStatus, interpret

__all__ = [
    "HANDOVER_FIELD_MANAGER",
    "MANAGED_KINDS",
    "PlanStep",
    "delete_service",
    "execute",
    "explain_conflict",
    "observe",
    "plan",
    "selector_for",
    "wait_rollout",
]

MANAGED_KINDS: tuple[tuple[str, str], ...] = (
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("policy/v1", "PodDisruptionBudget"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("autoscaling.k8s.io/v1", "VerticalPodAutoscaler"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
)
_ADDONS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "KEDA",
    ("autoscaling.k8s.io/v1", "VerticalPodAutoscaler"): "the Vertical Pod Autoscaler",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "the Prometheus operator",
}

Action = Literal["apply", "skip", "prune"]


@dataclass(frozen=True)
class PlanStep:
    action: Action
    obj: Manifest
    reason: str = ""

    @property
    def ref(self) -> str:
        m = self.obj["metadata"]
        ns = f"{m['namespace']}/" if m.get("namespace") else ""
        return f"{self.obj['kind']} {ns}{m['name']}"


def selector_for(name: str) -> str:
    return f"{SERVICE_LABEL}={name},app.kubernetes.io/managed-by=kubeinfer"


def _key(o: Manifest) -> tuple[str, str, str]:
    return o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]


def plan(
    objects: Sequence[Manifest], api: KubeApi | None = None, *, name: str | None = None, namespace: str | None = None
) -> list[PlanStep]:
    """What ``deploy`` will do. Without ``api`` (``--dry-run`` with no cluster) every object is applied and nothing is
    known about pruning."""
    steps: list[PlanStep] = []
    for o in objects:
        gvk = (o["apiVersion"], o["kind"])
        if api is not None and not api.served(*gvk):
            steps.append(PlanStep("skip", o, f"the cluster lacks {_ADDONS.get(gvk, gvk[1])} (no {gvk[1]} API)"))
        else:
            steps.append(PlanStep("apply", o, f"server-side apply, field manager {FIELD_MANAGER!r}"))
    if api is not None and name is not None:
        wanted = {_key(o) for o in objects}
        for api_version, kind in MANAGED_KINDS:
            if not api.served(api_version, kind):
                continue
            for live in api.list(api_version, kind, namespace, selector_for(name)):
                if _key(live) not in wanted and not live["metadata"].get("ownerReferences"):
                    slim = {
                        "apiVersion": api_version,
                        "kind": kind,
                        "metadata": {
                            "name": live["metadata"]["name"],
                            "namespace": live["metadata"].get("namespace", namespace),
                        },
                    }
                    steps.append(PlanStep("prune", slim, "no longer rendered from the spec"))
    return steps


def execute(
    steps: Sequence[PlanStep],
    api: KubeApi,
    *,
    field_manager: str = FIELD_MANAGER,
    force: bool = False,
    dry_run: bool = False,
    on_step: Callable[[PlanStep], None] | None = None,
) -> list[Manifest]:
    """Carry out a plan; returns the applied objects as the server returned them.

    Without ``force`` a field another manager owns and the plan would change stops the deploy with
    :class:`~kubeinfer.kube.api.ApplyConflictError` (objects before it are applied; re-running is safe); with it
    the fields are taken over."""
    applied: list[Manifest] = []
    for step in steps:
        if on_step is not None:
            on_step(step)
        if step.action == "apply":
            _hand_over_replicas(api, step.obj, field_manager, dry_run)
            try:
                applied.append(api.apply(step.obj, field_manager=field_manager, force=force, dry_run=dry_run))
            except ApplyConflictError as e:
                if not all(c.manager == HANDOVER_FIELD_MANAGER for c in e.conflicts):
                    raise
                # Only kubeinfer's own hand-over holds the fields (the spec went back to fixed replicas before
                # any autoscaler changed them): nobody else's value is overwritten.
                applied.append(api.apply(step.obj, field_manager=field_manager, force=True, dry_run=dry_run))
        elif step.action == "prune" and not dry_run:
            m = step.obj["metadata"]
            api.delete(step.obj["apiVersion"], step.obj["kind"], m["name"], m.get("namespace"))
    return applied


HANDOVER_FIELD_MANAGER = "kubeinfer-handover"
"""Holds a Deployment's replicas for a moment when the spec stops setting them (see :func:`_hand_over_replicas`)."""


def _owners(live: Manifest, field: str) -> list[dict[str, object]]:
    return [
        e
        for e in live.get("metadata", {}).get("managedFields") or []
        if f"f:{field}" in ((e.get("fieldsV1") or {}).get("f:spec") or {})
    ]


def _hand_over_replicas(api: KubeApi, obj: Manifest, field_manager: str, dry_run: bool) -> None:
    """Before a Deployment is applied without ``replicas`` (an autoscaler now owns them) while ``field_manager`` is
    their only owner, let another manager co-own the live count. Otherwise server-side apply drops the field and the
    API server resets it to 1 -- a three-replica service would lose two until the autoscaler reacts. This is the
    migration the Kubernetes documentation gives for handing replicas to an HPA ("Transferring ownership")."""
    if obj["kind"] != "Deployment" or "replicas" in obj.get("spec", {}):
        return
    m = obj["metadata"]
    live = api.get(obj["apiVersion"], "Deployment", m["name"], m.get("namespace"))
    if live is None:
        return
    owners = {str(e.get("manager")) for e in _owners(live, "replicas")}
    if owners != {field_manager}:
        return  # never ours, or someone else (the autoscaler, kubectl scale) keeps the value anyway
    handover = {
        "apiVersion": obj["apiVersion"],
        "kind": "Deployment",
        "metadata": {"name": m["name"], "namespace": m.get("namespace")},
        "spec": {"replicas": live["spec"]["replicas"]},
    }
    api.apply(handover, field_manager=HANDOVER_FIELD_MANAGER, force=False, dry_run=dry_run)


_HINTS = {
    ".spec.replicas": (
        "the replicas were set outside the spec (kubectl scale, or an autoscaler before the policy changed): put "
        "that count in spec.replicas, or let an autoscaler own them (autoscaling.policy hpa/kpa/predictive: "
        "kubeinfer then leaves replicas out)"
    ),
}


def explain_conflict(e: ApplyConflictError, *, force_option: str = "--force-conflicts") -> str:
    """What a person needs after a refused apply: the object, each field and who owns it, and the ways out."""
    lines = [f"{e.what.removeprefix('apply ')}: the spec would change fields another field manager owns:"]
    for c in e.conflicts:
        via = ", ".join(x for x in (c.api_version, f"subresource {c.subresource}" if c.subresource else "") if x)
        lines.append(f"  {c.field}  owned by {c.manager!r}" + (f" ({via})" if via else ""))
    for c in e.conflicts:
        hint = _HINTS.get(c.field)
        if hint:
            lines.append(f"  {c.field}: {hint}")
    managers = ", ".join(sorted({repr(c.manager) for c in e.conflicts}))
    lines.append(
        f"to take the fields over for {FIELD_MANAGER!r} (overwriting the values of {managers}), re-run with "
        f"{force_option}; to keep them, change the spec to the live values or stop {managers} from setting them"
    )
    return "\n".join(lines)


def observe(api: KubeApi, name: str, namespace: str) -> RolloutStatus:
    """The rollout status of service ``name`` now."""
    dep = api.get("apps/v1", "Deployment", name, namespace)
    if dep is None:
        return interpret(None)
    labels = dep.get("spec", {}).get("selector", {}).get("matchLabels", {})
    # A canary's pods (track canary, their own Deployment) match the stable selector too: they are not this rollout's.
    selector = ",".join([*(f"{k}={v}" for k, v in sorted(labels.items())), f"{TRACK_LABEL}!=canary"])
    pods = api.list("v1", "Pod", namespace, selector)
    pod_names = {p["metadata"]["name"] for p in pods}
    events = [e for e in api.list("v1", "Event", namespace) if (e.get("involvedObject") or {}).get("name") in pod_names]
    events.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    return interpret(dep, pods, events)


def wait_rollout(
    api: KubeApi,
    name: str,
    namespace: str,
    clock: Clock,
    *,
    timeout: float,
    poll: float = 2.0,
    on_update: Callable[[RolloutStatus], None] | None = None,
) -> RolloutStatus:
    """Poll until the rollout is Ready, fails for good, or ``timeout`` seconds pass."""
    deadline = clock.now() + timeout
    last: RolloutStatus | None = None
    while True:
        st = observe(api, name, namespace)
        if on_update is not None and st != last:
            on_update(st)
        last = st
        if st.phase == "Ready" or st.terminal:
            return st
        if clock.now() >= deadline:
            return RolloutStatus(
                "Failed",
                "Timeout",
                f"not ready after {timeout:.0f}s; last state: {st.reason}: {st.message}",
                st.desired,
                st.updated,
                st.ready,
                st.available,
                terminal=True,
            )
        clock.sleep(poll)


def delete_service(api: KubeApi, name: str, namespace: str) -> list[str]:
    """Delete every object of service ``name``; returns what was deleted."""
    gone: list[str] = []
    for api_version, kind in reversed(MANAGED_KINDS):
        if not api.served(api_version, kind):
            continue
        try:
            items = api.list(api_version, kind, namespace, selector_for(name))
        except KubeError:
            continue
        for o in items:
            if api.delete(api_version, kind, o["metadata"]["name"], namespace):
                gone.append(f"{kind} {namespace}/{o['metadata']['name']}")
    return gone
