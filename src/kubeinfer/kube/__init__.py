"""kubeinfer on Kubernetes: render manifests from the spec, apply them, watch rollouts; the CRD and the operator.

- :mod:`~kubeinfer.kube.render` -- pure spec -> manifests (Deployment, Service, PDB, HPA/KEDA, VPA, ...).
- :mod:`~kubeinfer.kube.gpu` -- accelerator resources, cloud presets, device-plugin sharing config.
- :mod:`~kubeinfer.kube.crd` -- the InferenceService CRD generated from the pydantic spec.
- :mod:`~kubeinfer.kube.status` -- pure rollout-status interpretation (why a rollout is stuck).
- :mod:`~kubeinfer.kube.api` -- the :class:`KubeApi` protocol and its implementation on the official client.
- :mod:`~kubeinfer.kube.fake` -- an in-memory :class:`KubeApi` that records server-side applies.
- :mod:`~kubeinfer.kube.deploy` -- plan, apply, prune, wait, delete.
- :mod:`~kubeinfer.kube.operator` -- reconcile and kpa/predictive autoscaling, driven through :class:`KubeApi`;
  :mod:`~kubeinfer.kube.operator_kopf` is its kopf shell (``[kube]`` extra, imported only by ``kubeinfer operator``).
- :mod:`~kubeinfer.kube.build` -- the container build context for a service.
"""

from kubeinfer.kube.api import KubeApi, KubeConfigError, KubeError
from kubeinfer.kube.crd import crd
from kubeinfer.kube.fake import FakeKubeApi
from kubeinfer.kube.render import SUPPORTED_VERSIONS, Rendered, RenderOptions, dump_yaml, render, render_all
from kubeinfer.kube.status import RolloutStatus, interpret

__all__ = [
    "SUPPORTED_VERSIONS",
    "FakeKubeApi",
    "KubeApi",
    "KubeConfigError",
    "KubeError",
    "RenderOptions",
    "Rendered",
    "RolloutStatus",
    "crd",
    "dump_yaml",
    "interpret",
    "render",
    "render_all",
]
