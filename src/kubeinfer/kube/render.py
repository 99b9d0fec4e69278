"""Render an ``InferenceService`` into Kubernetes manifests: pure functions from the spec to plain dicts.

Nothing here talks to a cluster; ``deploy`` applies what this returns, the operator applies the same objects with
owner references, and the tests validate every object against the Kubernetes OpenAPI schemas (1.30 to 1.35) and the
published CRD schemas of the add-ons (VPA, prometheus-operator, KEDA).

What each spec field becomes:

- the spec itself -> a ConfigMap mounted at ``/etc/kubeinfer/service.yaml`` (model ``uri`` rewritten to where
  ``kubeinfer build`` puts the model in the image, host ``0.0.0.0``); a hash of what the server reads of it (all
  but ``replicas`` and ``autoscaling``) is a pod-template annotation so such a change rolls the pods;
- a remote ``model.uri`` (``s3://``, ``gs://``, ``az://``, ``https://``, ``hf://``) -> an init container running
  ``kubeinfer fetch`` (the same image) that downloads the model into an ``emptyDir`` at ``/mnt/models`` (the cache in
  a PersistentVolumeClaim with ``model.cacheClaim``), credentials from ``model.storageSecret`` as environment; the
  server reads it from there, read-only (KServe's storage initializer does the same); with ``model_in_image`` (an
  image from ``kubeinfer build``, which bakes the model in) the uri points into the image instead;
- ``server`` ports -> container ports ``http``/``grpc`` and a ClusterIP Service (``appProtocol`` http and
  ``kubernetes.io/h2c`` for gRPC);
- ``probes`` -> startup/readiness/liveness ``httpGet`` on ``/startupz``, ``/readyz``, ``/healthz`` (``scheme: HTTPS``
  when the replicas serve TLS);
- ``server.tls.secretName`` / ``server.auth.apiKeysSecret`` -> read-only Secret volumes under
  ``/var/run/secrets/kubeinfer.io`` whose files the served spec names (the server reloads them when the kubelet swaps
  in a rotated Secret); with TLS the Service ports are named ``https``/``grpc-tls`` and Prometheus scrapes HTTPS;
- ``server.limits.drainTimeoutSeconds`` -> a preStop ``sleep`` (endpoints controllers and load balancers stop
  sending traffic before SIGTERM) and ``terminationGracePeriodSeconds`` = preStop + drain + margin;
- ``resources`` -> requests/limits and the accelerator's extended resource (:mod:`kubeinfer.kube.gpu`);
- ``rollout`` -> RollingUpdate ``maxSurge``/``maxUnavailable``, ``progressDeadlineSeconds``;
- ``rollout.canary`` -> the Gateway API's traffic split (:func:`canary_traffic`): Services ``<name>-stable`` and
  ``<name>-canary`` (pods by their ``kubeinfer.io/track`` label) and an ``HTTPRoute``
  (``gateway.networking.k8s.io/v1``) whose default rule weighs the two ``backendRefs`` (all to stable as rendered;
  the operator moves the weights), with rules matching the ``x-kubeinfer-revision`` header for pinned requests;
- ``autoscaling`` -> HorizontalPodAutoscaler ``autoscaling/v2`` (or a KEDA ScaledObject with ``keda=True`` or
  ``autoscaling.keda``; the token metrics of format llm read the ``kubeinfer_generation_*`` gauges), a
  VerticalPodAutoscaler, a PodDisruptionBudget; ``kpa``/``predictive`` are run by the kubeinfer operator, which
  scales the Deployment itself.
"""

from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Final

import yaml

from kubeinfer.kube import gpu as gpus
from kubeinfer.kube.names import (
    CONFIG_DIR,
    CONFIG_KEY,
    CONTAINER,
    METRIC_GENERATION_TOKENS_PER_SECOND,
    METRIC_GENERATION_WAITING,
    METRIC_GPU_UTILIZATION,
    METRIC_IN_FLIGHT,
    METRIC_QUEUE_DEPTH,
    METRIC_REQUESTS_TOTAL,
    MODEL_DIR,
    adapter_metric_name,
    common_labels,
    config_map_name,
    selector_labels,
)
from kubeinfer.kube.versions import SUPPORTED_VERSIONS
from kubeinfer.spec.service import (
    DEFAULT_PROMETHEUS,
    GENERATION_METRICS,
    SECRET_MOUNT,
    InferenceService,
    MetricSpec,
    ModelSpec,
    ProbeSpec,
)
from kubeinfer.storage.uris import is_remote, model_basename

__all__ = [
    "SUPPORTED_VERSIONS",
    "RenderOptions",
    "Rendered",
    "container_spec_doc",
    "dump_yaml",
    "quantity",
    "render",
    "render_all",
]

DEFAULT_HTTP_PORT: Final = 8080
DEFAULT_GRPC_PORT: Final = 8081
RUN_AS: Final = 10001
MODEL_MOUNT: Final = "/mnt/models"
"""Where the init container puts a remote model (an emptyDir shared with the server container)."""
CACHE_MOUNT: Final = "/mnt/model-cache"
"""Where the model cache PersistentVolumeClaim (``model.cacheClaim``) is mounted."""
TLS_MOUNT: Final = f"{SECRET_MOUNT}/tls"
"""Where the ``server.tls.secretName`` Secret is mounted (``tls.crt``, ``tls.key``)."""
AUTH_MOUNT: Final = f"{SECRET_MOUNT}/auth"
"""Where the ``server.auth.apiKeysSecret`` key is mounted, as the file ``api-keys``."""
API_KEYS_FILE: Final = f"{AUTH_MOUNT}/api-keys"
SECRET_FILE_MODE: Final = 0o440
"""Mounted Secret files: readable by the owner (root) and the pod's fsGroup (the server's group), nobody else."""
"""The image's non-root user and group (deploy/Dockerfile)."""


