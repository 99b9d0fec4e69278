"""Apply rendered objects (server-side apply), prune what the spec no longer needs, wait for the rollout.

Server-side apply with one field manager (``kubeinfer``; the operator uses ``kubeinfer-operator``) makes every
deploy idempotent and leaves fields other controllers own alone: the Deployment's ``replicas`` is not rendered
when an autoscaler owns it. Every object of a service carries ``kubeinfer.io/service=<name>`` and
``app.kubernetes.io/managed-by=kubeinfer``; prune lists the kinds kubeinfer renders by that selector and deletes
those not in the new render (``kubectl apply --prune`` with a label, without its allow-list pitfalls). Add-on kinds
whose CRD the cluster lacks (VPA, ServiceMonitor, KEDA) are skipped with a note rather than failing the deploy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from kubeinfer.kube.api import Clock, KubeApi, KubeError, Manifest
from kubeinfer.kube.names import FIELD_MANAGER, SERVICE_LABEL
from kubeinfer.kube.status import RolloutStatus, interpret

__all__ = [
    "MANAGED_KINDS",
    "PlanStep",
    "delete_service",
    "execute",
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
    dry_run: bool = False,
    on_step: Callable[[PlanStep], None] | None = None,
) -> list[Manifest]:
    """Carry out a plan; returns the applied objects as the server returned them."""
    applied: list[Manifest] = []
    for step in steps:
        if on_step is not None:
            on_step(step)
        if step.action == "apply":
            applied.append(api.apply(step.obj, field_manager=field_manager, force=True, dry_run=dry_run))
        elif step.action == "prune" and not dry_run:
            m = step.obj["metadata"]
            api.delete(step.obj["apiVersion"], step.obj["kind"], m["name"], m.get("namespace"))
    return applied


def observe(api: KubeApi, name: str, namespace: str) -> RolloutStatus:
    """The rollout status of service ``name`` now."""
    dep = api.get("apps/v1", "Deployment", name, namespace)
    if dep is None:
        return interpret(None)
    labels = dep.get("spec", {}).get("selector", {}).get("matchLabels", {})
    pods = api.list("v1", "Pod", namespace, ",".join(f"{k}={v}" for k, v in sorted(labels.items())))
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
