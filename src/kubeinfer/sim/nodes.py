"""Node-level cost: the simulated replicas scheduled onto node groups by the cluster autoscaler model.

Why: a replica-hour is not what a cloud bills. Replicas land on nodes (a GPU VM, a CPU VM); nodes are added when
replicas cannot be scheduled and removed only after they have been underused for the scale-down unneeded time, and
a new node takes minutes to provision, during which its replicas cannot start. ``kubeinfer simulate --node-groups``
answers what a policy costs in node-hours, GPU-hours and money, and how provisioning delays its cold starts.

Model (driven by :mod:`kubeinfer.sim.engine` when ``EngineConfig.nodes`` is set):

- A replica is a pod with the spec's requests (cpu, memory, whole GPUs). When the policy creates it, it is bound
  at once to a ready node with room (chosen by the autoscaler model's placement policy: ``autoscaler.placement``,
  the kubeinfer policy by default, the code ``kubeinfer plan replay`` measures), else it is *pending*: it starts only when
  a node that fits it is ready, and becomes ready ``startup`` seconds after that -- the cold start includes the
  node's provision time.
- Every ``scan_interval`` (10 s) the :class:`~kubeinfer.placement.autoscaler.ClusterAutoscaler` model runs with
  the pending pods: it binds what fits, scales a node group up (expander) for the rest -- new nodes are ready after
  the group's ``provisionSeconds`` -- and scales down nodes below the utilization threshold after the unneeded
  time (CA's defaults: 0.5, 10 min). Pending pods are also bound the moment a node becomes ready.
- A removed replica frees its node at once (its drain, at most a request's service time, is ignored at this
  scale). Pods moved off a node the autoscaler deletes keep serving (as if the replacement started first).
- The cluster was running before the trace: the initial replicas are placed at time 0 on ``minNodes`` nodes and,
  beyond them, on warm nodes of the cheapest group that fits.
- A node is billed from its scale-up to its deletion (or the end of the run): node-hours, GPU-hours (node-hours x
  GPUs per node) and cost (node-hours x the group's price per hour).

Node groups file (the ``kubeinfer plan`` format, plus ``provisionSeconds`` and an optional ``autoscaler`` block)::

    nodeGroups:
      - name: l4
        instanceType: g6.xlarge
        accelerator: L4          # catalogue name; omit for CPU-only nodes
        gpus: 1
        cpu: "4"
        memory: 16Gi
        pricePerHour: 0.805
        minNodes: 0
        maxNodes: 20
        provisionSeconds: 120    # scale-up to node ready (default 120)
    autoscaler:                  # optional; Cluster Autoscaler's defaults
      expander: least-waste      # random | most-pods | least-waste | price | priority (default least-waste)
      scanInterval: 10
      scaleDownUnneededTime: 600
      scaleDownUtilizationThreshold: 0.5
      placement: kubeinfer       # pod-to-node policy: kubeinfer | first-fit | best-fit | fgd | ... (plan replay's)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from kubeinfer.placement.autoscaler import (
    AutoscalerConfig,
    Bind,
    ClusterAutoscaler,
    ClusterState,
    DeleteNode,
    Node,
    NodeGroupSpec,
    Pod,
    ScaleUp,
)
from kubeinfer.placement.fragmentation import POLICIES
from kubeinfer.placement.inputs import node_groups_from_dict

__all__ = ["NodeCost", "NodeModel", "NodeSetup", "node_setup_from_dict", "pod_from_requests"]

_AUTOSCALER_FIELDS = {
    "expander": "expander",
    "scanInterval": "scan_interval",
    "scaleDownUnneededTime": "scale_down_unneeded_time",
    "scaleDownUtilizationThreshold": "scale_down_utilization_threshold",
    "scaleDownGpuUtilizationThreshold": "scale_down_gpu_utilization_threshold",
    "scaleDownDelayAfterAdd": "scale_down_delay_after_add",
    "placement": "placement",
}


@dataclass(frozen=True)
class NodeSetup:
    """Node groups and the cluster autoscaler's settings, as read from a node groups file."""

    groups: tuple[NodeGroupSpec, ...]
    autoscaler: AutoscalerConfig = field(default_factory=lambda: AutoscalerConfig(expander="least-waste"))
    instance_types: Mapping[str, str] = field(default_factory=dict)


