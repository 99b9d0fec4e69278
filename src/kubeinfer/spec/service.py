"""The ``InferenceService`` spec: the one declarative object every backend reads.

It is shaped like a Kubernetes object (``apiVersion``/``kind``/``metadata``/``spec``) so that the same YAML file is
a custom resource on a cluster. Field names are camelCase as in Kubernetes; defaults follow Kubernetes where a field
mirrors one (probes, rollout, HPA behaviour) and are documented on each field. Unknown fields are errors: a typo
must not be silently ignored.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from kubeinfer.spec.quantity import Quantity, QuantityError, parse_quantity

__all__ = [
    "API_VERSION",
    "KIND",
    "AutoscalingSpec",
    "BatchingSpec",
    "BehaviorSpec",
    "CanarySpec",
    "GpuSpec",
    "HPAScalingPolicy",
    "HPAScalingRules",
    "InferenceService",
    "KedaSpec",
    "KpaSpec",
    "LimitsSpec",
    "LoggerSpec",
    "MetricSpec",
    "ModelSpec",
    "ObjectMeta",
    "PredictiveSpec",
    "ProbeSpec",
    "ProbesSpec",
    "ResourceList",
    "ResourcesSpec",
    "RolloutSpec",
    "RoutingSpec",
    "SecretKeyRef",
    "ServerSpec",
    "ServiceSpec",
    "TensorDecl",
    "VersionPolicy",
    "VerticalSpec",
]

API_VERSION: Final = "kubeinfer.io/v1alpha1"
KIND: Final = "InferenceService"

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_INT_OR_PERCENT = re.compile(r"^[0-9]+%$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, validate_default=True)


QuantityStr = Annotated[str, Field(description="A Kubernetes quantity such as '500m', '2', '512Mi' or '1Gi'.")]


def _check_quantity(v: Any) -> str:
    try:
        return parse_quantity(v).canonical
    except QuantityError as e:
        raise ValueError(str(e)) from None


class ObjectMeta(_Strict):
    name: str = Field(description="A DNS-1035 label: lower-case letters, digits and '-', starting with a letter.")
    namespace: str = Field(
        default="default", description="Kubernetes namespace of the rendered objects (a DNS-1035 label)."
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Labels copied onto every rendered object and its pods."
    )
    annotations: dict[str, str] = Field(
        default_factory=dict, description="Annotations copied onto the rendered Deployment."
    )

    @field_validator("name", "namespace")
    @classmethod
    def _dns_label(cls, v: str) -> str:
        if len(v) > 63 or not _DNS1035.match(v):
            raise ValueError(
                f"{v!r} is not a valid name: use at most 63 lower-case letters, digits and '-', "
                "starting with a letter and ending with a letter or digit (e.g. 'iris-classifier')"
            )
        return v


ModelFormat = Literal["sklearn", "onnx", "xgboost", "lightgbm", "sentence-transformers", "python", "llm"]


# The Open Inference Protocol's datatype names (BF16 has no numpy type and is not served).
Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"
]


class TensorDecl(_Strict):
    """One input or output as the service declares it (Triton's model configuration, MLServer's model settings)."""

    name: str = Field(min_length=1, description="Name on the wire.")
    datatype: Datatype | None = Field(
        default=None, description="Open Inference Protocol datatype; default: the model's."
    )
    shape: list[Annotated[int, Field(ge=-1)]] | None = Field(
        default=None, description="Dimensions, -1 for any size (the first is the batch); default: the model's."
    )


class BatchingSpec(_Strict):
    enabled: bool = Field(default=True, description="Merge concurrent requests into one model call; false: one each.")
    maxBatchSize: int = Field(default=64, ge=1, le=65536, description="Most requests' rows merged into one call.")
    maxDelayMs: float = Field(
        default=1.0,
        ge=0,
        le=10_000,
        description=(
            "How long a free model instance may wait for a batch to fill while another batch is running. "
            "An idle model never waits: a lone request runs at once."
        ),
    )


_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def version_key(version: str) -> tuple[int, int | str]:
    """How versions sort (oldest first): numbers by value, before names, which sort as text (Triton's versions are
    numbers; a name such as ``v2-beta`` is allowed and sorts after them)."""
    return (0, int(version)) if version.isdigit() else (1, version)


class VersionPolicy(_Strict):
    """Which versions of a model are served, as Triton's ``version_policy``: the ``latest`` N, ``specific`` ones, or
    ``all``. The versions come from the model's folder (``uri/<version>/``, Triton's repository layout) or from
    several entries of ``spec.models`` with the same name and different ``version``. Without a policy: the latest
    one from a folder, every listed entry."""

    latest: int | None = Field(default=None, ge=1, description="Serve the N highest versions.")
    specific: list[Annotated[str, Field(pattern=_VERSION.pattern)]] | None = Field(
        default=None, min_length=1, description="Serve exactly these versions (each must exist)."
    )
    all: bool = Field(default=False, description="Serve every version found.")

    @model_validator(mode="after")
    def _one(self) -> VersionPolicy:
        given = [k for k, v in (("latest", self.latest), ("specific", self.specific), ("all", self.all or None)) if v]
        if len(given) != 1:
            raise ValueError(
                "versionPolicy takes exactly one of latest (e.g. {latest: 2}), specific (e.g. {specific: ['1', '3']}) "
                f"or all (all: true); got {', '.join(given) or 'none'}"
            )
        return self

    def select(self, versions: list[str]) -> list[str]:
        """The versions served out of ``versions``, oldest first; ``ValueError`` names a specific one that is
        missing. Pure: the caller lists the folder."""
        ordered = sorted(set(versions), key=version_key)
        if self.specific is not None:
            missing = [v for v in self.specific if v not in ordered]
            if missing:
                raise ValueError(
                    f"versionPolicy.specific names {', '.join(map(repr, missing))}, which the model does not have "
                    f"(it has {', '.join(map(repr, ordered)) or 'none'})"
                )
            return sorted(set(self.specific), key=version_key)
        if self.latest is not None:
            return ordered[-self.latest :]
        return ordered


class ModelSpec(_Strict):
    format: ModelFormat = Field(description="Runtime that loads the model.")
    uri: str = Field(
        default="",
        description=(
            "Where the model artifact (file or directory) is: a path relative to the spec file's folder, file://, "
            "s3:// (any S3-compatible store), gs://, az:// or abfs://, http(s):// or hf://ORG/REPO[@REV][/PATH]. A "
            "remote model is downloaded into the model cache before it loads (docs/storage.md)."
        ),
    )
    sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="Expected SHA-256 of the model file (hex); the download, or the local file, is refused if it "
        "differs. Only for a uri that names one file.",
    )
    storageSecret: str | None = Field(
        default=None,
        description="Kubernetes only: the Secret whose keys become the environment of the model download (e.g. "
        "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, HF_TOKEN). Credentials never go in the spec; "
        "without it the pod's workload identity (service account) is used.",
    )
    cacheClaim: str | None = Field(
        default=None,
        description="Kubernetes only: a PersistentVolumeClaim to keep the model cache in (shared by the replicas, "
        "so that a new pod finds the model there); by default each pod downloads into an emptyDir.",
    )
    className: str | None = Field(
        default=None, description="For format 'python': the user's class as 'module:Class' (module importable)."
    )
    name: str | None = Field(default=None, description="Model name on the wire; defaults to metadata.name.")
    version: str = Field(default="1", description="Model version reported by the protocols.")
    args: dict[str, Any] = Field(default_factory=dict, description="Runtime-specific options.")
    inputs: list[TensorDecl] | None = Field(
        default=None,
        description=(
            "Declared inputs, checked against the model at load: names (a single-input model's one input may be "
            "renamed), datatypes and shapes. Metadata and validation then follow the declaration."
        ),
    )
    outputs: list[TensorDecl] | None = Field(
        default=None,
        description="Declared outputs: which the model serves, in this order, with these datatypes and shapes.",
    )
    batching: BatchingSpec | None = Field(
        default=None, description="Dynamic batching of this model; default: spec.batching (the service's)."
    )
    versionPolicy: VersionPolicy | None = Field(
        default=None,
        description="Which versions are served at once (latest N, specific, all), from the folder layout "
        "uri/<version>/ or from several spec.models entries of one name. Default: the latest folder version, or "
        "every listed entry.",
    )

    @model_validator(mode="after")
    def _needs(self) -> ModelSpec:
        for what, decls in (("inputs", self.inputs), ("outputs", self.outputs)):
            names = [d.name for d in decls or ()]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"model.{what} names {', '.join(map(repr, dup))} more than once")
        if self.format == "python" and not self.className:
            raise ValueError("format 'python' needs className: 'module:Class' (e.g. 'mymodel:Predictor')")
        if self.format != "python" and not self.uri:
            raise ValueError(f"format {self.format!r} needs uri: the path of the model file or directory")
        if self.className is not None and ":" not in self.className:
            raise ValueError(f"className {self.className!r} must be 'module:Class'")
        if not _VERSION.match(self.version):
            raise ValueError(
                f"version {self.version!r} must be letters, digits, '.', '_' or '-' (it is a URL path segment), "
                "e.g. '3'"
            )
        return self


class LimitsSpec(_Strict):
    maxQueueSize: int = Field(default=2048, ge=1, description="Requests waiting per model; beyond it: 503.")
    maxConcurrency: int = Field(default=4096, ge=1, description="Requests in the server at once; beyond it: 429.")
    requestTimeoutMs: float = Field(default=30_000, gt=0, description="Deadline of one request, queue included.")
    maxBodySize: QuantityStr = Field(
        default="64Mi",
        description="Largest request body accepted (413 beyond). Left unset with resources.limits.memory set, it is "
        "the smaller of 64Mi and 1/32 of the memory limit (a JSON body decodes to many times its size).",
    )
    drainTimeoutSeconds: float = Field(default=30, ge=0, description="Grace period for in-flight work on SIGTERM.")
    drainDelaySeconds: float = Field(
        default=0,
        ge=0,
        description="On SIGTERM, readiness goes false at once but new connections are still taken for this long "
        "(the time a router or a Service takes to stop sending), then refused; part of drainTimeoutSeconds. On "
        "Kubernetes the preStop sleep already covers endpoint propagation.",
    )
    headerTimeoutSeconds: float = Field(
        default=10, gt=0, description="A request's head must arrive within this (408 and close beyond)."
    )
    bodyTimeoutSeconds: float = Field(
        default=60, gt=0, description="A whole request must arrive within this from its first byte (408 beyond)."
    )
    idleTimeoutSeconds: float = Field(default=75, gt=0, description="A keep-alive connection idle this long is closed.")
    maxConnections: int = Field(
        default=10_000, ge=1, description="Open client connections at once; beyond it: 503 with Retry-After, closed."
    )
    maxHeaderBytes: int = Field(default=65_536, ge=1024, description="Largest request head (431 beyond).")
    maxHeaders: int = Field(default=100, ge=8, description="Most header fields in one request (431 beyond).")

    _q = field_validator("maxBodySize", mode="before")(_check_quantity)

    @property
    def max_body_bytes(self) -> int:
        return parse_quantity(self.maxBodySize).int_value


SECRET_MOUNT: Final = "/var/run/secrets/kubeinfer.io"  # noqa: S105  (a folder, not a secret)
"""Where the Secrets named by ``server.auth.apiKeysSecret`` and ``server.tls.secretName`` are mounted in a pod."""

_DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class SecretKeyRef(_Strict):
    """One key of a Secret in the service's namespace (Kubernetes' ``secretKeyRef``)."""

    name: str = Field(
        max_length=253, pattern=_DNS1123_SUBDOMAIN, description="The Secret's name (in the service's namespace)."
    )
    key: str = Field(
        default="api-keys",
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
        description="The key whose value is the file (e.g. from 'kubectl create secret generic NAME "
        "--from-file=api-keys=keys.txt').",
    )


class AuthSpec(_Strict):
    apiKeysFile: str | None = Field(
        default=None,
        description="File of API keys, one per line, each optionally followed by its most requests per second "
        "('KEY' or 'KEY 20'); read again when it changes. When set, inference and metadata need "
        "'Authorization: Bearer KEY' (gRPC: the 'authorization' metadata): 401 without a valid key, 429 past its "
        "rate. Health probes and /metrics stay open. A relative path is relative to the spec's folder.",
    )
    apiKeysSecret: SecretKeyRef | None = Field(
        default=None,
        description="Kubernetes only, instead of apiKeysFile: the Secret key holding the API keys file. It is "
        f"mounted read-only under {SECRET_MOUNT}/auth and served as apiKeysFile, so a rotated Secret (the kubelet "
        "updates the mounted file) takes effect without a restart.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> AuthSpec:
        if self.apiKeysFile is not None and self.apiKeysSecret is not None:
            raise ValueError(
                "apiKeysFile and apiKeysSecret both set: give apiKeysFile (a file on this machine or in the image) "
                "or apiKeysSecret (a Secret mounted on Kubernetes), not both"
            )
        return self


class TlsSpec(_Strict):
    certFile: str | None = Field(
        default=None, description="PEM certificate chain the replica serves REST and gRPC with (HTTPS, TLS gRPC)."
    )
    keyFile: str | None = Field(default=None, description="PEM private key of certFile.")
    secretName: str | None = Field(
        default=None,
        max_length=253,
        pattern=_DNS1123_SUBDOMAIN,
        description="Kubernetes only, instead of certFile/keyFile: a Secret of type kubernetes.io/tls (keys tls.crt "
        "and tls.key, as cert-manager's Certificate writes it). It is mounted read-only under "
        f"{SECRET_MOUNT}/tls and served; a renewed certificate is served to new connections without a restart, "
        "and the probes use HTTPS.",
    )

    @model_validator(mode="after")
    def _both(self) -> TlsSpec:
        if (self.certFile is None) != (self.keyFile is None):
            raise ValueError("certFile and keyFile go together: set both, or neither")
        if self.certFile is not None and self.secretName is not None:
            raise ValueError(
                "certFile/keyFile and secretName both set: give the files (on this machine or in the image) or "
                "secretName (a kubernetes.io/tls Secret mounted on Kubernetes), not both"
            )
        return self

    @property
    def enabled(self) -> bool:
        """Whether this process serves TLS: the files are given (a Secret becomes files only in a pod)."""
        return self.certFile is not None

    @property
    def on_kubernetes(self) -> bool:
        """Whether the replicas serve TLS on a cluster: from the files, or from the mounted Secret."""
        return self.certFile is not None or self.secretName is not None


class ServerSpec(_Strict):
    host: str = Field(
        default="127.0.0.1", description="Address the replica binds; on Kubernetes the container binds 0.0.0.0."
    )
    port: int = Field(
        default=8080, ge=0, le=65535, description="HTTP port (REST, metrics, probes); 0 picks a free one."
    )
    grpcPort: int | None = Field(default=8081, ge=0, le=65535, description="null disables gRPC.")
    workers: int = Field(default=1, ge=1, le=64, description="Model instances run in parallel (threads).")
    processes: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Server processes sharing the replica's ports, each with its own copy of the model and an equal "
        "share of the replica's CPU threads (for runtimes that hold the GIL between model calls).",
    )
    limits: LimitsSpec = Field(
        default_factory=LimitsSpec, description="Caps and timeouts on requests and connections (docs/security.md)."
    )
    auth: AuthSpec = Field(default_factory=AuthSpec, description="API keys on the data plane (docs/security.md).")
    tls: TlsSpec = Field(
        default_factory=TlsSpec,
        description="TLS on the replica's REST and gRPC ports; both files are read again when they change "
        "(docs/security.md).",
    )


class ResourceList(_Strict):
    cpu: QuantityStr | None = Field(default=None, description="CPU cores as a quantity, e.g. '500m' or '2'.")
    memory: QuantityStr | None = Field(default=None, description="Memory in bytes as a quantity, e.g. '512Mi'.")

    _q = field_validator("cpu", "memory", mode="before")(lambda v: None if v is None else _check_quantity(v))

    def quantity(self, name: Literal["cpu", "memory"]) -> Quantity | None:
        raw = getattr(self, name)
        return None if raw is None else parse_quantity(raw)


GpuSharing = Literal["exclusive", "time-slicing", "mps", "mig"]


class GpuSpec(_Strict):
    count: int = Field(default=0, ge=0, description="Whole GPUs per replica.")
    sharing: GpuSharing = Field(default="exclusive", description="How a replica shares a GPU.")
    fraction: float | None = Field(
        default=None, gt=0, le=1, description="Share of one GPU under time-slicing or MPS (e.g. 0.25)."
    )
    migProfile: str | None = Field(default=None, description="MIG profile, e.g. '1g.10gb' (sharing: mig).")
    memory: QuantityStr | None = Field(default=None, description="GPU memory the model needs, e.g. '6Gi'.")
    vendor: Literal["nvidia", "amd", "intel"] = Field(
        default="nvidia", description="Accelerator vendor (amd and intel Gaudi: whole devices, on Kubernetes only)."
    )

    _q = field_validator("memory", mode="before")(lambda v: None if v is None else _check_quantity(v))

    @model_validator(mode="after")
    def _consistent(self) -> GpuSpec:
        if self.sharing == "mig" and not self.migProfile:
            raise ValueError("sharing 'mig' needs migProfile, e.g. '1g.10gb'")
        if self.migProfile and self.sharing != "mig":
            raise ValueError("migProfile is only used with sharing: mig")
        if self.migProfile and not re.match(r"^[1-7]g\.[0-9]+gb$", self.migProfile):
            raise ValueError(f"migProfile {self.migProfile!r} is not a MIG profile name such as '1g.10gb'")
        if self.sharing in ("time-slicing", "mps") and self.fraction is None:
            raise ValueError(f"sharing {self.sharing!r} needs fraction, e.g. 0.25 for a quarter of a GPU")
        if self.vendor != "nvidia" and self.sharing != "exclusive":
            raise ValueError(
                f"vendor {self.vendor!r} supports whole devices only on Kubernetes: use sharing: exclusive"
            )
        return self

    @property
    def requested(self) -> bool:
        return self.count > 0 or self.sharing != "exclusive"


def _check_vllm(model: ModelSpec, gpu: GpuSpec, field: str) -> None:
    """What an ``llm`` model on engine ``vllm`` asks of the GPUs it gets: tensor parallelism within the replica's
    whole GPUs, and no more of a shared GPU's memory than the replica's share (vLLM takes 90% of it by default)."""
    tp = model.args.get("tensorParallelSize", 1)
    if isinstance(tp, int) and not isinstance(tp, bool) and tp > 1 and tp > max(gpu.count, 1):
        raise ValueError(
            f"{field}.args.tensorParallelSize {tp} splits the model over {tp} GPUs, and resources.gpu.count is "
            f"{gpu.count}: set resources.gpu.count: {tp} (or lower tensorParallelSize)"
        )
    if gpu.fraction is not None:
        share = model.args.get("gpuMemoryUtilization")
        if share is None or (isinstance(share, (int, float)) and share > gpu.fraction):
            given = "vLLM's default 0.9" if share is None else share
            raise ValueError(
                f"{field}.args.gpuMemoryUtilization is {given}, more of the GPU's memory than this replica's share "
                f"(resources.gpu.fraction {gpu.fraction}): set gpuMemoryUtilization to at most {gpu.fraction}"
            )


class ResourcesSpec(_Strict):
    requests: ResourceList = Field(
        default_factory=ResourceList,
        description="Resources reserved per replica (locally: CPU affinity and thread counts).",
    )
    limits: ResourceList = Field(
        default_factory=ResourceList,
        description="Most a replica may use (locally: CFS quota and a memory cgroup, or RLIMIT without cgroups).",
    )
    gpu: GpuSpec = Field(default_factory=GpuSpec, description="Accelerators per replica, whole or shared.")

    @model_validator(mode="after")
    def _limits_cover_requests(self) -> ResourcesSpec:
        names: tuple[Literal["cpu", "memory"], ...] = ("cpu", "memory")
        for name in names:
            req, lim = self.requests.quantity(name), self.limits.quantity(name)
            if req is not None and lim is not None and req.value > lim.value:
                raise ValueError(
                    f"requests.{name} ({req}) is larger than limits.{name} ({lim}): a request may not exceed its limit"
                )
        return self


MetricType = Literal[
    "concurrency", "rps", "queue-depth", "cpu", "memory", "gpu-utilization", "external", "tokens", "sequences-waiting"
]
GENERATION_METRICS: Final = ("tokens", "sequences-waiting")
"""Metric types only a replica of a generative model (format ``llm``) exports (``kubeinfer_generation_*``)."""


class MetricSpec(_Strict):
    type: MetricType = Field(description="What the autoscaler measures per replica.")
    target: float = Field(
        gt=0,
        description=(
            "Per-replica average for concurrency/rps/queue-depth/gpu-utilization/external, for tokens (generated "
            "tokens per second) and sequences-waiting (sequences queued for the running batch; both format llm); "
            "utilization percent of the request for cpu/memory (as Kubernetes' averageUtilization)."
        ),
    )
    name: str | None = Field(default=None, description="Metric name for type 'external'.")


class HPAScalingPolicy(_Strict):
    type: Literal["Pods", "Percent"] = Field(description="Pods: a number of replicas; Percent: of the current ones.")
    value: int = Field(gt=0, description="Replicas, or percent of the current replicas, that may change per period.")
    periodSeconds: int = Field(gt=0, le=1800, description="Window over which the policy's change is counted.")


class HPAScalingRules(_Strict):
    stabilizationWindowSeconds: int | None = Field(
        default=None,
        ge=0,
        le=3600,
        description="Past recommendations considered before scaling; default: 0 up, 300 down (Kubernetes').",
    )
    selectPolicy: Literal["Max", "Min", "Disabled"] = Field(
        default="Max", description="Which policy wins when several apply; Disabled: never scale this way."
    )
    policies: list[HPAScalingPolicy] | None = Field(
        default=None,
        description="Rate limits on scaling; default: Kubernetes' (up: 4 Pods or 100 Percent per 15 s, the "
        "larger; down: 100 Percent per 15 s).",
    )
    tolerance: float | None = Field(default=None, ge=0, description="Per-direction tolerance (Kubernetes 1.33+).")


class BehaviorSpec(_Strict):
    scaleUp: HPAScalingRules | None = Field(default=None, description="Rules for adding replicas.")
    scaleDown: HPAScalingRules | None = Field(default=None, description="Rules for removing replicas.")


class KpaSpec(_Strict):
    """Knative Pod Autoscaler settings; defaults are Knative's config-autoscaler defaults."""

    containerConcurrency: int = Field(default=0, ge=0, description="Hard limit per replica; 0 = unlimited.")
    targetUtilizationPercentage: float = Field(
        default=70, gt=0, le=100, description="Share of the per-replica target the autoscaler aims for."
    )
    stableWindowSeconds: float = Field(
        default=60, ge=6, le=3600, description="Window of the averaged load that normal decisions use."
    )
    panicWindowPercentage: float = Field(
        default=10, ge=1, le=100, description="Panic window as a share of the stable window (10%: 6 s)."
    )
    panicThresholdPercentage: float = Field(
        default=200,
        ge=110,
        le=1000,
        description="Panic mode starts when the panic window's demand reaches this share of the ready capacity.",
    )
    maxScaleUpRate: float = Field(
        default=1000, gt=1, description="Most replicas one decision may reach, as a multiple of the ready ones."
    )
    maxScaleDownRate: float = Field(
        default=2, gt=1, description="One decision keeps at least the ready replicas divided by this."
    )
    scaleToZeroGracePeriodSeconds: float = Field(
        default=30, ge=0, description="Time an inactive service keeps its last replica before scaling to zero."
    )
    scaleDownDelaySeconds: float = Field(
        default=0, ge=0, le=3600, description="Scale down only to the highest desire over this window."
    )
    activationScale: int = Field(
        default=1, ge=1, description="Fewest replicas while the service is active (from zero, it starts this many)."
    )
    targetBurstCapacity: float = Field(
        default=211,
        ge=-1,
        description="Spare request capacity kept; below it requests are buffered (0: never, -1: always buffer).",
    )
    initialScale: int = Field(default=1, ge=0, description="Replicas started when the service is created.")