@dataclass(frozen=True)
class RenderOptions:
    """How to render: target cluster version, cloud preset and optional add-ons."""

    target_version: str = SUPPORTED_VERSIONS[-1]
    """Kubernetes minor version (``1.30`` .. ``1.35``); fields newer than it are left out."""
    cloud: gpus.Cloud | None = None
    """``gke`` | ``eks`` | ``aks`` node selection and tolerations for accelerators; None for any cluster."""
    keda: bool = False
    """Scale with a KEDA ScaledObject (Prometheus trigger; allows minReplicas 0) instead of an HPA."""
    namespace: str | None = None
    """Override ``metadata.namespace``."""
    image: str | None = None
    """Override ``spec.image``."""
    accelerator: str | None = None
    """Cloud accelerator label value (e.g. ``nvidia-l4`` on GKE) to pin GPU replicas to one GPU type."""
    monitoring: bool = True
    """Render a prometheus-operator ServiceMonitor."""
    network_policy: bool = True
    prometheus_url: str = DEFAULT_PROMETHEUS
    """Prometheus that KEDA's trigger queries (``spec.autoscaling.keda.serverAddress`` wins where given)."""
    device_plugin_namespace: str = "gpu-operator"
    device_plugin_config_name: str = "kubeinfer-gpu-sharing"
    prestop_seconds: int = 5
    """Seconds a terminating pod keeps serving before SIGTERM, while endpoints drop it."""
    model_in_image: bool = False
    """The image has the model baked in (``kubeinfer build``): no download at start, even for a remote uri."""

    def __post_init__(self) -> None:
        if self.target_version not in SUPPORTED_VERSIONS:
            raise ValueError(
                f"target version {self.target_version!r} is not supported: use one of {', '.join(SUPPORTED_VERSIONS)}"
            )
        if self.cloud is not None and self.cloud not in gpus.CLOUDS:
            raise ValueError(f"cloud {self.cloud!r} is not a preset: use one of {', '.join(gpus.CLOUDS)}")

    def at_least(self, minor: str) -> bool:
        return _minor(self.target_version) >= _minor(minor)


def _minor(v: str) -> tuple[int, int]:
    major, minor = v.split(".")[:2]
    return int(major), int(minor)


@dataclass(frozen=True)
class Rendered:
    objects: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    """Things the user should know (a clamped value, an add-on that must be installed)."""


def quantity(x: float) -> str:
    """A Kubernetes quantity for a plain number: ``8`` -> ``"8"``, ``0.5`` -> ``"500m"``."""
    if x == int(x):
        return str(int(x))
    return f"{round(x * 1000)}m"


def _secs(x: float, minimum: int = 0) -> int:
    return max(minimum, math.ceil(x - 1e-9))


def http_port(svc: InferenceService) -> int:
    return svc.spec.server.port or DEFAULT_HTTP_PORT


def grpc_port(svc: InferenceService) -> int | None:
    p = svc.spec.server.grpcPort
    if p is None:
        return None
    return p or DEFAULT_GRPC_PORT


def image_model_uri(model: ModelSpec, model_in_image: bool = False, entry: int | None = None) -> str:
    """Where the server finds the model in the pod: in the image built by ``kubeinfer build``, or, for a remote uri,
    where the init container downloaded it (unless the image has it baked in). ``entry``: the index of a
    ``spec.models`` entry, whose download has a folder of its own (two entries may end in the same name)."""
    uri = model.uri
    if uri and is_remote(uri):
        if model_in_image:
            return f"{MODEL_DIR}/{model_basename(uri)}"
        return f"{MODEL_MOUNT}{'' if entry is None else f'/{entry}'}/{model_basename(uri)}"
    if not uri:
        return MODEL_DIR  # format python: the folder holding the user's module goes on sys.path
    name = PurePosixPath(uri.removeprefix("file://").rstrip("/")).name
    return f"{MODEL_DIR}/{name}" if name not in ("", ".") else MODEL_DIR


def container_spec_doc(svc: InferenceService, model_in_image: bool = False) -> dict[str, Any]:
    """The spec as the container reads it: model path inside the pod, listening on all interfaces."""
    doc = svc.model_dump(mode="json", exclude_unset=True)
    spec = doc["spec"]
    entries = spec["models"] if svc.spec.models is not None else [spec["model"]]
    for i, (entry, model) in enumerate(zip(entries, svc.spec.served_models, strict=True)):
        entry["uri"] = image_model_uri(model, model_in_image, None if svc.spec.models is None else i)
        if is_remote(model.uri):
            # checked once where it was downloaded (the init container or `kubeinfer build`), not again at every start
            for key in ("sha256", "storageSecret", "cacheClaim"):
                entry.pop(key, None)
    server = spec.setdefault("server", {})
    server["host"] = "0.0.0.0"
    server["port"] = http_port(svc)
    server["grpcPort"] = grpc_port(svc)
    logger = spec.get("logger") or {}
    if logger.get("file") and not logger["file"].startswith("/"):
        logger["file"] = f"/tmp/{logger['file']}"  # the payload log: in the pod's writable emptyDir
    # The Secrets are mounted files in the pod (deployment()): the server reads those files and reloads them when the
    # kubelet swaps in a rotated Secret's contents.
    if svc.spec.server.tls.secretName is not None:
        server["tls"] = {"certFile": f"{TLS_MOUNT}/tls.crt", "keyFile": f"{TLS_MOUNT}/tls.key"}
    if svc.spec.server.auth.apiKeysSecret is not None:
        server["auth"] = {"apiKeysFile": API_KEYS_FILE}
    return doc


_NOT_READ_BY_SERVER: Final = ("replicas", "autoscaling")
"""Spec fields the serving process never reads: the Deployment controller and the autoscalers act on them."""