def node_setup_from_dict(raw: Any) -> NodeSetup:
    """Parse a node groups file (module docstring); errors name the field and what is allowed."""
    items = raw.get("nodeGroups") if isinstance(raw, Mapping) else raw
    if not isinstance(items, list) or not items:
        raise ValueError("nodeGroups must be a non-empty list (a top-level list, or a mapping with key 'nodeGroups')")
    provision: list[float] = []
    stripped = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ValueError(f"nodeGroups[{i}] must be a mapping with name, cpu, memory, pricePerHour")
        p = item.get("provisionSeconds", 120.0)
        if isinstance(p, bool) or not isinstance(p, int | float) or p < 0:
            raise ValueError(f"nodeGroups[{i}].provisionSeconds is {p!r}; must be a number >= 0")
        provision.append(float(p))
        stripped.append({k: v for k, v in item.items() if k != "provisionSeconds"})
    groups = node_groups_from_dict({"nodeGroups": stripped})
    specs = tuple(
        NodeGroupSpec(
            name=g.name,
            cpu_milli=round(g.cpu * 1000),
            memory_mib=g.memory_bytes // 2**20,
            gpus=g.gpus,
            price_per_hour=g.price_per_hour,
            min_size=g.min_nodes,
            max_size=g.max_nodes,
            provision_seconds=p,
        )
        for g, p in zip(groups, provision, strict=True)
    )
    ca: dict[str, Any] = {"expander": "least-waste"}
    block = raw.get("autoscaler") if isinstance(raw, Mapping) else None
    if block is not None:
        if not isinstance(block, Mapping):
            raise ValueError("autoscaler must be a mapping")
        unknown = set(block) - set(_AUTOSCALER_FIELDS)
        if unknown:
            raise ValueError(f"autoscaler has unknown fields {sorted(unknown)}; allowed: {sorted(_AUTOSCALER_FIELDS)}")
        for key, attr in _AUTOSCALER_FIELDS.items():
            if key not in block:
                continue
            v = block[key]
            if key == "expander":
                if v not in ("random", "most-pods", "least-waste", "price", "priority"):
                    raise ValueError(
                        f"autoscaler.expander is {v!r}; allowed random, most-pods, least-waste, price, priority"
                    )
            elif key == "placement":
                if v not in POLICIES:
                    raise ValueError(f"autoscaler.placement is {v!r}; allowed {', '.join(POLICIES)}")
            elif isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
                raise ValueError(f"autoscaler.{key} is {v!r}; must be a number >= 0")
            ca[attr] = v
        if not ca.get("scan_interval", 10.0) > 0:
            raise ValueError("autoscaler.scanInterval must be > 0")
    return NodeSetup(specs, AutoscalerConfig(**ca), {g.name: g.instance_type for g in groups})


@dataclass(frozen=True)
class NodeCost:
    """What the nodes of one run cost."""

    node_hours: float
    gpu_hours: float
    cost: float
    peak_nodes: int
    scale_ups: int
    scale_downs: int
    by_group: Mapping[str, float]
    """Node-hours per node group."""
    pending_seconds: float
    """Replica-seconds spent waiting for a node (scheduled, not yet started)."""