class PredictiveSpec(_Strict):
    """kubeinfer's predictive policy: forecast demand, convert it with the measured capacity of one replica."""

    capacityRps: float | None = Field(
        default=None, gt=0, description="Requests/s one replica serves within the SLO (from `kubeinfer profile`)."
    )
    sloLatencyMs: float = Field(default=100, gt=0, description="Latency objective one request should meet.")
    startupSeconds: float = Field(default=10, ge=0, description="Time from scale-up to a ready replica.")
    seasonSeconds: float = Field(default=86_400, gt=0, description="Length of one season (a day by default).")
    headroom: float = Field(
        default=1.1,
        ge=1,
        description="Largest multiplier on forecast demand; less when the forecast's own recent error is smaller.",
    )
    minHeadroom: float = Field(
        default=1.0,
        ge=1,
        description=(
            "Smallest multiplier on demand, whatever the forecast's error: the knob that trades replica-hours for "
            "SLO attainment (the capacity at the SLO ignores how far a request's own service time spreads). "
            "At most headroom."
        ),
    )

    @model_validator(mode="after")
    def _headrooms(self) -> PredictiveSpec:
        if self.minHeadroom > self.headroom:
            raise ValueError(f"minHeadroom ({self.minHeadroom:g}) must be at most headroom ({self.headroom:g})")
        return self

    syncPeriodSeconds: float = Field(
        default=5,
        gt=0,
        description=(
            "How often the predictive policy runs. Its own loop, not the HPA's 15 s: like Knative's 2 s decider, "
            "a surge no forecast saw must be met within seconds, and a decision costs microseconds."
        ),
    )
    capacityWork: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Busy slot-seconds per second (Erlangs) one replica sustains within the SLO. When given, demand is "
            "measured as work (the rate of the replicas' compute time), so costly requests count for what they cost."
        ),
    )


