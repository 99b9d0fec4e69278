"""The ``InferenceService`` CustomResourceDefinition, its schema generated from the pydantic spec.

One source of truth: ``spec/service.py``. The pydantic JSON Schema is turned into a *structural* OpenAPI v3 schema
as apiextensions.k8s.io/v1 requires (Kubernetes docs, "Specifying a structural schema"): every ``$ref`` inlined,
a ``type`` on every node, ``nullable: true`` instead of ``anyOf [X, null]``, ``x-kubernetes-int-or-string`` for
``IntOrPercent``, ``x-kubernetes-preserve-unknown-fields`` for free-form maps (``model.args``), OpenAPI v3.0's
boolean ``exclusiveMinimum``, and no ``additionalProperties: false`` (the API server prunes unknown fields; the
operator validates with pydantic and reports errors in a condition). Defaults are left to pydantic so the stored
object stays as the user wrote it.
"""

from __future__ import annotations

from typing import Any, Final

from kubeinfer.kube.names import GROUP
from kubeinfer.spec.service import ServiceSpec

__all__ = ["CRD_NAME", "PLURAL", "VERSION", "crd", "spec_schema", "status_schema"]

PLURAL: Final = "inferenceservices"
VERSION: Final = "v1alpha1"
CRD_NAME: Final = f"{PLURAL}.{GROUP}"

