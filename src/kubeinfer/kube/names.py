"""Names shared by everything kubeinfer writes to a cluster: labels, paths, ports, metric names, field manager.

Labels follow the Kubernetes recommended labels (``app.kubernetes.io/*``); ``kubeinfer.io/service`` marks every
object rendered for one InferenceService so that ``deploy`` can prune what a spec no longer needs and ``delete``
can find everything. The metric names duplicate those the replica server exports (``server/metrics.py``) as
constants, so this package does not import the server.
"""

from __future__ import annotations

from typing import Final

from kubeinfer.spec.service import InferenceService

__all__ = [
    "CONFIG_DIR",
    "CONFIG_KEY",
    "CONTAINER",
    "FIELD_MANAGER",
    "GROUP",
    "METRIC_GENERATION_TOKENS_PER_SECOND",
    "METRIC_GENERATION_WAITING",
    "METRIC_GPU_UTILIZATION",
    "METRIC_IN_FLIGHT",
    "METRIC_QUEUE_DEPTH",
    "METRIC_REQUESTS_TOTAL",
    "MODEL_DIR",
    "OPERATOR_FIELD_MANAGER",
    "SCALER_FIELD_MANAGER",
    "SERVICE_LABEL",
    "adapter_metric_name",
    "common_labels",
    "config_map_name",
    "selector_labels",
]

GROUP: Final = "kubeinfer.io"
FIELD_MANAGER: Final = "kubeinfer"
OPERATOR_FIELD_MANAGER: Final = "kubeinfer-operator"
SCALER_FIELD_MANAGER: Final = "kubeinfer-autoscaler"
SERVICE_LABEL: Final = "kubeinfer.io/service"
CONTAINER: Final = "server"
CONFIG_DIR: Final = "/etc/kubeinfer"
CONFIG_KEY: Final = "service.yaml"
MODEL_DIR: Final = "/opt/kubeinfer/model"
"""Where ``kubeinfer build`` puts the model inside the image; rendered specs point their ``uri`` here."""

# Replica server metrics (kubeinfer/server/metrics.py), duplicated to keep kube independent of the server.
METRIC_IN_FLIGHT: Final = "kubeinfer_requests_in_flight"
METRIC_QUEUE_DEPTH: Final = "kubeinfer_queue_depth"
METRIC_REQUESTS_TOTAL: Final = "kubeinfer_requests_total"
METRIC_GPU_UTILIZATION: Final = "kubeinfer_gpu_utilization_ratio"
# Text generation (kubeinfer/server/generate_metrics.py): only replicas of a model of format llm export them.
METRIC_GENERATION_TOKENS_PER_SECOND: Final = "kubeinfer_generation_tokens_per_second"
METRIC_GENERATION_WAITING: Final = "kubeinfer_generation_sequences_waiting"

# Names under which the Prometheus adapter serves per-pod custom metrics to the HPA (see
# deploy/prometheus-adapter/rules.yaml): gauges keep their names; rates and percentages are derived series.
_ADAPTER_METRICS: Final = {
    "concurrency": METRIC_IN_FLIGHT,
    "queue-depth": METRIC_QUEUE_DEPTH,
    "rps": "kubeinfer_requests_per_second",
    "gpu-utilization": "kubeinfer_gpu_utilization_percent",
    "tokens": METRIC_GENERATION_TOKENS_PER_SECOND,
    "sequences-waiting": METRIC_GENERATION_WAITING,
}


def adapter_metric_name(metric_type: str) -> str:
    """The custom-metrics API name of a per-pod spec metric type (``concurrency`` -> ``kubeinfer_requests_in_flight``)."""
    try:
        return _ADAPTER_METRICS[metric_type]
    except KeyError:
        raise ValueError(
            f"metric type {metric_type!r} is not a per-pod metric; known: {sorted(_ADAPTER_METRICS)}"
        ) from None


def selector_labels(svc: InferenceService) -> dict[str, str]:
    """The immutable Deployment selector: never add labels here that may change between versions."""
    return {"app.kubernetes.io/name": svc.name, "app.kubernetes.io/instance": svc.name}


def common_labels(svc: InferenceService, component: str = "inference-server") -> dict[str, str]:
    labels = dict(svc.metadata.labels)
    labels.update(
        {
            **selector_labels(svc),
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": "kubeinfer",
            "app.kubernetes.io/managed-by": "kubeinfer",
            "app.kubernetes.io/version": _label_value(svc.spec.model.version),
            SERVICE_LABEL: svc.name,
        }
    )
    return labels


def config_map_name(svc: InferenceService) -> str:
    return f"{svc.name}-spec"


def _label_value(v: str) -> str:
    """A valid label value: at most 63 of ``[A-Za-z0-9._-]``, alphanumeric at both ends."""
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in v)[:63].strip("._-")
    return cleaned or "unknown"