class VerticalSpec(_Strict):
    updateMode: Literal["Off", "Initial", "Recreate", "InPlaceOrRecreate"] = Field(
        default="Off",
        description="Off: recommendations only; otherwise how the recommended requests are applied (as the VPA).",
    )
    minAllowed: ResourceList = Field(default_factory=ResourceList, description="Lowest requests recommended.")
    maxAllowed: ResourceList = Field(default_factory=ResourceList, description="Highest requests recommended.")


DEFAULT_PROMETHEUS: Final = "http://prometheus-operated.monitoring.svc:9090"
"""The Prometheus that prometheus-operator's default install serves (the ServiceMonitor's scrapes land there)."""


class KedaSpec(_Strict):
    """Scale with a KEDA ScaledObject (Prometheus triggers on the replicas' metrics) instead of a plain HPA: KEDA
    serves the metrics to the HPA it creates itself, and allows minReplicas 0."""

    serverAddress: str = Field(
        default=DEFAULT_PROMETHEUS,
        pattern=r"^https?://[^\s]+$",
        description="The Prometheus KEDA queries (its prometheus trigger's serverAddress).",
    )
    authenticationRef: str | None = Field(
        default=None,
        max_length=253,
        pattern=_DNS1123_SUBDOMAIN,
        description="A KEDA TriggerAuthentication (in the service's namespace) with the Prometheus credentials.",
    )


