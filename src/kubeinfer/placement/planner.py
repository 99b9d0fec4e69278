"""Cost-optimal placement: which slice, how many replicas and which nodes, at the lowest price per hour.

Model (the same one is solved exactly and approximately, so the two can be compared):

- A *node group* has identical nodes (instance type, ``gpus`` devices of one catalogue accelerator or none, CPU,
  memory, price per hour, ``min_nodes``..``max_nodes``).
- Each GPU of a group is given one *configuration*: whole (MIG off, no sharing), ``share-k`` (time-slicing or MPS
  with k replicas) or one maximal valid MIG layout (``mig.maximal_layouts``; a non-maximal layout is never
  cheaper). A configuration offers *slots*: 1 whole, k shares, or the layout's MIG instances.
- A *service* has, per slice, the throughput one replica sustains within its latency SLO and the accelerator
  memory it needs (from a ``Profile``). A replica may use a slot when its memory fits the slot's memory (the
  whole device, device/k for shares, the MIG instance's memory) and it has a non-zero rate there. Every group
  also offers ``cpu`` slots, limited only by node CPU and memory.
- Constraints: replicas of each slot type <= the slots configured; GPUs configured <= gpus x nodes; replicas'
  CPU and memory requests <= the nodes' (summed per group); per service, sum of replica throughput >= peak rate
  and replicas >= min_replicas. Objective: sum of node prices.

``solve_exact`` states this as a MILP and solves it with HiGHS (``scipy.optimize.milp``). ``solve_heuristic``
picks for each service its cheapest option by marginal cost per replica (a GPU share, or the node's CPU/memory,
whichever binds), sizes the replicas for the peak, packs MIG instances into layouts greedily and returns the
packing with the LP-relaxation lower bound so the gap is known. ``plan`` chooses: exact when the model is small
(``PlannerOptions.exact_max_columns``), else the heuristic.

Per-group CPU/memory constraints are aggregated; the packing then places every replica on a concrete node and GPU
with a placement policy of :mod:`kubeinfer.placement.fragmentation` (``PlannerOptions.placement``: the kubeinfer
policy by default; first-fit, best-fit or FGD to compare): the same function ``kubeinfer plan replay`` measures
on the GPU trace and the cluster autoscaler model binds pods with (:func:`assign_replicas`), so that for the same
nodes and pods the plan and the replay agree. The solver decides what to buy (node counts, slice types: HiGHS or
the heuristic); the policy decides where each replica goes, and each GPU is then configured for what it got
(whole, ``time-slicing-k``/``mps-k``, or a MIG layout). A group gets one more node while the policy cannot place
all of its replicas on the solution's nodes (reported as ``extra_nodes``).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from kubeinfer.placement.catalogue import CATALOGUE, GIB, Catalogue
from kubeinfer.placement.fragmentation import FULL, POLICIES, Cluster, Workload, assign
from kubeinfer.placement.mig import (
    MAX_COMPUTE_SLICES,
    MEMORY_SLICES,
    maximal_layouts,
    mig_profiles,
    named_layouts,
    place_layout,
    resource_name,
)
from kubeinfer.placement.profile import CPU_SLICE, Percentile, Profile, SliceRef
from kubeinfer.spec.quantity import format_cpu, format_memory

MIB = 2**20

__all__ = [
    "GpuConfig",
    "InfeasiblePlan",
    "NodeGroup",
    "NodePacking",
    "Plan",
    "PlannerOptions",
    "ServiceDemand",
    "ServicePlacement",
    "assign_replicas",
    "build_model",
    "gpu_milli",
    "naive_plan",
    "plan",
    "policy_inputs",
    "service_costs",
    "solve_exact",
    "solve_heuristic",
]


@dataclass(frozen=True)
class ServiceDemand:
    """What one service needs: its rates and what one replica does on each slice."""

    name: str
    peak_rps: float
    mean_rps: float
    capacity: Mapping[SliceRef, float]
    """Requests/s one replica sustains within the SLO on each slice (missing or 0: not usable)."""
    memory_bytes: Mapping[SliceRef, int] = field(default_factory=dict)
    """Accelerator memory one replica needs on each slice (missing: 0)."""
    cpu: float = 1.0
    host_memory_bytes: int = GIB
    min_replicas: int = 1

    @classmethod
    def from_profile(
        cls,
        name: str,
        profile: Profile,
        *,
        slo_ms: float,
        peak_rps: float,
        mean_rps: float | None = None,
        percentile: Percentile = "p99",
        estimate: bool = True,
        catalogue: Catalogue = CATALOGUE,
        min_replicas: int = 1,
    ) -> ServiceDemand:
        """Capacities at the SLO from a profile; with ``estimate`` unmeasured MIG/share slices of a measured
        whole device are derived from it (``compute_slices/7`` and ``1/k`` of its throughput, same memory)."""
        cap: dict[SliceRef, float] = {}
        mem: dict[SliceRef, int] = {}
        for sl in profile.slices():
            cap[sl] = profile.throughput_at_slo(sl, slo_ms, percentile)
            mem[sl] = profile.peak_memory(sl) if sl.kind != "cpu" else 0
        if estimate:
            for sl in list(cap):
                if sl.kind != "whole" or sl.accelerator not in catalogue:
                    continue
                acc = catalogue[sl.accelerator]
                for p in mig_profiles(acc):
                    ref = SliceRef(acc.name, "mig", mig_profile=p.name)
                    if ref not in cap and not p.media_extensions:
                        cap[ref] = cap[sl] * p.compute_slices / 7
                        mem[ref] = mem[sl]
                if acc.time_slicing:
                    for k in (2, 3, 4, 5, 6, 7, 8):
                        ref = SliceRef(acc.name, "share", share=k)
                        if ref not in cap:
                            cap[ref] = cap[sl] / k
                            mem[ref] = mem[sl]
        return cls(
            name=name,
            peak_rps=peak_rps,
            mean_rps=peak_rps if mean_rps is None else mean_rps,
            capacity=cap,
            memory_bytes=mem,
            cpu=profile.host_cpu,
            host_memory_bytes=profile.host_memory_bytes,
            min_replicas=min_replicas,
        )


@dataclass(frozen=True)
class NodeGroup:
    name: str
    instance_type: str
    accelerator: str | None
    """Catalogue name of the node's devices; ``None`` for CPU-only nodes."""
    gpus: int
    cpu: float
    memory_bytes: int
    price_per_hour: float
    min_nodes: int = 0
    max_nodes: int = 10


