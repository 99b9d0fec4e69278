"""A lower bound on the GPU capacity any placement leaves unallocated, so a replay says how far from the best it is.

The arrived pods are a multiset; no policy, online or offline, can allocate more GPU than the best packing of
that multiset. Its LP relaxation (HiGHS through scipy) groups nodes by (GPU model, GPUs per node, CPU, memory) and
pods by type (CPU, memory, GPUs, milli per GPU, allowed models) and lets a fraction of a pod go to a group:

- maximize the GPU milli placed, ``sum x[t, g] * num[t] * milli[t]``;
- each type places at most its count; a type only goes to groups of an allowed model whose nodes have enough GPUs,
  CPU and memory for one pod;
- per group: GPU milli, CPU and memory within the group's totals, and at most one pod asking for more than half a
  GPU on each GPU (two such pods never share one).

``bound = 1 - placed / capacity``. It ignores per-node packing beyond these sums (hence a bound, not a plan).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from kubeinfer.placement.fragmentation import FULL, Cluster, Workload

__all__ = ["unallocated_lower_bound"]


def unallocated_lower_bound(cluster: Cluster, workload: Workload, pods: Sequence[int] | None = None) -> float:
    """Least share of ``cluster``'s GPU capacity that stays unallocated once ``pods`` (indices into ``workload``;
    default all) have arrived, whatever the placement (LP relaxation; see the module docstring)."""
    idx = np.arange(len(workload)) if pods is None else np.asarray(pods, dtype=np.int64)
    cap = cluster.gpu_capacity_milli
    if cap == 0:
        return 0.0
    gpu_pods = idx[workload.num_gpu[idx] > 0]
    if len(gpu_pods) == 0:
        return 1.0
    # node groups
    gkeys: dict[tuple[str, int, int, int], int] = {}
    for m, g, c, mem in zip(
        cluster.models, cluster.gpus.tolist(), cluster.cpu_milli.tolist(), cluster.memory_mib.tolist(), strict=True
    ):
        if g > 0:
            gk = (m, g, c, mem)
            gkeys[gk] = gkeys.get(gk, 0) + 1
    groups = list(gkeys)
    count = np.array([gkeys[gk] for gk in groups], dtype=np.float64)
    g_gpu = np.array([gk[1] for gk in groups], dtype=np.float64)
    g_cpu = np.array([gk[2] for gk in groups], dtype=np.float64)
    g_mem = np.array([gk[3] for gk in groups], dtype=np.float64)
    # pod types (CPU-only pods compete for CPU and memory on GPU nodes too)
    tkeys: dict[tuple[int, int, int, int, frozenset[str]], int] = {}
    for i in idx.tolist():
        k = (int(workload.cpu_milli[i]), int(workload.memory_mib[i]), int(workload.num_gpu[i]),
             int(workload.gpu_milli[i]), workload.gpu_spec[i])  # fmt: skip
        tkeys[k] = tkeys.get(k, 0) + 1
    types = list(tkeys)
    n_t = np.array([tkeys[k] for k in types], dtype=np.float64)
    rows_i: list[int] = []
    cols_j: list[int] = []
    vals: list[float] = []
    var: list[tuple[int, int]] = []
    for ti, (cpu, mem, num, _milli, spec) in enumerate(types):
        for gi, (model, gg, gc, gm) in enumerate(groups):
            if (spec and model not in spec) or num > gg or cpu > gc or mem > gm:
                continue
            var.append((ti, gi))
    if not var:
        return 1.0
    nv = len(var)
    obj = np.zeros(nv)
    n_types, n_groups = len(types), len(groups)
    # row blocks: types | gpu | cpu | mem | big-share count
    r_gpu, r_cpu, r_mem, r_big = n_types, n_types + n_groups, n_types + 2 * n_groups, n_types + 3 * n_groups
    for v, (ti, gi) in enumerate(var):
        cpu, mem, num, milli, _ = types[ti]
        obj[v] = -float(num * milli)
        rows_i += [ti, r_gpu + gi, r_cpu + gi, r_mem + gi]
        cols_j += [v] * 4
        vals += [1.0, float(num * milli), float(cpu), float(mem)]
        if num > 0 and 2 * milli > FULL:
            rows_i.append(r_big + gi)
            cols_j.append(v)
            vals.append(float(num))
    a = coo_matrix((vals, (rows_i, cols_j)), shape=(n_types + 4 * n_groups, nv)).tocsr()
    b = np.concatenate([n_t, count * g_gpu * FULL, count * g_cpu, count * g_mem, count * g_gpu])
    res = linprog(obj, A_ub=a, b_ub=b, bounds=(0, None), method="highs")
    if res.status != 0:
        raise RuntimeError(f"the bound's LP did not solve: {res.message}")
    placed = min(-float(res.fun), float(cap))
    return max(0.0, 1.0 - placed / cap)
