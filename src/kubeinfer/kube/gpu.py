"""Accelerators on Kubernetes: the extended resource a pod requests, node selection per cloud, device-plugin config.

Resource names follow the vendors' device plugins (the same table as ``placement/mig.py``): NVIDIA whole GPUs and
time-sliced or MPS shares are ``nvidia.com/gpu`` (the plugin advertises each device ``replicas`` times; we keep the
plugin's default ``renameByDefault: false``), MIG slices under the ``mixed`` strategy are ``nvidia.com/mig-<profile>``,
AMD GPUs ``amd.com/gpu`` and Intel Gaudi ``habana.ai/gaudi`` (whole devices only).

Node selection without a cloud preset relies on the resource request alone plus a toleration for the vendor's
conventional taint; everything cloud-specific lives in :data:`CLOUDS`:

- ``gke``: GKE taints GPU nodes ``nvidia.com/gpu=present:NoSchedule`` and labels them
  ``cloud.google.com/gke-accelerator``; MIG partitions are chosen by ``cloud.google.com/gke-gpu-partition-size``;
  GPU sharing by ``cloud.google.com/gke-gpu-sharing-strategy`` and ``cloud.google.com/gke-max-shared-clients-per-gpu``
  (GKE configures its own device plugin, so no device-plugin ConfigMap is rendered there).
- ``eks``: GPU nodes are found by Karpenter's ``karpenter.k8s.aws/instance-gpu-manufacturer`` or eksctl's
  ``k8s.amazonaws.com/accelerator`` label; the NVIDIA device plugin (or GPU operator) runs on them.
- ``aks``: AKS labels GPU node pools ``accelerator=nvidia``; its documentation taints them ``sku=gpu:NoSchedule``.

Time-slicing and MPS on clusters running NVIDIA's device plugin: kubeinfer renders the plugin's config (a key per
sharing level, e.g. ``time-slicing-4``) and pins the pods to nodes labelled ``nvidia.com/device-plugin.config`` with
that key, so a quarter-GPU replica never lands on a node that advertises whole GPUs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from kubeinfer.placement.catalogue import CATALOGUE
from kubeinfer.spec.service import GpuSpec

__all__ = [
    "CLOUDS",
    "Cloud",
    "CloudPreset",
    "GpuPlacement",
    "device_plugin_config",
    "gpu_placement",
    "resource_name",
    "sharing_replicas",
]

Cloud = Literal["gke", "eks", "aks"]

# Vendor -> extended resource, from the accelerator catalogue (one device plugin resource per vendor).
_VENDOR_RESOURCE: Final = {a.vendor: a.resource_name for a in CATALOGUE if a.vendor != "nvidia"} | {
    "nvidia": "nvidia.com/gpu"
}
DEVICE_PLUGIN_CONFIG_LABEL: Final = "nvidia.com/device-plugin.config"


def resource_name(gpu: GpuSpec) -> str:
    if gpu.sharing == "mig":
        return "nvidia.com/mig-" + (gpu.migProfile or "").replace("+me", ".me")
    return _VENDOR_RESOURCE[gpu.vendor]


def sharing_replicas(gpu: GpuSpec) -> int:
    """How many times the device plugin must advertise one GPU so that a replica's share is ``fraction``."""
    if gpu.fraction is None:
        return 1
    return max(1, math.floor(1 / gpu.fraction + 1e-9))


def sharing_config_key(gpu: GpuSpec) -> str | None:
    if gpu.sharing not in ("time-slicing", "mps"):
        return None
    return f"{gpu.sharing}-{sharing_replicas(gpu)}"


def units(gpu: GpuSpec) -> int:
    """Devices (or slices, or shares) one replica requests."""
    return max(gpu.count, 1) if gpu.requested else 0


@dataclass(frozen=True)
class GpuPlacement:
    resources: dict[str, str] = field(default_factory=dict)
    node_selector: dict[str, str] = field(default_factory=dict)
    node_affinity_terms: list[dict[str, Any]] = field(default_factory=list)
    """Alternative node-selector terms (ORed) under requiredDuringSchedulingIgnoredDuringExecution."""
    tolerations: list[dict[str, Any]] = field(default_factory=list)


