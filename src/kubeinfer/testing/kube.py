"""An in-memory :class:`~kubeinfer.kube.api.KubeApi` for tests (also importable from ``kubeinfer.testing``).

It keeps objects by (apiVersion, kind, namespace, name), records every server-side apply, scale and status update
in order, bumps ``metadata.generation`` when a spec changes, and lets a test play the controllers' part by editing
``objects`` (e.g. set a Deployment's ``status``) or adding pods and events. Kinds listed in ``unserved`` behave like
a missing CRD.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubeinfer.kube.api import KubeError, Manifest

__all__ = ["ApplyCall", "FakeKubeApi"]

_CLUSTER_SCOPED = {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "Namespace", "Node"}


@dataclass(frozen=True)
class ApplyCall:
    field_manager: str
    obj: Manifest
    force: bool
    dry_run: bool

    @property
    def key(self) -> tuple[str, str, str]:
        return self.obj["kind"], self.obj["metadata"].get("namespace", ""), self.obj["metadata"]["name"]


@dataclass
class FakeKubeApi:
    objects: dict[tuple[str, str, str, str], Manifest] = field(default_factory=dict)
    applies: list[ApplyCall] = field(default_factory=list)
    scales: list[tuple[str, str, int, str]] = field(default_factory=list)
    status_updates: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)
    deletes: list[tuple[str, str, str]] = field(default_factory=list)
    unserved: set[tuple[str, str]] = field(default_factory=set)
    _uids: Any = field(default_factory=lambda: itertools.count(1))

    @staticmethod
    def _key(api_version: str, kind: str, name: str, namespace: str | None) -> tuple[str, str, str, str]:
        return api_version, kind, "" if kind in _CLUSTER_SCOPED else (namespace or "default"), name

    def _check(self, api_version: str, kind: str) -> None:
        if (api_version, kind) in self.unserved:
            raise KubeError(f"the cluster does not serve {kind} ({api_version}): install its CRD or add-on")

    def add(self, *objs: Manifest) -> None:
        """Put objects in the store as a controller would (pods, events, a Deployment's status)."""
        for o in objs:
            meta = o.setdefault("metadata", {})
            meta.setdefault("uid", f"uid-{next(self._uids)}")
            self.objects[self._key(o["apiVersion"], o["kind"], meta["name"], meta.get("namespace"))] = o

    def apply(self, obj: Manifest, *, field_manager: str, force: bool = True, dry_run: bool = False) -> Manifest:
        self._check(obj["apiVersion"], obj["kind"])
        self.applies.append(ApplyCall(field_manager, copy.deepcopy(obj), force, dry_run))
        meta = obj["metadata"]
        key = self._key(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
        live = self.objects.get(key)
        new = copy.deepcopy(obj)
        nmeta = new["metadata"]
        if live is None:
            nmeta.update(uid=f"uid-{next(self._uids)}", generation=1)
        else:
            nmeta["uid"] = live["metadata"]["uid"]
            if "status" in live:
                new["status"] = live["status"]
            if obj["kind"] == "Deployment" and "replicas" not in new.get("spec", {}):
                # a field no manager applies keeps its live value (the autoscaler's replicas)
                new["spec"]["replicas"] = live.get("spec", {}).get("replicas", 1)
            gen = live["metadata"].get("generation", 1)
            nmeta["generation"] = gen + 1 if live.get("spec") != new.get("spec") else gen
        if obj["kind"] == "Deployment":
            new["spec"].setdefault("replicas", 1)
        if not dry_run:
            self.objects[key] = new
        return copy.deepcopy(new)

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Manifest | None:
        self._check(api_version, kind)
        o = self.objects.get(self._key(api_version, kind, name, namespace))
        return copy.deepcopy(o) if o is not None else None

    def list(
        self, api_version: str, kind: str, namespace: str | None = None, label_selector: str = ""
    ) -> list[Manifest]:
        self._check(api_version, kind)
        want = _parse_selector(label_selector)
        out = []
        for (av, k, ns, _), o in self.objects.items():
            if av != api_version or k != kind or (namespace is not None and ns not in ("", namespace)):
                continue
            labels = o["metadata"].get("labels", {})
            if all((labels.get(lk) != lv) if neg else (labels.get(lk) == lv) for lk, neg, lv in want):
                out.append(copy.deepcopy(o))
        return out

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        self._check(api_version, kind)
        self.deletes.append((kind, namespace or "", name))
        return self.objects.pop(self._key(api_version, kind, name, namespace), None) is not None

    def patch_status(
        self, api_version: str, kind: str, name: str, namespace: str, status: Mapping[str, Any], *, field_manager: str
    ) -> None:
        key = self._key(api_version, kind, name, namespace)
        if key not in self.objects:
            raise KubeError(f"{kind}/{name} not found")
        self.status_updates.append((kind, namespace, name, copy.deepcopy(dict(status))))
        self.objects[key]["status"] = copy.deepcopy(dict(status))

    def scale(self, name: str, namespace: str, replicas: int, *, field_manager: str) -> None:
        key = self._key("apps/v1", "Deployment", name, namespace)
        if key not in self.objects:
            raise KubeError(f"Deployment/{name} not found")
        self.scales.append((namespace, name, replicas, field_manager))
        self.objects[key]["spec"]["replicas"] = replicas

    def served(self, api_version: str, kind: str) -> bool:
        return (api_version, kind) not in self.unserved

    def kinds(self) -> Iterable[str]:
        return sorted({k for _, k, _, _ in self.objects})


def _parse_selector(sel: str) -> list[tuple[str, bool, str]]:
    """Equality-based label requirements (``k=v``, ``k==v``, ``k!=v``) as (key, negated, value)."""
    out: list[tuple[str, bool, str]] = []
    for part in filter(None, (p.strip() for p in sel.split(","))):
        k, _, v = part.partition("=")
        out.append((k.rstrip("!"), k.endswith("!"), v.lstrip("=")))
    return out


if TYPE_CHECKING:
    from kubeinfer.kube.api import KubeApi

    def _implements(api: FakeKubeApi) -> KubeApi:
        """mypy fails here when the fake falls behind the protocol that deploy, status and the operator use."""
        return api
