"""The small slice of the Kubernetes API kubeinfer uses, as a protocol, and its implementation on the official client.

Deploy, status, delete and the operator are written against :class:`KubeApi`; tests drive them with
:class:`kubeinfer.testing.kube.FakeKubeApi`, which records every server-side apply. The real implementation uses the
``kubernetes`` package's dynamic client (``[kube]`` extra), imported only when a cluster is actually used.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

__all__ = [
    "ApplyConflictError",
    "ClientKubeApi",
    "Clock",
    "FieldConflict",
    "KubeApi",
    "KubeConfigError",
    "KubeError",
    "Manifest",
    "SystemClock",
    "conflicts_from_status",
    "connect",
]

Manifest = dict[str, Any]


class KubeError(RuntimeError):
    """A Kubernetes API call failed; the message says which object and why."""


class KubeConfigError(KubeError):
    """No usable cluster configuration (kubeconfig or in-cluster service account)."""


@dataclass(frozen=True)
class FieldConflict:
    """One field a server-side apply would change that another field manager owns."""

    field: str
    """As the API server names it, e.g. ``.spec.replicas``."""
    manager: str
    """The other field manager, e.g. ``kubectl`` or ``kube-controller-manager``."""
    api_version: str = ""
    subresource: str = ""
    """Set when the manager wrote through a subresource (``scale`` for ``kubectl scale`` and autoscalers)."""


class ApplyConflictError(KubeError):
    """A server-side apply was refused (409) because other field managers own fields it would change.

    ``conflicts`` lists each field and its manager (from the API server's ``details.causes``); the message names
    them. Re-applying with ``force=True`` takes the fields over, as ``kubectl apply --server-side --force-conflicts``
    does."""

    def __init__(self, what: str, conflicts: Sequence[FieldConflict], message: str) -> None:
        self.what = what
        self.conflicts = tuple(conflicts)
        fields = "; ".join(f"{c.field} is owned by field manager {c.manager!r}" for c in self.conflicts)
        super().__init__(f"{what}: conflict: {fields or message}")


_CONFLICT_WITH = re.compile(
    r'conflict with "(?P<manager>[^"]*)"(?: with subresource "(?P<subresource>[^"]*)")?(?: using (?P<api_version>\S+))?'
)


def conflicts_from_status(status: Mapping[str, Any]) -> list[FieldConflict]:
    """The field conflicts in a 409 ``Status`` of a server-side apply (``details.causes`` of type
    ``FieldManagerConflict``, e.g. ``{"reason": "FieldManagerConflict", "field": ".spec.replicas", "message":
    "conflict with \"kubectl-scale\" with subresource \"scale\" using apps/v1"}``; a cause's type is serialized
    as ``reason``)."""
    out: list[FieldConflict] = []
    for cause in (status.get("details") or {}).get("causes") or []:
        if (cause.get("reason") or cause.get("type")) != "FieldManagerConflict":
            continue
        text = str(cause.get("message", ""))
        m = _CONFLICT_WITH.search(text)
        if m is None:
            out.append(FieldConflict(str(cause.get("field", "?")), text or "?"))
            continue
        out.append(
            FieldConflict(
                str(cause.get("field", "?")),
                m.group("manager"),
                m.group("api_version") or "",
                m.group("subresource") or "",
            )
        )
    return out


class KubeApi(Protocol):
    def apply(self, obj: Manifest, *, field_manager: str, force: bool = True, dry_run: bool = False) -> Manifest:
        """Server-side apply ``obj`` (create or update) owned by ``field_manager``. Without ``force``, fields other
        managers own and ``obj`` would change raise :class:`ApplyConflictError`."""
        ...

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Manifest | None: ...

    def list(
        self, api_version: str, kind: str, namespace: str | None = None, label_selector: str = ""
    ) -> list[Manifest]: ...

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete (foreground propagation); False when it did not exist."""
        ...

    def patch_status(
        self, api_version: str, kind: str, name: str, namespace: str, status: Mapping[str, Any], *, field_manager: str
    ) -> None: ...

    def scale(self, name: str, namespace: str, replicas: int, *, field_manager: str) -> None:
        """Set a Deployment's replicas through its scale subresource."""
        ...

    def served(self, api_version: str, kind: str) -> bool:
        """Whether the cluster serves this kind (an add-on's CRD may be missing)."""
        ...


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""
        ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def connect(context: str | None = None, config_file: str | None = None) -> ClientKubeApi:
    """A client for the kubeconfig ``context`` (default: current) of ``config_file`` (default: ``$KUBECONFIG``, else
    ``~/.kube/config``), or the in-cluster service account."""
    try:
        import yaml
        from kubernetes import client, config, dynamic
        from kubernetes.config.config_exception import ConfigException
    except ModuleNotFoundError:
        raise KubeConfigError("the Kubernetes client is not installed: pip install 'kubeinfer[kube]'") from None
    try:
        # KUBECONFIG as it is now: the client reads its default location once, when it is first imported.
        api_client = config.new_client_from_config(  # type: ignore[no-untyped-call,unused-ignore]
            config_file=config_file or os.environ.get("KUBECONFIG") or None, context=context
        )
    except (ConfigException, FileNotFoundError, TypeError, yaml.YAMLError) as first:
        if context is not None or config_file is not None:
            what = f"kubeconfig {config_file}" if config_file else "kubeconfig"
            if context is not None:
                what += f" context {context!r}"
            raise KubeConfigError(f"{what} is not usable: {first}") from None
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call,unused-ignore]
            api_client = client.ApiClient()
        except ConfigException:
            raise KubeConfigError(
                "no Kubernetes configuration found: set KUBECONFIG or create ~/.kube/config "
                "(or use --dry-run to print the plan without a cluster)"
            ) from None
    return ClientKubeApi(dynamic.DynamicClient(api_client))  # type: ignore[no-untyped-call,unused-ignore]


