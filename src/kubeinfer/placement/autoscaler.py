"""A pure model of the Kubernetes Cluster Autoscaler (CA), for the simulator and for planning.

Reference: kubernetes/autoscaler ``cluster-autoscaler/FAQ.md`` ("How does scale-up work?", "How does scale-down
work?", "What are the parameters to CA?") and ``expander/*``. Defaults below are CA's documented ones:
``--scan-interval`` 10s, ``--scale-down-utilization-threshold`` 0.5, ``--scale-down-gpu-utilization-threshold``
0.5, ``--scale-down-unneeded-time`` 10m, ``--scale-down-delay-after-add`` 10m, ``--scale-down-delay-after-delete``
= scan interval, ``--scale-down-delay-after-failure`` 3m, ``--max-node-provision-time`` 15m,
``--max-empty-bulk-delete`` 10, ``--expander`` random.

What is modelled, per ``step(state, pending_pods, now)``:
- Scheduling: pending pods go to ready nodes where they fit (CPU/memory/GPU), chosen by ``placement`` (default the
  kubeinfer policy of ``placement.fragmentation``, the code ``plan replay`` measures and ``plan solve`` packs
  with; ``first-fit`` in node order, or any other policy there); what CA leaves to kube-scheduler, done here so the
  model is self-contained. The same policy decides where pods would go on nodes still provisioning (they wait) and
  where a scale-down candidate's pods would move. CA's own binpacking estimator (first-fit decreasing onto template
  nodes) sizes a scale-up, as CA does.
- Scale-up: for the remaining pods, each node group below ``max_size`` is tried by simulated scheduling on
  template nodes (the binpacking estimator: first-fit decreasing onto new nodes); options that help no pod are
  dropped; the expander picks one (``random``, ``most-pods``, ``least-waste``, ``price``, ``priority``); CA scales
  one group per loop. New nodes become ready after the group's provision time; a node not ready within
  ``max_node_provision_time`` is removed and its group is backed off for ``scale_down_delay_after_failure``-style
  ``backoff_seconds``.
- Scale-down: a ready node is *unneeded* when its utilization is below the threshold - for a node with GPUs the
  GPU requests/allocatable only, otherwise max(CPU, memory) requests/allocatable - its group is above
  ``min_size`` and all its pods fit on other nodes (simulated). Unneeded status is tracked every loop; a node
  unneeded for ``scale_down_unneeded_time`` is deleted unless scale-down is in cooldown (``delay_after_add``
  since the last scale-up, ``delay_after_delete`` since the last deletion) or this loop scaled up. Empty nodes are
  deleted in bulk (up to ``max_empty_bulk_delete``), a non-empty node one per loop, its pods moved where the
  simulation put them.

Simplifications (documented, deliberate): no PodDisruptionBudgets, affinities or taints; the ``price`` expander
scores options by price per pod helped (CA also weighs a "preferred" node size); ``least-waste`` scores the
unrequested share of CPU and memory (and GPU when the pods ask for GPUs) on the new nodes, as CA does for
CPU/memory.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from kubeinfer.placement.fragmentation import POLICIES, Cluster, Workload, place_pods

__all__ = [
    "AutoscalerConfig",
    "Bind",
    "ClusterAutoscaler",
    "ClusterState",
    "DeleteNode",
    "Expander",
    "Node",
    "NodeGroupSpec",
    "Pod",
    "ScaleUp",
    "utilization",
]

Expander = Literal["random", "most-pods", "least-waste", "price", "priority"]


@dataclass(frozen=True, order=True)
class Pod:
    name: str
    cpu_milli: int
    memory_mib: int
    gpus: int = 0
    """Units of the node's GPU resource (whole GPUs, or MIG/shared units as the device plugin advertises)."""


@dataclass(frozen=True)
class NodeGroupSpec:
    name: str
    cpu_milli: int
    memory_mib: int
    gpus: int = 0
    price_per_hour: float = 0.0
    min_size: int = 0
    max_size: int = 10
    provision_seconds: float = 120.0
    """Time from scale-up to the node being ready (cloud VM boot + kubelet + device plugin)."""