@dataclass(frozen=True)
class PlannerOptions:
    allow_mig: bool = True
    share_counts: tuple[int, ...] = (2, 4)
    """Time-slicing/MPS replica counts the planner may configure on a GPU."""
    share_mode: Literal["time-slicing", "mps"] = "time-slicing"
    mig_strategy: Literal["single", "mixed"] = "mixed"
    allow_cpu: bool = True
    exact_max_columns: int = 5000
    """``plan`` solves exactly when the model has at most this many integer columns."""
    time_limit_s: float | None = None
    """HiGHS time limit for the exact solver (None: solve to optimality; deterministic)."""
    improve_moves: int = 500
    """Heuristic: most single-service moves the local-search pass evaluates (0: greedy only). A move count, not
    a time limit, so that the result does not depend on the machine's speed."""
    improve_candidates: int = 12
    """Heuristic: options per service the local search tries (the cheapest by proportional cost)."""
    placement: str = "kubeinfer"
    """The policy that puts replicas on nodes and GPUs once the node counts are chosen: one of
    :data:`kubeinfer.placement.fragmentation.POLICIES`, the same code ``kubeinfer plan replay`` measures."""

    def __post_init__(self) -> None:
        if self.placement not in POLICIES:
            raise ValueError(f"placement {self.placement!r} is not one of {', '.join(POLICIES)}")


@dataclass(frozen=True)
class GpuConfig:
    """One way to configure a GPU: a name (mig-parted style) and the slots it offers."""

    name: str
    slots: tuple[tuple[SliceRef, int], ...]


def _configs(acc_name: str, opts: PlannerOptions, catalogue: Catalogue) -> list[GpuConfig]:
    acc = catalogue[acc_name]
    out = [GpuConfig("all-disabled", ((SliceRef(acc.name, "whole"), 1),))]
    if acc.time_slicing or acc.mps:
        for k in opts.share_counts:
            out.append(GpuConfig(f"{opts.share_mode}-{k}", ((SliceRef(acc.name, "share", share=k), k),)))
    if acc.mig_capable and opts.allow_mig:
        names = {lay: n for n, lay in named_layouts(acc.name).items()}
        for lay in maximal_layouts(acc.name):
            if any(p.endswith("+me") for p, _ in lay):
                continue
            out.append(GpuConfig(names[lay], tuple((SliceRef(acc.name, "mig", mig_profile=p), n) for p, n in lay)))
    return out


def _slot_memory(sl: SliceRef, catalogue: Catalogue) -> int:
    if sl.kind == "cpu":
        return 2**62
    acc = catalogue[sl.accelerator]
    if sl.kind == "whole":
        return acc.memory_bytes
    if sl.kind == "share":
        return acc.memory_bytes // sl.share
    prof = {p.name: p for p in mig_profiles(acc)}[sl.mig_profile]
    return int(prof.memory_gib * GIB)


def _gpu_fraction(sl: SliceRef, catalogue: Catalogue) -> float:
    if sl.kind == "cpu":
        return 0.0
    if sl.kind == "whole":
        return 1.0
    if sl.kind == "share":
        return 1.0 / sl.share
    prof = {p.name: p for p in mig_profiles(sl.accelerator)}[sl.mig_profile]
    return max(prof.compute_slices / 7, prof.memory_slices / 8)


@dataclass(frozen=True)
class _Option:
    service: int
    group: int
    slice: SliceRef
    capacity: float


@dataclass(frozen=True)
class Model:
    services: tuple[ServiceDemand, ...]
    groups: tuple[NodeGroup, ...]
    configs: tuple[tuple[GpuConfig, ...], ...]
    """Per group, the GPU configurations allowed."""
    options: tuple[_Option, ...]
    """Every usable (service, group, slice) with its capacity."""
    options_: PlannerOptions
    catalogue: Catalogue

    @property
    def n_columns(self) -> int:
        return len(self.groups) + sum(len(c) for c in self.configs) + len(self.options)


def build_model(
    services: Sequence[ServiceDemand],
    groups: Sequence[NodeGroup],
    options: PlannerOptions = PlannerOptions(),
    catalogue: Catalogue = CATALOGUE,
) -> Model:
    for g in groups:
        if g.min_nodes < 0 or g.max_nodes < g.min_nodes:
            raise ValueError(f"node group {g.name!r}: need 0 <= min_nodes <= max_nodes, got {g.min_nodes}..")
        if g.accelerator is not None and g.accelerator not in catalogue:
            raise ValueError(f"node group {g.name!r}: unknown accelerator {g.accelerator!r}")
    configs = tuple(
        tuple(_configs(g.accelerator, options, catalogue)) if g.accelerator and g.gpus > 0 else () for g in groups
    )
    opts: list[_Option] = []
    for si, s in enumerate(services):
        if s.peak_rps < 0 or s.min_replicas < 0:
            raise ValueError(f"service {s.name!r}: peak_rps and min_replicas must be >= 0")
        for gi, g in enumerate(groups):
            slots = {sl for c in configs[gi] for sl, _ in c.slots}
            if options.allow_cpu:
                slots.add(CPU_SLICE)
            for sl in sorted(slots):
                cap = s.capacity.get(sl, 0.0)
                if cap <= 0 or s.memory_bytes.get(sl, 0) > _slot_memory(sl, catalogue):
                    continue
                if s.cpu > g.cpu or s.host_memory_bytes > g.memory_bytes:
                    continue
                opts.append(_Option(si, gi, sl, cap))
    return Model(tuple(services), tuple(groups), configs, tuple(opts), options, catalogue)


@dataclass(frozen=True)
class ServicePlacement:
    service: str
    group: str
    slice: SliceRef
    replicas: int
    capacity_rps: float
    """Throughput of these replicas at the SLO."""
    resource_name: str | None
    requests: Mapping[str, str]
    """Kubernetes resource requests of one replica (``cpu``, ``memory``, the device resource)."""
    gpu_spec: Mapping[str, object]
    """The ``spec.resources.gpu`` block to put in the InferenceService."""


