"""The InferenceService operator's logic: reconcile children, report status, run the kpa/predictive autoscalers.

Everything here is driven through :class:`~kubeinfer.kube.api.KubeApi` and takes time as a parameter, so it runs
against :class:`~kubeinfer.testing.kube.FakeKubeApi` in tests exactly as against a cluster; the kopf shell
(:mod:`kubeinfer.kube.operator_kopf`) only wires events and timers to these functions.

- :func:`reconcile` renders the children from the custom resource (the same :func:`~kubeinfer.kube.render.render`
  as ``kubeinfer deploy``), applies them with an owner reference to the resource (garbage collection deletes them
  with it), prunes children the spec no longer needs, and returns the status: conditions ``Ready``,
  ``Progressing`` and ``Degraded`` (metav1.Condition shape; ``lastTransitionTime`` only moves when a status
  flips), the in-cluster URL and replica counts.
- With ``spec.rollout.canary``, a new pod template runs as a canary (:mod:`kubeinfer.kube.canary`): :func:`reconcile`
  keeps the stable Deployment on its template, applies the canary's Deployment and the HTTPRoute's weights after one
  step of the analysis, and writes ``status.canary`` (what a restarted operator resumes from).
- :func:`autoscale_step` is the controller loop for the policies Kubernetes lacks. It scrapes each ready pod's
  ``/metrics`` (``kubeinfer_requests_in_flight``, ``kubeinfer_requests_total``, the compute seconds and, for
  predictive, ``kubeinfer_arrivals_peak``: the sub-second burst signal), turns them into the same
  :class:`~kubeinfer.autoscale.Observation` the local controller builds, calls the policy from
  :func:`~kubeinfer.autoscale.policy_from_spec` and sets the Deployment's replicas through its scale subresource.
  The shell calls it every :func:`~kubeinfer.autoscale.sync_period`, as the local controller and the simulator do;
  :func:`autoscaler_status` turns the tick into ``status.autoscaler`` from what the API server accepted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from kubeinfer.autoscale import Decision, LoadSample, Observation, PodSample, policy_from_spec
from kubeinfer.kube import canary
from kubeinfer.kube.api import KubeApi, KubeError, Manifest
from kubeinfer.kube.crd import VERSION
from kubeinfer.kube.deploy import MANAGED_KINDS, observe, selector_for
from kubeinfer.kube.names import (
    GROUP,
    METRIC_IN_FLIGHT,
    METRIC_REQUESTS_TOTAL,
    OPERATOR_FIELD_MANAGER,
    SCALER_FIELD_MANAGER,
)
from kubeinfer.kube.render import TRACK_LABEL, RenderOptions, grpc_port, http_port, peak_window, render_all
from kubeinfer.kube.status import RolloutStatus
from kubeinfer.spec import InferenceService, SpecError, validate_spec

__all__ = [
    "API_VERSION",
    "PodMetrics",
    "ReconcileResult",
    "ScalerState",
    "autoscale_step",
    "autoscaler_status",
    "build_observation",
    "children",
    "conditions",
    "parse_metrics",
    "reconcile",
]

API_VERSION = f"{GROUP}/{VERSION}"
METRIC_COMPUTE_SUM = "kubeinfer_compute_duration_seconds_sum"
"""The replica server's model busy time (histogram sum): its rate is the work in Erlangs."""
METRIC_ARRIVALS_PEAK = "kubeinfer_arrivals_peak"
"""The replica server's most requests within any SLO-length window over the last 15 s (``server.metrics``; only
where the rendered ``KUBEINFER_PEAK_WINDOW_SECONDS`` sets the window: policy predictive)."""
METRIC_REQUESTS_LATE = "kubeinfer_requests_late_total"
"""The replica server's requests that missed the SLO (``server.metrics``; only where the rendered
``KUBEINFER_SLO_SECONDS`` sets it: policy predictive): its rate is the predictive policy's feedback."""


BOOKKEEPING_PREFIXES = ("kubectl.kubernetes.io/", "kopf.zalando.org/", "kubeinfer.io/")
"""Annotations that tools write on the custom resource as they handle it: kubectl's last-applied configuration,
kopf's progress and diff-base records (the operator keeps them under ``kubeinfer.io/``). They change on every
apply and every handling, so carried into the children (the ConfigMap's ``service.yaml``, the Deployment, the pod
template's spec hash) they rolled the Deployment out again with no change to the spec: generation 1 to 2 at the
first reconcile, 3 and 5 after one patch."""


