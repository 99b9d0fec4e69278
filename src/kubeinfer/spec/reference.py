"""The spec reference page (docs/spec.md), generated from the pydantic models so that it cannot drift from them.

Every object reachable from ``InferenceService`` gets a section with one row per field: its type, default, unit,
allowed range, description (the field's own ``description``) and, where one exists, the Kubernetes (or Knative)
field it becomes or mirrors -- the mapping ``kubeinfer render`` implements (``kube/render.py`` says what each spec
field becomes). Units follow the field names' suffixes (``...Seconds``, ``...Ms``, ``...Percentage``), Kubernetes
quantities, and a table for the rest.

Regenerate with ``python -m kubeinfer.spec.reference > docs/spec.md``; a test fails when the page is stale or a
field has no description.
"""

from __future__ import annotations

import sys
import types
import typing
from typing import Any, Final, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from kubeinfer.spec import service
from kubeinfer.spec.service import InferenceService

__all__ = ["COMMAND", "KUBERNETES", "UNITS", "missing_descriptions", "models", "reference"]

COMMAND: Final = "python -m kubeinfer.spec.reference > docs/spec.md"
"""How docs/spec.md is made."""

UNITS: Final[dict[str, str]] = {
    "ServerSpec.workers": "threads",
    "ServerSpec.processes": "processes",
    "BatchingSpec.maxBatchSize": "rows",
    "LimitsSpec.maxQueueSize": "requests",
    "LimitsSpec.maxConcurrency": "requests",
    "LimitsSpec.maxConnections": "connections",
    "LimitsSpec.maxHeaderBytes": "bytes",
    "LimitsSpec.maxHeaders": "header fields",
    "GpuSpec.count": "GPUs",
    "GpuSpec.fraction": "share of one GPU",
    "ServiceSpec.replicas": "replicas",
    "AutoscalingSpec.minReplicas": "replicas",
    "AutoscalingSpec.maxReplicas": "replicas",
    "AutoscalingSpec.target": "unit of the metric",
    "AutoscalingSpec.tolerance": "ratio",
    "MetricSpec.target": "unit of the metric (percent for cpu, memory)",
    "HPAScalingPolicy.value": "replicas (Pods) or percent (Percent)",
    "KpaSpec.containerConcurrency": "requests",
    "KpaSpec.maxScaleUpRate": "multiplier",
    "KpaSpec.maxScaleDownRate": "divisor",
    "KpaSpec.activationScale": "replicas",
    "KpaSpec.targetBurstCapacity": "requests",
    "KpaSpec.initialScale": "replicas",
    "PredictiveSpec.capacityRps": "requests/s",
    "PredictiveSpec.capacityWork": "Erlangs (busy slot-seconds per second)",
    "PredictiveSpec.headroom": "multiplier",
    "PredictiveSpec.minHeadroom": "multiplier",
    "ProbeSpec.successThreshold": "probes",
    "ProbeSpec.failureThreshold": "probes",
    "RolloutSpec.maxSurge": "replicas or percent",
    "RolloutSpec.maxUnavailable": "replicas or percent",
}
"""Units of the fields whose name does not say it (``...Seconds`` is seconds, ``...Ms`` milliseconds)."""

