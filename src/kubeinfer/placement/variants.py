"""Workload variants of a GPU pod list: the same pods re-drawn with a different mix, seeded.

The FGD paper's trace (Alibaba ``cluster-trace-gpu-v2023``, openb) ships, beside the default pod list, lists
"sampled from the default one, emphasizing certain types of workloads" (CPU-only pods, GPU-sharing pods, multi-GPU
pods) and lists where a share of the GPU pods carry a GPU-model constraint (``gpuspec``: "about 33% of GPU tasks in
our production cluster have GPU type constraints", Sec. 6.5 of the paper). :func:`make_variant` draws such lists
from any pod list, so that a placement policy can be judged on mixes it was not tuned on:

- pods fall in four classes: CPU-only (no GPU), sharing (one GPU, ``gpu_milli < 1000``), one whole GPU, multi-GPU;
- the variant fixes the share of some classes (``cpu_only`` of all pods; ``gpu_share`` and ``multi_gpu`` of the
  GPU pods); classes left open keep their relative weight in the source list;
- the class counts are exact (largest remainder) and pods are drawn uniformly with replacement inside each class;
- ``gpu_spec``: that share of the GPU pods (exact count, chosen uniformly) is pinned to a set of GPU models, drawn
  from :data:`SPEC_SETS` among the sets with a node that can host the pod (enough GPUs and CPU on one node);
- the result is shuffled; its creation order is the draw order. The same seed gives the same list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from kubeinfer.placement.fragmentation import FULL, Cluster, Workload

__all__ = ["PRESETS", "SPEC_SETS", "Variant", "make_variant", "mix", "pod_classes", "variant_dict"]

SPEC_SETS: Mapping[frozenset[str], float] = {
    frozenset({"T4"}): 33,
    frozenset({"V100M16", "V100M32"}): 13,
    frozenset({"G2"}): 10,
    frozenset({"P100"}): 5,
    frozenset({"P100", "V100M16", "V100M32"}): 3,
    frozenset({"G3"}): 2,
    frozenset({"G2", "P100", "T4", "V100M16", "V100M32"}): 2,
    frozenset({"P100", "T4", "V100M16", "V100M32"}): 2,
}
"""GPU-model constraint sets and their relative frequency: counted over the 70 constrained pods among the first
220 pods of the published ``openb_pod_list_gpuspec33.csv`` (the authors' production constraint mix)."""

CLASSES = ("cpu", "share", "whole", "multi")


@dataclass(frozen=True)
class Variant:
    """A pod mix. ``None`` keeps the source list's share of that class."""

    name: str = "trace"
    gpu_share: float | None = None
    """Share of GPU pods that share one GPU (``num_gpu == 1`` and ``gpu_milli < 1000``)."""
    multi_gpu: float | None = None
    """Share of GPU pods that ask for more than one GPU."""
    gpu_spec: float = 0.0
    """Share of GPU pods pinned to a set of GPU models."""
    cpu_only: float | None = None
    """Share of all pods that ask for no GPU (CPU-heavy mixes)."""

    def __post_init__(self) -> None:
        for field in ("gpu_share", "multi_gpu", "gpu_spec", "cpu_only"):
            v = getattr(self, field)
            if v is not None and not 0.0 <= v <= 1.0:
                raise ValueError(f"variant {self.name!r}: {field} is {v}; must be in [0, 1]")
        if (self.gpu_share or 0.0) + (self.multi_gpu or 0.0) > 1.0 + 1e-9:
            raise ValueError(
                f"variant {self.name!r}: gpu_share {self.gpu_share} + multi_gpu {self.multi_gpu} exceed 1 (both are "
                "shares of the GPU pods)"
            )
        if self.cpu_only is not None and self.cpu_only >= 1.0:
            raise ValueError(f"variant {self.name!r}: cpu_only must be below 1 (nothing would ask for a GPU)")

    @property
    def is_trace(self) -> bool:
        return self.gpu_share is None and self.multi_gpu is None and self.gpu_spec == 0 and self.cpu_only is None


PRESETS: Mapping[str, Variant] = {
    v.name: v
    for v in (
        Variant("gpushare40", gpu_share=0.4),
        Variant("gpushare100", gpu_share=1.0),
        Variant("gpuspec33", gpu_spec=0.33),
        Variant("multigpu50", multi_gpu=0.5),
        Variant("cpu25", cpu_only=0.25),
    )
}
"""The mixes of the FGD paper's experiments (40% and 100% sharing, a third pinned, half multi-GPU, CPU-heavy)."""


def pod_classes(w: Workload) -> np.ndarray:
    """Class index of each pod (into ``CLASSES``)."""
    cls = np.full(len(w), 2, dtype=np.int64)
    cls[w.num_gpu == 0] = 0
    cls[(w.num_gpu == 1) & (w.gpu_milli < FULL)] = 1
    cls[w.num_gpu > 1] = 3
    return cls


def _exact_counts(probs: np.ndarray, n: int) -> np.ndarray:
    """Integer counts summing to ``n`` closest to ``probs * n`` (largest remainder)."""
    raw = probs * n
    base: np.ndarray = np.asarray(np.floor(raw), dtype=np.int64)
    rest = n - int(base.sum())
    if rest > 0:
        base[np.argsort(-(raw - base), kind="stable")[:rest]] += 1
    return base


def _class_probs(v: Variant, have: np.ndarray) -> np.ndarray:
    gpu = have[1:].astype(np.float64)
    fixed = {1: v.gpu_share, 3: v.multi_gpu}
    open_ = [c for c in (1, 2, 3) if fixed.get(c) is None]
    left = 1.0 - sum(x for x in fixed.values() if x is not None)
    open_mass = float(sum(gpu[c - 1] for c in open_))
    p_gpu = np.zeros(4)
    for c in (1, 2, 3):
        f = fixed.get(c)
        if f is not None:
            p_gpu[c] = f
        elif open_mass > 0:
            p_gpu[c] = left * gpu[c - 1] / open_mass
    if open_ and open_mass == 0 and left > 1e-9:
        # nothing of the open classes in the source: the fixed classes take all
        fixed_sum = 1.0 - left
        if fixed_sum <= 0:
            raise ValueError(f"variant {v.name!r}: the pod list has no GPU pods to draw from")
        p_gpu /= fixed_sum
    total = have.sum()
    p_cpu = v.cpu_only if v.cpu_only is not None else have[0] / total
    probs = np.concatenate([[p_cpu], (1 - p_cpu) * p_gpu[1:]])
    for c, name in enumerate(CLASSES):
        if probs[c] > 0 and have[c] == 0:
            raise ValueError(f"variant {v.name!r} asks for {name} pods but the pod list has none to draw from")
    return probs


def _spec_options(cluster: Cluster, sets: Sequence[frozenset[str]]) -> tuple[np.ndarray, np.ndarray]:
    """Per set: the most GPUs and, per GPU count, the most CPU one node of the set's models offers."""
    max_gpu = np.zeros(len(sets), dtype=np.int64)
    cpu_at = np.zeros((len(sets), 9), dtype=np.int64)  # most CPU on a node with >= k GPUs, k = 0..8
    for i, s in enumerate(sets):
        for g, c, m in zip(cluster.gpus.tolist(), cluster.cpu_milli.tolist(), cluster.models, strict=True):
            if m in s:
                max_gpu[i] = max(max_gpu[i], g)
                for k in range(min(g, 8) + 1):
                    cpu_at[i, k] = max(cpu_at[i, k], c)
    return max_gpu, cpu_at


def make_variant(
    workload: Workload,
    variant: Variant,
    seed: int,
    cluster: Cluster | None = None,
    spec_sets: Mapping[frozenset[str], float] = SPEC_SETS,
) -> Workload:
    """``workload`` re-drawn to ``variant``'s mix with ``seed`` (see the module docstring).

    ``cluster`` is needed when ``variant.gpu_spec > 0``: a pod is only pinned to a set whose nodes can host it, and
    sets naming no model of the cluster are left out."""
    rng = np.random.default_rng(seed)
    n = len(workload)
    if n == 0:
        raise ValueError("the pod list is empty; nothing to draw from")
    cls = pod_classes(workload)
    have = np.bincount(cls, minlength=4)
    counts = _exact_counts(_class_probs(variant, have), n)
    picks = [rng.choice(np.flatnonzero(cls == c), size=int(k), replace=True) for c, k in enumerate(counts) if k > 0]
    idx = rng.permutation(np.concatenate(picks)) if picks else np.zeros(0, dtype=np.int64)
    spec: list[frozenset[str]] = [workload.gpu_spec[i] for i in idx.tolist()]
    num = workload.num_gpu[idx]
    cpu = workload.cpu_milli[idx]
    if variant.gpu_spec > 0:
        if cluster is None:
            raise ValueError(f"variant {variant.name!r}: pinning pods to GPU models needs the cluster's node list")
        present = set(cluster.models)
        sets = [s for s in spec_sets if s & present]
        if not sets:
            raise ValueError(f"variant {variant.name!r}: no GPU-model set names a model of this cluster")
        weights = np.array([float(spec_sets[s]) for s in sets])
        max_gpu, cpu_at = _spec_options(cluster, sets)
        gpu_pods = np.flatnonzero(num > 0)
        k = round(variant.gpu_spec * len(gpu_pods))
        ok = (max_gpu[None, :] >= num[gpu_pods, None]) & (
            cpu[gpu_pods, None] <= cpu_at[:, np.minimum(num[gpu_pods], 8)].T
        )
        can = gpu_pods[ok.any(axis=1)]
        chosen = rng.choice(can, size=min(k, len(can)), replace=False)
        row_of = {int(p): r for r, p in enumerate(gpu_pods.tolist())}
        for p in chosen.tolist():
            w = weights * ok[row_of[p]]
            spec[p] = sets[int(rng.choice(len(sets), p=w / w.sum()))]
    return Workload(
        names=tuple(f"{workload.names[i]}~{j}" for j, i in enumerate(idx.tolist())),
        cpu_milli=workload.cpu_milli[idx].copy(),
        memory_mib=workload.memory_mib[idx].copy(),
        num_gpu=num.copy(),
        gpu_milli=workload.gpu_milli[idx].copy(),
        gpu_spec=tuple(spec),
    )


def mix(w: Workload) -> dict[str, float]:
    """The shares a variant fixes, measured on ``w`` (for reports and tests)."""
    cls = pod_classes(w)
    gpu = cls > 0
    n_gpu = max(int(gpu.sum()), 1)
    return {
        "cpuOnly": float((cls == 0).mean()) if len(w) else 0.0,
        "gpuShare": float((cls == 1).sum() / n_gpu),
        "multiGpu": float((cls == 3).sum() / n_gpu),
        "gpuSpec": float(sum(1 for i in np.flatnonzero(gpu).tolist() if w.gpu_spec[i]) / n_gpu),
    }


def variant_dict(v: Variant) -> dict[str, object]:
    """JSON-able description (what ``kubeinfer plan replay -o json`` reports as ``variant``)."""
    return {"name": v.name, "gpuShare": v.gpu_share, "multiGpu": v.multi_gpu, "gpuSpec": v.gpu_spec,
            "cpuOnly": v.cpu_only}  # fmt: skip
