"""GPU fragmentation: placing GPU-sharing pods so that whole GPUs stay free for the pods that need them.

Reference: Weng et al., "Beware of Fragmentation: Scheduling GPU-Sharing Workloads with Fragmentation Gradient
Descent", USENIX ATC 2023, and its Alibaba ``cluster-trace-gpu-v2023`` (openb) node and pod lists.

Fragmentation measure (the paper's, as in its simulator): for a node n and a pod *type* t (CPU, GPU count, GPU
milli, allowed GPU models), the GPU capacity of n that t cannot use:
- t requests no GPU, or t cannot be placed on n at all (model not allowed, not enough CPU, not enough GPUs with
  room): every unallocated GPU milli of n;
- otherwise the unallocated milli of the GPUs whose free share is below t's per-GPU request (1000 for whole
  GPUs: partly used GPUs are fragments for them).
``F(n) = sum_t p_t * frag(n, t)`` with ``p_t`` the popularity of type t in the workload.

Policies (``POLICIES``):
- ``first-fit``: the first node (list order) that fits, the first GPU on it that fits;
- ``best-fit``: the node left with the least free GPU milli (then least free CPU), the fullest GPU that fits;
- ``fgd``: the paper's Fragmentation Gradient Descent: the node and GPU whose choice increases ``F`` the least
  (ties: list order);
- ``kubeinfer``: FGD made constraint-aware, with a target workload learned online (``_Learner``):
  1. the type popularity behind ``F`` is learned from the arrivals so far (each type weighted by its GPU request),
     re-learned at 64, 128, 256, ... arrivals;
  2. GPU models are kept for the pods that can only run there: per set of allowed models, the GPU and CPU asked by
     the pinned pods so far give the expected future demand (that share of the free capacity), spread over the
     set's models; a model whose expected pinned demand exceeds ``PRESSURE_SLACK`` of its free GPUs or CPU is used
     by other pods only after models with less pressure (in steps of ``PRESSURE_STEP``);
  3. then the FGD move (multi-GPU types keep whole free GPUs on one node, as ``F`` counts them), then best-fit;
     for pods asking for at most one GPU the move's ``F`` change is taken together with ``STRAND_WEIGHT`` times the
     change in *stranded* GPU milli: GPUs of a node that future pods cannot use for lack of CPU, when they ask for
     CPU per GPU in the ratio of the arrivals so far (``F`` only sees CPU once a type no longer fits at all). This
     sends CPU-heavy pods to CPU-rich nodes and CPU-light pods to CPU-poor ones. Once ``STRAND_PINNED_MAX`` of the
     arrived GPU request is pinned to models its weight drops to ``STRAND_WEIGHT_PINNED`` (step 2 then leads)
     for the pods free to go anywhere, while a pod pinned to models weighs it at ``STRAND_WEIGHT_OWN_PIN``: it
     chooses among the few nodes of its models, whose GPUs only pods like it can use once its CPU strands them;
  4. in a CPU-tight mix (the arrivals ask for ``CPU_TIGHT`` of the cluster's CPU per GPU or more), GPU pods weigh
     FGD's change plus a best-fit term and CPU-only pods go best-fit first: stranded CPU is then the loss;
  5. while less than ``STRAND_PINNED_MAX`` of the arrived GPU request is pinned, nodes that can still host a
     multi-GPU pod type expected to need more than ``KEEP_SLACK`` of them are kept for pods as large (after step 2,
     before the rest; :meth:`_Learner.kept`);
  6. outside CPU-tight mixes and while less than ``STRAND_PINNED_MAX`` is pinned, a pod sharing a GPU follows the
     *share plan* (:class:`~kubeinfer.placement.shareplan.SharePlan`) before step 3: the fill patterns of one GPU that an optimal fractional packing
     of the shares arrived so far uses (the configuration LP, re-solved at 64, 128, ... shares). It goes where it
     completes a pattern, else continues one, else starts one on an empty GPU, and only off the plan where nothing
     on it fits. Per-GPU slivers no later share fills (an 810-milli pod's 190, two 470s' 60) are what a
     share-heavy mix leaves unallocated, and a one-step measure such as ``F`` cannot see which pairs its own
     choices leave for the pods to come. Not in CPU-tight mixes (CPU, not slivers, is the loss there; with the
     plan, ``cpu25`` tuning seed 3 went from 4.8% better than the best baseline to 1.5% worse), nor in pinned ones
     (the plan knows no GPU models; ``gpuspec33`` tuning seeds 2 and 3 lost 3 points of their margin).
  The constants were tuned on seeds 1-3 of the variants (:mod:`kubeinfer.placement.variants`); results are
  reported on other seeds (``bench/placement/RESULTS.md``).

Replay method (the paper's): pods arrive in creation order; once the trace is exhausted, pods are drawn again
uniformly with a fixed seed, until the GPU requested by arrived pods reaches ``target`` (1.0 = 100%) of the
cluster's GPU capacity. Nothing departs. A pod that fits nowhere fails. Reported as arrival proceeds: the share
of GPU capacity unallocated, the share of arrived GPU requests that failed, and the fragmentation rate.

Speed: node state lives in numpy arrays; FGD caches, per pod type and per distinct node *state* (model, free CPU,
sorted free GPU milli), the best move and its ``F`` change, so each pod only evaluates states not seen before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from kubeinfer.placement.shareplan import SharePlan

__all__ = [
    "POLICIES",
    "Cluster",
    "ReplayResult",
    "Workload",
    "assign",
    "fragmentation_rate",
    "place_pods",
    "replay",
    "replay_many",
]

POLICIES = ("random", "first-fit", "best-fit", "dot-product", "gpu-packing", "gpu-clustering", "fgd", "kubeinfer")
FULL = 1000  # milli-GPU of one whole GPU

IntArr = npt.NDArray[np.int64]
FloatArr = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Cluster:
    """GPU nodes: ``gpus`` devices of ``models[i]``, CPU in milli-cores, memory in MiB."""

    names: tuple[str, ...]
    cpu_milli: IntArr
    memory_mib: IntArr
    gpus: IntArr
    models: tuple[str, ...]

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, str]]) -> Cluster:
        names, cpu, mem, gpu, model = [], [], [], [], []
        for i, r in enumerate(rows):
            try:
                names.append(r.get("sn") or f"node-{i}")
                cpu.append(int(r["cpu_milli"]))
                mem.append(int(r["memory_mib"]))
                gpu.append(int(r["gpu"]))
                model.append(r.get("model") or "")
            except (KeyError, ValueError) as e:
                raise ValueError(f"node row {i}: need integer columns cpu_milli, memory_mib, gpu ({e})") from None
        return cls(tuple(names), np.array(cpu), np.array(mem), np.array(gpu), tuple(model))

    @property
    def gpu_capacity_milli(self) -> int:
        return int(self.gpus.sum()) * FULL


@dataclass(frozen=True)
class Workload:
    """Pods in creation order. ``gpu_milli`` is per GPU; a pod asks for ``num_gpu`` GPUs of that share each."""

    names: tuple[str, ...]
    cpu_milli: IntArr
    memory_mib: IntArr
    num_gpu: IntArr
    gpu_milli: IntArr
    gpu_spec: tuple[frozenset[str], ...]
    """Allowed GPU models per pod (empty: any)."""

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, str]]) -> Workload:
        recs = []
        for i, r in enumerate(rows):
            try:
                num = int(r.get("num_gpu") or 0)
                milli = int(r.get("gpu_milli") or 0)
                spec = frozenset(s for s in (r.get("gpu_spec") or "").split("|") if s)
                created = int(r.get("creation_time") or 0)
                recs.append(
                    (created, i, r.get("name") or f"pod-{i}", int(r["cpu_milli"]), int(r["memory_mib"]), num,
                     milli if num > 0 else 0, spec)
                )  # fmt: skip
            except (KeyError, ValueError) as e:
                raise ValueError(f"pod row {i}: need integer columns cpu_milli, memory_mib ({e})") from None
            if num > 0 and not 0 < milli <= FULL:
                raise ValueError(f"pod row {i}: gpu_milli is {milli}; must be in 1..1000 when num_gpu > 0")
        recs.sort(key=lambda x: (x[0], x[1]))
        return cls(
            names=tuple(x[2] for x in recs),
            cpu_milli=np.array([x[3] for x in recs], dtype=np.int64),
            memory_mib=np.array([x[4] for x in recs], dtype=np.int64),
            num_gpu=np.array([x[5] for x in recs], dtype=np.int64),
            gpu_milli=np.array([x[6] for x in recs], dtype=np.int64),
            gpu_spec=tuple(x[7] for x in recs),
        )

    def __len__(self) -> int:
        return len(self.names)

    @property
    def gpu_request_milli(self) -> IntArr:
        return self.num_gpu * self.gpu_milli


# ------------------------------------------------------------------------------------- pod types / F


@dataclass(frozen=True)
class _Types:
    cpu: IntArr
    num: IntArr
    req: IntArr
    """Per-GPU milli a type needs on each of its GPUs (0 for CPU-only)."""
    allowed: npt.NDArray[np.bool_]
    """(types, models) may the type use a node of that model."""
    weight: FloatArr
    of_pod: IntArr
    """Type index of each pod of the workload."""


def _types(w: Workload, models: Sequence[str], weighting: str = "count") -> _Types:
    keys: dict[tuple[int, int, int, frozenset[str]], int] = {}
    of_pod = np.empty(len(w), dtype=np.int64)
    for i in range(len(w)):
        k = (int(w.cpu_milli[i]), int(w.num_gpu[i]), int(w.gpu_milli[i]), w.gpu_spec[i])
        of_pod[i] = keys.setdefault(k, len(keys))
    counts = np.bincount(of_pod, minlength=len(keys)).astype(np.float64)
    ks = list(keys)
    if weighting == "request":  # popularity x GPU requested: how much capacity each type will ask for
        counts = counts * np.array([max(k[1] * k[2], 1) for k in ks], dtype=np.float64)
    allowed = np.array([[not k[3] or m in k[3] for m in models] for k in ks], dtype=bool).reshape(len(ks), -1)
    return _Types(
        cpu=np.array([k[0] for k in ks], dtype=np.int64),
        num=np.array([k[1] for k in ks], dtype=np.int64),
        req=np.array([k[2] for k in ks], dtype=np.int64),
        allowed=allowed,
        weight=counts / counts.sum(),
        of_pod=of_pod,
    )


def _frag(t: _Types, cpu_free: IntArr, gpu_free: IntArr, model: IntArr) -> FloatArr:
    """``F`` of each state: rows of (free CPU, free milli per GPU with -1 for absent GPUs, model index)."""
    free = np.maximum(gpu_free, 0)  # (S, G)
    total = free.sum(axis=1).astype(np.float64)  # (S,)
    req = t.req[None, :, None]  # (1, T, 1)
    room = gpu_free[:, None, :] >= np.maximum(req, 1)  # (S, T, G)
    fits = (
        (room.sum(axis=2) >= t.num[None, :])
        & (cpu_free[:, None] >= t.cpu[None, :])
        & t.allowed[:, model].T
        & (t.num[None, :] > 0)
    )
    partial = (free[:, None, :] * (gpu_free[:, None, :] < req)).sum(axis=2)  # (S, T)
    frag = np.where(fits, partial, total[:, None])
    return np.asarray(frag @ t.weight, dtype=np.float64)


def fragmentation_rate(cluster: Cluster, workload: Workload, gpu_free: IntArr, cpu_free: IntArr) -> float:
    """Share of cluster GPU capacity that is fragmented for ``workload``'s pod mix, in state ``gpu_free``."""
    t = _types(workload, sorted(set(cluster.models)))
    model = np.array([sorted(set(cluster.models)).index(m) for m in cluster.models])
    return float(_frag(t, cpu_free, gpu_free, model).sum() / cluster.gpu_capacity_milli)