@dataclass(frozen=True)
class NodePacking:
    group: str
    index: int
    gpu_configs: tuple[str, ...]
    replicas: tuple[tuple[str, str, int], ...]
    """``(service, slice, gpu index or -1 for cpu)`` per replica on the node."""
    cpu_used: float
    memory_used: int


@dataclass(frozen=True)
class Plan:
    method: Literal["milp", "heuristic", "naive"]
    placements: tuple[ServicePlacement, ...]
    nodes: Mapping[str, int]
    """Nodes per group (after packing)."""
    packing: tuple[NodePacking, ...]
    cost_per_hour: float
    cost_per_million_requests: float
    """At the services' mean rates."""
    lower_bound: float
    """A proven lower bound on the optimal cost (LP relaxation, or the MILP bound)."""
    optimal: bool
    extra_nodes: int = 0
    """Nodes the packer added beyond the aggregate solution (per-node CPU/memory fragmentation)."""
    unplaced: tuple[str, ...] = ()
    naive_cost_per_hour: float | None = None

    @property
    def gap(self) -> float:
        """Relative gap to the lower bound: (cost - bound) / cost."""
        return (
            0.0 if self.cost_per_hour <= 0 else max(0.0, (self.cost_per_hour - self.lower_bound)) / self.cost_per_hour
        )

    @property
    def savings_vs_naive(self) -> float | None:
        if not self.naive_cost_per_hour:
            return None
        return 1.0 - self.cost_per_hour / self.naive_cost_per_hour

    def to_dict(self) -> dict[str, object]:
        return {
            "method": self.method,
            "costPerHour": round(self.cost_per_hour, 4),
            "costPerMillionRequests": round(self.cost_per_million_requests, 4),
            "naiveCostPerHour": None if self.naive_cost_per_hour is None else round(self.naive_cost_per_hour, 4),
            "lowerBound": round(self.lower_bound, 4),
            "gap": round(self.gap, 6),
            "optimal": self.optimal,
            "nodes": dict(self.nodes),
            "extraNodes": self.extra_nodes,
            "unplaced": list(self.unplaced),
            "services": [
                {
                    "service": p.service,
                    "group": p.group,
                    "slice": str(p.slice),
                    "replicas": p.replicas,
                    "capacityRps": round(p.capacity_rps, 3),
                    "resourceName": p.resource_name,
                    "requests": dict(p.requests),
                    "gpu": dict(p.gpu_spec),
                }
                for p in self.placements
            ],
        }


# --------------------------------------------------------------------------------------------- MILP


@dataclass(frozen=True)
class _Solution:
    nodes: tuple[int, ...]
    configs: tuple[tuple[int, ...], ...]
    """Per group, GPUs per configuration."""
    replicas: tuple[int, ...]
    """Per option."""
    bound: float
    optimal: bool


def _matrices(m: Model) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(c, A, lb_row, ub_row, lb_col, ub_col) of the MILP; columns: nodes, configs, options."""
    from scipy import sparse

    ng = len(m.groups)
    cfg_off = [ng]
    for cs in m.configs:
        cfg_off.append(cfg_off[-1] + len(cs))
    opt_off = cfg_off[-1]
    ncol = opt_off + len(m.options)
    c = np.zeros(ncol)
    lb_col = np.zeros(ncol)
    ub_col = np.full(ncol, np.inf)
    for gi, g in enumerate(m.groups):
        c[gi] = g.price_per_hour
        lb_col[gi], ub_col[gi] = g.min_nodes, g.max_nodes
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    lo: list[float] = []
    hi: list[float] = []

    def row(entries: list[tuple[int, float]], low: float, high: float) -> None:
        r = len(lo)
        for col, v in entries:
            rows.append(r)
            cols.append(col)
            vals.append(v)
        lo.append(low)
        hi.append(high)

    by_group_slot: dict[tuple[int, SliceRef], list[int]] = defaultdict(list)
    by_group: dict[int, list[int]] = defaultdict(list)
    by_service: dict[int, list[int]] = defaultdict(list)
    for oi, o in enumerate(m.options):
        by_group_slot[(o.group, o.slice)].append(oi)
        by_group[o.group].append(oi)
        by_service[o.service].append(oi)
    for gi, g in enumerate(m.groups):
        cs = m.configs[gi]
        if cs:
            row([(cfg_off[gi] + k, 1.0) for k in range(len(cs))] + [(gi, -float(g.gpus))], -np.inf, 0.0)
        slots: dict[SliceRef, list[tuple[int, float]]] = defaultdict(list)
        for k, cfg in enumerate(cs):
            for sl, n in cfg.slots:
                slots[sl].append((cfg_off[gi] + k, -float(n)))
        for sl, entries in slots.items():
            users = by_group_slot.get((gi, sl), [])
            if users:
                row([(opt_off + oi, 1.0) for oi in users] + entries, -np.inf, 0.0)
        users = by_group.get(gi, [])
        if users:
            row(
                [(opt_off + oi, m.services[m.options[oi].service].cpu) for oi in users] + [(gi, -g.cpu)],
                -np.inf,
                0.0,
            )
            gib = float(GIB)
            row(
                [(opt_off + oi, m.services[m.options[oi].service].host_memory_bytes / gib) for oi in users]
                + [(gi, -g.memory_bytes / gib)],
                -np.inf,
                0.0,
            )
    for si, s in enumerate(m.services):
        users = by_service.get(si, [])
        row([(opt_off + oi, m.options[oi].capacity) for oi in users], s.peak_rps, np.inf)
        row([(opt_off + oi, 1.0) for oi in users], float(s.min_replicas), np.inf)
    a = sparse.csr_array((vals, (rows, cols)), shape=(len(lo), ncol))
    return c, a, np.asarray(lo), np.asarray(hi), lb_col, ub_col


def _unpack(m: Model, x: np.ndarray, bound: float, optimal: bool) -> _Solution:
    ng = len(m.groups)
    xi = np.rint(x).astype(int)
    off = ng
    configs = []
    for cs in m.configs:
        configs.append(tuple(int(v) for v in xi[off : off + len(cs)]))
        off += len(cs)
    return _Solution(
        nodes=tuple(int(v) for v in xi[:ng]),
        configs=tuple(configs),
        replicas=tuple(int(v) for v in xi[off:]),
        bound=bound,
        optimal=optimal,
    )


def lp_bound(m: Model) -> float:
    """Optimal value of the LP relaxation: a lower bound on every plan's cost."""
    from scipy.optimize import LinearConstraint, milp

    c, a, lo, hi, lbc, ubc = _matrices(m)
    from scipy.optimize import Bounds

    res = milp(c, constraints=[LinearConstraint(a, lo, hi)], bounds=Bounds(lbc, ubc))
    if res.status != 0 or res.x is None:
        raise InfeasiblePlan(f"no plan satisfies the demands within the node groups' limits ({res.message})")
    return float(res.fun)