_DROP: Final = {"title", "default", "$defs", "examples"}


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_structural(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    variants = node.get("anyOf")
    if variants is not None:
        non_null = [v for v in variants if v.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        out: dict[str, Any]
        types = sorted(v.get("type", "") for v in non_null)
        if len(non_null) == 1:
            out = _structural({**non_null[0], **rest}, defs)
        elif types == ["integer", "string"]:
            out = {
                **_structural(rest, defs),
                "anyOf": [{"type": "integer"}, {"type": "string"}],
                "x-kubernetes-int-or-string": True,
            }
        else:
            raise ValueError(f"cannot express anyOf {variants!r} in a structural schema")
        if len(non_null) < len(variants):
            out["nullable"] = True
        return out
    out = {}
    for k, v in node.items():
        if k in _DROP:
            continue
        if k == "properties":
            out[k] = {name: _structural(sub, defs) for name, sub in v.items()}
        elif k in ("items", "additionalProperties") and isinstance(v, dict):
            out[k] = _structural(v, defs)
        elif k == "const":
            out["enum"] = [v]
        elif k == "exclusiveMinimum":
            out["minimum"], out["exclusiveMinimum"] = v, True
        elif k == "exclusiveMaximum":
            out["maximum"], out["exclusiveMaximum"] = v, True
        else:
            out[k] = v
    if "enum" in out and "type" not in out:
        out["type"] = "string" if all(isinstance(e, str) for e in out["enum"]) else "number"
    if out.get("type") == "object":
        if out.get("additionalProperties") is False:
            del out["additionalProperties"]
        ap = out.get("additionalProperties")
        if "properties" not in out and (ap is None or ap is True or ap == {}):
            out.pop("additionalProperties", None)
            out["x-kubernetes-preserve-unknown-fields"] = True
    if not out:  # pydantic's Any
        out = {"x-kubernetes-preserve-unknown-fields": True}
    return out


def _replica_bounds_rule() -> dict[str, str]:
    """CEL for ``minReplicas <= maxReplicas`` (fields left out take the spec's defaults), with the words
    ``kubeinfer validate`` uses: the API server itself refuses what the CLI would."""
    from kubeinfer.spec.service import AutoscalingSpec

    lo = AutoscalingSpec.model_fields["minReplicas"].default
    hi = AutoscalingSpec.model_fields["maxReplicas"].default
    mn = f"(has(self.minReplicas) ? self.minReplicas : {lo})"
    mx = f"(has(self.maxReplicas) ? self.maxReplicas : {hi})"
    # A static message: the API server's cost estimate refused a messageExpression that formats the two numbers
    # (more than 100x over the CRD's budget), so the message says what validate says, without the values.
    return {
        "rule": f"{mn} <= {mx}",
        "message": "minReplicas is larger than maxReplicas",
        "reason": "FieldValueInvalid",
    }


def _not_both_rule(a: str, b: str, message: str) -> dict[str, str]:
    """CEL for two fields of one object that the spec refuses together, with ``kubeinfer validate``'s words."""
    return {"rule": f"!(has(self.{a}) && has(self.{b}))", "message": message, "reason": "FieldValueInvalid"}


def _keda_policy_rule() -> dict[str, str]:
    """CEL for ``keda`` with a policy other than hpa (the policy's default is hpa)."""
    return {
        "rule": "!has(self.keda) || !has(self.policy) || self.policy == 'hpa'",
        "message": "keda needs policy hpa (KEDA drives an HPA)",
        "reason": "FieldValueInvalid",
    }


def spec_schema() -> dict[str, Any]:
    """``spec`` of the custom resource: the pydantic ``ServiceSpec`` as a structural schema, plus the cross-field
    rules the pydantic validators hold, as CEL ``x-kubernetes-validations``."""
    raw = ServiceSpec.model_json_schema(mode="validation")
    schema = dict(_structural(raw, raw.get("$defs", {})))
    autoscaling = schema.get("properties", {}).get("autoscaling")
    if isinstance(autoscaling, dict):
        autoscaling["x-kubernetes-validations"] = [_replica_bounds_rule(), _keda_policy_rule()]
    server = schema.get("properties", {}).get("server", {}).get("properties", {})
    for name, a, b, message in (
        ("tls", "certFile", "secretName", "certFile/keyFile and secretName both set"),
        ("auth", "apiKeysFile", "apiKeysSecret", "apiKeysFile and apiKeysSecret both set"),
    ):
        if isinstance(server.get(name), dict):
            server[name]["x-kubernetes-validations"] = [_not_both_rule(a, b, message)]
    return schema


def status_schema() -> dict[str, Any]:
    condition = {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            "type": {"type": "string"},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": {"type": "string"},
            "message": {"type": "string"},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
            "observedGeneration": {"type": "integer", "format": "int64"},
        },
    }
    return {
        "type": "object",
        "properties": {
            "observedGeneration": {"type": "integer", "format": "int64"},
            "conditions": {
                "type": "array",
                "items": condition,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
            "url": {"type": "string"},
            "grpcAddress": {"type": "string"},
            "replicas": {"type": "integer", "format": "int32"},
            "readyReplicas": {"type": "integer", "format": "int32"},
            "selector": {"type": "string"},
            "autoscaler": {
                "type": "object",
                "description": "The last decision of the operator's autoscaler (kpa, predictive).",
                "properties": {
                    "desiredReplicas": {"type": "integer", "format": "int32"},
                    "reason": {"type": "string"},
                    "details": {
                        "type": "object",
                        "description": "The numbers behind the last decision: rates, forecast, burst allowance, the "
                        "share of requests that missed the SLO (predictive); per-metric proposals (kpa).",
                        "additionalProperties": {"type": "number"},
                    },
                    "lastScaleTime": {"type": "string", "format": "date-time"},
                },
            },
            "canary": _canary_status_schema(),
        },
    }


def _canary_status_schema() -> dict[str, Any]:
    integer = {"type": "integer", "format": "int64"}
    number = {"type": "number"}
    return {
        "type": "object",
        "description": "The canary rollout in progress, or the last one rolled back (kubeinfer.kube.canary).",
        "properties": {
            "stableRevision": integer,
            "canaryRevision": integer,
            "weight": {"type": "integer", "format": "int32", "description": "Percent of the traffic to the canary."},
            "step": {"type": "integer", "format": "int32", "description": "The step being run, counted from 1."},
            "steps": {"type": "array", "items": {"type": "integer", "format": "int32"}},
            "phase": {"type": "string", "enum": ["Waiting", "Analyzing", "Aborted"]},
            "analysis": {
                "type": "object",
                "description": "The step's analysis window so far.",
                "properties": {
                    "requests": integer,
                    "errors": integer,
                    "errorPercent": number,
                    "p99Ms": {"type": "number", "nullable": True},
                    "seconds": number,
                },
            },
            "message": {"type": "string"},
            "stableHash": {"type": "string"},
            "canaryHash": {"type": "string"},
            "waitingSince": {"type": "string", "format": "date-time"},
            "windowStart": {"type": "string", "format": "date-time"},
            "baseline": {
                "type": "object",
                "description": "The canary's counters when the window opened (the window is their difference).",
                "properties": {
                    "requests": integer,
                    "errors": integer,
                    "latency": {"type": "array", "items": integer},
                },
            },
        },
    }


def crd() -> dict[str, Any]:
    schema = {
        "type": "object",
        "description": "A model served for inference: the kubeinfer InferenceService spec.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema(),
            "status": status_schema(),
        },
    }
    columns = [
        {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
        {"name": "Reason", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].reason'},
        {"name": "Replicas", "type": "integer", "jsonPath": ".status.readyReplicas"},
        {"name": "Policy", "type": "string", "jsonPath": ".spec.autoscaling.policy"},
        {"name": "URL", "type": "string", "jsonPath": ".status.url"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {"app.kubernetes.io/part-of": "kubeinfer", "app.kubernetes.io/component": "crd"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "plural": PLURAL,
                "singular": "inferenceservice",
                "kind": "InferenceService",
                "listKind": "InferenceServiceList",
                # not "isvc": that is KServe's, and on a cluster with both `kubectl get isvc` would be ambiguous
                "shortNames": ["kis", "kisvc"],
                "categories": ["kubeinfer"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": columns,
                }
            ],
        },
    }