_K8S_OBJECT: Final = "Kubernetes object `metadata`"
KUBERNETES: Final[dict[str, str]] = {
    "InferenceService.apiVersion": "custom resource `apiVersion` (CRD `inferenceservices.kubeinfer.io`)",
    "InferenceService.kind": "custom resource `kind`",
    "InferenceService.metadata": _K8S_OBJECT,
    "InferenceService.spec": "custom resource `spec` (`kubeinfer render --crd`)",
    "ObjectMeta.name": "`metadata.name` of the rendered Deployment, Service, HPA, PDB, ...",
    "ObjectMeta.namespace": "`metadata.namespace` (`kubeinfer render --namespace` overrides it)",
    "ObjectMeta.labels": "`metadata.labels` of every rendered object and of the pod template",
    "ObjectMeta.annotations": "Deployment `metadata.annotations`",
    "ServiceSpec.model": "ConfigMap `<name>-spec`, mounted at `/etc/kubeinfer/service.yaml`",
    "ModelSpec.uri": "rewritten to the model's path in the image that `kubeinfer build` makes",
    "ServiceSpec.replicas": "Deployment `spec.replicas` (policy none)",
    "ServiceSpec.server": "container `ports` and the Service's `ports`",
    "ServerSpec.host": "the container binds `0.0.0.0`",
    "ServerSpec.port": "container port `http`, Service port `http`; the probes' `httpGet.port`",
    "ServerSpec.grpcPort": "container port `grpc`, Service port `grpc` (`appProtocol: kubernetes.io/h2c`)",
    "LimitsSpec.drainTimeoutSeconds": "pod `terminationGracePeriodSeconds` (= preStop sleep + this + 5 s)",
    "AuthSpec.apiKeysSecret": "a read-only `secret` volume (the key as the file `api-keys`) mounted at "
    "`/var/run/secrets/kubeinfer.io/auth`",
    "SecretKeyRef.name": "`secret.secretName` of the volume",
    "SecretKeyRef.key": "`secret.items[0].key` of the volume",
    "TlsSpec.secretName": "a read-only `secret` volume at `/var/run/secrets/kubeinfer.io/tls`; probes `scheme: HTTPS`, "
    "Service ports `https`/`grpc-tls`, ServiceMonitor `scheme: https`",
    "ServiceSpec.resources": "container `resources`",
    "ResourcesSpec.requests": "container `resources.requests`",
    "ResourcesSpec.limits": "container `resources.limits`",
    "ResourceList.cpu": "`cpu` in `resources.requests` / `resources.limits`",
    "ResourceList.memory": "`memory` in `resources.requests` / `resources.limits`",
    "ResourcesSpec.gpu": "an extended resource in `resources.requests` and `resources.limits`",
    "GpuSpec.count": "`nvidia.com/gpu` (`amd.com/gpu`, `habana.ai/gaudi`) request and limit",
    "GpuSpec.sharing": "NVIDIA device plugin `sharing` config (time-slicing, MPS) or MIG resource",
    "GpuSpec.fraction": "device plugin `replicas` per GPU (1 / fraction); the node label `nvidia.com/device-plugin.config`",
    "GpuSpec.migProfile": "`nvidia.com/mig-<profile>` request and limit (MIG `mixed` strategy)",
    "GpuSpec.vendor": "the extended resource's vendor prefix and the vendor's node taint toleration",
    "ServiceSpec.autoscaling": "HorizontalPodAutoscaler (`autoscaling/v2`) or KEDA ScaledObject; VerticalPodAutoscaler",
    "AutoscalingSpec.policy": "hpa: HorizontalPodAutoscaler; kpa, predictive: the kubeinfer operator scales the "
    "Deployment; none: Deployment `spec.replicas`",
    "AutoscalingSpec.minReplicas": "HPA `spec.minReplicas` (KEDA `minReplicaCount`)",
    "AutoscalingSpec.maxReplicas": "HPA `spec.maxReplicas` (KEDA `maxReplicaCount`)",
    "AutoscalingSpec.metric": "HPA `spec.metrics[0]`",
    "AutoscalingSpec.target": "HPA `spec.metrics[0]` target",
    "AutoscalingSpec.metrics": "HPA `spec.metrics`",
    "MetricSpec.type": "HPA metric source: `Resource` (cpu, memory), `External` (external), else `Pods` "
    "(served by prometheus-adapter)",
    "MetricSpec.target": "`target.averageUtilization` (cpu, memory) or `target.averageValue`",
    "MetricSpec.name": "`external.metric.name`",
    "AutoscalingSpec.syncPeriodSeconds": "kube-controller-manager `--horizontal-pod-autoscaler-sync-period` "
    "(cluster-wide); the ServiceMonitor's scrape `interval` (at most 15 s)",
    "AutoscalingSpec.tolerance": "kube-controller-manager `--horizontal-pod-autoscaler-tolerance`; rendered as "
    "`behavior.*.tolerance` when not 0.1 (Kubernetes 1.33+)",
    "AutoscalingSpec.behavior": "HPA `spec.behavior`",
    "BehaviorSpec.scaleUp": "HPA `spec.behavior.scaleUp`",
    "BehaviorSpec.scaleDown": "HPA `spec.behavior.scaleDown`",
    "HPAScalingRules.stabilizationWindowSeconds": "`HPAScalingRules.stabilizationWindowSeconds`",
    "HPAScalingRules.selectPolicy": "`HPAScalingRules.selectPolicy`",
    "HPAScalingRules.policies": "`HPAScalingRules.policies`",
    "HPAScalingRules.tolerance": "`HPAScalingRules.tolerance` (Kubernetes 1.33+)",
    "HPAScalingPolicy.type": "`HPAScalingPolicy.type`",
    "HPAScalingPolicy.value": "`HPAScalingPolicy.value`",
    "HPAScalingPolicy.periodSeconds": "`HPAScalingPolicy.periodSeconds`",
    "AutoscalingSpec.kpa": "Knative Serving's autoscaler (`config-autoscaler`, `autoscaling.knative.dev/*`)",
    "KpaSpec.containerConcurrency": "Knative `spec.template.spec.containerConcurrency`",
    "KpaSpec.targetUtilizationPercentage": "Knative `autoscaling.knative.dev/target-utilization-percentage`",
    "KpaSpec.stableWindowSeconds": "Knative `autoscaling.knative.dev/window`",
    "KpaSpec.panicWindowPercentage": "Knative `autoscaling.knative.dev/panic-window-percentage`",
    "KpaSpec.panicThresholdPercentage": "Knative `autoscaling.knative.dev/panic-threshold-percentage`",
    "KpaSpec.maxScaleUpRate": "Knative `max-scale-up-rate`",
    "KpaSpec.maxScaleDownRate": "Knative `max-scale-down-rate`",
    "KpaSpec.scaleToZeroGracePeriodSeconds": "Knative `scale-to-zero-grace-period`",
    "KpaSpec.scaleDownDelaySeconds": "Knative `autoscaling.knative.dev/scale-down-delay`",
    "KpaSpec.activationScale": "Knative `autoscaling.knative.dev/activation-scale`",
    "KpaSpec.targetBurstCapacity": "Knative `autoscaling.knative.dev/target-burst-capacity`",
    "KpaSpec.initialScale": "Knative `autoscaling.knative.dev/initial-scale`",
    "AutoscalingSpec.vertical": "VerticalPodAutoscaler (`autoscaling.k8s.io/v1`)",
    "VerticalSpec.updateMode": "VPA `spec.updatePolicy.updateMode`",
    "VerticalSpec.minAllowed": "VPA `resourcePolicy.containerPolicies[].minAllowed`",
    "VerticalSpec.maxAllowed": "VPA `resourcePolicy.containerPolicies[].maxAllowed`",
    "AutoscalingSpec.keda": "KEDA ScaledObject (`keda.sh/v1alpha1`) instead of the HPA",
    "KedaSpec.serverAddress": "each prometheus trigger's `metadata.serverAddress`",
    "KedaSpec.authenticationRef": "each prometheus trigger's `authenticationRef.name`",
    "ServiceSpec.probes": "container probes",
    "ProbesSpec.startup": "container `startupProbe` (`httpGet` `/startupz`)",
    "ProbesSpec.readiness": "container `readinessProbe` (`httpGet` `/readyz`)",
    "ProbesSpec.liveness": "container `livenessProbe` (`httpGet` `/healthz`)",
    "ProbeSpec.initialDelaySeconds": "`Probe.initialDelaySeconds`",
    "ProbeSpec.periodSeconds": "`Probe.periodSeconds`",
    "ProbeSpec.timeoutSeconds": "`Probe.timeoutSeconds`",
    "ProbeSpec.successThreshold": "`Probe.successThreshold`",
    "ProbeSpec.failureThreshold": "`Probe.failureThreshold`",
    "ServiceSpec.rollout": "Deployment `spec.strategy` (`RollingUpdate`)",
    "RolloutSpec.maxSurge": "Deployment `spec.strategy.rollingUpdate.maxSurge`",
    "RolloutSpec.maxUnavailable": "Deployment `spec.strategy.rollingUpdate.maxUnavailable`",
    "RolloutSpec.progressDeadlineSeconds": "Deployment `spec.progressDeadlineSeconds`",
    "RolloutSpec.nodeFailureSeconds": "pod `tolerations` for `node.kubernetes.io/not-ready` and `unreachable` "
    "(`NoExecute`, `tolerationSeconds`)",
    "ServiceSpec.image": "container `image` (`kubeinfer render --image` overrides it)",
    "ServiceSpec.env": "container `env`",
}
"""What each field becomes on Kubernetes (``kubeinfer render``), or the Knative setting a KPA field mirrors."""