# --------------------------------------------------------------------------------------------- replay


@dataclass(frozen=True)
class ReplayResult:
    policy: str
    seed: int
    pods_arrived: int
    pods_failed: int
    capacity_gpus: int
    arrived_share: tuple[float, ...]
    """Checkpoints: GPU requested by arrived pods / capacity (0.01 steps up to the target)."""
    unallocated_share: tuple[float, ...]
    failed_share: tuple[float, ...]
    """Failed GPU request / arrived GPU request at each checkpoint."""
    fragmented_share: tuple[float, ...]
    """Fragmented GPU capacity (the measure above) / capacity at each checkpoint."""
    placements: tuple[tuple[int, int, tuple[int, ...]], ...] = ()
    """With ``record=True``: (pod index in the workload, node index, GPU indices on the node) per placed pod."""

    @property
    def final_unallocated(self) -> float:
        return self.unallocated_share[-1]

    @property
    def final_failed(self) -> float:
        return self.failed_share[-1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "seed": self.seed,
            "podsArrived": self.pods_arrived,
            "podsFailed": self.pods_failed,
            "capacityGpus": self.capacity_gpus,
            "final": {
                "unallocatedShare": round(self.final_unallocated, 6),
                "failedShare": round(self.final_failed, 6),
                "fragmentedShare": round(self.fragmented_share[-1], 6),
            },
            "curve": [
                {
                    "arrived": round(a, 4),
                    "unallocated": round(u, 6),
                    "failed": round(f, 6),
                    "fragmented": round(g, 6),
                }
                for a, u, f, g in zip(
                    self.arrived_share,
                    self.unallocated_share,
                    self.failed_share,
                    self.fragmented_share,
                    strict=True,
                )
            ],
        }