def spec_of(body: Mapping[str, Any]) -> InferenceService:
    """The validated spec of a custom resource's body (raises ``SpecError``), without the tools' bookkeeping
    annotations (:data:`BOOKKEEPING_PREFIXES`)."""
    meta = body["metadata"]
    doc = {k: v for k, v in body.items() if k in ("apiVersion", "kind", "spec")}
    doc["metadata"] = {k: v for k, v in meta.items() if k in ("name", "namespace", "labels")}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if not k.startswith(BOOKKEEPING_PREFIXES)}
    if annotations:
        doc["metadata"]["annotations"] = annotations
    return validate_spec(doc, f"InferenceService {meta.get('namespace', 'default')}/{meta['name']}")


def owner_reference(owner: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": owner.get("apiVersion", API_VERSION),
        "kind": owner.get("kind", "InferenceService"),
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def children(svc: InferenceService, owner: Mapping[str, Any], opts: RenderOptions) -> tuple[list[Manifest], list[str]]:
    """The rendered objects, each owned by the custom resource. Objects outside its namespace (the device-plugin
    config) cannot carry an owner reference and are left to the cluster admin (``kubeinfer render`` prints them)."""
    ns = owner["metadata"].get("namespace", svc.metadata.namespace)
    rendered = render_all(svc, replace(opts, namespace=ns))
    out: list[Manifest] = []
    notes = list(rendered.notes)
    ref = owner_reference(owner)
    for o in rendered.objects:
        if o["metadata"].get("namespace") != ns:
            notes.append(
                f"{o['kind']} {o['metadata']['namespace']}/{o['metadata']['name']} is cluster-level: apply it once as an admin"
            )
            continue
        o["metadata"]["ownerReferences"] = [ref]
        out.append(o)
    return out, notes


def _condition(
    ctype: str, ok: bool, reason: str, message: str, generation: int, now: str, previous: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    status = "True" if ok else "False"
    prev = next((c for c in previous if c.get("type") == ctype), None)
    since = prev.get("lastTransitionTime", now) if prev is not None and prev.get("status") == status else now
    return {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message[:32768],
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }


def conditions(
    rollout: RolloutStatus, generation: int, now: str, previous: Sequence[Mapping[str, Any]] = ()
) -> list[dict[str, Any]]:
    """Ready / Progressing / Degraded from a rollout status; reasons are CamelCase as Kubernetes conventions ask."""
    return [
        _condition("Ready", rollout.phase == "Ready", rollout.reason, rollout.message, generation, now, previous),
        _condition(
            "Progressing", rollout.phase == "Progressing", rollout.reason, rollout.message, generation, now, previous
        ),
        _condition(
            "Degraded",
            rollout.phase == "Failed",
            rollout.reason if rollout.phase == "Failed" else "AsExpected",
            rollout.message if rollout.phase == "Failed" else "",
            generation,
            now,
            previous,
        ),
    ]


@dataclass(frozen=True)
class ReconcileResult:
    status: dict[str, Any]
    applied: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    svc: InferenceService | None = None


def reconcile(
    body: Mapping[str, Any],
    api: KubeApi,
    now: str,
    opts: RenderOptions | None = None,
    scrape: canary.Scrape | None = None,
) -> ReconcileResult:
    """Bring the children of one InferenceService in line with its spec; return the status to write (``now`` is the
    RFC 3339 time used for condition transitions, and the canary's clock). With ``spec.rollout.canary`` a new pod
    template runs as a canary (:mod:`kubeinfer.kube.canary`): one step of its analysis per call, ``scrape`` reading
    the canary pods' ``/metrics`` when the spec has gates."""
    opts = opts or RenderOptions()
    meta = body["metadata"]
    name, ns = meta["name"], meta.get("namespace", "default")
    generation = int(meta.get("generation", 1))
    previous = (body.get("status") or {}).get("conditions") or []
    try:
        svc = spec_of(body)
    except SpecError as e:
        msg = "; ".join(f"{err.path}: {err.message}" for err in e.errors)
        bad = RolloutStatus("Failed", "InvalidSpec", msg, terminal=True)
        return ReconcileResult(
            {"observedGeneration": generation, "conditions": conditions(bad, generation, now, previous)}
        )
    objs, notes = children(svc, body, opts)
    canary_plan: canary.CanaryPlan | None = None
    if svc.spec.rollout.canary is not None:
        canary_plan = canary.plan(svc, body, objs, api, _seconds(now), scrape)
        objs = canary_plan.objects
        notes.extend(f"canary: {e}" for e in canary_plan.events)
    else:
        _annotate_template(objs, name, api, ns, generation)
    applied: list[str] = []
    wanted = set(canary_plan.keep if canary_plan is not None else ())
    for o in objs:
        if not api.served(o["apiVersion"], o["kind"]):
            notes.append(f"skipped {o['kind']}: the cluster does not serve {o['apiVersion']}")
            continue
        api.apply(o, field_manager=OPERATOR_FIELD_MANAGER, force=True)
        applied.append(f"{o['kind']}/{o['metadata']['name']}")
        wanted.add((o["kind"], o["metadata"]["name"]))
    pruned: list[str] = []
    uid = meta.get("uid")
    for api_version, kind in MANAGED_KINDS:
        if not api.served(api_version, kind):
            continue
        for live in api.list(api_version, kind, ns, selector_for(name)):
            owned = any(r.get("uid") == uid for r in live["metadata"].get("ownerReferences", []))
            if owned and (kind, live["metadata"]["name"]) not in wanted:
                api.delete(api_version, kind, live["metadata"]["name"], ns)
                pruned.append(f"{kind}/{live['metadata']['name']}")
    rollout = observe(api, name, ns)
    dep = api.get("apps/v1", "Deployment", name, ns) or {}
    dstatus = dep.get("status", {})
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": conditions(rollout, generation, now, previous),
        "url": f"http://{name}.{ns}.svc.cluster.local:{http_port(svc)}",
        "replicas": int(dstatus.get("replicas", 0)),
        "readyReplicas": int(dstatus.get("readyReplicas", 0)),
        "selector": ",".join(
            f"{k}={v}" for k, v in sorted(dep.get("spec", {}).get("selector", {}).get("matchLabels", {}).items())
        ),
    }
    g = grpc_port(svc)
    if g is not None:
        status["grpcAddress"] = f"{name}.{ns}.svc.cluster.local:{g}"
    if (body.get("status") or {}).get("autoscaler"):
        status["autoscaler"] = body["status"]["autoscaler"]
    if canary_plan is not None and canary_plan.stored is not None:
        _canary_status(status, canary_plan.stored, generation, now, previous)
    return ReconcileResult(status, applied, pruned, notes, svc)


def _seconds(now: str) -> float:
    """Wall-clock seconds of an RFC 3339 time (the canary's clock: its status outlives an operator process)."""
    return dt.datetime.fromisoformat(now.replace("Z", "+00:00")).timestamp()


def _annotate_template(objs: Sequence[Manifest], name: str, api: KubeApi, ns: str, generation: int) -> None:
    """Record the hash of the Deployment's pod template and the generation it changed at (a later canary compares
    the next template with it, and numbers the revisions by it)."""
    dep = next((o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == name), None)
    if dep is None:
        return
    thash = canary.template_hash(dep)
    live = api.get("apps/v1", "Deployment", name, ns)
    annotations = ((live or {}).get("metadata") or {}).get("annotations") or {}
    revision = generation
    if annotations.get(canary.TEMPLATE_HASH_ANNOTATION) == thash:
        revision = int(annotations.get(canary.REVISION_ANNOTATION, generation))
    dep["metadata"].setdefault("annotations", {}).update(
        {canary.TEMPLATE_HASH_ANNOTATION: thash, canary.REVISION_ANNOTATION: str(revision)}
    )


def _canary_status(
    status: dict[str, Any], stored: canary.Stored, generation: int, now: str, previous: Sequence[Mapping[str, Any]]
) -> None:
    """``status.canary`` and the conditions it implies: Progressing (reason ``Canary``, as ``kubeinfer up``'s object
    view says it) while the canary runs; Degraded (reason ``CanaryAborted``) once it was rolled back, until the spec's
    template changes -- the stable revision still serves, so Ready keeps what the stable Deployment says."""
    status["canary"] = stored.to_json()
    conds = [c for c in status["conditions"] if c["type"] not in ("Progressing", "Degraded")]
    if stored.phase == "Aborted":
        conds.append(_condition("Progressing", False, "CanaryAborted", stored.message, generation, now, previous))
        conds.append(_condition("Degraded", True, "CanaryAborted", stored.message, generation, now, previous))
    else:
        conds.append(_condition("Progressing", True, "Canary", stored.condition_message(), generation, now, previous))
        conds.append(_condition("Degraded", False, "AsExpected", "", generation, now, previous))
    status["conditions"] = conds


# ---------------------------------------------------------------------------------------------------------------
# The autoscaler for kpa / predictive


@dataclass(frozen=True)
class PodMetrics:
    """One scrape of one pod: in-flight requests, the cumulative request counter and busy (compute) seconds."""

    pod: str
    in_flight: float
    requests_total: float
    ready: bool = True
    compute_seconds: float | None = None
    """The sum of ``kubeinfer_compute_duration_seconds`` (model busy time); None when the pod does not export it."""
    arrivals_peak: float | None = None
    """``kubeinfer_arrivals_peak``; None when the pod does not export it."""
    late_total: float | None = None
    """``kubeinfer_requests_late_total``; None when the pod does not export it."""


def parse_metrics(pod: str, text: str, ready: bool = True) -> PodMetrics:
    """Read ``kubeinfer_requests_in_flight``, the sum of ``kubeinfer_requests_total`` and of
    ``kubeinfer_compute_duration_seconds_sum``, ``kubeinfer_arrivals_peak`` and ``kubeinfer_requests_late_total``
    from /metrics text."""
    from prometheus_client.parser import text_string_to_metric_families

    in_flight = 0.0
    total = 0.0
    compute: float | None = None
    peak: float | None = None
    late: float | None = None
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == METRIC_IN_FLIGHT:
                in_flight += s.value
            elif s.name == METRIC_REQUESTS_TOTAL:
                total += s.value
            elif s.name == METRIC_COMPUTE_SUM:
                compute = (compute or 0.0) + s.value
            elif s.name == METRIC_ARRIVALS_PEAK:
                peak = (peak or 0.0) + s.value
            elif s.name == METRIC_REQUESTS_LATE:
                late = (late or 0.0) + s.value
    return PodMetrics(pod, in_flight, total, ready, compute, peak, late)


@dataclass(frozen=True)
class ScalerState:
    """What the autoscaler carries between ticks for one service (frozen; a new one is returned each tick)."""

    policy_state: Any = None
    last_time: float | None = None
    last_totals: tuple[tuple[str, float], ...] = ()
    generation: int = -1
    last_compute: tuple[tuple[str, float], ...] = ()
    """Each pod's compute-seconds sum at ``last_time``, for the work rate."""
    last_late: tuple[tuple[str, float], ...] = ()
    """Each pod's late-request counter at ``last_time``, for the rate of SLO misses."""
    scale_error: str | None = None
    """Why the last tick's scale call failed (None: it did not fail, or none was needed): the status then keeps the
    previous ``desiredReplicas`` and says why, rather than report a count that was never applied."""
    scaled: bool = False
    """The last tick's scale call was accepted (False: none was needed, or it failed): ``lastScaleTime`` moves."""


def build_observation(
    current: int,
    ready: int,
    metrics: Sequence[PodMetrics],
    state: ScalerState,
    now: float,
    peak_window: float = 0.0,
) -> tuple[Observation, tuple[tuple[str, float], ...]]:
    """An Observation from one scrape: concurrency is the sum of in-flight requests, rps the counter delta since the
    previous tick (a pod that restarted, whose counter went down, counts from zero); work (busy slot-seconds per
    second) the same delta of the compute-seconds sums, when every pod exports it and was seen at the last tick.

    With ``peak_window`` (seconds; the replicas' ``KUBEINFER_PEAK_WINDOW_SECONDS``), ``peak`` is the sum of the pods'
    ``kubeinfer_arrivals_peak`` when at least one exports it (a pod that does not -- an older image -- adds
    nothing): an upper bound on the service's most arrivals within that window, over the last 15 s rather than
    since the previous tick (so a burst shows in each tick of the 15 s after it). ``late`` (requests per second that
    missed the SLO: the predictive policy's feedback) is the delta of the pods' ``kubeinfer_requests_late_total``
    over the same interval, when every pod exports it and was seen at the last tick, as work."""
    previous = dict(state.last_totals)
    concurrency = sum(m.in_flight for m in metrics)
    rps = 0.0
    work: float | None = None
    late: float | None = None
    if state.last_time is not None and now > state.last_time:
        span = now - state.last_time
        delta = 0.0
        for m in metrics:
            before = previous.get(m.pod, 0.0)
            delta += m.requests_total - before if m.requests_total >= before else m.requests_total
        rps = delta / span
        work = _counter_rate([(m.pod, m.compute_seconds) for m in metrics], state.last_compute, span)
        late = _counter_rate([(m.pod, m.late_total) for m in metrics], state.last_late, span)
    pods = tuple(PodSample(name=m.pod, metrics={"concurrency": m.in_flight}, ready=m.ready) for m in metrics)
    peaks = [m.arrivals_peak for m in metrics if m.arrivals_peak is not None]
    load = LoadSample(time=now, concurrency=concurrency, rps=rps, work=work, late=late)
    if peak_window > 0 and peaks:
        load = replace(load, peak=sum(peaks), peak_window=peak_window)
    obs = Observation(current_replicas=current, pods=pods, ready_replicas=ready, load=(load,))
    return obs, tuple(sorted((m.pod, m.requests_total) for m in metrics))


def _counter_rate(
    now: Sequence[tuple[str, float | None]], before: tuple[tuple[str, float], ...], span: float
) -> float | None:
    """The summed rate of a counter over ``span`` seconds from each pod's value now and at the last tick (a pod whose
    counter went down restarted: it counts from zero); None unless every pod exports it and was seen then."""
    last = dict(before)
    if not now or any(v is None or pod not in last for pod, v in now):
        return None
    total = 0.0
    for pod, v in now:
        c, b = v or 0.0, last[pod]
        total += c - b if c >= b else c
    return total / span


def _totals(values: Iterable[tuple[str, float | None]]) -> tuple[tuple[str, float], ...]:
    """Each pod's counter value, for the pods that export it: what :func:`_counter_rate` differences next tick."""
    return tuple(sorted((pod, v) for pod, v in values if v is not None))


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


def autoscale_step(
    svc: InferenceService,
    api: KubeApi,
    scrape: Callable[[Mapping[str, Any]], str | None],
    state: ScalerState,
    now: float,
    generation: int = 0,
) -> tuple[Decision | None, ScalerState]:
    """One tick of the kpa/predictive autoscaler: scrape, decide, scale. ``scrape(pod)`` returns the pod's /metrics
    text or None when unreachable (that pod is then left out, as the HPA leaves out pods with missing metrics)."""
    a = svc.spec.autoscaling
    if a.policy not in ("kpa", "predictive"):
        return None, state
    ns = svc.metadata.namespace
    dep = api.get("apps/v1", "Deployment", svc.name, ns)
    if dep is None:
        return None, state
    policy = policy_from_spec(a, svc.spec.replicas)
    if state.policy_state is None or state.generation != generation:
        # a spec change rebuilds the policy; its windows start again
        state = ScalerState(policy_state=policy.initial_state(), generation=generation)
    labels = dep["spec"]["selector"]["matchLabels"]
    # the stable Deployment's pods: a canary's (which its selector matches too) are not this Deployment's to scale
    selector = ",".join([*(f"{k}={v}" for k, v in sorted(labels.items())), f"{TRACK_LABEL}!=canary"])
    pods = api.list("v1", "Pod", ns, selector)
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    metrics: list[PodMetrics] = []
    for p in live:
        if not _pod_ready(p):
            continue
        text = scrape(p)
        if text is not None:
            metrics.append(parse_metrics(p["metadata"]["name"], text, True))
    current = int(dep["spec"].get("replicas", 1))
    ready = sum(1 for p in live if _pod_ready(p))
    obs, totals = build_observation(current, ready, metrics, state, now, peak_window(svc))
    decision, pstate = policy.decide(obs, state.policy_state, now)
    scaled = decision.replicas != current
    if scaled:
        try:
            api.scale(svc.name, ns, decision.replicas, field_manager=SCALER_FIELD_MANAGER)
        except KubeError as e:
            return decision, replace(
                state, generation=generation, scale_error=f"scaling to {decision.replicas}: {e}", scaled=False
            )
    return decision, ScalerState(
        pstate,
        now,
        totals,
        generation,
        _totals((m.pod, m.compute_seconds) for m in metrics),
        last_late=_totals((m.pod, m.late_total) for m in metrics),
        scaled=scaled,
    )


def autoscaler_status(
    previous: Mapping[str, Any] | None, decision: Decision, state: ScalerState, now: str
) -> dict[str, Any]:
    """``status.autoscaler`` after a tick of :func:`autoscale_step` (``state`` the one it returned, ``now`` RFC 3339),
    from what the API server accepted: the decided count (the Deployment has it: scaled now, or it had it already),
    the numbers behind it (``details``: :meth:`Decision.shown_details`), ``lastScaleTime`` only when this tick's
    scale call was accepted, as the HPA's status moves it. After a refused
    scale call the previous count and time stay and the reason says why."""
    out = dict(previous or {})
    if state.scale_error is not None:
        out["reason"] = f"ScaleFailed: {state.scale_error}"[:1000]
        return out
    out["desiredReplicas"] = decision.replicas
    out["reason"] = decision.reason
    out["details"] = decision.shown_details()
    if state.scaled:
        out["lastScaleTime"] = now
    return out