class ClientKubeApi:
    """:class:`KubeApi` on ``kubernetes.dynamic.DynamicClient``."""

    def __init__(self, dyn: Any) -> None:
        self._dyn = dyn

    @property
    def api_client(self) -> Any:
        """The official client's ``ApiClient`` under the dynamic one (for typed APIs such as CoordinationV1Api)."""
        return self._dyn.client

    def _resource(self, api_version: str, kind: str) -> Any:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            return self._dyn.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            raise KubeError(f"the cluster does not serve {kind} ({api_version}): install its CRD or add-on") from None

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return fn(*args, **kwargs)
        except ApiException as e:
            raise KubeError(f"{what}: {e.status} {e.reason}: {_api_message(e)}") from e

    def apply(self, obj: Manifest, *, field_manager: str, force: bool = True, dry_run: bool = False) -> Manifest:
        res = self._resource(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        kwargs: dict[str, Any] = {"field_manager": field_manager, "force_conflicts": force}
        if dry_run:
            kwargs["dry_run"] = "All"
        ns = meta.get("namespace") if res.namespaced else None
        what = f"apply {obj['kind']} {ns + '/' if ns else ''}{meta['name']}"
        from kubernetes.client.exceptions import ApiException

        try:
            out = self._call(what, res.server_side_apply, body=obj, name=meta["name"], namespace=ns, **kwargs)
        except KubeError as e:
            cause = e.__cause__
            if isinstance(cause, ApiException) and cause.status == 409:
                conflicts = conflicts_from_status(_api_status(cause))
                if conflicts:
                    raise ApplyConflictError(what, conflicts, _api_message(cause)) from cause
            raise
        return dict(out.to_dict())

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Manifest | None:
        from kubernetes.dynamic.exceptions import NotFoundError

        res = self._resource(api_version, kind)
        try:
            return dict(res.get(name=name, namespace=namespace if res.namespaced else None).to_dict())
        except NotFoundError:
            return None

    def list(
        self, api_version: str, kind: str, namespace: str | None = None, label_selector: str = ""
    ) -> list[Manifest]:
        res = self._resource(api_version, kind)
        # the raw JSON: the dynamic client's ResourceInstance wrapping and its to_dict() cost three times the request
        out = self._call(
            f"list {kind}",
            res.get,
            namespace=namespace if res.namespaced else None,
            label_selector=label_selector,
            serialize=False,
        )
        doc = orjson.loads(out.data)
        items = [dict(i) for i in doc.get("items") or []]
        for i in items:  # a list's items carry no apiVersion and kind (the dynamic client adds them, so do we)
            i.setdefault("apiVersion", doc.get("apiVersion", api_version))
            i.setdefault("kind", kind)
        return items

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        from kubernetes.dynamic.exceptions import NotFoundError

        res = self._resource(api_version, kind)
        try:
            res.delete(name=name, namespace=namespace if res.namespaced else None, propagation_policy="Foreground")
        except NotFoundError:
            return False
        return True

    def patch_status(
        self, api_version: str, kind: str, name: str, namespace: str, status: Mapping[str, Any], *, field_manager: str
    ) -> None:
        res = self._resource(api_version, kind)
        body = {
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace},
            "status": dict(status),
        }
        self._call(
            f"update status of {kind}/{name}",
            res.status.server_side_apply,
            body=body,
            name=name,
            namespace=namespace,
            field_manager=field_manager,
            force_conflicts=True,
        )

    def scale(self, name: str, namespace: str, replicas: int, *, field_manager: str) -> None:
        res = self._resource("apps/v1", "Deployment")
        self._call(
            f"scale Deployment/{name}",
            res.subresources["scale"].patch,
            body={"spec": {"replicas": replicas}},
            name=name,
            namespace=namespace,
            content_type="application/merge-patch+json",
            field_manager=field_manager,
        )

    def served(self, api_version: str, kind: str) -> bool:
        try:
            self._resource(api_version, kind)
        except KubeError:
            return False
        return True


def _api_status(e: Any) -> dict[str, Any]:
    """The ``Status`` object the API server sent with an error, or {}."""
    import json

    try:
        body = json.loads(e.body)
    except (TypeError, ValueError, AttributeError):
        return {}
    return body if isinstance(body, dict) else {}


def _api_message(e: Any) -> str:
    status = _api_status(e)
    if "message" in status:
        return str(status["message"])
    return str(getattr(e, "body", "") or e)
