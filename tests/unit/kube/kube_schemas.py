"""Validate rendered objects: built-in kinds against the Kubernetes OpenAPI schemas that kubernetes-validate ships
(strict variant: unknown fields are errors, as with ``kubectl apply --validate=strict``), custom resources against
the openAPIV3Schema of their published CRDs (vendored under ``data/crd-schemas``, see its README), made strict the
same way.

kubernetes-validate reloads its 1.3 MB definitions file on every call; the validators are cached here per version.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource

# A dev dependency (pyproject [dev]); without it the schema tests cannot run at all.
kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="needs kubernetes-validate (dev extra)")

DATA = Path(__file__).parent / "data" / "crd-schemas"
_SCHEMAS = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"

# (apiVersion, kind) -> vendored CRD schema file
CRD_FILES = {
    ("autoscaling.k8s.io/v1", "VerticalPodAutoscaler"): "verticalpodautoscaler-v1.yaml",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-v1.yaml",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-v1alpha1.yaml",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "httproute-v1.yaml",
}


def shipped_versions() -> list[str]:
    return sorted(
        {re.sub(r"^v(\d+\.\d+).*", r"\1", p.name) for p in _SCHEMAS.iterdir()},
        key=lambda v: tuple(map(int, v.split("."))),
    )


@cache
def _registry(version: str) -> Registry:
    defs = json.loads((_SCHEMAS / f"v{version}.0-local-strict" / "_definitions.json").read_text())
    return Resource.from_contents(defs) @ Registry()


@cache
def _builtin_validator(version: str, api_version: str, kind: str) -> jsonschema.Validator:
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = _SCHEMAS / f"v{version}.0-local-strict" / f"{kind.lower()}-{group}.json"
    if not path.exists():
        raise LookupError(f"no schema for {api_version} {kind} in Kubernetes {version}")
    schema = json.loads(path.read_text())
    registry = Resource.from_contents(schema) @ _registry(version)
    return jsonschema.Draft202012Validator(schema, registry=registry)


def to_json_schema(node: Any) -> Any:
    """An openAPIV3Schema as strict JSON Schema: int-or-string, nullable, and no unknown fields where
    ``properties`` are listed (the API server would prune them, silently dropping what we meant to set)."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes-") and k != "nullable"}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    # OpenAPI 3.0 writes exclusive bounds as booleans beside minimum/maximum; JSON Schema draft 7 as numbers.
    for bound, flag in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if node.get(flag) is True and bound in node:
            out[flag] = out.pop(bound)
        elif node.get(flag) is False:
            out.pop(flag, None)
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if node.get("x-kubernetes-preserve-unknown-fields"):
        out.pop("additionalProperties", None)
    return out


@cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Validator:
    raw = yaml.safe_load((DATA / CRD_FILES[(api_version, kind)]).read_text())
    schema = to_json_schema(raw["openAPIV3Schema"])
    # metadata is {type: object} in every CRD; check it as ObjectMeta.
    return jsonschema.Draft7Validator(schema)


def errors(obj: dict[str, Any], version: str) -> list[str]:
    """Every schema violation of ``obj`` for Kubernetes ``version`` (empty when valid)."""
    key = (obj["apiVersion"], obj["kind"])
    v = crd_validator(*key) if key in CRD_FILES else _builtin_validator(version, *key)
    return [
        f"{obj['kind']}/{obj['metadata']['name']}: {'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in v.iter_errors(obj)
    ]


def validate_with_kubernetes_validate(obj: dict[str, Any], version: str) -> None:
    """The library's own entry point (slower; used once to show we agree with it)."""
    kubernetes_validate.validate(obj, version, strict=True)
