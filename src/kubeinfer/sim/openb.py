"""Readers of the Alibaba GPU trace's node and pod lists, and the replay of the two files.

The trace is ``cluster-trace-gpu-v2023`` (openb): ``openb_node_list*.csv`` (sn, cpu_milli, memory_mib, gpu, model)
and ``openb_pod_list*.csv`` (cpu_milli, memory_mib, num_gpu, gpu_milli, gpu_spec, creation_time, ...). The
placement policies and the replay are pure (:mod:`kubeinfer.placement.fragmentation` takes rows, not files); this
shell opens the files and times the replays.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kubeinfer.placement.bound import unallocated_lower_bound
from kubeinfer.placement.fragmentation import FULL, Cluster, Workload, replay, replay_many
from kubeinfer.placement.variants import Variant, make_variant, variant_dict

__all__ = ["load_nodes_csv", "load_pods_csv", "replay_files", "replay_many_timed"]


def load_nodes_csv(path: str | Path) -> Cluster:
    """Read an Alibaba ``openb_node_list`` CSV (columns sn, cpu_milli, memory_mib, gpu, model)."""
    with open(path, newline="") as f:
        return Cluster.from_rows(csv.DictReader(f))


def load_pods_csv(path: str | Path) -> Workload:
    """Read an Alibaba ``openb_pod_list`` CSV (cpu_milli, memory_mib, num_gpu, gpu_milli, gpu_spec, ...)."""
    with open(path, newline="") as f:
        return Workload.from_rows(csv.DictReader(f))


def replay_many_timed(
    cluster: Cluster,
    workload: Workload,
    policies: Sequence[str],
    *,
    seeds: Sequence[int] = (42,),
    target: float = 1.3,
    order: str = "shuffle",
    progress: Callable[[str, int], None] | None = None,
    variant: Variant | None = None,
    bound: bool = False,
) -> dict[str, Any]:
    """:func:`~kubeinfer.placement.fragmentation.replay_many` with each policy's ``seconds`` per seed measured on
    the monotonic performance counter (what ``kubeinfer plan replay`` reports). ``variant``: each seed replays the
    pod list re-drawn to that mix with the seed (:func:`~kubeinfer.placement.variants.make_variant`); ``bound``:
    report the lower bound on unallocated GPUs (:mod:`kubeinfer.placement.bound`) and each policy's distance."""
    draw = None
    if variant is not None and not variant.is_trace:
        v = variant

        def draw(sd: int) -> Workload:
            return make_variant(workload, v, sd, cluster)

    def lower(w: Workload, pods: Any) -> float:
        return unallocated_lower_bound(cluster, w, pods)

    doc = replay_many(
        cluster,
        workload,
        policies,
        seeds=seeds,
        target=target,
        order=order,
        progress=progress,
        clock=time.perf_counter,
        workload_for_seed=draw,
        lower_bound=lower if bound else None,
    )
    if variant is not None:
        doc["variant"] = variant_dict(variant)
    return doc


def replay_files(
    nodes_csv: str | Path,
    pods_csv: str | Path,
    policies: Sequence[str],
    *,
    seed: int = 42,
    target: float = 1.0,
) -> dict[str, Any]:
    """One result per policy for the two files, JSON-able (``kubeinfer plan replay -o json`` for one seed)."""
    cluster = load_nodes_csv(nodes_csv)
    workload = load_pods_csv(pods_csv)
    results = [replay(cluster, workload, p, seed=seed, target=target) for p in policies]
    return {
        "nodes": len(cluster.names),
        "gpus": cluster.gpu_capacity_milli // FULL,
        "pods": len(workload),
        "seed": seed,
        "target": target,
        "results": [r.to_dict() for r in results],
    }