_SCALARS: Final[dict[Any, str]] = {int: "integer", float: "number", str: "string", bool: "boolean", Any: "any"}


def models() -> list[type[BaseModel]]:
    """Every object reachable from ``InferenceService``, depth first in field order (the order of a spec file)."""
    found: list[type[BaseModel]] = []

    def visit(model: type[BaseModel]) -> None:
        if model in found:
            return
        found.append(model)
        for info in model.model_fields.values():
            for m in _nested_models(info.annotation):
                visit(m)

    visit(InferenceService)
    return found


def _nested_models(tp: Any) -> list[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [m for arg in get_args(tp) for m in _nested_models(arg)]


def missing_descriptions() -> list[str]:
    """``Model.field`` for every field without a description (the reference would have an empty cell)."""
    return [f"{m.__name__}.{name}" for m in models() for name, info in m.model_fields.items() if not info.description]


def _is_quantity(model: type[BaseModel], name: str) -> bool:
    hint = typing.get_type_hints(model, include_extras=True)[name]
    return hint is service.QuantityStr or service.QuantityStr in get_args(hint)


def _field_type(model: type[BaseModel], name: str, info: FieldInfo) -> str:
    text = _type(info.annotation)
    return text.replace("string", "quantity", 1) if _is_quantity(model, name) else text


def _type(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is typing.Annotated:
        return _type(get_args(tp)[0])
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in get_args(tp))
    if origin in (Union, types.UnionType):
        parts = [a for a in get_args(tp) if a is not type(None)]
        text = " or ".join(_type(a) for a in parts)
        return text + " or null" if len(parts) < len(get_args(tp)) else text
    if origin is list:
        return f"list of {_type(get_args(tp)[0])}"
    if origin is dict:
        key, value = get_args(tp)
        return f"map of {_type(key)} to {_type(value)}"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return f"[{tp.__name__}](#{tp.__name__.lower()})"
    return _SCALARS.get(tp, getattr(tp, "__name__", str(tp)))


def _value(v: Any) -> str:
    if v is None:
        return "null"
    if v == "":
        return '""'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, BaseModel):
        changed = {k: getattr(v, k) for k in sorted(v.model_fields_set)}
        return ", ".join(f"{k}: {_value(x)}" for k, x in changed.items()) if changed else "{}"
    if isinstance(v, dict):
        return "{}" if not v else ", ".join(f"{k}: {_value(x)}" for k, x in v.items())
    if isinstance(v, list):
        return "[]" if not v else "[" + ", ".join(_value(x) for x in v) + "]"
    return str(v)


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        return f"`{_value(info.default_factory())}`"  # type: ignore[call-arg]
    if info.default is PydanticUndefined:
        return "required"
    return f"`{_value(info.default)}`"