class NodeModel:
    """The mutable companion of one simulation run: binds pods, runs the autoscaler, bills nodes."""

    def __init__(self, setup: NodeSetup, pod: Pod) -> None:
        self.setup = setup
        self.ca = ClusterAutoscaler(setup.groups, setup.autoscaler)
        self.groups = {g.name: g for g in setup.groups}
        self.pod = pod
        if not any(_fits_empty(pod, g) for g in setup.groups):
            raise ValueError(
                f"a replica (cpu {pod.cpu_milli}m, memory {pod.memory_mib}Mi, gpus {pod.gpus}) fits no node group"
            )
        self.state: ClusterState = self.ca.initial_state()
        self.node_created: dict[str, float] = {n.name: 0.0 for n in self.state.nodes}
        self.node_group: dict[str, str] = {n.name: n.group for n in self.state.nodes}
        self.node_ended: dict[str, float] = {}
        self.pending: dict[int, float] = {}  # pid -> time it became pending
        self.pending_seconds = 0.0
        self.scale_ups = 0
        self.scale_downs = 0
        self.peak = len(self.state.nodes)

    @property
    def scan_interval(self) -> float:
        return self.setup.autoscaler.scan_interval

    def _pod(self, pid: int) -> Pod:
        return replace(self.pod, name=str(pid))

    def place_initial(self, pids: list[int]) -> None:
        """Bind the replicas running at time 0, adding warm nodes of the cheapest fitting group as needed."""
        cheapest = min(
            (g for g in self.setup.groups if _fits_empty(self.pod, g)), key=lambda g: (g.price_per_hour, g.name)
        )
        for pid in pids:
            if self._bind_now(pid, 0.0):
                continue
            name = f"{cheapest.name}-{self.state.created}"
            node = Node(name, cheapest.name, 0.0, (self._pod(pid),))
            self.state = replace(self.state, nodes=(*self.state.nodes, node), created=self.state.created + 1)
            self.node_created[name] = 0.0
            self.node_group[name] = cheapest.name
        self.peak = max(self.peak, len(self.state.nodes))

    def _bind_now(self, pid: int, now: float) -> bool:
        return bool(self._bind_many([pid], now))

    def _bind_many(self, pids: list[int], now: float) -> list[int]:
        """Bind replicas (in order) to ready nodes with the autoscaler's placement policy (the one ``kubeinfer plan
        replay`` measures); return those bound."""
        nodes = list(self.state.nodes)
        ready = [i for i, n in enumerate(nodes) if n.ready(now)]
        pods = [self._pod(pid) for pid in pids]
        where = self.ca.place(pods, [nodes[i] for i in ready])
        bound = []
        for pid, pod, at in zip(pids, pods, where, strict=True):
            if at is None:
                continue
            i = ready[at]
            nodes[i] = replace(nodes[i], pods=(*nodes[i].pods, pod))
            bound.append(pid)
        if bound:
            self.state = replace(self.state, nodes=tuple(nodes))
        return bound

    def create(self, pid: int, now: float) -> bool:
        """A replica was created: True if it was bound to a ready node (it starts now), else it is pending."""
        if self._bind_now(pid, now):
            return True
        self.pending[pid] = now
        return False

    def remove(self, pid: int, now: float) -> None:
        """A replica was removed (cancelled while pending or starting, or scaled down)."""
        if pid in self.pending:
            self.pending_seconds += now - self.pending.pop(pid)
            return
        name = str(pid)
        nodes = list(self.state.nodes)
        for i, n in enumerate(nodes):
            if any(p.name == name for p in n.pods):
                nodes[i] = replace(n, pods=tuple(p for p in n.pods if p.name != name))
                self.state = replace(self.state, nodes=tuple(nodes))
                return

    def bind_pending(self, now: float) -> list[int]:
        """Bind pending replicas to ready nodes with room (a node just became ready); return those bound."""
        bound = self._bind_many(sorted(self.pending), now)
        for pid in bound:
            self.pending_seconds += now - self.pending.pop(pid)
        return bound

    def scan(self, now: float) -> tuple[list[int], list[float]]:
        """One autoscaler loop: (replicas bound now, ready times of nodes added)."""
        pods = [self._pod(pid) for pid in sorted(self.pending)]
        actions, self.state = self.ca.step(self.state, pods, now)
        bound: list[int] = []
        ready_times: list[float] = []
        for a in actions:
            if isinstance(a, Bind):
                pid = int(a.pod)
                self.pending_seconds += now - self.pending.pop(pid)
                bound.append(pid)
            elif isinstance(a, ScaleUp):
                self.scale_ups += 1
                for name in a.nodes:
                    self.node_created[name] = now
                    self.node_group[name] = a.group
                ready_times.append(now + self.groups[a.group].provision_seconds)
            elif isinstance(a, DeleteNode):
                self.scale_downs += 1
                self.node_ended[a.node] = now
        self.peak = max(self.peak, len(self.state.nodes))
        return bound, ready_times

    def cost(self, end: float) -> NodeCost:
        by_group: dict[str, float] = {g: 0.0 for g in self.groups}
        for name, created in self.node_created.items():
            ended = min(self.node_ended.get(name, end), end)
            by_group[self.node_group[name]] += max(0.0, ended - min(created, end)) / 3600.0
        pending = self.pending_seconds + sum(max(0.0, end - t) for t in self.pending.values())
        return NodeCost(
            node_hours=sum(by_group.values()),
            gpu_hours=sum(h * self.groups[g].gpus for g, h in by_group.items()),
            cost=sum(h * self.groups[g].price_per_hour for g, h in by_group.items()),
            peak_nodes=self.peak,
            scale_ups=self.scale_ups,
            scale_downs=self.scale_downs,
            by_group=by_group,
            pending_seconds=pending,
        )


def _fits_empty(pod: Pod, g: NodeGroupSpec) -> bool:
    return pod.cpu_milli <= g.cpu_milli and pod.memory_mib <= g.memory_mib and pod.gpus <= g.gpus


def pod_from_requests(cpu_cores: float, memory_bytes: int, gpus: int) -> Pod:
    """The pod template of a replica: its requests in the autoscaler model's units."""
    return Pod("replica", max(1, math.ceil(cpu_cores * 1000)), max(1, math.ceil(memory_bytes / 2**20)), gpus)