def pod_spec_hash(svc: InferenceService, model_in_image: bool = False) -> str:
    """The pod template's ``kubeinfer.io/spec-hash``: a change to what the server reads rolls the pods; a new replica
    count or autoscaling bound only scales them (hashing the whole mounted spec rolled every pod for those)."""
    doc = container_spec_doc(svc, model_in_image)
    entries = doc["spec"]["models"] if svc.spec.models is not None else [doc["spec"]["model"]]
    for entry, model in zip(entries, svc.spec.served_models, strict=True):
        if is_remote(model.uri):
            entry["source"] = model.uri  # a new remote uri rolls the pods too
    for key in _NOT_READ_BY_SERVER:
        doc["spec"].pop(key, None)
    return hashlib.sha256(yaml.safe_dump(doc, sort_keys=True).encode()).hexdigest()[:16]


def _meta(svc: InferenceService, opts: RenderOptions, name: str, component: str = "inference-server") -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": opts.namespace or svc.metadata.namespace,
        "labels": common_labels(svc, component),
    }
    return meta


def _obj(api_version: str, kind: str, metadata: dict[str, Any], **body: Any) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, **body}


# ---------------------------------------------------------------------------------------------------------------
# Workload


def config_map(svc: InferenceService, opts: RenderOptions) -> dict[str, Any]:
    text = "# Rendered by kubeinfer from the InferenceService spec; edit the spec, not this.\n" + yaml.safe_dump(
        container_spec_doc(svc, opts.model_in_image), sort_keys=False
    )
    return _obj("v1", "ConfigMap", _meta(svc, opts, config_map_name(svc)), data={CONFIG_KEY: text})


def serves_tls(svc: InferenceService) -> bool:
    """Whether the replicas serve HTTPS and TLS gRPC on the cluster (certificate files or a mounted Secret)."""
    return svc.spec.server.tls.on_kubernetes


def _probe(path: str, p: ProbeSpec, tls: bool = False) -> dict[str, Any]:
    # The kubelet does not verify the serving certificate of an HTTPS probe (a pod's IP is rarely in it).
    return {
        "httpGet": {"path": path, "port": "http", "scheme": "HTTPS" if tls else "HTTP"},
        "initialDelaySeconds": _secs(p.initialDelaySeconds),
        "periodSeconds": _secs(p.periodSeconds, 1),
        "timeoutSeconds": _secs(p.timeoutSeconds, 1),
        "successThreshold": p.successThreshold,
        "failureThreshold": p.failureThreshold,
    }


def _resources(svc: InferenceService, placement: gpus.GpuPlacement) -> dict[str, Any]:
    r = svc.spec.resources
    requests = {k: v for k, v in (("cpu", r.requests.cpu), ("memory", r.requests.memory)) if v is not None}
    limits = {k: v for k, v in (("cpu", r.limits.cpu), ("memory", r.limits.memory)) if v is not None}
    # Extended resources cannot be overcommitted: the request must equal the limit.
    requests.update(placement.resources)
    limits.update(placement.resources)
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def termination_grace_seconds(svc: InferenceService, opts: RenderOptions) -> int:
    """preStop sleep + the server's drain timeout + 5 s for the process to exit after draining."""
    return opts.prestop_seconds + _secs(svc.spec.server.limits.drainTimeoutSeconds) + 5


PEAK_WINDOW_ENV = "KUBEINFER_PEAK_WINDOW_SECONDS"
"""The replica's window of ``kubeinfer_arrivals_peak`` (``server.metrics``, which reads it)."""
PEAK_HORIZON_ENV = "KUBEINFER_PEAK_HORIZON_SECONDS"
"""How far back the replica's ``kubeinfer_arrivals_peak`` looks: the operator's predictive sync period, so that a
burst shows in one of its samples (two at most, where it falls in the one-second overlap), as in ``simulate``."""
SLO_ENV = "KUBEINFER_SLO_SECONDS"
"""The SLO the replica's ``kubeinfer_requests_late_total`` counts misses of (``server.metrics``)."""


def peak_window(svc: InferenceService) -> float:
    """Seconds of the window the replicas count their peak arrivals in (``kubeinfer_arrivals_peak``, the operator's
    ``LoadSample.peak``): the SLO's length, ``autoscaling.predictive.sloLatencyMs``, for policy predictive, the
    window ``kubeinfer up``'s router and ``kubeinfer simulate`` count in; 0 (no gauge) for the other policies, which
    do not read it."""
    a = svc.spec.autoscaling
    return a.predictive.sloLatencyMs / 1000.0 if a.policy == "predictive" else 0.0