def _unit(model: type[BaseModel], name: str) -> str:
    key = f"{model.__name__}.{name}"
    if key in UNITS:
        return UNITS[key]
    if _is_quantity(model, name):
        return "cores" if name == "cpu" else "bytes"
    for suffix, unit in (("Seconds", "seconds"), ("Ms", "milliseconds"), ("Percentage", "percent")):
        if name.endswith(suffix):
            return unit
    return ""


def _allowed(info: FieldInfo) -> str:
    words = {
        annotated_types.Ge: (">=", "ge"),
        annotated_types.Gt: (">", "gt"),
        annotated_types.Le: ("<=", "le"),
        annotated_types.Lt: ("<", "lt"),
        annotated_types.MinLen: ("length >=", "min_length"),
    }
    out = []
    for meta in info.metadata:
        for cls, (op, attr) in words.items():
            if isinstance(meta, cls):
                out.append(f"{op} {_value(getattr(meta, attr))}")
    return ", ".join(out)


def _cell(text: str) -> str:
    """One table cell: one line, with GitHub's table escaping of ``|`` (also needed inside code spans)."""
    return " ".join(text.split()).replace("|", "\\|")


def _section(model: type[BaseModel], paths: list[str]) -> list[str]:
    lines = [f"## {model.__name__}", ""]
    lines.append("At " + ", ".join(f"`{p}`" for p in paths) + "." if paths else "The top-level object.")
    doc = model.__doc__
    if doc:
        lines += ["", " ".join(doc.split())]
    lines += [
        "",
        "| field | type | default | unit | allowed | description | Kubernetes |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, info in model.model_fields.items():
        row = [
            f"`{name}`",
            _field_type(model, name, info),
            _default(info),
            _unit(model, name),
            _allowed(info),
            _cell(info.description or ""),
            _cell(KUBERNETES.get(f"{model.__name__}.{name}", "")),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return [*lines, ""]


def _paths() -> dict[type[BaseModel], list[str]]:
    """Where each object appears in a spec file (``spec.probes.startup``; ``[]`` for list items)."""
    at: dict[type[BaseModel], list[str]] = {InferenceService: []}
    todo: list[tuple[type[BaseModel], str]] = [(InferenceService, "")]
    while todo:
        model, prefix = todo.pop(0)
        for name, info in model.model_fields.items():
            path = f"{prefix}.{name}" if prefix else name
            if get_origin(info.annotation) is list or any(get_origin(a) is list for a in get_args(info.annotation)):
                path += "[]"
            for m in _nested_models(info.annotation):
                at.setdefault(m, []).append(path)
                todo.append((m, path))
    return at


def reference() -> str:
    """docs/spec.md: the whole spec, one section per object."""
    paths = _paths()
    lines = [
        "# InferenceService spec reference",
        "",
        f"<!-- Generated from the pydantic models in src/kubeinfer/spec/ by `{COMMAND}`; do not edit. -->",
        "",
        "Every field of the `InferenceService` spec (`apiVersion: kubeinfer.io/v1alpha1`), with its type, default, "
        "unit, allowed values and what it becomes on Kubernetes (`kubeinfer render`). Unknown fields are errors; "
        "`kubeinfer validate FILE` names the file, line and field of every problem. Quantities (`500m`, `1Gi`) follow "
        "Kubernetes' rules. A default shown as `field: value` is an object whose listed fields differ from the "
        "defaults in its own section.",
        "",
        "Objects: " + ", ".join(f"[{m.__name__}](#{m.__name__.lower()})" for m in models()) + ".",
        "",
    ]
    for m in models():
        lines += _section(m, paths.get(m, []))
    return "\n".join(lines).rstrip("\n") + "\n"


if __name__ == "__main__":
    sys.stdout.write(reference())