class AutoscalingSpec(_Strict):
    policy: Literal["none", "hpa", "kpa", "predictive"] = Field(
        default="hpa", description="Who sets the replica count; none: spec.replicas (or minReplicas), fixed."
    )
    minReplicas: int = Field(default=1, ge=0, description="Fewest replicas; 0 allows scale to zero.")
    maxReplicas: int = Field(default=1, ge=1, description="Most replicas.")
    metric: MetricType | None = Field(default=None, description="Shorthand for a single entry of metrics.")
    target: float | None = Field(default=None, gt=0, description="Shorthand: the target of `metric`.")
    metrics: list[MetricSpec] = Field(
        default_factory=list, description="Metrics to scale on (the largest desire wins); default: concurrency 8."
    )
    syncPeriodSeconds: float = Field(default=15, gt=0, description="How often the policy runs (HPA default 15 s).")
    tolerance: float = Field(
        default=0.1, ge=0, lt=1, description="No scaling while the metric is within this ratio of its target."
    )
    behavior: BehaviorSpec | None = Field(
        default=None, description="Scaling rates and stabilization windows, per direction (policy hpa)."
    )
    kpa: KpaSpec = Field(default_factory=KpaSpec, description="Settings of policy kpa.")
    predictive: PredictiveSpec = Field(default_factory=PredictiveSpec, description="Settings of policy predictive.")
    vertical: VerticalSpec = Field(
        default_factory=VerticalSpec, description="Vertical (requests) recommendations, as the VPA."
    )
    keda: KedaSpec | None = Field(
        default=None,
        description="Kubernetes, policy hpa: render a KEDA ScaledObject instead of an HPA (as 'kubeinfer render "
        "--keda'), querying this Prometheus.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> AutoscalingSpec:
        if self.minReplicas > self.maxReplicas:
            raise ValueError(f"minReplicas ({self.minReplicas}) is larger than maxReplicas ({self.maxReplicas})")
        if (self.metric is None) != (self.target is None):
            raise ValueError("metric and target go together: give both (e.g. metric: concurrency, target: 4)")
        if self.metric is not None and self.metrics:
            raise ValueError("give either metric/target or metrics, not both")
        request_metrics = ("concurrency", "rps", "queue-depth", "external", *GENERATION_METRICS)
        if (
            self.minReplicas == 0
            and self.policy == "hpa"
            and not any(m.type in request_metrics for m in self.effective_metrics)
        ):
            raise ValueError("minReplicas 0 with policy hpa needs a request metric (concurrency, rps, ...)")
        given = [m.type for m in self.effective_metrics] if self.metric is not None or self.metrics else []
        if self.policy == "kpa" and (other := [t for t in given if t not in ("concurrency", "rps")]):
            raise ValueError(
                f"policy kpa scales on concurrency or rps only (Knative's metrics), not {other[0]!r}: use policy hpa "
                f"for {other[0]}, or metric concurrency/rps with kpa"
            )
        if self.policy == "predictive" and (other := [t for t in given if t in GENERATION_METRICS]):
            raise ValueError(
                f"policy predictive forecasts arrivals (rps and work), it does not read {other[0]!r}: use policy hpa "
                f"for {other[0]}"
            )
        if self.keda is not None and self.policy != "hpa":
            raise ValueError(
                f"keda needs policy hpa (KEDA drives an HPA); policy {self.policy!r} is run by the kubeinfer operator: "
                "remove keda or set policy: hpa"
            )
        return self

    @property
    def effective_metrics(self) -> list[MetricSpec]:
        if self.metric is not None and self.target is not None:
            return [MetricSpec(type=self.metric, target=self.target)]
        if self.metrics:
            return list(self.metrics)
        return [MetricSpec(type="concurrency", target=8)]


class ProbeSpec(_Strict):
    """Kubernetes probe timing fields, with Kubernetes' defaults."""

    initialDelaySeconds: float = Field(default=0, ge=0, description="Wait after the start before the first probe.")
    periodSeconds: float = Field(default=10, gt=0, description="Time between probes.")
    timeoutSeconds: float = Field(default=1, gt=0, description="A probe not answered within this fails.")
    successThreshold: int = Field(default=1, ge=1, description="Successes in a row that make a failed probe pass.")
    failureThreshold: int = Field(default=3, ge=1, description="Failures in a row that make a passing probe fail.")


def _startup_default() -> ProbeSpec:
    # A model may take a while to load: allow 5 minutes (period 2 s x 150) before declaring the start failed.
    return ProbeSpec(periodSeconds=2, failureThreshold=150)


def _readiness_default() -> ProbeSpec:
    return ProbeSpec(periodSeconds=2, failureThreshold=2)


def _liveness_default() -> ProbeSpec:
    return ProbeSpec(periodSeconds=5, timeoutSeconds=2, failureThreshold=3)


class ProbesSpec(_Strict):
    startup: ProbeSpec = Field(
        default_factory=_startup_default,
        description="Until it passes, the others wait; failing it restarts the replica (GET /startupz).",
    )
    readiness: ProbeSpec = Field(
        default_factory=_readiness_default, description="While it fails, the replica gets no traffic (GET /readyz)."
    )
    liveness: ProbeSpec = Field(
        default_factory=_liveness_default, description="Failing it restarts the replica (GET /healthz)."
    )

    @field_validator("readiness", "liveness")
    @classmethod
    def _success_one(cls, v: ProbeSpec, info: Any) -> ProbeSpec:
        if info.field_name == "liveness" and v.successThreshold != 1:
            raise ValueError("liveness.successThreshold must be 1 (as in Kubernetes)")
        return v


IntOrPercent = int | str


def _check_int_or_percent(v: Any) -> int | str:
    if isinstance(v, bool):
        raise ValueError(f"{v!r} must be a whole number or a percentage such as '25%'")
    if isinstance(v, int):
        if v < 0:
            raise ValueError(f"{v} must not be negative")
        return v
    if isinstance(v, str) and _INT_OR_PERCENT.match(v):
        return v
    raise ValueError(f"{v!r} must be a whole number or a percentage such as '25%'")


class CanarySpec(_Strict):
    """A canary rollout: the new revision gets a share of the traffic in steps, each held for an analysis window
    and judged by gates on the router's own measurements of it; it is promoted after the last step or rolled back
    at the first failed gate. Argo Rollouts' canary steps (``setWeight`` then ``pause: {duration}``) with Flagger's
    builtin checks (``request-success-rate``, ``request-duration`` p99) as the analysis."""

    steps: list[Annotated[int, Field(ge=1, le=100)]] = Field(
        min_length=1,
        description="Percent of the traffic the new revision gets at each step, increasing (e.g. [10, 50]); after "
        "the last step's analysis passes it is promoted to all of it.",
    )
    analysisSeconds: float = Field(
        default=30, gt=0, description="How long each step is held and measured before it is judged."
    )
    minRequests: int = Field(
        default=20,
        ge=1,
        description="Requests the new revision must answer in a step's window before the step can pass; the step "
        "waits for them (a step with too little traffic is held, never passed on no data).",
    )
    maxErrorPercent: float | None = Field(
        default=1.0,
        ge=0,
        le=100,
        description="Gate: most percent of the new revision's responses that may be errors (5xx other than 503, "
        "or a broken connection); null: no gate.",
    )
    maxP99Ms: float | None = Field(
        default=None, gt=0, description="Gate: highest p99 latency of the new revision, as the router measures it."
    )
    gateway: str = Field(
        default="kubeinfer",
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="On Kubernetes: the Gateway (name, or namespace/name) the service's HTTPRoute attaches to.",
    )

    @field_validator("steps")
    @classmethod
    def _increasing(cls, v: list[int]) -> list[int]:
        if v != sorted(set(v)):
            raise ValueError(f"steps must be strictly increasing percentages (e.g. [10, 50]), got {v}")
        return v


class RolloutSpec(_Strict):
    maxSurge: IntOrPercent = Field(default=1, description="Extra replicas during an update (number or '25%').")
    maxUnavailable: IntOrPercent = Field(default=0, description="Replicas that may be missing during an update.")
    progressDeadlineSeconds: float = Field(default=600, gt=0, description="Roll back if not ready by then.")
    nodeFailureSeconds: int | None = Field(
        default=None,
        ge=0,
        description="On Kubernetes, replace the replicas of a node that stopped answering (NotReady or unreachable) "
        "after this many seconds, as the pods' NoExecute tolerations (Kubernetes' default: 300).",
    )
    canary: CanarySpec | None = Field(
        default=None,
        description="Roll a new revision out as a canary (traffic steps judged by gates) instead of replica by "
        "replica; see docs/canary.md.",
    )

    _c = field_validator("maxSurge", "maxUnavailable", mode="before")(_check_int_or_percent)

    @model_validator(mode="after")
    def _not_both_zero(self) -> RolloutSpec:
        if self.maxSurge in (0, "0%") and self.maxUnavailable in (0, "0%"):
            raise ValueError("maxSurge and maxUnavailable cannot both be 0: the update could never progress")
        return self


class RoutingSpec(_Strict):
    """How the router of ``kubeinfer up`` spreads requests over the replicas (docs/llm.md, "Routing"). On Kubernetes
    the Service, or a gateway in front of it, balances instead: these fields are not rendered."""

    balance: Literal["auto", "requests", "tokens"] = Field(
        default="auto",
        description="What the router balances: 'requests' (power of two choices on least outstanding requests), "
        "'tokens' (the same on least outstanding tokens: each request's prompt estimate plus its max_tokens, "
        "charged to its replica until its response or stream ends), or 'auto': tokens for a model of format 'llm', "
        "requests otherwise.",
    )
    affinity: Literal["none", "session", "prefix"] = Field(
        default="none",
        description="Send related requests to the same replica (rendezvous hashing; a replica leaving moves only "
        "its own keys): 'session' by the sessionHeader (or OpenAI's 'user' field), 'prefix' by the prompt's first "
        "prefixChars characters (requests sharing a system prompt meet their prefix cache), 'none'. A replica past "
        "loadFactor x the average load takes no more keyed requests: they go to the least loaded one.",
    )
    sessionHeader: str = Field(
        default="x-session-id",
        pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$",
        description="The request header that names a session (affinity 'session').",
    )
    prefixChars: int = Field(
        default=256, ge=1, description="Characters of the prompt that make its key (affinity 'prefix')."
    )
    loadFactor: float = Field(
        default=1.25,
        gt=1,
        le=100,
        description="Bound on an affinity home's load: it takes a keyed request while its outstanding tokens (or "
        "requests) are below this x the average over the ready replicas, the request counted (consistent "
        "hashing with bounded loads).",
    )
    defaultMaxTokens: int = Field(
        default=256,
        ge=1,
        description="Tokens a chat request without max_tokens is expected to generate, for balancing by tokens "
        "(completions and OIP generate default to 16, as the server does).",
    )


class LoggerSpec(_Strict):
    """Payload logging (KServe's ``logger``): inference requests and/or responses written as CloudEvents to an HTTP
    endpoint or a file, off the request path (docs/logging.md)."""

    mode: Literal["all", "request", "response"] = Field(
        default="all", description="What is logged: requests, responses (successful answers only, as KServe), or both."
    )
    url: str | None = Field(
        default=None,
        description="HTTP(S) endpoint the events are POSTed to (KServe's logger url, e.g. a Knative broker or "
        "event_display); instead of file.",
    )
    file: str | None = Field(
        default=None,
        description="File the events are appended to, one structured CloudEvent (JSON) per line; instead of url. A "
        "relative path is relative to the spec's folder (on Kubernetes: to /tmp, the pod's writable emptyDir).",
    )
    sampleRate: float = Field(default=1.0, ge=0, le=1, description="Share of inference requests logged (0 to 1).")
    redact: list[str] = Field(
        default_factory=list,
        description="Input and output tensor names, JSON keys (KServe v1 columns, OpenAI fields) and header names "
        'whose values are logged as "[redacted]".',
    )
    metadataHeaders: list[str] = Field(
        default_factory=list,
        description="Request headers copied into each event's 'metadata' attribute (KServe's field of that name).",
    )
    encoding: Literal["binary", "structured", "batch"] = Field(
        default="binary",
        description="How url receives the events (CloudEvents HTTP binding): 'binary' (ce-* headers, the payload as "
        "the body; KServe's), 'structured' (one application/cloudevents+json object per POST) or 'batch' (up to "
        "batchSize events per POST, application/cloudevents-batch+json).",
    )
    batchSize: int = Field(
        default=64,
        ge=1,
        le=10_000,
        description="Most events the sender takes from its queue at once (and POSTs at once with encoding 'batch').",
    )
    queueSize: int = Field(
        default=1000,
        ge=1,
        description="Events waiting for the sink; beyond it (or 64Mi of payloads) new ones are dropped and counted "
        '(kubeinfer_payload_log_events_total{outcome="dropped"}), never waited for.',
    )
    timeoutSeconds: float = Field(default=5, gt=0, description="Deadline of one POST to url.")
    maxFileSize: QuantityStr = Field(
        default="100Mi", description="file is rotated past this size (NAME.1 is the previous part, and so on)."
    )
    maxFiles: int = Field(default=3, ge=1, le=100, description="Rotated parts of file kept besides the current one.")

    _q = field_validator("maxFileSize", mode="before")(_check_quantity)

    @model_validator(mode="after")
    def _one_sink(self) -> LoggerSpec:
        if (self.url is None) == (self.file is None):
            raise ValueError("give url (an HTTP endpoint) or file (a path) for the events, one of the two")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url {self.url!r} must be an http:// or https:// address")
        return self

    @property
    def max_file_bytes(self) -> int:
        return parse_quantity(self.maxFileSize).int_value


class ServiceSpec(_Strict):
    # Read as: the model, or with `models` the first of them (so code about one model keeps working); in a spec file,
    # exactly one of the two is given, and a dump writes back only the one that was.
    model: ModelSpec = Field(  # type: ignore[assignment]  # None only until _model_or_models sets it
        default=None,
        validate_default=False,
        description="The model to serve and how to load it (or give models, for several).",
    )
    models: list[ModelSpec] | None = Field(
        default=None,
        min_length=1,
        description="Several models behind the same ports (a model repository), each with its own name (required), "
        "runtime, batching and versions; instead of model. The Open Inference Protocol's repository extension loads "
        "and unloads them at run time (docs/server.md).",
    )
    replicas: int | None = Field(default=None, ge=0, description="Fixed replica count when autoscaling is 'none'.")
    batching: BatchingSpec = Field(default_factory=BatchingSpec, description="Dynamic batching of requests.")
    server: ServerSpec = Field(default_factory=ServerSpec, description="The replica server: ports, threads, limits.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="CPU, memory and GPUs per replica.")
    autoscaling: AutoscalingSpec = Field(
        default_factory=AutoscalingSpec, description="How the replica count follows the load."
    )
    probes: ProbesSpec = Field(default_factory=ProbesSpec, description="Startup, readiness and liveness probes.")
    rollout: RolloutSpec = Field(default_factory=RolloutSpec, description="How a changed spec replaces replicas.")
    routing: RoutingSpec = Field(
        default_factory=RoutingSpec,
        description="How the router of kubeinfer up spreads requests: by requests or tokens, with session or "
        "prefix affinity.",
    )
    image: str = Field(default="kubeinfer/server:latest", description="Container image on Kubernetes.")
    env: dict[str, str] = Field(default_factory=dict, description="Environment variables of the replicas.")
    logger: LoggerSpec | None = Field(
        default=None,
        description="Payload logging of inference requests and responses as CloudEvents (KServe's logger); null: off.",
    )

    @model_validator(mode="after")
    def _model_or_models(self) -> ServiceSpec:
        given = self.model is not None
        if given and self.models is not None:
            raise ValueError("give either spec.model (one model) or spec.models (several models), not both")
        if not given and self.models is None:
            raise ValueError("needs model (the model to serve) or models (a list of models, each with a name)")
        if self.models is not None:
            _check_models(self.models)
            object.__setattr__(self, "model", self.models[0])  # not in model_fields_set: not written back
        generation = sorted({m.type for m in self.autoscaling.effective_metrics if m.type in GENERATION_METRICS})
        if generation and not any(m.format == "llm" for m in self.served_models):
            formats = ", ".join(sorted({repr(m.format) for m in self.served_models}))
            raise ValueError(
                f"autoscaling metric {', '.join(map(repr, generation))} (autoscaling.metric or metrics[].type) needs a "
                f"model of format llm, and the model's format is {formats}: only a generative model's replicas "
                "export kubeinfer_generation_* (scale on concurrency, rps or queue-depth)"
            )
        for i, m in enumerate(self.served_models):
            if m.format == "llm" and m.args.get("engine") == "vllm":
                _check_vllm(m, self.resources.gpu, "model" if self.models is None else f"models[{i}]")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        doc: dict[str, Any] = handler(self)
        if self.models is not None:
            doc.pop("model", None)  # derived from models, not part of the spec as written
        elif "models" in doc and doc["models"] is None:
            del doc["models"]
        return doc

    @property
    def served_models(self) -> list[ModelSpec]:
        """Every model entry, in spec order (one for ``spec.model``)."""
        return list(self.models) if self.models is not None else [self.model]

    @property
    def max_body_bytes(self) -> int:
        """The body limit in force: ``server.limits.maxBodySize`` when given; else, under a memory limit, the smaller
        of 64Mi and 1/32 of it (at least 1Mi): a JSON tensor body decodes to several times its size (Python floats,
        then the array), so four concurrent 56 MiB bodies were enough to take a 1Gi replica down."""
        limits = self.server.limits
        if "maxBodySize" in limits.model_fields_set:
            return limits.max_body_bytes
        mem = self.resources.limits.quantity("memory")
        if mem is None:
            return limits.max_body_bytes
        return max(1 << 20, min(limits.max_body_bytes, int(mem.value) // 32))


def _check_models(models: list[ModelSpec]) -> None:
    """Each entry of ``spec.models`` names its model; one name's entries differ in version and agree on the policy."""
    seen: dict[tuple[str, str], int] = {}
    policies: dict[str, VersionPolicy] = {}
    for i, m in enumerate(models):
        if m.name is None:
            raise ValueError(f"spec.models[{i}].name is required: the model's name on the wire (e.g. 'iris')")
        if not _MODEL_NAME.match(m.name):
            raise ValueError(
                f"spec.models[{i}].name {m.name!r} must be letters, digits, '.', '_' or '-' (it is a URL path segment)"
            )
        first = seen.setdefault((m.name, m.version), i)
        if first != i:
            raise ValueError(
                f"spec.models[{i}] repeats model {m.name!r} version {m.version!r} of spec.models[{first}]: give each "
                "entry of one name its own version"
            )
        if m.versionPolicy is not None:
            other = policies.setdefault(m.name, m.versionPolicy)
            if other != m.versionPolicy:
                raise ValueError(f"spec.models[{i}]: the entries of model {m.name!r} give different versionPolicy")


class InferenceService(_Strict):
    apiVersion: Literal["kubeinfer.io/v1alpha1"] = Field(default=API_VERSION, description="The spec's API version.")
    kind: Literal["InferenceService"] = Field(default=KIND, description="The object kind.")
    metadata: ObjectMeta = Field(description="Name, namespace, labels and annotations.")
    spec: ServiceSpec = Field(description="The service.")

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def model_name(self) -> str:
        return self.spec.model.name or self.metadata.name
