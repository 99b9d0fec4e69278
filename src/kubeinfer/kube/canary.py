"""Canary rollouts on Kubernetes: the operator's side of ``spec.rollout.canary``.

``kubeinfer render`` gives a service with a canary spec two Services (``<name>-stable``, ``<name>-canary``, pods by
their ``kubeinfer.io/track`` label) and an HTTPRoute whose default rule weighs them 100/0. This module is what the
operator does with them when the pod template changes (Argo Rollouts' canary with traffic routing,
``dynamicStableScale: false``; Flagger's primary/canary pair):

- the stable Deployment ``<name>`` keeps the template it runs (and its ConfigMap ``<name>-spec``, which its pods
  mount: rewriting it would hand the new spec to any stable pod that restarts); the new template runs in Deployment
  ``<name>-canary`` (pods labelled ``track: canary``, its own ConfigMap ``<name>-canary-spec``), scaled to the step's
  share of the stable replicas (:func:`~kubeinfer.lifecycle.canary.canary_replicas`);
- each reconcile runs one step of :func:`kubeinfer.lifecycle.canary.decide` -- the same state machine ``kubeinfer
  up`` runs -- and writes its weight into the HTTPRoute;
- on ``Promote`` the stable Deployment takes the new template (a rolling update: its pods keep serving the stable
  Service's share meanwhile), the canary Deployment and ConfigMap are pruned and the route goes back to 100/0;
- on ``Rollback`` (a gate failed, the canary's replicas were not ready within ``progressDeadlineSeconds``, or the
  annotation :data:`ABORT_ANNOTATION` is set) the route goes to 100/0 and the canary's objects are pruned; the
  stable revision keeps serving and the aborted template is not tried again until the spec's template changes.

Everything the machine needs to go on lives in ``status.canary`` (its step, weight, the analysis window's start and
the counters at that start, the stable and canary template hashes), so an operator that restarts mid-canary resumes
where it was: :func:`plan` reads the state from the custom resource it is handed, never from memory.

The analysis reads the canary pods' own ``/metrics`` (``kubeinfer_requests_total`` by status code and the
``kubeinfer_request_duration_seconds`` histogram, summed over the canary's ready pods): :func:`counters_from_metrics`
turns them into the :class:`~kubeinfer.lifecycle.canary.Counters` the router keeps under ``kubeinfer up``. A spec
without gates (``maxErrorPercent`` and ``maxP99Ms`` both null) runs with the analysis off: each step is held for
``analysisSeconds`` and passes on time alone, nothing is scraped.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from kubeinfer.kube.api import KubeApi, Manifest
from kubeinfer.kube.names import config_map_name
from kubeinfer.kube.render import TRACK_LABEL, fixed_replicas
from kubeinfer.lifecycle import canary as analysis
from kubeinfer.lifecycle.canary import LATENCY_BOUNDS, CanaryConfig, CanaryState, Counters, Measured
from kubeinfer.spec import InferenceService

__all__ = [
    "ABORT_ANNOTATION",
    "REVISION_ANNOTATION",
    "TEMPLATE_HASH_ANNOTATION",
    "CanaryPlan",
    "Stored",
    "canary_config",
    "canary_objects",
    "counters_from_metrics",
    "plan",
    "template_hash",
]

ABORT_ANNOTATION: Final = "kubeinfer.io/abort-canary"
"""Set on the InferenceService (any value): the running canary is rolled back, and no canary starts while it is
there (``kubectl annotate kis NAME kubeinfer.io/abort-canary=true``; remove it with ``...abort-canary-``)."""
TEMPLATE_HASH_ANNOTATION: Final = "kubeinfer.io/template-hash"
"""On the Deployments the operator applies: the hash of the pod template it rendered (:func:`template_hash`). The
live template cannot be compared with a rendered one (the API server adds defaults), this can."""
REVISION_ANNOTATION: Final = "kubeinfer.io/revision"
"""On the Deployments the operator applies: the InferenceService's ``metadata.generation`` at which their template
last changed (the revision numbers ``status.canary`` shows)."""

RUNNING: Final = ("Waiting", "Analyzing")
METRIC_REQUESTS: Final = "kubeinfer_requests_total"
METRIC_DURATION_BUCKET: Final = "kubeinfer_request_duration_seconds_bucket"

Scrape = Callable[[Mapping[str, Any]], str | None]
"""A pod's ``/metrics`` text, or None when it cannot be read."""