def _exists(key: str) -> dict[str, Any]:
    return {"key": key, "operator": "Exists", "effect": "NoSchedule"}


def _term(key: str, op: str, values: list[str] | None = None) -> dict[str, Any]:
    expr: dict[str, Any] = {"key": key, "operator": op}
    if values is not None:
        expr["values"] = values
    return {"matchExpressions": [expr]}


@dataclass(frozen=True)
class CloudPreset:
    name: str
    description: str
    renders_device_plugin_config: bool


CLOUDS: Final[dict[str, CloudPreset]] = {
    "gke": CloudPreset("gke", "Google Kubernetes Engine (GKE-managed NVIDIA drivers and device plugin)", False),
    "eks": CloudPreset("eks", "Amazon EKS (NVIDIA device plugin or GPU operator; Karpenter or eksctl labels)", True),
    "aks": CloudPreset("aks", "Azure Kubernetes Service (NVIDIA device plugin or GPU operator)", True),
}


def gpu_placement(gpu: GpuSpec, cloud: Cloud | None, accelerator: str | None = None) -> GpuPlacement:
    """Resources, node selection and tolerations for ``gpu`` on ``cloud`` (None: any conformant cluster)."""
    if not gpu.requested:
        return GpuPlacement()
    res = resource_name(gpu)
    n = units(gpu)
    resources = {res: str(n)}
    tolerations = [_exists(_VENDOR_RESOURCE[gpu.vendor])]
    selector: dict[str, str] = {}
    terms: list[dict[str, Any]] = []
    key = sharing_config_key(gpu)
    if cloud == "gke":
        if accelerator:
            selector["cloud.google.com/gke-accelerator"] = accelerator
        else:
            terms.append(_term("cloud.google.com/gke-accelerator", "Exists"))
        if gpu.sharing == "mig" and gpu.migProfile:
            selector["cloud.google.com/gke-gpu-partition-size"] = gpu.migProfile
            # GKE exposes a MIG partition as nvidia.com/gpu on a node pool partitioned to that size.
            resources = {"nvidia.com/gpu": str(n)}
        if gpu.sharing in ("time-slicing", "mps"):
            selector["cloud.google.com/gke-gpu-sharing-strategy"] = (
                "time-sharing" if gpu.sharing == "time-slicing" else "mps"
            )
            selector["cloud.google.com/gke-max-shared-clients-per-gpu"] = str(sharing_replicas(gpu))
        return GpuPlacement(resources, selector, terms, tolerations)
    if key is not None:
        selector[DEVICE_PLUGIN_CONFIG_LABEL] = key
    if cloud == "eks":
        if accelerator:
            selector["k8s.amazonaws.com/accelerator"] = accelerator
        else:
            manufacturer = {"nvidia": "nvidia", "amd": "amd", "intel": "habana"}[gpu.vendor]
            terms += [
                _term("karpenter.k8s.aws/instance-gpu-manufacturer", "In", [manufacturer]),
                _term("k8s.amazonaws.com/accelerator", "Exists"),
            ]
    elif cloud == "aks":
        tolerations.append({"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"})
        if accelerator:
            selector["kubernetes.azure.com/accelerator"] = accelerator
        elif gpu.vendor == "nvidia":
            selector["accelerator"] = "nvidia"
    return GpuPlacement(resources, selector, terms, tolerations)


def device_plugin_config(gpu: GpuSpec) -> dict[str, str]:
    """The NVIDIA k8s-device-plugin config entry (``{key: yaml}``) that advertises each GPU ``replicas`` times."""
    key = sharing_config_key(gpu)
    if key is None:
        return {}
    block = "timeSlicing" if gpu.sharing == "time-slicing" else "mps"
    text = (
        "version: v1\n"
        "flags:\n"
        "  migStrategy: none\n"
        "sharing:\n"
        f"  {block}:\n"
        "    renameByDefault: false\n"
        + ("    failRequestsGreaterThanOne: true\n" if block == "timeSlicing" else "")
        + "    resources:\n"
        "    - name: nvidia.com/gpu\n"
        f"      replicas: {sharing_replicas(gpu)}\n"
    )
    return {key: text}