@dataclass(frozen=True)
class Node:
    name: str
    group: str
    ready_at: float
    pods: tuple[Pod, ...] = ()

    def ready(self, now: float) -> bool:
        return now >= self.ready_at


@dataclass(frozen=True)
class AutoscalerConfig:
    scan_interval: float = 10.0
    scale_down_utilization_threshold: float = 0.5
    scale_down_gpu_utilization_threshold: float = 0.5
    scale_down_unneeded_time: float = 600.0
    scale_down_delay_after_add: float = 600.0
    scale_down_delay_after_delete: float | None = None
    """None: the scan interval (CA's default)."""
    scale_down_delay_after_failure: float = 180.0
    max_node_provision_time: float = 900.0
    max_empty_bulk_delete: int = 10
    expander: Expander = "random"
    priorities: Mapping[str, int] = field(default_factory=dict)
    """For the ``priority`` expander: group name -> priority (higher wins; missing = 0)."""
    seed: int = 0
    scale_down_enabled: bool = True
    backoff_seconds: float = 300.0
    placement: str = "kubeinfer"
    """Which ready node a pending pod binds to: a policy of :mod:`kubeinfer.placement.fragmentation` (the one
    ``kubeinfer plan replay`` measures), or ``first-fit`` in node order."""

    def __post_init__(self) -> None:
        if self.placement not in POLICIES:
            raise ValueError(f"placement {self.placement!r} is not one of {', '.join(POLICIES)}")


@dataclass(frozen=True)
class ClusterState:
    nodes: tuple[Node, ...] = ()
    unneeded_since: Mapping[str, float] = field(default_factory=dict)
    last_scale_up: float | None = None
    last_scale_down: float | None = None
    last_failure: float | None = None
    backoff_until: Mapping[str, float] = field(default_factory=dict)
    created: int = 0
    """Nodes created so far (names new nodes and seeds the random expander: deterministic)."""


@dataclass(frozen=True)
class ScaleUp:
    group: str
    count: int
    nodes: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class DeleteNode:
    node: str
    group: str
    reason: str
    moved: tuple[tuple[str, str], ...] = ()
    """(pod, destination node) for pods evicted from the node."""


@dataclass(frozen=True)
class Bind:
    pod: str
    node: str


Action = ScaleUp | DeleteNode | Bind


def _used(node: Node) -> tuple[int, int, int]:
    return (
        sum(p.cpu_milli for p in node.pods),
        sum(p.memory_mib for p in node.pods),
        sum(p.gpus for p in node.pods),
    )


def _fits(pod: Pod, g: NodeGroupSpec, used: tuple[int, int, int]) -> bool:
    return (
        used[0] + pod.cpu_milli <= g.cpu_milli
        and used[1] + pod.memory_mib <= g.memory_mib
        and used[2] + pod.gpus <= g.gpus
    )


def utilization(node: Node, g: NodeGroupSpec) -> float:
    """CA's scale-down utilization: GPU requests/allocatable on GPU nodes, else max(CPU, memory)."""
    cpu, mem, gpu = _used(node)
    if g.gpus > 0:
        return gpu / g.gpus
    return max(cpu / g.cpu_milli if g.cpu_milli else 0.0, mem / g.memory_mib if g.memory_mib else 0.0)


def _binpack(pods: Sequence[Pod], g: NodeGroupSpec, limit: int) -> tuple[int, tuple[Pod, ...], list[list[Pod]]]:
    """New template nodes needed (<= limit) and the pods they take: first-fit decreasing."""
    bins: list[list[Pod]] = []
    used: list[tuple[int, int, int]] = []
    helped: list[Pod] = []
    for pod in sorted(pods, key=lambda p: (-p.gpus, -p.cpu_milli, -p.memory_mib, p.name)):
        if not _fits(pod, g, (0, 0, 0)):
            continue
        for i, u in enumerate(used):
            if _fits(pod, g, u):
                used[i] = (u[0] + pod.cpu_milli, u[1] + pod.memory_mib, u[2] + pod.gpus)
                bins[i].append(pod)
                helped.append(pod)
                break
        else:
            if len(bins) < limit:
                bins.append([pod])
                used.append((pod.cpu_milli, pod.memory_mib, pod.gpus))
                helped.append(pod)
    return len(bins), tuple(helped), bins


