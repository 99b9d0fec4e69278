"""The kopf shell around :mod:`kubeinfer.kube.operator` (``kubeinfer operator``; needs the ``[kube]`` extra).

kopf delivers create/update/resume events and a timer per InferenceService; each calls the pure reconcile or
autoscale step with the real API and clock (a canary's steps run in the reconcile, every
:data:`CANARY_RECONCILE_SECONDS` while one runs; its state is in ``status.canary``, so a restarted operator resumes it). kopf keeps its own bookkeeping in annotations (not in ``status``, whose
schema is ours), runs standalone (no kopf peering objects) and posts events for failures. Several replicas elect
one leader over a Lease (:mod:`kubeinfer.kube.leader`, ``--leader-elect``): only the leader runs kopf.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubeinfer.autoscale import sync_period
from kubeinfer.kube.api import KubeApi, connect
from kubeinfer.kube.crd import PLURAL, VERSION
from kubeinfer.kube.names import GROUP, OPERATOR_FIELD_MANAGER
from kubeinfer.kube.operator import API_VERSION, ScalerState, autoscale_step, autoscaler_status, reconcile, spec_of
from kubeinfer.kube.render import RenderOptions, http_port
from kubeinfer.spec import SpecError

__all__ = ["LeaderOptions", "run"]

log = logging.getLogger("kubeinfer.operator")


def _now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _scrape(port: int, timeout: float = 2.0) -> Any:
    def scrape(pod: Mapping[str, Any]) -> str | None:
        ip = (pod.get("status") or {}).get("podIP")
        if not ip:
            return None
        try:
            with urllib.request.urlopen(f"http://{ip}:{port}/metrics", timeout=timeout) as r:
                return str(r.read().decode())
        except OSError:
            return None

    return scrape


def _scrape_pod(pod: Mapping[str, Any]) -> str | None:
    """A pod's /metrics on its container port named ``http`` (the canary analysis reads the canary's pods)."""
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == "http":
                return _scrape(int(p["containerPort"]))(pod)  # type: ignore[no-any-return]
    return None


TICK_SECONDS = 1.0
CANARY_RECONCILE_SECONDS = 2.0
"""While a canary runs, the full reconcile (one step of its analysis) runs this often rather than every
``interval``: a step held for ``analysisSeconds`` should end close to then."""


@dataclass(frozen=True)
class LeaderOptions:
    """Leader election (:mod:`kubeinfer.kube.leader`): the Lease's namespace and name, and client-go's timings."""

    namespace: str
    name: str = "kubeinfer-operator"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        from kubeinfer.kube.leader import check_timings

        check_timings(self.lease_duration, self.renew_deadline, self.retry_period)


def run(
    namespaces: list[str] | None,
    opts: RenderOptions,
    context: str | None = None,
    interval: float = 15.0,
    leader: LeaderOptions | None = None,
) -> None:
    """Run the operator; with ``leader``, only once this process holds the Lease (the others wait as candidates),
    exiting 1 if it loses it and releasing it on a clean stop."""
    client_api = connect(context)
    if not logging.getLogger().handlers:  # kopf sets up logging only under its own CLI: notes and events go here
        logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(name)-20s [%(levelname)-8s] %(message)s")
    if leader is None:
        _serve(client_api, namespaces, opts, interval)
        return
    from kubernetes import client

    from kubeinfer.kube.leader import Elector

    elector = Elector(
        client.CoordinationV1Api(client_api.api_client),
        leader.namespace,
        leader.name,
        lease_duration=leader.lease_duration,
        renew_deadline=leader.renew_deadline,
        retry_period=leader.retry_period,
    )
    elector.acquire()
    # Losing the Lease means another replica may lead now: stop at once (as controller-runtime does) and be
    # restarted as a candidate, rather than reconcile beside it.
    elector.keep(on_lost=lambda: os._exit(1))
    try:
        _serve(client_api, namespaces, opts, interval)
    finally:
        elector.release()


class _Handlers:
    """What the kopf handlers do, with the state they share: each service's autoscaler and when it last reconciled
    and scaled. One short timer per service: the autoscaler runs on the policy's own period
    (kubeinfer.autoscale.sync_period: kpa 2 s, predictive 5 s by default), first one period after the service is
    seen, as Knative's decider and the HPA controller first decide; the full reconcile, which re-applies the
    children, only every ``interval`` seconds."""

    def __init__(self, api: KubeApi, opts: RenderOptions, interval: float) -> None:
        self.api = api
        self.opts = opts
        self.interval = interval
        self.scalers: dict[str, ScalerState] = {}
        self.last_reconcile: dict[str, float] = {}
        self.last_scale: dict[str, float] = {}

    def _patch_status(self, meta: Mapping[str, Any], status: dict[str, Any]) -> None:
        self.api.patch_status(
            API_VERSION,
            "InferenceService",
            meta["name"],
            meta["namespace"],
            status,
            field_manager=OPERATOR_FIELD_MANAGER,
        )

    def reconcile(self, body: Mapping[str, Any], **_: Any) -> None:
        import kopf

        result = reconcile(dict(body), self.api, _now_rfc3339(), self.opts, _scrape_pod)
        meta = body["metadata"]
        self._patch_status(meta, result.status)
        for note in result.notes:
            log.info("%s/%s: %s", meta["namespace"], meta["name"], note)
        degraded = next((c for c in result.status["conditions"] if c["type"] == "Degraded"), None)
        if degraded and degraded["status"] == "True" and degraded["reason"] == "InvalidSpec":
            raise kopf.PermanentError(degraded["message"])

    def tick(self, body: Mapping[str, Any], **_: Any) -> None:
        meta = body["metadata"]
        uid = meta["uid"]
        now = time.monotonic()
        self.last_scale.setdefault(uid, now)
        status: dict[str, Any] | None = None
        canary = ((body.get("status") or {}).get("canary") or {}).get("phase") in ("Waiting", "Analyzing")
        every = min(self.interval, CANARY_RECONCILE_SECONDS) if canary else self.interval
        if now - self.last_reconcile.get(uid, -math.inf) >= every:
            self.last_reconcile[uid] = now
            # refresh status, repair children, run a canary's step
            result = reconcile(dict(body), self.api, _now_rfc3339(), self.opts, _scrape_pod)
            for note in result.notes:
                if note.startswith("canary: "):
                    log.info("%s/%s: %s", meta["namespace"], meta["name"], note)
            svc = result.svc
            status = dict(result.status)
        else:
            try:
                svc = spec_of(body)
            except SpecError:
                svc = None  # the next full reconcile reports it
        if (
            svc is not None
            and svc.spec.autoscaling.policy in ("kpa", "predictive")
            and now - self.last_scale[uid] >= sync_period(svc.spec.autoscaling)
        ):
            self.last_scale[uid] = now
            decision, self.scalers[uid] = autoscale_step(
                svc,
                self.api,
                _scrape(http_port(svc)),
                self.scalers.get(uid, ScalerState()),
                now,
                int(meta.get("generation", 0)),
            )
            if decision is not None:
                status = dict(body.get("status") or {}) if status is None else status
                status["autoscaler"] = autoscaler_status(
                    status.get("autoscaler"), decision, self.scalers[uid], _now_rfc3339()
                )
        if status is not None:
            self._patch_status(meta, status)

    def forget(self, body: Mapping[str, Any], **_: Any) -> None:
        uid = body["metadata"]["uid"]
        for state in (self.scalers, self.last_reconcile, self.last_scale):
            state.pop(uid, None)  # children go with their owner (garbage collection)


def _serve(api: KubeApi, namespaces: list[str] | None, opts: RenderOptions, interval: float) -> None:
    import kopf

    handlers = _Handlers(api, opts, interval)

    @kopf.on.startup()
    def _configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kubeinfer.io")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="kubeinfer.io")
        settings.posting.level = logging.WARNING

    # Explicit handler ids: kopf keeps each handler's progress in an annotation named after its id, and the default
    # id (the function's qualified name) is not a valid annotation name part.
    kopf.on.create(GROUP, VERSION, PLURAL, id="create")(handlers.reconcile)
    kopf.on.update(GROUP, VERSION, PLURAL, field="spec", id="update")(handlers.reconcile)
    kopf.on.resume(GROUP, VERSION, PLURAL, id="resume")(handlers.reconcile)
    kopf.timer(GROUP, VERSION, PLURAL, interval=TICK_SECONDS, idle=0, id="tick")(handlers.tick)
    kopf.on.delete(GROUP, VERSION, PLURAL, optional=True, id="delete")(handlers.forget)
    kopf.run(standalone=True, namespaces=namespaces or (), clusterwide=not namespaces)