def _server_container(svc: InferenceService, opts: RenderOptions, placement: gpus.GpuPlacement) -> dict[str, Any]:
    """The server container: ports, environment, resources, probes, preStop, a hardened security context."""
    s = svc.spec
    ports: list[dict[str, Any]] = [{"name": "http", "containerPort": http_port(svc), "protocol": "TCP"}]
    g = grpc_port(svc)
    if g is not None:
        ports.append({"name": "grpc", "containerPort": g, "protocol": "TCP"})
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(s.env.items())]
    env += [
        {"name": "HOME", "value": "/tmp"},  # the root filesystem is read-only; caches go to the /tmp emptyDir
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    if any(m.format == "llm" and m.args.get("engine") == "vllm" for m in s.served_models):
        # vLLM reports usage to its project by default: off, a serving cluster rarely lets a pod reach the internet
        # and an inference service should not call out on its own
        env.append({"name": "VLLM_NO_USAGE_STATS", "value": "1"})
    window = peak_window(svc)
    if window:
        # the replicas' kubeinfer_arrivals_peak, which the operator sums into its load sample's peak
        env.append({"name": PEAK_WINDOW_ENV, "value": f"{window:g}"})
        horizon = max(1, math.ceil(svc.spec.autoscaling.predictive.syncPeriodSeconds))
        env.append({"name": PEAK_HORIZON_ENV, "value": str(horizon)})
        # the replicas' kubeinfer_requests_late_total: the operator's SLO feedback (LoadSample.late)
        env.append({"name": SLO_ENV, "value": f"{window:g}"})
    return {
        "name": CONTAINER,
        "image": opts.image or s.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["kubeinfer"],
        "args": ["serve", f"{CONFIG_DIR}/{CONFIG_KEY}", "--host", "0.0.0.0"],
        "ports": ports,
        "env": env,
        "resources": _resources(svc, placement),
        "startupProbe": _probe("/startupz", s.probes.startup, serves_tls(svc)),
        "readinessProbe": _probe("/readyz", s.probes.readiness, serves_tls(svc)),
        "livenessProbe": _probe("/healthz", s.probes.liveness, serves_tls(svc)),
        "lifecycle": {"preStop": {"sleep": {"seconds": opts.prestop_seconds}}},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "spec", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def _scheduling(svc: InferenceService, placement: gpus.GpuPlacement) -> dict[str, Any]:
    """Where the pods may run: spread over nodes and zones, the GPU pool's selector, affinity and tolerations,
    and how long a pod stays on a failed node."""
    s = svc.spec
    selector = selector_labels(svc)
    out: dict[str, Any] = {
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": key,
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": selector},
                "matchLabelKeys": ["pod-template-hash"],
            }
            for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")
        ]
    }
    if placement.node_selector:
        out["nodeSelector"] = dict(placement.node_selector)
    if placement.node_affinity_terms:
        out["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": placement.node_affinity_terms}
            }
        }
    tolerations = list(placement.tolerations or [])
    if s.rollout.nodeFailureSeconds is not None:
        # What the DefaultTolerationSeconds admission plugin would add with 300 s, shorter: a serving replica on a
        # dead node is capacity lost for every request routed around it.
        tolerations += [
            {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": s.rollout.nodeFailureSeconds}
            for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
        ]
    if tolerations:
        out["tolerations"] = tolerations
    return out


def deployment(svc: InferenceService, opts: RenderOptions) -> dict[str, Any]:
    s = svc.spec
    placement = gpus.gpu_placement(s.resources.gpu, opts.cloud, opts.accelerator)
    container = _server_container(svc, opts, placement)
    volumes: list[dict[str, Any]] = [
        {"name": "spec", "configMap": {"name": config_map_name(svc)}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
    ]
    if s.resources.gpu.requested:
        # CUDA and NCCL use shared memory; the container runtime's 64 MiB /dev/shm is too small.
        container["volumeMounts"].append({"name": "dshm", "mountPath": "/dev/shm"})
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}})
    _secret_volumes(svc, container, volumes)
    inits = _model_fetch(svc, opts, container, volumes)
    scheduling = _scheduling(svc, placement)
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,  # the server never calls the API server
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": termination_grace_seconds(svc, opts),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        **({"initContainers": inits} if inits else {}),
        "containers": [container],
        "volumes": volumes,
        "topologySpreadConstraints": scheduling.pop("topologySpreadConstraints"),
        **scheduling,
    }
    template_meta = {
        "labels": common_labels(svc),
        "annotations": {
            "kubeinfer.io/spec-hash": pod_spec_hash(svc, opts.model_in_image),
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(http_port(svc)),
            "prometheus.io/path": "/metrics",
            **({"prometheus.io/scheme": "https"} if serves_tls(svc) else {}),
        },
    }
    dspec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(svc)},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": s.rollout.maxSurge, "maxUnavailable": s.rollout.maxUnavailable},
        },
        "progressDeadlineSeconds": _secs(s.rollout.progressDeadlineSeconds, 1),
        "revisionHistoryLimit": 5,
        "template": {"metadata": template_meta, "spec": pod_spec},
    }
    fixed = fixed_replicas(svc)
    if fixed is not None:
        dspec = {"replicas": fixed, **dspec}
    meta = _meta(svc, opts, svc.name)
    meta["annotations"] = {**svc.metadata.annotations, "kubeinfer.io/autoscaling-policy": s.autoscaling.policy}
    return _obj("apps/v1", "Deployment", meta, spec=dspec)