class InfeasiblePlan(ValueError):
    """No placement meets every service's peak within the node groups' max_nodes."""


def solve_exact(m: Model) -> _Solution:
    from scipy.optimize import Bounds, LinearConstraint, milp

    c, a, lo, hi, lbc, ubc = _matrices(m)
    opts: dict[str, float | bool] = {"mip_rel_gap": 1e-9, "presolve": True}
    if m.options_.time_limit_s is not None:
        opts["time_limit"] = m.options_.time_limit_s
    res = milp(
        c,
        constraints=[LinearConstraint(a, lo, hi)],
        bounds=Bounds(lbc, ubc),
        integrality=np.ones_like(c),
        options=opts,
    )
    if res.x is None:
        raise InfeasiblePlan(f"no plan satisfies the demands within the node groups' limits ({res.message})")
    bound = float(getattr(res, "mip_dual_bound", res.fun) or res.fun)
    return _unpack(m, res.x, min(bound, float(res.fun)), res.status == 0)


# ----------------------------------------------------------------------------------------- heuristic


def _pack_mig(demand: Mapping[SliceRef, int], cfgs: Sequence[tuple[int, GpuConfig]]) -> Counter[int]:
    """GPUs per MIG configuration covering ``demand`` (greedy: the layout covering most compute first)."""
    left = dict(demand)
    out: Counter[int] = Counter()

    def weight(sl: SliceRef) -> float:
        return _gpu_fraction(sl, CATALOGUE) if sl.accelerator in CATALOGUE else 1.0

    while any(v > 0 for v in left.values()):
        best, best_score = -1, 0.0
        for k, cfg in cfgs:
            score = sum(min(n, left.get(sl, 0)) * weight(sl) for sl, n in cfg.slots)
            if score > best_score + 1e-12:
                best, best_score = k, score
        if best < 0:  # build_model only offers MIG slots that some layout provides
            raise ValueError(f"no MIG layout offers {sorted(str(k) for k, v in left.items() if v)}")
        out[best] += 1
        for sl, n in next(c for k, c in cfgs if k == best).slots:
            if sl in left:
                left[sl] = max(0, left[sl] - n)
    return out


def _group_usage(m: Model, gi: int, reps: Mapping[int, int]) -> tuple[tuple[int, ...], int]:
    """Configs (GPUs per config) and node count needed by the replicas ``reps`` (option index -> count)."""
    g = m.groups[gi]
    cs = m.configs[gi]
    counts = [0] * len(cs)
    demand: Counter[SliceRef] = Counter()
    cpu = 0.0
    mem = 0
    for oi, r in reps.items():
        o = m.options[oi]
        s = m.services[o.service]
        demand[o.slice] += r
        cpu += s.cpu * r
        mem += s.host_memory_bytes * r
    mig_cfgs = []
    for k, cfg in enumerate(cs):
        sl0 = cfg.slots[0][0]
        if sl0.kind == "whole":
            counts[k] = demand.get(sl0, 0)
        elif sl0.kind == "share":
            counts[k] = math.ceil(demand.get(sl0, 0) / sl0.share)
        else:
            mig_cfgs.append((k, cfg))
    mig_demand = {sl: n for sl, n in demand.items() if sl.kind == "mig" and n > 0}
    if mig_demand:
        for k, n in _pack_mig(mig_demand, mig_cfgs).items():
            counts[k] = n
    gpus = sum(counts)
    nodes = max(
        g.min_nodes,
        math.ceil(gpus / g.gpus) if g.gpus else 0,
        math.ceil(cpu / g.cpu - 1e-9) if g.cpu else 0,
        math.ceil(mem / g.memory_bytes - 1e-9) if g.memory_bytes else 0,
    )
    return tuple(counts), nodes