def arrival_order(
    workload: Workload, capacity_milli: int, seed: int, target: float = 1.0, order: str = "trace"
) -> IntArr:
    """Indices of the pods that arrive, in arrival order, until their GPU request reaches ``target`` x capacity.

    ``trace``: creation order, then uniform re-draws (fixed seed) once the trace is exhausted; the last pod is the
    one that crosses the target. ``shuffle`` (the paper's simulator, ``--shuffle-pod`` with workload tuning): the
    trace's pods plus uniform re-draws while the total stays within the target (pods are dropped uniformly at random
    instead when the trace alone exceeds it), then the whole list is shuffled with the seed."""
    if order not in ("trace", "shuffle"):
        raise ValueError(f"order {order!r}: use 'trace' or 'shuffle'")
    req = workload.gpu_request_milli
    goal = target * capacity_milli
    if req.sum() == 0:
        raise ValueError("the workload requests no GPU; nothing to replay")
    rng = np.random.default_rng(seed)
    if order == "shuffle":
        idx = list(range(len(workload)))
        total = int(req.sum())
        if total > goal:
            keep = rng.permutation(len(workload))
            cum = np.cumsum(req[keep])
            idx = sorted(keep[cum <= goal].tolist())
        else:
            while True:
                extra = rng.integers(0, len(workload), size=max(64, len(workload) // 10))
                stop = False
                for e in extra.tolist():
                    if total + int(req[e]) > goal:
                        stop = True
                        break
                    total += int(req[e])
                    idx.append(e)
                if stop:
                    break
        return np.asarray(rng.permutation(np.asarray(idx, dtype=np.int64)), dtype=np.int64)
    cum = np.cumsum(req)
    if len(cum) and cum[-1] >= goal:
        return np.arange(int(np.searchsorted(cum, goal)) + 1, dtype=np.int64)
    parts = [np.arange(len(workload), dtype=np.int64)]
    total_f = float(req.sum())
    while total_f < goal:
        extra = rng.integers(0, len(workload), size=max(64, len(workload) // 10))
        ecum = total_f + np.cumsum(req[extra])
        if ecum[-1] >= goal:
            extra = extra[: int(np.searchsorted(ecum, goal)) + 1]
        parts.append(extra)
        total_f += float(req[extra].sum())
    return np.concatenate(parts)


class _State:
    """Mutable replay state (private to one replay call)."""

    def __init__(self, cluster: Cluster, types: _Types, model_names: Sequence[str]) -> None:
        n = len(cluster.names)
        g = int(cluster.gpus.max()) if n else 0
        self.gpu_free = np.where(np.arange(g)[None, :] < cluster.gpus[:, None], FULL, -1).astype(np.int64)
        self.cpu_free = cluster.cpu_milli.astype(np.int64).copy()
        self.mem_free = cluster.memory_mib.astype(np.int64).copy()
        self.model = np.array([model_names.index(m) for m in cluster.models], dtype=np.int64)
        self.types = types
        # state interning for FGD
        self.key_id: dict[tuple[int, int, tuple[int, ...]], int] = {}
        self.keys: list[tuple[int, int, tuple[int, ...]]] = []
        self.f_of: list[float] = []
        self.sid = np.array([self._intern(self._key(i)) for i in range(n)], dtype=np.int64)
        self._flush()
        self.best: dict[int, tuple[FloatArr, IntArr]] = {}

    def reweight(self, weight: FloatArr) -> None:
        """New type popularity (the learned target workload): the cached F values and moves are dropped."""
        self.types = replace(self.types, weight=weight)
        self.key_id, self.keys, self.f_of, self.best = {}, [], [], {}
        self.sid = np.array([self._intern(self._key(i)) for i in range(len(self.cpu_free))], dtype=np.int64)
        self._flush()

    def _key(self, i: int) -> tuple[int, int, tuple[int, ...]]:
        return (int(self.model[i]), int(self.cpu_free[i]), tuple(sorted(int(x) for x in self.gpu_free[i])))

    def _intern(self, key: tuple[int, int, tuple[int, ...]]) -> int:
        sid = self.key_id.get(key)
        if sid is None:
            sid = len(self.keys)
            self.key_id[key] = sid
            self.keys.append(key)
        return sid

    def _flush(self) -> None:
        """Compute F for interned states that do not have it yet."""
        start = len(self.f_of)
        if start == len(self.keys):
            return
        new = self.keys[start:]
        model = np.array([k[0] for k in new], dtype=np.int64)
        cpu = np.array([k[1] for k in new], dtype=np.int64)
        gpu = np.array([k[2] for k in new], dtype=np.int64).reshape(len(new), -1)
        self.f_of.extend(_frag(self.types, cpu, gpu, model).tolist())

    def feasible(self, cpu: int, mem: int, num: int, milli: int, allowed: npt.NDArray[np.bool_]) -> IntArr:
        ok = (self.cpu_free >= cpu) & (self.mem_free >= mem) & allowed[self.model]
        if num > 0:
            ok &= (self.gpu_free >= milli).sum(axis=1) >= num
        return np.flatnonzero(ok)

    def fgd_moves(self, ptype: int, nodes: IntArr) -> tuple[FloatArr, IntArr]:
        """Best F change and the GPU free value to take from, for each node, by state (cached)."""
        t = self.types
        cap = len(self.keys)
        if ptype not in self.best:
            self.best[ptype] = (np.full(cap, np.nan), np.zeros(cap, dtype=np.int64))
        delta, value = self.best[ptype]
        sids = self.sid[nodes]
        if len(delta) <= int(sids.max()):
            grow = max(len(self.keys), 2 * len(delta))
            delta = np.concatenate([delta, np.full(grow - len(delta), np.nan)])
            value = np.concatenate([value, np.zeros(grow - len(value), dtype=np.int64)])
        missing = np.unique(sids[np.isnan(delta[sids])])
        if len(missing):
            cpu, num, req = int(t.cpu[ptype]), int(t.num[ptype]), int(t.req[ptype])
            cands: list[tuple[int, int, int]] = []  # (state, after state, value taken from)
            for s in missing.tolist():
                model, cfree, gfree = self.keys[s]
                if num == 0:
                    cands.append((s, self._intern((model, cfree - cpu, gfree)), 0))
                elif req >= FULL or num > 1:
                    lst = list(gfree)
                    taken = 0
                    for j in range(len(lst) - 1, -1, -1):  # sorted ascending: take from the freest
                        if taken < num and lst[j] >= req:
                            lst[j] -= req
                            taken += 1
                    cands.append((s, self._intern((model, cfree - cpu, tuple(sorted(lst)))), FULL))
                else:
                    for v in sorted({x for x in gfree if x >= req}):
                        lst = list(gfree)
                        lst[lst.index(v)] = v - req
                        cands.append((s, self._intern((model, cfree - cpu, tuple(sorted(lst)))), v))
            self._flush()
            f = self.f_of
            for s, after, v in cands:
                d = f[after] - f[s]
                if np.isnan(delta[s]) or d < delta[s] - 1e-9 or (abs(d - delta[s]) <= 1e-9 and v < value[s]):
                    delta[s] = d
                    value[s] = v
        self.best[ptype] = (delta, value)
        return delta[sids], value[sids]

    def place(self, node: int, gpu_idx: Sequence[int], milli: int, cpu: int, mem: int) -> None:
        for gi in gpu_idx:
            self.gpu_free[node, gi] -= milli
        self.cpu_free[node] -= cpu
        self.mem_free[node] -= mem
        self.sid[node] = self._intern(self._key(node))


RELEARN_FROM = 64
"""The kubeinfer policy re-learns the type popularity at 64, 128, 256, ... arrivals (before: uniform)."""
STRAND_WEIGHT = 2.0
"""Weight of the change in stranded GPU milli (GPUs left without the CPU that future pods need) beside FGD's
change in fragmented milli, for pods asking for at most one GPU."""
STRAND_PINNED_MAX = 0.1
STRAND_WEIGHT_PINNED = 0.25
"""The stranded-GPU term's weight once this share of the arrived GPU request or more is pinned to models."""
STRAND_WEIGHT_OWN_PIN = 4.0
"""The stranded-GPU term's weight for a pod that is itself pinned to a set of GPU models (any share pinned)."""
CPU_TIGHT = 0.95
"""CPU-tight mix: the arrived pods ask for at least this share of the cluster's CPU per GPU."""
CPU_TIGHT_BLEND = 0.05
"""In a CPU-tight mix, GPU pods weigh FGD's change plus this times the node's GPU left free (best-fit), and pods
asking for no GPU go best-fit first: stranded CPU, not fragmented GPU, is then what leaves GPUs unallocated."""
LEARN_BY_REQUEST = True
"""Weight each arrived pod type by its GPU request (count x GPUs x milli), not by its count alone."""
PRESSURE_STEP = 0.2
"""Pressures within one step of each other count as equal (FGD then decides)."""
PRESSURE_SLACK = 0.3
"""A model whose free GPUs are expected to be needed by pods pinned to it beyond this share is kept for them."""
KEEP_WHOLE = True
"""Keep the nodes that can still host a multi-GPU pod type for pods as large, while that type is expected to need
more than ``KEEP_SLACK`` of them (:meth:`_Learner.kept`)."""
KEEP_SLACK = 0.3
"""The share of a multi-GPU type's possible hosts its expected future pods may ask for before they are kept (the
value of ``PRESSURE_SLACK``, not tuned)."""
KEEP_EVERY = 32
"""Arrivals between two refreshes of the kept nodes."""
PLAN_GUIDED = True
"""Shares follow the fill patterns of the configuration LP of the share sizes arrived so far
(:class:`~kubeinfer.placement.shareplan.SharePlan`)."""


class _Learner:
    """What the kubeinfer policy learns from the arrivals so far (private to one replay call).

    - The popularity of each pod type (FGD's target workload), re-learned on a doubling schedule so that the cached
      moves stay valid in between.
    - Per set of allowed GPU models, the GPU and CPU the arrived pods pinned to it asked for, per milli-GPU of all
      arrived requests; a set's expected future demand is that times the free GPU capacity (the cluster is expected
      to fill), spread over the set's models by their free GPUs. A model's pressure is that expected demand over its
      free GPUs (and over its free CPU, whichever is higher): above ``PRESSURE_SLACK`` the model is kept for the
      pods pinned there, and other pods go to models with slack first.
    """

    def __init__(self, types: _Types, st: _State, workload: Workload) -> None:
        self.types, self.st = types, st
        n_models = int(types.allowed.shape[1])
        sets: dict[tuple[bool, ...], int] = {}
        self.set_of = np.array([sets.setdefault(tuple(row.tolist()), len(sets)) for row in types.allowed])
        self.set_models = np.array(list(sets), dtype=bool).reshape(len(sets), n_models)
        self.pinned: npt.NDArray[np.bool_] = np.asarray(~self.set_models.all(axis=1), dtype=bool)
        self.count = np.zeros(len(types.weight))
        self.set_gpu = np.zeros(len(sets))
        self.set_cpu = np.zeros(len(sets))
        self.total_gpu = 0.0
        self.total_cpu = 0.0
        self.cpu_per_gpu = float(st.cpu_free.sum()) / max(float(np.maximum(st.gpu_free, 0).sum()), 1.0)
        self.n = 0
        self.next_learn = RELEARN_FROM
        free = np.maximum(st.gpu_free, 0).sum(axis=1)
        self.free_gpu = np.bincount(st.model, weights=free, minlength=n_models).astype(np.float64)
        self.free_cpu = np.bincount(st.model, weights=st.cpu_free, minlength=n_models).astype(np.float64)
        st.reweight(np.full(len(types.weight), 1.0 / max(len(types.weight), 1)))
        self._key: tuple[FloatArr, FloatArr] | None = None
        self.multi_req = np.zeros(len(types.weight))
        self.keep_for = np.zeros(len(st.cpu_free), dtype=np.int64)
        """Per node: the fewest GPUs of the multi-GPU types it is kept for; 0 where it is not kept."""
        self.keep_at = -KEEP_EVERY

    def arrive(self, ptype: int, req: int, cpu: int) -> None:
        self.count[ptype] += max(req, 1) if LEARN_BY_REQUEST else 1
        if self.types.num[ptype] > 1:
            self.multi_req[ptype] += req
        k = self.set_of[ptype]
        self.set_gpu[k] += req
        self.set_cpu[k] += cpu if req else 0
        self.total_gpu += req
        self.total_cpu += cpu
        self.n += 1
        if self.n >= self.next_learn:
            self.next_learn *= 2
            self.st.reweight(self.count / self.count.sum())

    def strand_change(self, gpu: FloatArr | IntArr, cpu_free: IntArr, req: int, cpu: int) -> FloatArr:
        """Change of the GPU milli a node cannot sell for lack of CPU, if the pod goes there: future pods are
        expected to ask for CPU and GPU in the ratio of the arrivals so far."""
        if self.total_gpu <= 0 or self.total_cpu <= 0:
            return np.zeros(len(cpu_free))
        ratio = self.total_cpu / self.total_gpu  # CPU milli per GPU milli
        g = np.asarray(gpu, dtype=np.float64)
        before = np.maximum(g - cpu_free / ratio, 0.0)
        after = np.maximum(g - req - (cpu_free - cpu) / ratio, 0.0)
        return np.asarray(after - before, dtype=np.float64)

    def strand_weight(self, ptype: int) -> float:
        """For a pod of type ``ptype``: ``STRAND_WEIGHT`` while few arrivals are pinned; with many, the per-model
        reservation decides where capacity goes and a cluster-wide CPU:GPU ratio misjudges the models kept for
        pinned pods, so the term is weighed less (``STRAND_WEIGHT_PINNED``) -- except for a pod pinned itself
        (``STRAND_WEIGHT_OWN_PIN``): the reservation is for pods like it, and its CPU decides whether the GPUs of
        its few nodes stay usable."""
        if self.total_gpu <= 0:
            return 0.0
        if bool(self.pinned[int(self.set_of[ptype])]):
            return STRAND_WEIGHT_OWN_PIN
        return STRAND_WEIGHT_PINNED if self.pinned_mix() else STRAND_WEIGHT

    def kept(self, nodes: IntArr, num: int) -> IntArr:
        """1 where a node is kept for multi-GPU pods of more than ``num`` GPUs, else 0.

        Per multi-GPU pod type arrived so far, its expected future pods (its share of the arrived GPU request times
        the free GPU capacity: the cluster is expected to fill, as for the model pressure) against the nodes that
        can host one now (enough free GPUs, CPU and an allowed model). Beyond ``KEEP_SLACK`` of them, those nodes
        are kept: smaller pods use them after every other node. FGD's ``F`` counts a node's free GPUs as
        fragmented for an 8-GPU type of 120 cores everywhere but on the few nodes of 128 cores, so it barely tells
        those apart; on the mixes with a tenth of shares or a quarter of multi-GPU pods such pods then found no
        node while a hundred GPUs stood free, scattered. Refreshed every ``KEEP_EVERY`` arrivals; not where the
        pinned pods' model pressure leads (``STRAND_PINNED_MAX``)."""
        if not KEEP_WHOLE or self.pinned_mix():
            return np.zeros(len(nodes), dtype=np.int64)
        if self.n - self.keep_at >= KEEP_EVERY:
            self.keep_at = self.n
            self.keep_for[:] = 0
            st, t = self.st, self.types
            future = float(np.maximum(st.gpu_free, 0).sum()) / max(self.total_gpu, 1.0)
            # largest types first, so that a node several types could take is kept for the smallest of them
            for k in sorted(np.flatnonzero(self.multi_req > 0).tolist(), key=lambda k: -int(t.num[k])):
                n_gpu, milli = int(t.num[k]), int(t.req[k])
                hosts = (
                    ((st.gpu_free >= milli).sum(axis=1) >= n_gpu) & (st.cpu_free >= t.cpu[k]) & t.allowed[k][st.model]
                )
                pods = self.multi_req[k] * future / (n_gpu * milli)
                if pods > KEEP_SLACK * int(hosts.sum()):
                    self.keep_for[hosts] = n_gpu
        return np.asarray(self.keep_for[nodes] > num, dtype=np.int64)

    def pinned_mix(self) -> bool:
        """Is ``STRAND_PINNED_MAX`` or more of the arrived GPU request pinned to sets of GPU models? The model
        pressure then leads, and the rules that know no models (the stranded-GPU weight, the kept nodes, the share
        plan) stand back."""
        return self.total_gpu > 0 and float(self.set_gpu[self.pinned].sum()) >= STRAND_PINNED_MAX * self.total_gpu

    def cpu_tight(self) -> bool:
        """Do the arrivals so far ask for more CPU per GPU than ``CPU_TIGHT`` times what the cluster has?"""
        return self.total_gpu > 0 and self.total_cpu / self.total_gpu >= CPU_TIGHT * self.cpu_per_gpu

    def placed(self, node: int, req: int, cpu: int) -> None:
        m = self.st.model[node]
        self.free_gpu[m] -= req
        self.free_cpu[m] -= cpu
        self._key = None

    def pressure(self) -> tuple[FloatArr, FloatArr]:
        """Per model: the expected demand of the pods pinned to it over its free GPUs, and over its free CPU."""
        n_models = self.set_models.shape[1]
        if self.total_gpu <= 0 or not self.pinned.any():
            return np.zeros(n_models), np.zeros(n_models)
        future = float(self.free_gpu.sum()) / self.total_gpu
        sm = self.set_models.astype(np.float64)
        set_free = np.maximum(sm @ self.free_gpu, 1.0)
        share = sm * self.free_gpu[None, :] / set_free[:, None]  # (sets, models): a set's demand spread
        pin = self.pinned.astype(np.float64)
        gpu_need = (pin * self.set_gpu * future) @ share
        cpu_need = (pin * self.set_cpu * future) @ share
        return gpu_need / np.maximum(self.free_gpu, 1.0), cpu_need / np.maximum(self.free_cpu, 1.0)

    def pressure_key(self, models: IntArr, gpu: bool) -> FloatArr:
        """Per node model: 0 where the model has slack, else its pressure (smaller is better). A pod asking for no
        GPU only weighs the CPU pressure."""
        if self._key is None:
            pg, pc = self.pressure()
            both = np.maximum(pg, pc)
            self._key = (
                np.floor(np.where(both > PRESSURE_SLACK, both, 0.0) / PRESSURE_STEP),
                np.floor(np.where(pc > PRESSURE_SLACK, pc, 0.0) / PRESSURE_STEP),
            )
        return self._key[0 if gpu else 1][models]


def _pick_gpus(
    free_row: IntArr, num: int, milli: int, rule: str, value: int = -1, rng: np.random.Generator | None = None
) -> list[int]:
    if num == 0:
        return []
    if milli >= FULL or num > 1:
        return [int(i) for i in np.flatnonzero(free_row >= milli)[:num]]
    if rule == "value":
        return [int(np.flatnonzero(free_row == value)[0])]
    fit = np.flatnonzero(free_row >= milli)
    if rule == "first":
        return [int(fit[0])]
    if rule == "random" and rng is not None:
        return [int(fit[rng.integers(len(fit))])]
    return [int(fit[np.argmin(free_row[fit])])]  # best: the fullest GPU that fits (first among equals)


def _order_by(nodes: IntArr, *keys: npt.NDArray[Any]) -> int:
    """The node with the smallest keys (first key most significant), then the lowest index."""
    return int(nodes[np.lexsort((nodes, *reversed(keys)))[0]])


def replay(
    cluster: Cluster,
    workload: Workload,
    policy: str,
    *,
    seed: int = 42,
    target: float = 1.0,
    checkpoints: int | None = None,
    order: str = "trace",
    record: bool = False,
    arrivals: Sequence[int] | None = None,
) -> ReplayResult:
    """Replay ``workload`` onto an empty ``cluster`` with ``policy``; see the module docstring for the method.

    ``checkpoints`` (default: one per 1% of capacity up to the target) are the arrival levels recorded; ``record``
    keeps every placement (``ReplayResult.placements``); ``arrivals`` replaces the arrival order (pod indices, each
    arriving once: :func:`place_pods`)."""
    if policy not in POLICIES:
        raise ValueError(f"policy {policy!r} is not one of {', '.join(POLICIES)}")
    if not 0 < target <= 10:
        raise ValueError(f"target is {target}; must be in (0, 10] (1.0 = 100% of GPU capacity)")
    if checkpoints is None:
        checkpoints = max(1, round(target * 100))
    model_names = sorted(set(cluster.models))
    types = _types(workload, model_names, "count")
    st = _State(cluster, types, model_names)
    cap = cluster.gpu_capacity_milli
    order_idx = (
        arrival_order(workload, cap, seed, target, order) if arrivals is None else np.asarray(arrivals, dtype=np.int64)
    )
    req_all = workload.gpu_request_milli
    levels = np.linspace(target / checkpoints, target, checkpoints)
    rng = np.random.default_rng(seed + 7919)
    cpu_cap = np.maximum(cluster.cpu_milli, 1).astype(np.float64)
    gpu_cap = np.maximum(cluster.gpus * FULL, 1).astype(np.float64)
    # per node: GPU request sizes placed on it (gpu-clustering)
    learn = _Learner(types, st, workload) if policy == "kubeinfer" else None
    share = (workload.num_gpu == 1) & (workload.gpu_milli < FULL) & (workload.gpu_milli > 0)
    plan = (
        SharePlan(st.gpu_free.shape, workload.gpu_milli[share].tolist(), FULL)
        if policy == "kubeinfer" and PLAN_GUIDED and share.any()
        else None
    )
    sizes = {int(v): i for i, v in enumerate(sorted(set(workload.gpu_milli.tolist())))}
    hosted = np.zeros((len(cluster.names), len(sizes)), dtype=bool)
    arrived = failed = allocated = 0
    n_failed = 0
    out_a: list[float] = []
    out_u: list[float] = []
    out_f: list[float] = []
    out_g: list[float] = []
    lvl = 0
    placed: list[tuple[int, int, tuple[int, ...]]] = []

    def checkpoint() -> None:
        capd = max(cap, 1)  # a cluster without GPUs (CPU-only node groups) reports zeros
        out_a.append(arrived / capd)
        out_u.append(1 - allocated / capd if cap else 0.0)
        out_f.append(failed / arrived if arrived else 0.0)
        st._flush()
        out_g.append(float(np.asarray(st.f_of)[st.sid].sum() / capd))

    for p in order_idx.tolist():
        cpu, mem = int(workload.cpu_milli[p]), int(workload.memory_mib[p])
        num, milli = int(workload.num_gpu[p]), int(workload.gpu_milli[p])
        pt = int(types.of_pod[p])
        nodes = st.feasible(cpu, mem, num, milli, types.allowed[pt])
        req = int(req_all[p])
        arrived += req
        if learn is not None:
            learn.arrive(pt, req, cpu)
        is_share = bool(share[p])
        if plan is not None and is_share:
            plan.arrive(milli)
        if len(nodes) == 0:
            failed += req
            n_failed += 1
        else:
            free_gpu = np.maximum(st.gpu_free[nodes], 0)
            left_gpu = free_gpu.sum(axis=1) - req
            rule = "best"
            value = -1
            forced: int | None = None
            if policy == "first-fit":
                node, rule = int(nodes[0]), "first"
            elif policy == "random":
                node, rule = int(nodes[rng.integers(len(nodes))]), "random"
            elif policy == "best-fit":
                node = _order_by(nodes, left_gpu, st.cpu_free[nodes] - cpu)
            elif policy == "dot-product":
                # Tetris-style alignment of the node's free (CPU, GPU) with the pod's request, both normalized by
                # the node's capacity; the largest product wins
                dot = (st.cpu_free[nodes] / cpu_cap[nodes]) * (cpu / cpu_cap[nodes]) + (
                    free_gpu.sum(axis=1) / gpu_cap[nodes]
                ) * (req / gpu_cap[nodes])
                node = _order_by(nodes, -dot)
            elif policy == "gpu-packing":
                # occupied GPUs first (for a share), then idle GPUs of nodes already in use, then idle nodes
                rows = st.gpu_free[nodes]
                partial_fit = ((rows >= milli) & (rows < FULL)).any(axis=1) if 0 < milli < FULL else False
                used_node = (rows >= 0).sum(axis=1) * FULL > free_gpu.sum(axis=1)
                tier = np.where(partial_fit, 0, np.where(used_node, 1, 2))
                node = _order_by(nodes, tier, left_gpu)
            elif policy == "gpu-clustering":
                # pods with the same per-GPU request together: nodes already hosting that size, then empty nodes
                same = hosted[nodes, sizes[milli]]
                empty = ~hosted[nodes].any(axis=1)
                tier = np.where(same, 0, np.where(empty, 1, 2))
                node = _order_by(nodes, tier, left_gpu)
            else:
                delta, values = st.fgd_moves(pt, nodes)
                if learn is not None and num <= 1:
                    delta = delta + learn.strand_weight(pt) * learn.strand_change(
                        free_gpu.sum(axis=1), st.cpu_free[nodes], req, cpu
                    )
                d = np.round(delta, 6)
                if policy == "fgd":
                    i = int(np.lexsort((nodes, d))[0])
                else:  # kubeinfer: keep scarce models for the pods that need them, then FGD, then best-fit
                    assert learn is not None
                    # model pressure first, then the nodes kept for larger multi-GPU pods (press, kept) in one key
                    press = 2 * learn.pressure_key(st.model[nodes], num > 0) + learn.kept(nodes, num)
                    tight = learn.cpu_tight()
                    if num == 0 and tight:
                        i = int(np.lexsort((nodes, st.cpu_free[nodes] - cpu, d, left_gpu, press))[0])
                    elif tight:
                        score = delta / FULL + CPU_TIGHT_BLEND * left_gpu / FULL
                        i = int(np.lexsort((nodes, st.cpu_free[nodes] - cpu, np.round(score, 6), press))[0])
                    elif plan is not None and is_share and not learn.pinned_mix():
                        # a share goes where its GPU stays on the plan (see SharePlan), then as below
                        ranks = plan.ranks(nodes, milli, st.gpu_free[nodes] >= milli)
                        rank = ranks.min(axis=1)
                        i = int(np.lexsort((nodes, st.cpu_free[nodes] - cpu, left_gpu, d, rank, press))[0])
                        forced = plan.pick(st.gpu_free[nodes[i]], ranks[i], int(values[i]))
                    else:
                        i = int(np.lexsort((nodes, st.cpu_free[nodes] - cpu, left_gpu, d, press))[0])
                node, rule, value = int(nodes[i]), "value", int(values[i])
            gpus = [forced] if forced is not None else _pick_gpus(st.gpu_free[node], num, milli, rule, value, rng)
            if plan is not None and is_share:
                plan.place(node, gpus[0], milli)
            st.place(node, gpus, milli, cpu, mem)
            if learn is not None:
                learn.placed(node, req, cpu)
            if record:
                placed.append((p, node, tuple(gpus)))
            if num:
                hosted[node, sizes[milli]] = True
            allocated += req
        while lvl < checkpoints and arrived >= levels[lvl] * cap - 1e-6:
            checkpoint()
            lvl += 1
    if not out_a or out_a[-1] != arrived / max(cap, 1):
        checkpoint()  # the trace ran out below the target: the final state is the last point
    return ReplayResult(
        policy=policy,
        seed=seed,
        pods_arrived=len(order_idx),
        pods_failed=n_failed,
        capacity_gpus=cap // FULL,
        arrived_share=tuple(out_a),
        unallocated_share=tuple(out_u),
        failed_share=tuple(out_f),
        fragmented_share=tuple(out_g),
        placements=tuple(placed),
    )


def assign(
    cluster: Cluster, pods: Workload, policy: str = "kubeinfer", seed: int = 0
) -> list[tuple[int, tuple[int, ...]] | None]:
    """Place ``pods`` (in list order, each once) onto an empty ``cluster`` with ``policy``: per pod its node index
    and the GPU indices on that node, or None where it fits nowhere.

    This is the replay itself (:func:`replay` with the pods as the arrival order), so that every pod-to-node
    decision of the project -- ``kubeinfer plan replay``, the packing of ``kubeinfer plan solve``
    (:mod:`kubeinfer.placement.planner`) and the cluster autoscaler model -- is made by the same code."""
    if policy not in POLICIES:
        raise ValueError(f"policy {policy!r} is not one of {', '.join(POLICIES)}")
    out: list[tuple[int, tuple[int, ...]] | None] = [None] * len(pods)
    if len(pods) == 0 or len(cluster.names) == 0:
        return out
    r = replay(cluster, pods, policy, seed=seed, checkpoints=1, record=True, arrivals=range(len(pods)))
    for p, node, gpus in r.placements:
        out[p] = (node, gpus)
    return out


def place_pods(cluster: Cluster, pods: Workload, policy: str = "kubeinfer", seed: int = 0) -> list[int | None]:
    """:func:`assign` without the GPU indices: the node index of each pod, or None where it fits nowhere. A cluster
    model that tracks whole GPUs (the cluster autoscaler's) passes each node's *free* CPU, memory and GPUs as its
    capacity."""
    return [None if a is None else a[0] for a in assign(cluster, pods, policy, seed)]


def _at(values: Sequence[float], arrived: Sequence[float], level: float) -> float:
    """The value at the first checkpoint whose arrival reached ``level`` (the last one if none did)."""
    for a, v in zip(arrived, values, strict=True):
        if a >= level - 1e-9:
            return v
    return values[-1]


def replay_many(
    cluster: Cluster,
    workload: Workload,
    policies: Sequence[str],
    *,
    seeds: Sequence[int] = (42,),
    target: float = 1.3,
    order: str = "shuffle",
    progress: Callable[[str, int], None] | None = None,
    clock: Callable[[], float] | None = None,
    workload_for_seed: Callable[[int], Workload] | None = None,
    lower_bound: Callable[[Workload, IntArr], float] | None = None,
) -> dict[str, Any]:
    """Each policy under each seed; curves and shares are the median over seeds at 1% arrival steps (the
    paper's Fig. 9 reports the median of 10 seeds). JSON-able; what ``kubeinfer plan replay -o json`` prints.

    ``seconds`` is each policy's time per seed on ``clock`` (the shell passes a monotonic counter:
    :func:`kubeinfer.sim.openb.replay_many_timed`); without a clock it is 0. ``workload_for_seed`` draws the pod
    list of each seed (a variant, :mod:`kubeinfer.placement.variants`) instead of ``workload``; ``lower_bound``
    (pods, arrived pod indices) gives the least unallocated share any placement reaches once the arrived GPU request
    reaches 100% of capacity (or the target, if lower): reported per seed and as each policy's distance to it."""
    now = clock if clock is not None else (lambda: 0.0)
    steps = np.round(np.arange(1, round(target * 100) + 1) / 100, 2)
    loads = {sd: workload_for_seed(sd) if workload_for_seed else workload for sd in seeds}
    bounds: dict[int, float] = {}
    if lower_bound is not None:
        for sd in seeds:
            w_sd = loads[sd]
            arr = arrival_order(w_sd, cluster.gpu_capacity_milli, sd, target, order)
            cum = np.cumsum(w_sd.gpu_request_milli[arr])
            upto = int(np.searchsorted(cum, min(target, 1.0) * cluster.gpu_capacity_milli - 1e-6)) + 1
            bounds[sd] = lower_bound(w_sd, arr[:upto])
    results: list[dict[str, Any]] = []
    for pol in policies:
        runs = []
        t0 = now()
        for sd in seeds:
            runs.append(replay(cluster, loads[sd], pol, seed=sd, target=target, order=order))
            if progress:
                progress(pol, sd)
        secs = (now() - t0) / len(seeds)
        un = np.array([[_at(r.unallocated_share, r.arrived_share, lv) for lv in steps] for r in runs])
        fa = np.array([[_at(r.failed_share, r.arrived_share, lv) for lv in steps] for r in runs])
        fr = np.array([[_at(r.fragmented_share, r.arrived_share, lv) for lv in steps] for r in runs])
        med_u, med_f, med_g = np.median(un, axis=0), np.median(fa, axis=0), np.median(fr, axis=0)
        results.append(
            {
                "policy": pol,
                "seconds": round(secs, 3),
                "podsArrived": int(np.median([r.pods_arrived for r in runs])),
                "podsFailed": int(np.median([r.pods_failed for r in runs])),
                "unallocatedAt": {f"{lv:.2f}": round(float(u), 6) for lv, u in zip(steps, med_u, strict=True)},
                "failedAt": {f"{lv:.2f}": round(float(f), 6) for lv, f in zip(steps, med_f, strict=True)},
                "fragmentedAt": {f"{lv:.2f}": round(float(g), 6) for lv, g in zip(steps, med_g, strict=True)},
                "perSeedUnallocatedAt100": [
                    round(float(_at(r.unallocated_share, r.arrived_share, 1.0)), 6) for r in runs
                ],
                "curve": {
                    "arrived": [float(x) for x in steps],
                    "unallocated": [round(float(u), 6) for u in med_u],
                    "failed": [round(float(f), 6) for f in med_f],
                    "fragmented": [round(float(g), 6) for g in med_g],
                },
            }
        )
    at100 = {str(r["policy"]): float(r["unallocatedAt"].get("1.00", 0.0)) for r in results}
    base = at100.get("best-fit", 0.0)
    for r in results:
        r["vsBestFit"] = round(at100[str(r["policy"])] / base - 1, 6) if base > 0 else None
        if bounds:
            per_seed = r["perSeedUnallocatedAt100"]
            r["gapToBoundAt100"] = round(
                float(np.median([u - bounds[sd] for u, sd in zip(per_seed, seeds, strict=True)])), 6
            )
    doc: dict[str, Any] = {
        "nodes": len(cluster.names),
        "gpus": cluster.gpu_capacity_milli // FULL,
        "pods": len(workload),
        "seeds": list(seeds),
        "target": target,
        "order": order,
        "results": results,
    }
    if bounds:
        doc["lowerBoundAt100"] = round(float(np.median(list(bounds.values()))), 6)
        doc["perSeedLowerBoundAt100"] = [round(bounds[sd], 6) for sd in seeds]
    return doc
