"""The kopf shell around :mod:`kubeinfer.kube.operator` (``kubeinfer operator``; needs the ``[kube]`` extra).

kopf delivers create/update/resume events and a timer per InferenceService; each calls the pure reconcile or
autoscale step with the real API and clock. kopf keeps its own bookkeeping in annotations (not in ``status``, whose
schema is ours), runs standalone (one replica; no peering objects to grant RBAC for) and posts events for failures.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import urllib.request
from collections.abc import Mapping
from typing import Any

from kubeinfer.kube.api import KubeApi, connect
from kubeinfer.kube.crd import PLURAL, VERSION
from kubeinfer.kube.names import GROUP, OPERATOR_FIELD_MANAGER
from kubeinfer.kube.operator import API_VERSION, ScalerState, autoscale_step, reconcile
from kubeinfer.kube.render import RenderOptions, http_port

__all__ = ["run"]

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


def run(namespaces: list[str] | None, opts: RenderOptions, context: str | None = None, interval: float = 15.0) -> None:
    import kopf

    api: KubeApi = connect(context)
    scalers: dict[str, ScalerState] = {}

    @kopf.on.startup()
    def _configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kubeinfer.io")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="kubeinfer.io")
        settings.posting.level = logging.WARNING

    def _reconcile(body: Mapping[str, Any], **_: Any) -> None:
        result = reconcile(dict(body), api, _now_rfc3339(), opts)
        meta = body["metadata"]
        api.patch_status(
            API_VERSION,
            "InferenceService",
            meta["name"],
            meta["namespace"],
            result.status,
            field_manager=OPERATOR_FIELD_MANAGER,
        )
        for note in result.notes:
            log.info("%s/%s: %s", meta["namespace"], meta["name"], note)
        degraded = next((c for c in result.status["conditions"] if c["type"] == "Degraded"), None)
        if degraded and degraded["status"] == "True" and degraded["reason"] == "InvalidSpec":
            raise kopf.PermanentError(degraded["message"])

    kopf.on.create(GROUP, VERSION, PLURAL)(_reconcile)
    kopf.on.update(GROUP, VERSION, PLURAL, field="spec")(_reconcile)
    kopf.on.resume(GROUP, VERSION, PLURAL)(_reconcile)

    @kopf.timer(GROUP, VERSION, PLURAL, interval=interval, idle=0)
    def _tick(body: Mapping[str, Any], **_: Any) -> None:
        meta = body["metadata"]
        uid = meta["uid"]
        result = reconcile(dict(body), api, _now_rfc3339(), opts)  # refresh status (and repair drifted children)
        svc = result.svc
        status = dict(result.status)
        if svc is not None and svc.spec.autoscaling.policy in ("kpa", "predictive"):
            decision, scalers[uid] = autoscale_step(
                svc,
                api,
                _scrape(http_port(svc)),
                scalers.get(uid, ScalerState()),
                time.monotonic(),
                int(meta.get("generation", 0)),
            )
            if decision is not None:
                status["autoscaler"] = {
                    "desiredReplicas": decision.replicas,
                    "reason": decision.reason,
                    "lastScaleTime": _now_rfc3339(),
                }
        api.patch_status(
            API_VERSION,
            "InferenceService",
            meta["name"],
            meta["namespace"],
            status,
            field_manager=OPERATOR_FIELD_MANAGER,
        )

    @kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
    def _forget(body: Mapping[str, Any], **_: Any) -> None:
        scalers.pop(body["metadata"]["uid"], None)  # children go with their owner (garbage collection)

    kopf.run(standalone=True, namespaces=namespaces or (), clusterwide=not namespaces)