def solve_heuristic(m: Model, bound: float | None = None, self_share: float = 0.001) -> _Solution:
    """Greedy: services by decreasing peak, each to its option with the lowest proportional cost (the replicas'
    share of a node: GPU share, CPU or memory, whichever binds); node need is tracked with a fractional GPU
    estimate and checked exactly once per choice, so the loop is O(services x options)."""
    per_service: dict[int, list[int]] = defaultdict(list)
    for oi, o in enumerate(m.options):
        per_service[o.service].append(oi)
    order = sorted(range(len(m.services)), key=lambda s: (-m.services[s].peak_rps, s))
    chosen: dict[int, dict[int, int]] = defaultdict(dict)  # group -> option -> replicas
    est_gpu = [0.0] * len(m.groups)
    est_cpu = [0.0] * len(m.groups)
    est_mem = [0.0] * len(m.groups)
    for si in order:
        s = m.services[si]
        ranked: list[tuple[float, int, int]] = []
        for oi in per_service.get(si, []):
            o = m.options[oi]
            g = m.groups[o.group]
            r = max(s.min_replicas, math.ceil(s.peak_rps / o.capacity - 1e-9))
            frac = _gpu_fraction(o.slice, m.catalogue)
            unit = max(frac / g.gpus if g.gpus else 0.0, s.cpu / g.cpu, s.host_memory_bytes / g.memory_bytes)
            need = max(
                math.ceil((est_gpu[o.group] + frac * r) / g.gpus - 1e-9) if g.gpus else 0,
                math.ceil((est_cpu[o.group] + s.cpu * r) / g.cpu - 1e-9),
                math.ceil((est_mem[o.group] + s.host_memory_bytes * r) / g.memory_bytes - 1e-9),
            )
            if need > g.max_nodes:
                continue
            cur = max(
                math.ceil(est_gpu[o.group] / g.gpus - 1e-9) if g.gpus else 0,
                math.ceil(est_cpu[o.group] / g.cpu - 1e-9),
                math.ceil(est_mem[o.group] / g.memory_bytes - 1e-9),
                g.min_nodes,
            )
            # nodes this choice opens, plus its proportional share as the tie-break between free fits
            marginal = max(0, need - cur) * g.price_per_hour
            ranked.append((marginal + self_share * unit * r * g.price_per_hour, oi, r))
        ranked.sort()
        for _, oi, r in ranked:
            gi = m.options[oi].group
            trial = dict(chosen[gi])
            trial[oi] = trial.get(oi, 0) + r
            if _group_usage(m, gi, trial)[1] <= m.groups[gi].max_nodes:
                chosen[gi] = trial
                o = m.options[oi]
                est_gpu[gi] += _gpu_fraction(o.slice, m.catalogue) * r
                est_cpu[gi] += s.cpu * r
                est_mem[gi] += s.host_memory_bytes * r
                break
        else:
            raise InfeasiblePlan(f"service {s.name!r} fits no node group within max_nodes")
    if m.options_.improve_moves > 0:
        chosen = _local_search(m, chosen, per_service)
    replicas = [0] * len(m.options)
    configs = []
    nodes = []
    for gi in range(len(m.groups)):
        cfg, n = _group_usage(m, gi, chosen.get(gi, {}))
        configs.append(cfg)
        nodes.append(n)
        for oi, r in chosen.get(gi, {}).items():
            replicas[oi] = r
    lb = lp_bound(m) if bound is None else bound
    return _Solution(tuple(nodes), tuple(configs), tuple(replicas), lb, False)


def _local_search(
    m: Model, chosen: Mapping[int, Mapping[int, int]], per_service: Mapping[int, Sequence[int]]
) -> dict[int, dict[int, int]]:
    """Improvement pass after the greedy: move one service at a time to another option when that lowers the
    cost. Moves are judged by the exact node count of the two groups involved (``_group_usage``), plus a small
    consolidation term (the groups' fractional node use, at 1% of the price) so that moves which empty a node
    without yet closing it are taken; a later move then closes it. First-improvement over the services, most
    expensive first, until a pass finds nothing or ``improve_moves`` evaluations are spent."""
    cur: dict[int, dict[int, int]] = {gi: dict(v) for gi, v in chosen.items()}
    where: dict[int, tuple[int, int]] = {}  # service -> (option, replicas); the greedy gives one option each
    for reps in cur.values():
        for oi, r in reps.items():
            where[m.options[oi].service] = (oi, r)

    def frac(gi: int, reps: Mapping[int, int]) -> float:
        g = m.groups[gi]
        gpu = sum(_gpu_fraction(m.options[oi].slice, m.catalogue) * r for oi, r in reps.items())
        cpu = sum(m.services[m.options[oi].service].cpu * r for oi, r in reps.items())
        mem = sum(m.services[m.options[oi].service].host_memory_bytes * r for oi, r in reps.items())
        return max(gpu / g.gpus if g.gpus else 0.0, cpu / g.cpu, mem / g.memory_bytes)

    def score(gi: int, reps: Mapping[int, int]) -> tuple[float, bool]:
        g = m.groups[gi]
        nodes = _group_usage(m, gi, reps)[1] if reps else g.min_nodes
        return g.price_per_hour * (nodes + 0.01 * frac(gi, reps)), nodes <= g.max_nodes

    cache = {gi: score(gi, reps)[0] for gi, reps in cur.items()}
    cands: dict[int, list[tuple[int, int]]] = {}
    for si, opts in per_service.items():
        s = m.services[si]
        ranked = []
        for oi in opts:
            o = m.options[oi]
            g = m.groups[o.group]
            r = max(s.min_replicas, math.ceil(s.peak_rps / o.capacity - 1e-9))
            unit = max(_gpu_fraction(o.slice, m.catalogue) / g.gpus if g.gpus else 0.0, s.cpu / g.cpu,
                       s.host_memory_bytes / g.memory_bytes)  # fmt: skip
            ranked.append((unit * r * g.price_per_hour, oi, r))
        ranked.sort()
        cands[si] = [(oi, r) for _, oi, r in ranked[: m.options_.improve_candidates]]
    budget = m.options_.improve_moves
    improved = True
    while improved and budget > 0:
        improved = False
        order = sorted(where, key=lambda si: -cache.get(m.options[where[si][0]].group, 0.0))
        for si in order:
            oi0, _ = where[si]
            g0 = m.options[oi0].group
            without = {k: v for k, v in cur.get(g0, {}).items() if k != oi0}
            s_without = score(g0, without)[0]
            best: tuple[float, int, int, float, dict[int, int]] | None = None
            for oi, r in cands.get(si, []):
                if oi == oi0 or budget <= 0:
                    continue
                budget -= 1
                gi = m.options[oi].group
                base = without if gi == g0 else cur.get(gi, {})
                trial = dict(base)
                trial[oi] = trial.get(oi, 0) + r
                s_new, ok = score(gi, trial)
                if not ok:
                    continue
                if gi == g0:
                    delta = s_new - cache[g0]
                else:
                    delta = (s_without - cache[g0]) + (s_new - cache.get(gi, score(gi, base)[0]))
                if delta < -1e-9 and (best is None or delta < best[0]):
                    best = (delta, oi, r, s_new, trial)
            if best is None:
                continue
            _, oi, r, s_new, trial = best
            gi = m.options[oi].group
            if gi != g0:
                cur[g0] = without
                cache[g0] = s_without
            cur[gi] = trial
            cache[gi] = s_new
            where[si] = (oi, r)
            improved = True
    return {gi: reps for gi, reps in cur.items() if reps}


# --------------------------------------------------------------------------------------- packing/output


Replica = tuple[ServiceDemand, SliceRef]
"""One replica to place: its service (CPU and memory requests) and the slot type the plan gave it."""


MigMilli = Literal["compute", "slices"]