def _secret_volumes(svc: InferenceService, server: dict[str, Any], volumes: list[dict[str, Any]]) -> None:
    """Read-only Secret volumes for ``server.tls.secretName`` and ``server.auth.apiKeysSecret``. Whole volumes, never
    ``subPath`` mounts: the kubelet updates a Secret volume in place (an atomic symlink swap, within its sync period
    plus the Secret cache's TTL), and the server's reload sees the new files; a ``subPath`` mount is never updated."""
    s = svc.spec.server
    if s.tls.secretName is not None:
        volumes.append(
            {
                "name": "tls",
                "secret": {
                    "secretName": s.tls.secretName,
                    "items": [{"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}],
                    "defaultMode": SECRET_FILE_MODE,
                },
            }
        )
        server["volumeMounts"].append({"name": "tls", "mountPath": TLS_MOUNT, "readOnly": True})
    ref = s.auth.apiKeysSecret
    if ref is not None:
        volumes.append(
            {
                "name": "api-keys",
                "secret": {
                    "secretName": ref.name,
                    "items": [{"key": ref.key, "path": API_KEYS_FILE.rsplit("/", 1)[1]}],
                    "defaultMode": SECRET_FILE_MODE,
                },
            }
        )
        server["volumeMounts"].append({"name": "api-keys", "mountPath": AUTH_MOUNT, "readOnly": True})


def _model_fetch(
    svc: InferenceService, opts: RenderOptions, server: dict[str, Any], volumes: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The init containers that download the remote models before the server starts, and the volumes they share
    with the server container (which mounts the models read-only); none for local models or ones baked into the
    image. ``spec.model``: one, ``model-fetch``; ``spec.models``: one per remote entry (:func:`_models_fetch`)."""
    remote = [m for m in svc.spec.served_models if m.uri and is_remote(m.uri)]
    if not remote or opts.model_in_image:
        return []
    volumes.append({"name": "model", "emptyDir": {}})
    server["volumeMounts"].append({"name": "model", "mountPath": MODEL_MOUNT, "readOnly": True})
    if svc.spec.models is not None:
        return _models_fetch(svc.spec.models, server, volumes)
    return [_fetch_container(svc.spec.model, "model-fetch", MODEL_MOUNT, server, volumes)]


def _models_fetch(
    models: list[ModelSpec], server: dict[str, Any], volumes: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``spec.models``: an init container per remote entry i, ``model-fetch-<i>``, into ``/mnt/models/<i>/`` (where
    :func:`image_model_uri` points the server), each with its entry's ``sha256``, ``storageSecret`` and
    ``cacheClaim``; they run one after the other and share the model cache."""
    return [
        _fetch_container(m, f"model-fetch-{i}", f"{MODEL_MOUNT}/{i}", server, volumes)
        for i, m in enumerate(models)
        if m.uri and is_remote(m.uri)
    ]


def _fetch_container(
    m: ModelSpec, name: str, to: str, server: dict[str, Any], volumes: list[dict[str, Any]]
) -> dict[str, Any]:
    """One init container running ``kubeinfer fetch`` for ``m`` into ``to`` (a cache claim's volume added once)."""
    mounts: list[dict[str, Any]] = [
        {"name": "model", "mountPath": MODEL_MOUNT},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    cache = f"{MODEL_MOUNT}/.cache"
    if m.cacheClaim:
        claims = {v["persistentVolumeClaim"]["claimName"]: v["name"] for v in volumes if "persistentVolumeClaim" in v}
        volume = claims.get(m.cacheClaim) or ("model-cache" if not claims else f"model-cache-{len(claims)}")
        if m.cacheClaim not in claims:
            volumes.append({"name": volume, "persistentVolumeClaim": {"claimName": m.cacheClaim}})
        mounts.append({"name": volume, "mountPath": CACHE_MOUNT})
        cache = CACHE_MOUNT
    args = ["fetch", m.uri, "--to", to, "--no-progress"]
    if m.sha256:
        args += ["--sha256", m.sha256]
    env = [
        {"name": "HOME", "value": "/tmp"},
        {"name": "KUBEINFER_MODEL_CACHE", "value": cache},
        {"name": "HF_HOME", "value": f"{cache}/huggingface"},
    ]
    init: dict[str, Any] = {
        "name": name,
        "image": server["image"],
        "imagePullPolicy": "IfNotPresent",
        "command": ["kubeinfer"],
        "args": args,
        "env": env,
        "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": server["securityContext"],
        "volumeMounts": mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if m.storageSecret:
        init["envFrom"] = [{"secretRef": {"name": m.storageSecret}}]
    return init


def fixed_replicas(svc: InferenceService) -> int | None:
    """``spec.replicas`` of the Deployment, or None where an autoscaler owns it (server-side apply must not fight it)."""
    a = svc.spec.autoscaling
    if a.policy == "none":
        return svc.spec.replicas if svc.spec.replicas is not None else a.minReplicas
    return None


def service_port_name(svc: InferenceService) -> str:
    """The Service's name for the REST port: ``https`` when the replicas serve TLS (meshes and tools read the
    protocol from it), else ``http``. The container port keeps the name ``http`` either way (probes, the
    NetworkPolicy and the canary Services refer to it)."""
    return "https" if serves_tls(svc) else "http"


def service(svc: InferenceService, opts: RenderOptions) -> dict[str, Any]:
    tls = serves_tls(svc)
    name = service_port_name(svc)
    ports: list[dict[str, Any]] = [
        {"name": name, "port": http_port(svc), "targetPort": "http", "protocol": "TCP", "appProtocol": name}
    ]
    g = grpc_port(svc)
    if g is not None:
        # h2c is cleartext HTTP/2 (Gateway API's backend protocol); gRPC over TLS is HTTP/2 inside https.
        ports.append(
            {
                "name": "grpc-tls" if tls else "grpc",
                "port": g,
                "targetPort": "grpc",
                "protocol": "TCP",
                "appProtocol": "https" if tls else "kubernetes.io/h2c",
            }
        )
    return _obj(
        "v1",
        "Service",
        _meta(svc, opts, svc.name),
        spec={"type": "ClusterIP", "selector": selector_labels(svc), "ports": ports},
    )


TRACK_LABEL: Final = "kubeinfer.io/track"
"""Pod label that tells a canary's pods (``canary``) from the stable ones (``stable``); not in the Deployment's
selector (immutable), only in the stable/canary Services' selectors."""
REVISION_HEADER: Final = "x-kubeinfer-revision"


def _gateway_ref(gateway: str) -> dict[str, Any]:
    namespace, _, name = gateway.rpartition("/")
    ref: dict[str, Any] = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": name}
    if namespace:
        ref["namespace"] = namespace
    return ref


def canary_service(svc: InferenceService, opts: RenderOptions, track: str) -> dict[str, Any]:
    """The Service of one track (``stable`` or ``canary``): the HTTP port of the pods labelled with it."""
    return _obj(
        "v1",
        "Service",
        _meta(svc, opts, f"{svc.name}-{track}"),
        spec={
            "type": "ClusterIP",
            "selector": {**selector_labels(svc), TRACK_LABEL: track},
            "ports": [
                {"name": "http", "port": http_port(svc), "targetPort": "http", "protocol": "TCP", "appProtocol": "http"}
            ],
        },
    )


def http_route(svc: InferenceService, opts: RenderOptions, canary_weight: int = 0) -> dict[str, Any]:
    """The HTTPRoute (Gateway API ``gateway.networking.k8s.io/v1``) that splits the service's traffic: its default
    rule's ``backendRefs`` weigh ``<name>-stable`` and ``<name>-canary`` (weights are proportions, here percentages
    summing to 100, as the Gateway API's traffic-splitting guide writes them); two rules before it send a request
    with ``x-kubeinfer-revision: canary`` or ``stable`` to that track only (the local router's pinning). The
    operator moves ``canary_weight`` by the same analysis as ``kubeinfer up``."""
    canary = svc.spec.rollout.canary
    gateway = canary.gateway if canary is not None else "kubeinfer"
    port = http_port(svc)

    def ref(track: str, weight: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"group": "", "kind": "Service", "name": f"{svc.name}-{track}", "port": port}
        if weight is not None:
            out["weight"] = weight
        return out

    def pinned(track: str) -> dict[str, Any]:
        return {
            "matches": [{"headers": [{"type": "Exact", "name": REVISION_HEADER, "value": track}]}],
            "backendRefs": [ref(track)],
        }

    return _obj(
        "gateway.networking.k8s.io/v1",
        "HTTPRoute",
        _meta(svc, opts, svc.name),
        spec={
            "parentRefs": [_gateway_ref(gateway)],
            "rules": [
                pinned("canary"),
                pinned("stable"),
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [ref("stable", 100 - canary_weight), ref("canary", canary_weight)],
                },
            ],
        },
    )


def canary_traffic(svc: InferenceService, opts: RenderOptions) -> list[dict[str, Any]]:
    """What ``spec.rollout.canary`` adds: the stable and canary Services and the HTTPRoute, all traffic to stable
    (no canary runs until the operator starts one); nothing without a canary spec."""
    if svc.spec.rollout.canary is None:
        return []
    return [canary_service(svc, opts, "stable"), canary_service(svc, opts, "canary"), http_route(svc, opts)]


def label_track(deployment_obj: dict[str, Any], track: str) -> dict[str, Any]:
    """The Deployment with its pods labelled ``kubeinfer.io/track: <track>`` (the stable/canary Services select by
    it; the Deployment's selector is left alone: it is immutable)."""
    labels = deployment_obj["spec"]["template"]["metadata"].setdefault("labels", {})
    labels[TRACK_LABEL] = track
    return deployment_obj


def pod_disruption_budget(svc: InferenceService, opts: RenderOptions) -> dict[str, Any]:
    # maxUnavailable 1 (not minAvailable) so that a single-replica service never blocks a node drain, and
    # AlwaysAllow so that crash-looping pods can always be evicted.
    return _obj(
        "policy/v1",
        "PodDisruptionBudget",
        _meta(svc, opts, svc.name),
        spec={
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(svc)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    )


def network_policy(svc: InferenceService, opts: RenderOptions) -> dict[str, Any]:
    """Only the serving ports are reachable (clients, Prometheus and the operator's scraper use them)."""
    ports: list[dict[str, Any]] = [{"protocol": "TCP", "port": "http"}]
    if grpc_port(svc) is not None:
        ports.append({"protocol": "TCP", "port": "grpc"})
    return _obj(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        _meta(svc, opts, svc.name),
        spec={
            "podSelector": {"matchLabels": selector_labels(svc)},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": ports}],
        },
    )


def device_plugin_config_map(svc: InferenceService, opts: RenderOptions) -> dict[str, Any] | None:
    """NVIDIA device-plugin sharing config; lives in the plugin's namespace and is shared by all services."""
    data = gpus.device_plugin_config(svc.spec.resources.gpu)
    if not data:
        return None
    meta = {
        "name": opts.device_plugin_config_name,
        "namespace": opts.device_plugin_namespace,
        "labels": {
            "app.kubernetes.io/part-of": "kubeinfer",
            "app.kubernetes.io/managed-by": "kubeinfer",
            "app.kubernetes.io/component": "gpu-sharing",
        },
    }
    return _obj("v1", "ConfigMap", meta, data=data)


# ---------------------------------------------------------------------------------------------------------------
# Autoscaling and monitoring


def _hpa_metric(m: MetricSpec) -> dict[str, Any]:
    if m.type in ("cpu", "memory"):
        return {
            "type": "Resource",
            "resource": {
                "name": m.type,
                "target": {"type": "Utilization", "averageUtilization": max(1, round(m.target))},
            },
        }
    if m.type == "external":
        return {
            "type": "External",
            "external": {
                "metric": {"name": m.name or "external"},
                "target": {"type": "AverageValue", "averageValue": quantity(m.target)},
            },
        }
    return {
        "type": "Pods",
        "pods": {
            "metric": {"name": adapter_metric_name(m.type)},
            "target": {"type": "AverageValue", "averageValue": quantity(m.target)},
        },
    }


def _behavior(svc: InferenceService, opts: RenderOptions, notes: list[str]) -> dict[str, Any] | None:
    a = svc.spec.autoscaling
    b = a.behavior
    tolerance_ok = opts.at_least("1.33")
    global_tol = a.tolerance if abs(a.tolerance - 0.1) > 1e-12 else None
    out: dict[str, Any] = {}
    for direction in ("scaleUp", "scaleDown"):
        rules = getattr(b, direction) if b is not None else None
        r: dict[str, Any] = {}
        if rules is not None:
            if rules.stabilizationWindowSeconds is not None:
                r["stabilizationWindowSeconds"] = rules.stabilizationWindowSeconds
            r["selectPolicy"] = rules.selectPolicy
            if rules.policies:
                r["policies"] = [
                    {"type": p.type, "value": p.value, "periodSeconds": p.periodSeconds} for p in rules.policies
                ]
        tol = rules.tolerance if rules is not None and rules.tolerance is not None else global_tol
        if tol is not None:
            if tolerance_ok:
                r["tolerance"] = quantity(tol)
            else:
                notes.append(
                    f"autoscaling tolerance {tol:g} ({direction}) needs Kubernetes 1.33+ (HPAConfigurableTolerance); "
                    f"left out for {opts.target_version}: the cluster-wide default (0.1) applies"
                )
        if r:
            out[direction] = r
    return out or None


def horizontal_pod_autoscaler(svc: InferenceService, opts: RenderOptions, notes: list[str]) -> dict[str, Any]:
    a = svc.spec.autoscaling
    min_replicas = a.minReplicas
    if min_replicas < 1:
        notes.append(
            "the HPA cannot scale to zero (minReplicas 0 needs the HPAScaleToZero alpha gate): minReplicas set to 1; "
            "render with --keda for scale to zero"
        )
        min_replicas = 1
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": svc.name},
        "minReplicas": min_replicas,
        "maxReplicas": a.maxReplicas,
        "metrics": [_hpa_metric(m) for m in a.effective_metrics],
    }
    behavior = _behavior(svc, opts, notes)
    if behavior is not None:
        spec["behavior"] = behavior
    if any(m.type not in ("cpu", "memory") for m in a.effective_metrics):
        notes.append(
            "Pods/External HPA metrics are served by the Prometheus adapter: install it with "
            "deploy/prometheus-adapter/values.yaml (rules for kubeinfer_* metrics)"
        )
    return _obj("autoscaling/v2", "HorizontalPodAutoscaler", _meta(svc, opts, svc.name), spec=spec)


def _promql(svc: InferenceService, opts: RenderOptions, m: MetricSpec) -> str:
    sel = f'namespace="{opts.namespace or svc.metadata.namespace}",service="{svc.name}"'
    if m.type == "concurrency":
        return f"sum({METRIC_IN_FLIGHT}{{{sel}}})"
    if m.type == "queue-depth":
        return f"sum({METRIC_QUEUE_DEPTH}{{{sel}}})"
    if m.type == "rps":
        return f"sum(rate({METRIC_REQUESTS_TOTAL}{{{sel}}}[1m]))"
    if m.type == "gpu-utilization":
        return f"sum({METRIC_GPU_UTILIZATION}{{{sel}}}) * 100"
    if m.type == "tokens":
        return f"sum({METRIC_GENERATION_TOKENS_PER_SECOND}{{{sel}}})"
    if m.type == "sequences-waiting":
        return f"sum({METRIC_GENERATION_WAITING}{{{sel}}})"
    return f"sum({m.name or 'external'}{{{sel}}})"


def scaled_object(svc: InferenceService, opts: RenderOptions, notes: list[str]) -> dict[str, Any]:
    """The KEDA ScaledObject: a prometheus trigger per request metric (the query sums the service's replicas;
    ``AverageValue`` makes the HPA KEDA creates divide it by the replica count, so the threshold is per replica)."""
    a = svc.spec.autoscaling
    keda = a.keda
    triggers: list[dict[str, Any]] = []
    for m in a.effective_metrics:
        if m.type in ("cpu", "memory"):
            triggers.append({"type": m.type, "metricType": "Utilization", "metadata": {"value": str(round(m.target))}})
        else:
            trigger: dict[str, Any] = {
                "type": "prometheus",
                "name": m.type,
                "metricType": "AverageValue",
                "metadata": {
                    "serverAddress": keda.serverAddress if keda is not None else opts.prometheus_url,
                    "query": _promql(svc, opts, m),
                    "threshold": quantity(m.target),
                    "activationThreshold": "0",
                },
            }
            if keda is not None and keda.authenticationRef is not None:
                trigger["authenticationRef"] = {"name": keda.authenticationRef}
            triggers.append(trigger)
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": svc.name},
        "minReplicaCount": a.minReplicas,
        "maxReplicaCount": a.maxReplicas,
        "pollingInterval": _secs(a.syncPeriodSeconds, 1),
        "cooldownPeriod": max(_secs(a.kpa.scaleToZeroGracePeriodSeconds), 30),
        "triggers": triggers,
    }
    behavior = _behavior(svc, opts, notes)
    if behavior is not None:
        for rules in behavior.values():
            rules.pop("tolerance", None)  # KEDA's bundled HPA types predate per-direction tolerance
        spec["advanced"] = {"horizontalPodAutoscalerConfig": {"behavior": behavior}}
    if a.minReplicas == 0 and all(
        m.type in ("concurrency", "queue-depth", "gpu-utilization", *GENERATION_METRICS) for m in a.effective_metrics
    ):
        notes.append(
            "scale from zero: at zero replicas no pod reports concurrency, so the first request wakes the service "
            "only through a metric that exists without replicas (rps from the ingress, an external metric)"
        )
    if any(m.type in ("cpu", "memory") for m in a.effective_metrics) and a.minReplicas == 0:
        notes.append("KEDA cannot scale to zero on cpu/memory triggers alone: add a request metric")
    return _obj("keda.sh/v1alpha1", "ScaledObject", _meta(svc, opts, svc.name), spec=spec)


def vertical_pod_autoscaler(svc: InferenceService, opts: RenderOptions, notes: list[str]) -> dict[str, Any] | None:
    a = svc.spec.autoscaling
    v = a.vertical
    if v.updateMode == "Off" and "vertical" not in a.model_fields_set:
        return None
    policy: dict[str, Any] = {"containerName": CONTAINER, "controlledResources": ["cpu", "memory"]}
    mins = {k: q for k, q in (("cpu", v.minAllowed.cpu), ("memory", v.minAllowed.memory)) if q is not None}
    maxs = {k: q for k, q in (("cpu", v.maxAllowed.cpu), ("memory", v.maxAllowed.memory)) if q is not None}
    if mins:
        policy["minAllowed"] = mins
    if maxs:
        policy["maxAllowed"] = maxs
    if v.updateMode != "Off" and a.policy == "hpa" and any(m.type in ("cpu", "memory") for m in a.effective_metrics):
        notes.append(
            "VPA updateMode is not Off while the HPA scales on cpu/memory utilization: the two fight over the same "
            "signal (the VPA project advises against it); scale horizontally on a request metric instead"
        )
    return _obj(
        "autoscaling.k8s.io/v1",
        "VerticalPodAutoscaler",
        _meta(svc, opts, svc.name),
        spec={
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": svc.name},
            "updatePolicy": {"updateMode": v.updateMode},
            "resourcePolicy": {"containerPolicies": [policy]},
        },
    )


def _security_notes(svc: InferenceService, notes: list[str]) -> None:
    """What the user must know about API keys and TLS on the cluster that the rendered objects cannot say."""
    s = svc.spec.server
    if s.tls.certFile is not None:
        notes.append(
            f"server.tls.certFile {s.tls.certFile!r} is read inside the container, where render mounts nothing for "
            "it: give server.tls.secretName (a kubernetes.io/tls Secret) to have it mounted"
        )
    if s.auth.apiKeysFile is not None:
        notes.append(
            f"server.auth.apiKeysFile {s.auth.apiKeysFile!r} is read inside the container, where render mounts "
            "nothing for it: give server.auth.apiKeysSecret to have a Secret mounted"
        )
    if serves_tls(svc) and svc.spec.autoscaling.policy in ("kpa", "predictive"):
        notes.append(
            f"TLS with policy {svc.spec.autoscaling.policy}: the operator's autoscaler scrapes the replicas' /metrics "
            "over plain HTTP, which a TLS port does not answer; scale with policy hpa (through Prometheus) instead"
        )
    if serves_tls(svc) and svc.spec.rollout.canary is not None:
        notes.append(
            "TLS with rollout.canary: the Gateway must speak TLS to the stable/canary backends (a BackendTLSPolicy "
            "for their Services, or a mesh); it sends plain HTTP otherwise"
        )


def service_monitor(svc: InferenceService, opts: RenderOptions) -> dict[str, Any]:
    interval = f"{_secs(min(svc.spec.autoscaling.syncPeriodSeconds, 15), 1)}s"
    endpoint: dict[str, Any] = {
        "port": service_port_name(svc),
        "path": "/metrics",
        "scheme": "http",
        "interval": interval,
    }
    if serves_tls(svc):
        # /metrics needs no credentials, and Prometheus reaches each pod by its IP, which a service certificate does
        # not name: encrypted, not verified. Set tlsConfig.ca and serverName on the ServiceMonitor to verify.
        endpoint["scheme"] = "https"
        endpoint["tlsConfig"] = {"insecureSkipVerify": True}
    return _obj(
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
        _meta(svc, opts, svc.name),
        spec={
            "selector": {"matchLabels": selector_labels(svc)},
            "namespaceSelector": {"matchNames": [opts.namespace or svc.metadata.namespace]},
            "endpoints": [endpoint],
        },
    )


# ---------------------------------------------------------------------------------------------------------------


def render_all(svc: InferenceService, opts: RenderOptions | None = None) -> Rendered:
    """Every object the service needs on a cluster, in apply order, with notes for the user."""
    opts = opts or RenderOptions()
    notes: list[str] = []
    cm = config_map(svc, opts)
    objects: list[dict[str, Any]] = [
        cm,
        service(svc, opts),
        deployment(svc, opts),
        pod_disruption_budget(svc, opts),
    ]
    if svc.spec.rollout.canary is not None:
        label_track(objects[2], "stable")
        objects[2:2] = canary_traffic(svc, opts)
        notes.append(
            f"rollout.canary: the HTTPRoute attaches to Gateway {svc.spec.rollout.canary.gateway} (install the Gateway "
            "API CRDs and a Gateway implementation); the kubeinfer operator runs the canary analysis"
        )
    a = svc.spec.autoscaling
    if a.policy == "hpa":
        keda = opts.keda or a.keda is not None
        objects.append(scaled_object(svc, opts, notes) if keda else horizontal_pod_autoscaler(svc, opts, notes))
    elif a.policy in ("kpa", "predictive"):
        notes.append(
            f"policy {a.policy} is run by the kubeinfer operator (kubeinfer operator / deploy/kustomize), which sets "
            "the Deployment's replicas; without it the Deployment keeps its current replicas"
        )
        if opts.keda:
            notes.append(f"--keda is ignored: policy {a.policy} is not an HPA policy")
    vpa = vertical_pod_autoscaler(svc, opts, notes)
    if vpa is not None:
        objects.append(vpa)
    _security_notes(svc, notes)
    if opts.monitoring:
        objects.append(service_monitor(svc, opts))
    if opts.network_policy:
        objects.append(network_policy(svc, opts))
    g = svc.spec.resources.gpu
    if g.sharing in ("time-slicing", "mps"):
        preset = gpus.CLOUDS.get(opts.cloud or "")
        if preset is None or preset.renders_device_plugin_config:
            dp = device_plugin_config_map(svc, opts)
            if dp is not None:
                objects.append(dp)
                notes.append(
                    f"GPU {g.sharing}: point the NVIDIA device plugin at ConfigMap "
                    f"{opts.device_plugin_namespace}/{opts.device_plugin_config_name} and label the sharing nodes "
                    f"{gpus.DEVICE_PLUGIN_CONFIG_LABEL}={gpus.sharing_config_key(g)}"
                )
        elif g.sharing == "time-slicing":
            notes.append("GKE: create the node pool with GPU time-sharing (max-shared-clients-per-gpu) to match")
    return Rendered(copy.deepcopy(objects), notes)  # no shared sub-dicts: callers may mutate, YAML has no aliases


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str_presenter)


def dump_yaml(objects: list[dict[str, Any]]) -> str:
    """Multi-document YAML as kubectl prints it: keys in insertion order, multi-line strings as literal blocks."""
    return yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def render(svc: InferenceService, opts: RenderOptions | None = None) -> list[dict[str, Any]]:
    """The manifests (plain dicts, apply order) for ``svc``."""
    return render_all(svc, opts).objects