@dataclass(frozen=True)
class _Option:
    group: NodeGroupSpec
    count: int
    pods: tuple[Pod, ...]
    bins: tuple[tuple[Pod, ...], ...]


class ClusterAutoscaler:
    """``step(state, pending_pods, now) -> (actions, state)``; node groups and config are fixed at creation."""

    def __init__(self, groups: Sequence[NodeGroupSpec], config: AutoscalerConfig = AutoscalerConfig()) -> None:
        names = [g.name for g in groups]
        if len(set(names)) != len(names):
            raise ValueError(f"node group names must be unique, got {names}")
        for g in groups:
            if not 0 <= g.min_size <= g.max_size:
                raise ValueError(f"node group {g.name!r}: need 0 <= min_size <= max_size, got {g.min_size}..")
        self.groups = {g.name: g for g in groups}
        self.config = config

    def initial_state(self) -> ClusterState:
        """``min_size`` ready nodes per group at time 0."""
        nodes = []
        k = 0
        for g in self.groups.values():
            for _ in range(g.min_size):
                nodes.append(Node(f"{g.name}-{k}", g.name, 0.0))
                k += 1
        return ClusterState(nodes=tuple(nodes), created=k)

    # -------------------------------------------------------------------------------------------- step

    def step(
        self, state: ClusterState, pending_pods: Sequence[Pod], now: float
    ) -> tuple[tuple[Action, ...], ClusterState]:
        actions: list[Action] = []
        state, _ = self._provision_timeouts(state, now, actions)
        state, unscheduled = self._schedule(state, pending_pods, now, actions)
        state, upcoming_fit = self._fit_upcoming(state, unscheduled, now)
        scaled = False
        if upcoming_fit:
            state, scaled = self._scale_up(state, upcoming_fit, now, actions)
        state = self._update_unneeded(state, now)
        if self.config.scale_down_enabled and not scaled and not self._in_cooldown(state, now):
            state = self._scale_down(state, now, actions)
        return tuple(actions), state

    def _provision_timeouts(self, state: ClusterState, now: float, actions: list[Action]) -> tuple[ClusterState, bool]:
        keep, failed = [], []
        for n in state.nodes:
            deadline = self._created_at(n) + self.config.max_node_provision_time
            if not n.ready(now) and n.ready_at > deadline and now >= deadline:
                failed.append(n)
                continue
            keep.append(n)
        if not failed:
            return state, False
        backoff = dict(state.backoff_until)
        for n in failed:
            actions.append(DeleteNode(n.name, n.group, "not ready within max-node-provision-time"))
            backoff[n.group] = now + self.config.backoff_seconds
        return replace(state, nodes=tuple(keep), backoff_until=backoff, last_failure=now), True

    def _created_at(self, n: Node) -> float:
        return n.ready_at - self.groups[n.group].provision_seconds

    def _schedule(
        self, state: ClusterState, pods: Sequence[Pod], now: float, actions: list[Action]
    ) -> tuple[ClusterState, list[Pod]]:
        nodes = list(state.nodes)
        left = []
        ready = [i for i, n in enumerate(nodes) if n.ready(now)]
        where = self.place(pods, [nodes[i] for i in ready])
        for pod, at in zip(pods, where, strict=True):
            if at is None:
                left.append(pod)
                continue
            i = ready[at]
            nodes[i] = replace(nodes[i], pods=(*nodes[i].pods, pod))
            actions.append(Bind(pod.name, nodes[i].name))
        return replace(state, nodes=tuple(nodes)), left

    def place(self, pods: Sequence[Pod], nodes: Sequence[Node]) -> list[int | None]:
        """The node (index into ``nodes``) of each pod, in order, under the configured placement policy
        (:func:`kubeinfer.placement.fragmentation.place_pods`, the code ``kubeinfer plan replay`` measures and
        ``kubeinfer plan solve`` packs with): each node offers its free CPU, memory and whole GPUs, the node group
        standing for the GPU model. None where a pod fits nowhere."""
        if not pods:
            return []
        free = []
        for n in nodes:
            g = self.groups[n.group]
            cpu, mem, gpu = _used(n)
            free.append({"sn": n.name, "cpu_milli": str(g.cpu_milli - cpu), "memory_mib": str(g.memory_mib - mem),
                         "gpu": str(g.gpus - gpu), "model": n.group})  # fmt: skip
        rows = [
            {"name": p.name, "cpu_milli": str(p.cpu_milli), "memory_mib": str(p.memory_mib), "num_gpu": str(p.gpus),
             "gpu_milli": "1000" if p.gpus else "0", "creation_time": str(k)}
            for k, p in enumerate(pods)
        ]  # fmt: skip
        cluster, workload = Cluster.from_rows(free), Workload.from_rows(rows)
        return place_pods(cluster, workload, self.config.placement, seed=self.config.seed)

    def _fit_upcoming(self, state: ClusterState, pods: Sequence[Pod], now: float) -> tuple[ClusterState, list[Pod]]:
        """Pods that would fit on nodes still provisioning do not trigger a scale-up (CA counts upcoming nodes);
        where they would go is the placement policy's choice."""
        upcoming = [n for n in state.nodes if not n.ready(now)]
        if not upcoming:
            return state, list(pods)
        where = self.place(pods, upcoming)
        return state, [pod for pod, at in zip(pods, where, strict=True) if at is None]

    def _options(self, state: ClusterState, pods: Sequence[Pod], now: float) -> list[_Option]:
        sizes = {g: 0 for g in self.groups}
        for n in state.nodes:
            sizes[n.group] += 1
        out = []
        for g in self.groups.values():
            if state.backoff_until.get(g.name, -1.0) > now:
                continue
            limit = g.max_size - sizes[g.name]
            if limit <= 0:
                continue
            count, helped, bins = _binpack(pods, g, limit)
            if count > 0:
                out.append(_Option(g, count, helped, tuple(tuple(b) for b in bins)))
        return out

    def _expand(self, options: list[_Option], state: ClusterState) -> _Option:
        cfg = self.config
        rng = random.Random(cfg.seed * 1_000_003 + state.created)

        def best(score: dict[int, float], lowest: bool) -> _Option:
            target = min(score.values()) if lowest else max(score.values())
            tied = [options[i] for i, s in score.items() if abs(s - target) <= 1e-12]
            return tied[0] if len(tied) == 1 else rng.choice(tied)

        if cfg.expander == "random":
            return rng.choice(options)
        if cfg.expander == "most-pods":
            return best({i: float(len(o.pods)) for i, o in enumerate(options)}, lowest=False)
        if cfg.expander == "priority":
            return best({i: float(cfg.priorities.get(o.group.name, 0)) for i, o in enumerate(options)}, False)
        if cfg.expander == "price":
            return best({i: o.count * o.group.price_per_hour / len(o.pods) for i, o in enumerate(options)}, True)
        # least-waste: unrequested share of the new nodes' resources
        scores = {}
        for i, o in enumerate(options):
            g = o.group
            cpu = sum(p.cpu_milli for p in o.pods) / (o.count * g.cpu_milli)
            mem = sum(p.memory_mib for p in o.pods) / (o.count * g.memory_mib)
            waste = (1 - cpu) + (1 - mem)
            if any(p.gpus for p in o.pods) and g.gpus:
                waste += 1 - sum(p.gpus for p in o.pods) / (o.count * g.gpus)
            scores[i] = waste
        return best(scores, lowest=True)

    def _scale_up(
        self, state: ClusterState, pods: Sequence[Pod], now: float, actions: list[Action]
    ) -> tuple[ClusterState, bool]:
        options = self._options(state, pods, now)
        if not options:
            return state, False
        opt = self._expand(options, state)
        names = tuple(f"{opt.group.name}-{state.created + i}" for i in range(opt.count))
        new_nodes = tuple(Node(nm, opt.group.name, now + opt.group.provision_seconds) for nm in names)
        actions.append(
            ScaleUp(opt.group.name, opt.count, names, f"{len(opt.pods)} pending pods fit ({self.config.expander})")
        )
        return (
            replace(state, nodes=state.nodes + new_nodes, created=state.created + opt.count, last_scale_up=now),
            True,
        )

    # ----------------------------------------------------------------------------------- scale-down

    def _in_cooldown(self, state: ClusterState, now: float) -> bool:
        cfg = self.config
        after_delete = (
            cfg.scan_interval if cfg.scale_down_delay_after_delete is None else cfg.scale_down_delay_after_delete
        )
        return (
            (state.last_scale_up is not None and now < state.last_scale_up + cfg.scale_down_delay_after_add)
            or (state.last_scale_down is not None and now < state.last_scale_down + after_delete)
            or (state.last_failure is not None and now < state.last_failure + cfg.scale_down_delay_after_failure)
        )

    def _threshold(self, g: NodeGroupSpec) -> float:
        c = self.config
        return c.scale_down_gpu_utilization_threshold if g.gpus > 0 else c.scale_down_utilization_threshold

    def _relocate(self, victim: Node, others: Sequence[Node], now: float) -> tuple[tuple[str, str], ...] | None:
        """Where the placement policy would put the victim's pods (largest first) on the other ready nodes; None if
        one fits nowhere."""
        ready = [n for n in others if n.ready(now)]
        pods = sorted(victim.pods, key=lambda p: (-p.gpus, -p.cpu_milli, p.name))
        where = self.place(pods, ready)
        if any(at is None for at in where):
            return None
        return tuple((pod.name, ready[at].name) for pod, at in zip(pods, where, strict=True) if at is not None)

    def _unneeded(self, state: ClusterState, now: float) -> list[Node]:
        sizes: dict[str, int] = {}
        for n in state.nodes:
            sizes[n.group] = sizes.get(n.group, 0) + 1
        out = []
        for n in state.nodes:
            g = self.groups[n.group]
            if not n.ready(now) or sizes[n.group] <= g.min_size:
                continue
            if utilization(n, g) >= self._threshold(g):
                continue
            others = [o for o in state.nodes if o.name != n.name]
            if self._relocate(n, others, now) is None:
                continue
            out.append(n)
        return out

    def _update_unneeded(self, state: ClusterState, now: float) -> ClusterState:
        unneeded = {n.name for n in self._unneeded(state, now)}
        since = {name: state.unneeded_since.get(name, now) for name in unneeded}
        return replace(state, unneeded_since=since)

    def _scale_down(self, state: ClusterState, now: float, actions: list[Action]) -> ClusterState:
        cfg = self.config
        ripe = [
            n
            for n in state.nodes
            if n.name in state.unneeded_since and now - state.unneeded_since[n.name] >= cfg.scale_down_unneeded_time
        ]
        if not ripe:
            return state
        sizes: dict[str, int] = {}
        for n in state.nodes:
            sizes[n.group] = sizes.get(n.group, 0) + 1
        nodes = list(state.nodes)
        deleted: list[str] = []
        empty = [n for n in ripe if not n.pods]
        for n in empty[: cfg.max_empty_bulk_delete]:
            if sizes[n.group] > self.groups[n.group].min_size:
                sizes[n.group] -= 1
                deleted.append(n.name)
                actions.append(DeleteNode(n.name, n.group, "empty and unneeded for scale-down-unneeded-time"))
        if not deleted:
            for n in ripe:
                if not n.pods or sizes[n.group] <= self.groups[n.group].min_size:
                    continue
                others = [o for o in nodes if o.name != n.name]
                moves = self._relocate(n, others, now)
                if moves is None:
                    continue
                pods = {p.name: p for p in n.pods}
                for pod, dest in moves:
                    i = next(k for k, o in enumerate(nodes) if o.name == dest)
                    nodes[i] = replace(nodes[i], pods=(*nodes[i].pods, pods[pod]))
                deleted.append(n.name)
                actions.append(
                    DeleteNode(n.name, n.group, "utilization below threshold for scale-down-unneeded-time", moves)
                )
                break
        if not deleted:
            return state
        gone = set(deleted)
        return replace(
            state,
            nodes=tuple(o for o in nodes if o.name not in gone),
            unneeded_since={k: v for k, v in state.unneeded_since.items() if k not in gone},
            last_scale_down=now,
        )