# ---------------------------------------------------------------------------------------------------------------
# Pure parts: hashes, objects, the stored state, metrics


def template_hash(deployment: Mapping[str, Any]) -> str:
    """The hash of a rendered Deployment's pod template, leaving out the track label (the same template is the
    canary's, then the stable's once promoted)."""
    template = copy.deepcopy(deployment["spec"]["template"])
    template.get("metadata", {}).get("labels", {}).pop(TRACK_LABEL, None)
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:16]


def canary_config(svc: InferenceService) -> CanaryConfig:
    """The analysis' configuration; with no gates, the analysis is off: a step passes on time alone."""
    c = svc.spec.rollout.canary
    if c is None:
        raise ValueError(f"{svc.name}: spec.rollout.canary is not set")
    cfg = CanaryConfig.from_spec(c, svc.spec.rollout.progressDeadlineSeconds)
    if cfg.max_error_percent is None and cfg.max_p99_ms is None:
        cfg = replace(cfg, min_requests=0)
    return cfg


def _analysis_on(cfg: CanaryConfig) -> bool:
    return cfg.max_error_percent is not None or cfg.max_p99_ms is not None


def canary_objects(
    config_map: Mapping[str, Any], deployment: Mapping[str, Any], replicas: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The canary's ConfigMap and Deployment from the rendered (new) ones: ``<name>-canary-spec`` and
    ``<name>-canary``, pods labelled ``track: canary`` (also in the canary's selector, so that the two Deployments'
    selectors do not overlap), ``replicas`` of them. Owner references and labels are kept from the rendered ones."""
    name = deployment["metadata"]["name"]
    cm = copy.deepcopy(dict(config_map))
    cm["metadata"]["name"] = f"{config_map['metadata']['name'].removesuffix('-spec')}-canary-spec"
    dep = copy.deepcopy(dict(deployment))
    dep["metadata"]["name"] = f"{name}-canary"
    spec = dep["spec"]
    spec["replicas"] = replicas
    spec["selector"]["matchLabels"][TRACK_LABEL] = "canary"
    spec["template"]["metadata"].setdefault("labels", {})[TRACK_LABEL] = "canary"
    for volume in spec["template"]["spec"].get("volumes", []):
        ref = volume.get("configMap")
        if ref is not None and ref.get("name") == config_map["metadata"]["name"]:
            ref["name"] = cm["metadata"]["name"]
    return cm, dep


def _stable_config_map_name(svc: InferenceService) -> str:
    return config_map_name(svc)


def counters_from_metrics(texts: Sequence[str]) -> Counters:
    """The cumulative counters of a revision from its pods' ``/metrics``: responses (``kubeinfer_requests_total``),
    errors among them (status 5xx other than 503, which is the server's backpressure answer, as the router counts
    them under ``kubeinfer up``) and latencies (``kubeinfer_request_duration_seconds``; each of the server's buckets
    is counted in the analysis bucket holding its upper bound, so a quantile is read within the server's bucket)."""
    from prometheus_client.parser import text_string_to_metric_families

    requests = 0.0
    errors = 0.0
    latency = [0.0] * (len(LATENCY_BOUNDS) + 1)
    for text in texts:
        cumulative: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name == METRIC_REQUESTS:
                    requests += s.value
                    code = s.labels.get("code", "")
                    if code.startswith("5") and code != "503":
                        errors += s.value
                elif s.name == METRIC_DURATION_BUCKET:
                    key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
                    cumulative.setdefault(key, []).append((float(s.labels["le"]), s.value))
        for buckets in cumulative.values():
            below = 0.0
            for le, count in sorted(buckets):
                index = len(LATENCY_BOUNDS) if math.isinf(le) else analysis.latency_bucket(le)
                latency[index] += count - below
                below = count
    return Counters(int(requests), int(errors), tuple(int(n) for n in latency))


def _rfc3339(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _seconds(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class Stored:
    """``status.canary``: what ``kubectl get -o yaml`` and ``kubeinfer get`` show (``stableRevision``,
    ``canaryRevision``, ``weight``, ``step`` counted from 1, ``steps``, ``phase``, ``analysis``: the shape ``kubeinfer
    up`` writes) and what the operator resumes from (the template hashes, the window's start and baseline)."""

    state: CanaryState
    steps: tuple[int, ...]
    phase: str
    """``Waiting`` (for the step's replicas), ``Analyzing``, or ``Aborted`` (rolled back; held until the template
    changes)."""
    stable_hash: str
    canary_hash: str
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        s = self.state
        out: dict[str, Any] = {
            "stableRevision": s.stable,
            "canaryRevision": s.canary,
            "weight": s.weight,
            "step": s.step + 1,
            "steps": list(self.steps),
            "phase": self.phase,
            "analysis": None if s.last is None else s.last.to_json(),
            "message": self.message[:4096],
            "stableHash": self.stable_hash,
            "canaryHash": self.canary_hash,
            "waitingSince": _rfc3339(s.waiting_since),
            "baseline": {
                "requests": s.baseline.requests,
                "errors": s.baseline.errors,
                "latency": list(s.baseline.latency),
            },
        }
        if s.window_start is not None:
            out["windowStart"] = _rfc3339(s.window_start)
        if out["analysis"] is None:
            del out["analysis"]
        return out

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Stored | None:
        """The stored canary, or None when ``status.canary`` is not one the operator wrote (then a canary starts
        afresh rather than from a guess)."""
        try:
            base = doc.get("baseline") or {}
            a = doc.get("analysis")
            last = (
                None if not a else Measured(int(a["requests"]), int(a["errors"]), float(a["seconds"]), a.get("p99Ms"))
            )
            window = doc.get("windowStart")
            state = CanaryState(
                stable=int(doc["stableRevision"]),
                canary=int(doc["canaryRevision"]),
                step=int(doc["step"]) - 1,
                weight=int(doc["weight"]),
                waiting_since=_seconds(str(doc["waitingSince"])),
                window_start=None if window is None else _seconds(str(window)),
                baseline=Counters(
                    int(base.get("requests", 0)), int(base.get("errors", 0)), tuple(base.get("latency") or ())
                ),
                last=last,
            )
            return cls(
                state,
                tuple(int(w) for w in doc["steps"]),
                str(doc["phase"]),
                str(doc["stableHash"]),
                str(doc["canaryHash"]),
                str(doc.get("message", "")),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def condition_message(self) -> str:
        """The Progressing condition's message, as ``kubeinfer up``'s object view writes it."""
        s = self.state
        return (
            f"revision {s.canary} gets {s.weight}% of the traffic (step {s.step + 1}/{len(self.steps)}, "
            f"{self.phase.lower()})"
        )


# ---------------------------------------------------------------------------------------------------------------
# One reconcile's worth of canary


@dataclass
class CanaryPlan:
    """What :func:`plan` decided for one reconcile: the objects to apply in place of the rendered ones (in order),
    those to leave as they are but keep (not pruned), the route's weight, and what the status says."""

    objects: list[Manifest]
    keep: list[tuple[str, str]] = field(default_factory=list)
    """(kind, name) of live objects left untouched this time (the stable Deployment and ConfigMap during a canary)."""
    stored: Stored | None = None
    """``status.canary`` to write (None: none)."""
    events: list[str] = field(default_factory=list)
    """What happened (a step set, a promotion, a rollback), for the operator's log."""


def _annotate(dep: dict[str, Any], thash: str, revision: int) -> None:
    annotations = dep["metadata"].setdefault("annotations", {})
    annotations[TEMPLATE_HASH_ANNOTATION] = thash
    annotations[REVISION_ANNOTATION] = str(revision)


def _ready(live: Mapping[str, Any] | None, want: int, thash: str) -> bool:
    """The live canary Deployment runs ``thash`` with at least ``want`` ready replicas of it."""
    if live is None:
        return False
    meta, st = live.get("metadata") or {}, live.get("status") or {}
    if (meta.get("annotations") or {}).get(TEMPLATE_HASH_ANNOTATION) != thash:
        return False
    if int(st.get("observedGeneration", 0)) < int(meta.get("generation", 0)):
        return False
    return int(st.get("updatedReplicas", 0)) >= want and int(st.get("readyReplicas", 0)) >= want


def _set_weight(objs: list[Manifest], route_name: str, weight: int) -> None:
    for o in objs:
        if o["kind"] == "HTTPRoute" and o["metadata"]["name"] == route_name:
            for rule in o["spec"]["rules"]:
                for ref in rule.get("backendRefs", []):
                    if "weight" in ref:
                        ref["weight"] = weight if ref["name"].endswith("-canary") else 100 - weight


def _canary_counters(api: KubeApi, namespace: str, name: str, scrape: Scrape) -> Counters:
    selector = f"{TRACK_LABEL}=canary,app.kubernetes.io/instance={name}"
    texts: list[str] = []
    for pod in api.list("v1", "Pod", namespace, selector):
        if pod["metadata"].get("deletionTimestamp"):
            continue
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (pod.get("status") or {}).get("conditions") or []
        )
        if ready:
            text = scrape(pod)
            if text is not None:
                texts.append(text)
    return counters_from_metrics(texts)


def plan(
    svc: InferenceService,
    body: Mapping[str, Any],
    objs: list[Manifest],
    api: KubeApi,
    now: float,
    scrape: Scrape | None = None,
) -> CanaryPlan:
    """The objects to apply for a service with ``spec.rollout.canary`` (``objs``: the rendered ones, owned), after one
    step of the canary's analysis. ``now``: wall-clock seconds (status keeps times as RFC 3339, so that another
    operator process resumes with them); ``scrape``: a pod's ``/metrics`` (only called with the analysis on)."""
    meta = body["metadata"]
    name, ns = svc.name, meta.get("namespace", svc.metadata.namespace)
    generation = int(meta.get("generation", 1))
    cfg = canary_config(svc)
    out = [copy.deepcopy(o) for o in objs]
    dep = next(o for o in out if o["kind"] == "Deployment" and o["metadata"]["name"] == name)
    cm = next(o for o in out if o["kind"] == "ConfigMap" and o["metadata"]["name"] == _stable_config_map_name(svc))
    new_hash = template_hash(dep)
    live = api.get("apps/v1", "Deployment", name, ns)
    live_annotations = ((live or {}).get("metadata") or {}).get("annotations") or {}
    live_hash = live_annotations.get(TEMPLATE_HASH_ANNOTATION)
    live_revision = int(live_annotations.get(REVISION_ANNOTATION, generation) or generation)
    previous = ((body.get("status") or {}).get("canary")) or None
    stored = Stored.from_json(previous) if previous else None

    def plain() -> CanaryPlan:
        """No canary: the rendered objects as they are, the route at 100/0."""
        revision = live_revision if live_hash == new_hash else generation
        _annotate(dep, new_hash, revision)
        _set_weight(out, name, 0)
        return CanaryPlan(out)

    ready_stable = int(((live or {}).get("status") or {}).get("readyReplicas", 0))
    if live is None or live_hash is None or live_hash == new_hash:
        # Nothing to compare with (first deploy, or a Deployment from before the operator hashed templates), or the
        # template is the stable one (a promotion finished, or the spec went back to it).
        return plain()
    known = stored is not None and stored.canary_hash == new_hash  # running, or rolled back: never rolled out at once
    if ready_stable == 0 and not known:
        # A canary needs a serving revision to fall back on (as under kubeinfer up): a service that serves nothing
        # rolls its new template out at once.
        return plain()

    # The stable Deployment and its ConfigMap stay as they run; the canary gets the new template.
    keep = [("Deployment", name), ("ConfigMap", cm["metadata"]["name"])]
    out = [o for o in out if o is not dep and o is not cm]

    def held(st: Stored, events: list[str]) -> CanaryPlan:
        _set_weight(out, name, 0)
        return CanaryPlan(out, keep, st, events)

    if stored is not None and stored.phase == "Aborted" and stored.canary_hash == new_hash:
        return held(stored, [])
    aborting = ABORT_ANNOTATION in (meta.get("annotations") or {})
    resuming = (
        stored is not None
        and stored.phase in RUNNING
        and stored.canary_hash == new_hash
        and stored.stable_hash == live_hash
        and stored.steps == cfg.steps
    )
    events: list[str] = []
    if resuming and stored is not None:
        state = stored.state
    else:
        if stored is not None and stored.phase in RUNNING:
            events.append(
                f"revision {stored.state.canary} replaced by a new template before it finished: its canary ends"
            )
        state = analysis.start(live_revision, generation, now)
        events.append(
            f"canary of revision {generation} over revision {live_revision}: steps "
            f"{', '.join(f'{w}%' for w in cfg.steps)}, {cfg.gates()}"
        )
    if aborting:
        why = f"aborted: the InferenceService has the annotation {ABORT_ANNOTATION}"
        events.append(f"revision {state.canary} rolled back ({why})")
        return held(Stored(replace(state, weight=0), cfg.steps, "Aborted", live_hash, new_hash, why), events)

    desired = fixed_replicas(svc)
    if desired is None:
        desired = int((live.get("spec") or {}).get("replicas", 1))
    want = analysis.canary_replicas(desired, cfg.steps[state.step])
    live_canary = api.get("apps/v1", "Deployment", f"{name}-canary", ns)
    ready = _ready(live_canary, want, new_hash)
    counters = Counters()
    if _analysis_on(cfg) and scrape is not None and (state.window_start is not None or ready):
        # in the window, or at its opening (the counters then are its baseline)
        counters = _canary_counters(api, ns, name, scrape)
    decision, state = analysis.decide(cfg, state, counters, ready, now)
    if isinstance(decision, analysis.Promote):
        events.append(f"promoted: {decision.message}")
        _annotate(dep, new_hash, state.canary)
        _set_weight(out, name, 0)
        return CanaryPlan(_in_render_order(out, cm, dep), [], None, events)
    if isinstance(decision, analysis.Rollback):
        events.append(f"rolled back: {decision.message}")
        return held(
            Stored(replace(state, weight=0), cfg.steps, "Aborted", live_hash, new_hash, decision.message), events
        )
    if isinstance(decision, analysis.SetWeight):
        events.append(decision.message)
    # The canary's replicas follow its step (the next step's start before its weight is set, as kubeinfer up does).
    want = analysis.canary_replicas(desired, cfg.steps[state.step])
    ccm, cdep = canary_objects(cm, dep, want)
    _annotate(cdep, new_hash, state.canary)
    cdep["metadata"].setdefault("annotations", {}).pop("kubeinfer.io/autoscaling-policy", None)
    _set_weight(out, name, state.weight)
    phase = "Waiting" if state.window_start is None else "Analyzing"
    message = events[-1] if events else (stored.message if stored is not None else "")
    return CanaryPlan([ccm, *out, cdep], keep, Stored(state, cfg.steps, phase, live_hash, new_hash, message), events)


def _in_render_order(out: list[Manifest], cm: Manifest, dep: Manifest) -> list[Manifest]:
    """``out`` with the stable ConfigMap first and the stable Deployment after the Services (the render's order)."""
    rest = [o for o in out if o is not cm and o is not dep]
    services = [o for o in rest if o["kind"] in ("Service", "HTTPRoute")]
    others = [o for o in rest if o["kind"] not in ("Service", "HTTPRoute")]
    return [cm, *services, dep, *others]
