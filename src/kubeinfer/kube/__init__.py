"""kubeinfer on Kubernetes: render manifests from the spec, apply them, watch rollouts; the CRD and the operator.

- :mod:`~kubeinfer.kube.render` -- pure spec -> manifests (Deployment, Service, PDB, HPA/KEDA, VPA, ...).
- :mod:`~kubeinfer.kube.gpu` -- accelerator resources, cloud presets, device-plugin sharing config.
- :mod:`~kubeinfer.kube.crd` -- the InferenceService CRD generated from the pydantic spec.
- :mod:`~kubeinfer.kube.status` -- pure rollout-status interpretation (why a rollout is stuck).
- :mod:`~kubeinfer.kube.api` -- the :class:`KubeApi` protocol and its implementation on the official client (an
  in-memory one for tests: :class:`kubeinfer.testing.FakeKubeApi`).
- :mod:`~kubeinfer.kube.deploy` -- plan, apply, prune, wait, delete.
- :mod:`~kubeinfer.kube.operator` -- reconcile and kpa/predictive autoscaling, driven through :class:`KubeApi`;
  :mod:`~kubeinfer.kube.operator_kopf` is its kopf shell (``[kube]`` extra, imported only by ``kubeinfer operator``).
- :mod:`~kubeinfer.kube.build` -- the container build context for a service.
"""

from typing import TYPE_CHECKING

from kubeinfer._lazy import lazy_exports

if TYPE_CHECKING:
    from kubeinfer.kube.api import KubeApi, KubeConfigError, KubeError
    from kubeinfer.kube.crd import crd
    from kubeinfer.kube.render import SUPPORTED_VERSIONS, Rendered, RenderOptions, dump_yaml, render, render_all
    from kubeinfer.kube.status import RolloutStatus, interpret

# Exports load on first use (PEP 562), so that importing one submodule, or the CLI, does not import all.
_EXPORTS = {
    "KubeApi": "kubeinfer.kube.api",
    "KubeConfigError": "kubeinfer.kube.api",
    "KubeError": "kubeinfer.kube.api",
    "RenderOptions": "kubeinfer.kube.render",
    "Rendered": "kubeinfer.kube.render",
    "RolloutStatus": "kubeinfer.kube.status",
    "SUPPORTED_VERSIONS": "kubeinfer.kube.render",
    "crd": "kubeinfer.kube.crd",
    "dump_yaml": "kubeinfer.kube.render",
    "interpret": "kubeinfer.kube.status",
    "render": "kubeinfer.kube.render",
    "render_all": "kubeinfer.kube.render",
}


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())


__all__ = [
    "SUPPORTED_VERSIONS",
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