def gpu_milli(sl: SliceRef, catalogue: Catalogue = CATALOGUE, mig: MigMilli = "compute") -> int:
    """The share of one GPU a replica on slot ``sl`` takes, in the placement policies' milli-GPU: 1000 for a whole
    GPU, ``1000 // k`` for a share of k, 0 for CPU. A MIG instance: its compute slices in sevenths (``compute``:
    every valid layout fits in 1000, but so do some sets that are no valid layout, such as two 3g.40gb and a
    1g.10gb, which hold more than the 8 memory slices), or the larger of that and its memory slices in eighths
    (``slices``: no such set fits, nor do a few valid layouts, such as 4g + 3g). The packing tries ``compute``
    first and ``slices`` where a node's MIG set cannot be laid out (``_configure_node``)."""
    if sl.kind == "cpu":
        return 0
    if sl.kind == "whole":
        return FULL
    if sl.kind == "share":
        return FULL // sl.share
    prof = {p.name: p for p in mig_profiles(catalogue[sl.accelerator])}[sl.mig_profile]
    compute = FULL * prof.compute_slices // MAX_COMPUTE_SLICES
    return compute if mig == "compute" else max(compute, FULL * prof.memory_slices // MEMORY_SLICES)


def policy_inputs(
    g: NodeGroup, n: int, replicas: Sequence[Replica], catalogue: Catalogue = CATALOGUE, mig: MigMilli = "compute"
) -> tuple[Cluster, Workload]:
    """``n`` nodes of group ``g`` and ``replicas`` (in arrival order) in the placement policies' terms
    (:mod:`kubeinfer.placement.fragmentation`): CPU in milli-cores (node capacity rounded down, requests up),
    memory in MiB, GPUs of the group's accelerator, each replica asking for :func:`gpu_milli` of one GPU."""
    model = g.accelerator or ""
    cluster = Cluster(
        names=tuple(f"{g.name}-{i}" for i in range(n)),
        cpu_milli=np.full(n, math.floor(g.cpu * 1000 + 1e-6), dtype=np.int64),
        memory_mib=np.full(n, g.memory_bytes // MIB, dtype=np.int64),
        gpus=np.full(n, g.gpus if g.accelerator else 0, dtype=np.int64),
        models=(model,) * n,
    )
    milli = [gpu_milli(sl, catalogue, mig) for _, sl in replicas]
    pods = Workload(
        names=tuple(f"{s.name}-{k}" for k, (s, _) in enumerate(replicas)),
        cpu_milli=np.array([math.ceil(s.cpu * 1000 - 1e-6) for s, _ in replicas], dtype=np.int64),
        memory_mib=np.array([-(-s.host_memory_bytes // MIB) for s, _ in replicas], dtype=np.int64),
        num_gpu=np.array([1 if v else 0 for v in milli], dtype=np.int64),
        gpu_milli=np.array(milli, dtype=np.int64),
        gpu_spec=tuple(frozenset() for _ in replicas),
    )
    return cluster, pods


def assign_replicas(
    g: NodeGroup,
    n: int,
    replicas: Sequence[Replica],
    policy: str = "kubeinfer",
    catalogue: Catalogue = CATALOGUE,
    seed: int = 0,
    mig: MigMilli = "compute",
) -> list[tuple[int, tuple[int, ...]] | None]:
    """Where ``policy`` puts each replica on ``n`` empty nodes of ``g``: (node index, GPU indices) or None. The
    policy is the one ``kubeinfer plan replay`` measures (:func:`kubeinfer.placement.fragmentation.assign`), fed
    :func:`policy_inputs`: for the same nodes and pods the plan's packing and the replay agree.

    A MIG-partitioned GPU cannot also be time-sliced, which the policies' milli-GPU view does not know: a group
    with both MIG and share replicas is placed in two rounds, the MIG replicas first, then the others on the CPU,
    memory and untouched GPUs left (each round is one call of the policy)."""
    cluster, pods = policy_inputs(g, n, replicas, catalogue, mig)
    kinds = {sl.kind for _, sl in replicas}
    if not {"mig", "share"} <= kinds:
        return assign(cluster, pods, policy, seed)
    first = [k for k, (_, sl) in enumerate(replicas) if sl.kind == "mig"]
    rest = [k for k, (_, sl) in enumerate(replicas) if sl.kind != "mig"]
    out: list[tuple[int, tuple[int, ...]] | None] = [None] * len(replicas)
    cpu, mem = cluster.cpu_milli.copy(), cluster.memory_mib.copy()
    untouched = [set(range(int(cluster.gpus[i]))) for i in range(n)]
    for k, w in zip(first, assign(cluster, _subset(pods, first), policy, seed), strict=True):
        out[k] = w
        if w is not None:
            cpu[w[0]] -= pods.cpu_milli[k]
            mem[w[0]] -= pods.memory_mib[k]
            untouched[w[0]] -= set(w[1])
    free = [sorted(u) for u in untouched]
    left = replace(cluster, cpu_milli=cpu, memory_mib=mem, gpus=np.array([len(f) for f in free], dtype=np.int64))
    for k, w in zip(rest, assign(left, _subset(pods, rest), policy, seed), strict=True):
        out[k] = None if w is None else (w[0], tuple(free[w[0]][x] for x in w[1]))
    return out


def _subset(pods: Workload, idx: Sequence[int]) -> Workload:
    ix = np.asarray(idx, dtype=np.int64)
    return Workload(
        names=tuple(pods.names[k] for k in idx),
        cpu_milli=pods.cpu_milli[ix],
        memory_mib=pods.memory_mib[ix],
        num_gpu=pods.num_gpu[ix],
        gpu_milli=pods.gpu_milli[ix],
        gpu_spec=tuple(pods.gpu_spec[k] for k in idx),
    )


def _pack_orders(g: NodeGroup, reps: Sequence[Replica], catalogue: Catalogue) -> list[list[Replica]]:
    """Arrival orders in which the packing offers a group's replicas to the policy, tried in turn until one places
    them all: decreasing sizes (GPU share first, then CPU or memory; memory or CPU alone; the largest and the sum of
    the shares of a node), since which dimension binds differs between groups and no one order packs all."""
    milli = {sl: gpu_milli(sl, catalogue) for _, sl in reps}
    gpus = max(g.gpus, 1) * FULL

    def shares(sr: Replica) -> tuple[float, float, float]:
        return sr[0].cpu / g.cpu, sr[0].host_memory_bytes / g.memory_bytes, milli[sr[1]] / gpus

    keys: list[Callable[[Replica], tuple[float, ...]]] = [
        lambda sr: (-milli[sr[1]], -sr[0].cpu, -sr[0].host_memory_bytes),
        lambda sr: (-milli[sr[1]], -sr[0].host_memory_bytes, -sr[0].cpu),
        lambda sr: (-max(shares(sr)),),
        lambda sr: (-sum(shares(sr)),),
        lambda sr: (-sr[0].cpu, -sr[0].host_memory_bytes, -milli[sr[1]]),
        lambda sr: (-sr[0].host_memory_bytes, -sr[0].cpu, -milli[sr[1]]),
    ]
    out: list[list[Replica]] = []
    for key in keys:
        order = sorted(reps, key=lambda sr, k=key: (*k(sr), sr[0].name, str(sr[1])))  # type: ignore[misc]
        if order not in out:
            out.append(order)
    return out


def _pack(m: Model, sol: _Solution) -> tuple[tuple[NodePacking, ...], dict[str, int], int, tuple[str, ...]]:
    """Place every replica on a concrete node and GPU with the placement policy (``PlannerOptions.placement``),
    adding a node to a group while the policy cannot place all of its replicas on the solution's node count."""
    packs: list[NodePacking] = []
    nodes_out: dict[str, int] = {}
    extra = 0
    unplaced: list[str] = []
    for gi, g in enumerate(m.groups):
        n = sol.nodes[gi]
        reps = [
            (m.services[m.options[oi].service], m.options[oi].slice)
            for oi, r in enumerate(sol.replicas)
            if m.options[oi].group == gi
            for _ in range(r)
        ]
        orders = _pack_orders(g, reps, m.catalogue)
        mig_modes: tuple[MigMilli, ...] = (
            ("compute", "slices") if any(sl.kind == "mig" for _, sl in reps) else ("compute",)
        )
        while True:
            for mig, order in ((mig, order) for mig in mig_modes for order in orders):
                ok, result = _try_pack(g, n, order, m.options_, m.catalogue, mig)
                if ok:
                    break
            if ok or n >= g.max_nodes:
                break
            n += 1
        nodes_out[g.name] = n
        if ok:
            extra += n - sol.nodes[gi]
            packs += [NodePacking(g.name, i, *nd) for i, nd in enumerate(result)]
        else:
            unplaced.append(g.name)
    return tuple(packs), nodes_out, extra, tuple(unplaced)


_NodeOut = tuple[tuple[str, ...], tuple[tuple[str, str, int], ...], float, int]


def _try_pack(
    g: NodeGroup, n: int, reps: Sequence[Replica], opts: PlannerOptions, catalogue: Catalogue, mig: MigMilli = "compute"
) -> tuple[bool, list[_NodeOut]]:
    """Place ``reps`` on ``n`` nodes of ``g`` with the policy, then configure each node's GPUs for what landed on
    them (``_configure_node``). False when a replica fits nowhere or a node's GPUs cannot be configured."""
    if not reps:
        return True, [((), (), 0.0, 0) for _ in range(n)]
    if n == 0:
        return False, []
    where = [w for w in assign_replicas(g, n, reps, opts.placement, catalogue, mig=mig) if w is not None]
    if len(where) < len(reps):
        return False, []
    on_node: list[list[tuple[Replica, int]]] = [[] for _ in range(n)]
    for rep, (node, gpus) in zip(reps, where, strict=True):
        on_node[node].append((rep, gpus[0] if gpus else -1))
    out: list[_NodeOut] = []
    for items in on_node:
        cfg = _configure_node(g, items, opts, catalogue)
        if cfg is None:
            return False, []
        names, gidx = cfg
        placed = tuple((s.name, str(sl), gi) for ((s, sl), _), gi in zip(items, gidx, strict=True))
        cpu = sum(s.cpu for (s, _), _ in items)
        mem = sum(s.host_memory_bytes for (s, _), _ in items)
        out.append((names, placed, cpu, mem))
    return True, out


def _gpu_config(acc: str, slots: Sequence[SliceRef], opts: PlannerOptions) -> str | None:
    """The configuration of one GPU hosting ``slots`` (mig-parted names; ``time-slicing-k``/``mps-k``), or None
    when no configuration hosts them together (MIG beside a share, or MIG instances of no valid layout)."""
    kinds = {sl.kind for sl in slots}
    if not slots or kinds == {"whole"}:
        return "all-disabled" if len(slots) <= 1 else None
    if kinds == {"share"}:
        return f"{opts.share_mode}-{max(sl.share for sl in slots)}"
    if kinds == {"mig"}:
        counts = Counter(sl.mig_profile for sl in slots)
        if place_layout(acc, counts) is None:
            return None
        by_layout = {lay: name for name, lay in named_layouts(acc).items()}
        return by_layout.get(tuple(sorted(counts.items())))
    return None


def _configure_node(
    g: NodeGroup, items: Sequence[tuple[Replica, int]], opts: PlannerOptions, catalogue: Catalogue
) -> tuple[tuple[str, ...], list[int]] | None:
    """Per GPU of the node its configuration, and the GPU index of each replica (-1: CPU only).

    The policy's GPU choice is kept when every GPU can be configured for what it got. Otherwise (its milli-GPU
    view lets a MIG instance join a share, or MIG instances that form no valid layout) the node's GPU replicas are
    repacked on its GPUs, largest first, each to the first GPU whose configuration stays valid; the node the policy
    chose is kept. None when even that fails."""
    if not g.accelerator or g.gpus == 0:
        return ((), [-1] * len(items)) if all(sl.kind == "cpu" for (_, sl), _ in items) else None
    acc = g.accelerator
    gidx = [gi for _, gi in items]
    per_gpu: list[list[SliceRef]] = [[] for _ in range(g.gpus)]
    for ((_, sl), _), gi in zip(items, gidx, strict=True):
        if gi >= 0:
            per_gpu[gi].append(sl)
    names = [_gpu_config(acc, slots, opts) for slots in per_gpu]
    if any(nm is None for nm in names):
        per_gpu = [[] for _ in range(g.gpus)]
        order = sorted(
            (k for k, ((_, sl), _) in enumerate(items) if sl.kind != "cpu"),
            key=lambda k: (-gpu_milli(items[k][0][1], catalogue), k),
        )
        for k in order:
            sl = items[k][0][1]
            for gi in range(g.gpus):
                if (
                    _gpu_config(acc, [*per_gpu[gi], sl], opts) is not None
                    and sum(gpu_milli(x, catalogue) for x in per_gpu[gi]) + gpu_milli(sl, catalogue) <= FULL
                ):
                    per_gpu[gi].append(sl)
                    gidx[k] = gi
                    break
            else:
                return None
        names = [_gpu_config(acc, slots, opts) for slots in per_gpu]
    return tuple(str(nm) for nm in names), gidx


def _placement(m: Model, oi: int, r: int) -> ServicePlacement:
    o = m.options[oi]
    s = m.services[o.service]
    g = m.groups[o.group]
    opts = m.options_
    requests = {"cpu": format_cpu(s.cpu), "memory": format_memory(s.host_memory_bytes)}
    gpu: dict[str, object]
    rname: str | None
    sl = o.slice
    if sl.kind == "cpu":
        rname, gpu = None, {"count": 0}
    else:
        acc = m.catalogue[sl.accelerator]
        mem_need = s.memory_bytes.get(sl, 0)
        if sl.kind == "whole":
            rname = resource_name(acc)
            gpu = {"count": 1, "sharing": "exclusive", "vendor": acc.vendor}
        elif sl.kind == "share":
            rname = resource_name(acc, opts.share_mode)
            gpu = {"count": 0, "sharing": opts.share_mode, "fraction": round(1 / sl.share, 6)}
        else:
            rname = resource_name(acc, "mig", mig_profile=sl.mig_profile, mig_strategy=opts.mig_strategy)
            gpu = {"count": 0, "sharing": "mig", "migProfile": sl.mig_profile}
        if mem_need:
            gpu["memory"] = format_memory(mem_need)
        requests[rname] = "1"
    return ServicePlacement(s.name, g.name, sl, r, r * o.capacity, rname, requests, gpu)


def _to_plan(m: Model, sol: _Solution, method: Literal["milp", "heuristic", "naive"]) -> Plan:
    packing, nodes, extra, unplaced = _pack(m, sol)
    cost = sum(m.groups[gi].price_per_hour * nodes[g.name] for gi, g in enumerate(m.groups))
    mean = sum(s.mean_rps for s in m.services)
    per_million = cost / (mean * 3600) * 1e6 if mean > 0 else 0.0
    placements = tuple(_placement(m, oi, r) for oi, r in enumerate(sol.replicas) if r > 0)
    return Plan(
        method=method,
        placements=placements,
        nodes=nodes,
        packing=packing,
        cost_per_hour=cost,
        cost_per_million_requests=per_million,
        lower_bound=sol.bound,
        optimal=sol.optimal and extra == 0,
        extra_nodes=extra,
        unplaced=unplaced,
    )


def naive_plan(
    services: Sequence[ServiceDemand], groups: Sequence[NodeGroup], catalogue: Catalogue = CATALOGUE
) -> Plan:
    """The baseline: one whole GPU per replica, replicas sized for the peak, cheapest GPU per service."""
    opts = PlannerOptions(allow_mig=False, share_counts=(), allow_cpu=False)
    m = build_model(services, groups, opts, catalogue)
    missing = {s.name for s in services} - {services[o.service].name for o in m.options}
    if missing:  # services no GPU suits run on CPU in the baseline too
        m = build_model(services, groups, PlannerOptions(allow_mig=False, share_counts=()), catalogue)
    sol = solve_heuristic(m, bound=0.0)
    return _to_plan(m, sol, "naive")


def plan(
    services: Sequence[ServiceDemand],
    groups: Sequence[NodeGroup],
    options: PlannerOptions = PlannerOptions(),
    catalogue: Catalogue = CATALOGUE,
    *,
    method: Literal["auto", "milp", "heuristic"] = "auto",
) -> Plan:
    """The cheapest placement found, with its bound, packing and the naive plan's cost for comparison."""
    m = build_model(services, groups, options, catalogue)
    use_exact = method == "milp" or (method == "auto" and m.n_columns <= options.exact_max_columns)
    sol = solve_exact(m) if use_exact else solve_heuristic(m)
    result = _to_plan(m, sol, "milp" if use_exact else "heuristic")
    try:
        naive = naive_plan(services, groups, catalogue).cost_per_hour
    except InfeasiblePlan:
        naive = None
    return Plan(**{**result.__dict__, "naive_cost_per_hour": naive})


def service_costs(
    result: Plan, services: Sequence[ServiceDemand], groups: Sequence[NodeGroup], catalogue: Catalogue = CATALOGUE
) -> dict[str, float]:
    """Cost per hour of each service in ``result``: each node group's cost split over the replicas on it in
    proportion to what they take of a node (GPU share, CPU or memory, whichever binds), so idle capacity is
    charged to the services that share the group and the per-service costs add up to ``cost_per_hour``."""
    by_name = {s.name: s for s in services}
    by_group = {g.name: g for g in groups}
    shares: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for p in result.placements:
        s, g = by_name[p.service], by_group[p.group]
        frac = _gpu_fraction(p.slice, catalogue)
        unit = max(frac / g.gpus if g.gpus else 0.0, s.cpu / g.cpu if g.cpu else 0.0,
                   s.host_memory_bytes / g.memory_bytes if g.memory_bytes else 0.0)  # fmt: skip
        shares[g.name].append((p.service, unit * p.replicas))
    out: dict[str, float] = {s.name: 0.0 for s in services}
    for gname, items in shares.items():
        g = by_group[gname]
        cost = g.price_per_hour * result.nodes.get(gname, 0)
        total = sum(w for _, w in items)
        for name, w in items:
            out[name] += cost * (w / total if total > 0 else 1 / len(items))
    return out
