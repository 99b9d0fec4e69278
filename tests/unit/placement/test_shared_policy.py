"""One placement policy for the replay, the cost plan's packing, the cluster autoscaler model and the simulator.

The same pods on the same nodes get the same node and GPUs whether they go through ``kubeinfer plan replay``'s
path (:func:`kubeinfer.placement.fragmentation.replay`), ``kubeinfer plan solve``'s packing
(:func:`kubeinfer.placement.planner.assign_replicas`, what ``plan`` packs with), the cluster autoscaler model's
scheduling or the simulator's node binding."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from kubeinfer.placement.autoscaler import (
    AutoscalerConfig,
    Bind,
    ClusterAutoscaler,
    ClusterState,
    Node,
    NodeGroupSpec,
    Pod,
)
from kubeinfer.placement.catalogue import CATALOGUE
from kubeinfer.placement.fragmentation import FULL, Cluster, Workload, arrival_order, assign, place_pods, replay
from kubeinfer.placement.planner import (
    NodeGroup,
    PlannerOptions,
    ServiceDemand,
    _pack_orders,
    assign_replicas,
    plan,
    policy_inputs,
)
from kubeinfer.placement.profile import CPU_SLICE, SliceRef
from kubeinfer.placement.variants import PRESETS, make_variant

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
NODES = DATA / "alibaba_gpu2023_openb_node_list_gpu_node.csv"
PODS = DATA / "alibaba_gpu2023_openb_pod_list_default.csv"
MIB = 2**20
GIB = 2**30


@pytest.fixture(scope="module")
def trace() -> tuple[Cluster, Workload]:
    if not (NODES.exists() and PODS.exists()):
        pytest.skip("Alibaba trace not present in ../shared/data")
    from kubeinfer.sim.openb import load_nodes_csv, load_pods_csv

    return load_nodes_csv(NODES), load_pods_csv(PODS)


def _slice(cluster: Cluster, model: str, count: int) -> tuple[Cluster, NodeGroup]:
    """``count`` trace nodes of ``model`` with the shape most nodes of that model have, and the node group (the
    planner's input) that describes them."""
    idx = [i for i, m in enumerate(cluster.models) if m == model]
    shapes = [(int(cluster.cpu_milli[i]), int(cluster.memory_mib[i]), int(cluster.gpus[i])) for i in idx]
    shape = max(set(shapes), key=shapes.count)
    pick = np.array([i for i, s in zip(idx, shapes, strict=True) if s == shape][:count])
    assert len(pick) == count
    nodes = Cluster(tuple(cluster.names[i] for i in pick), cluster.cpu_milli[pick], cluster.memory_mib[pick],
                    cluster.gpus[pick], (model,) * count)  # fmt: skip
    group = NodeGroup(model.lower(), "trace", model, shape[2], shape[0] / 1000, shape[1] * MIB, 1.0, 0, count)
    return nodes, group


def _arrivals(
    trace: tuple[Cluster, Workload], nodes: Cluster, variant: str, seed: int
) -> tuple[Workload, list[tuple[ServiceDemand, SliceRef]]]:
    """The pods that arrive on ``nodes`` in a replay of ``variant`` with ``seed`` (shuffled, up to 110% of their GPU
    capacity), in arrival order, as a pod list and as the planner's replicas. A replica uses at most one GPU, a
    whole one or a 1/k share: multi-GPU pods are left out, a share above one half becomes a whole GPU, a smaller one
    the largest 1/k it fits in, and GPU-model pins are dropped (one model here); both lists carry the result."""
    cluster, workload = trace
    w = workload if variant == "trace" else make_variant(workload, PRESETS[variant], seed, cluster)
    order = [int(p) for p in arrival_order(w, nodes.gpu_capacity_milli, seed, 1.1, "shuffle") if w.num_gpu[p] <= 1]
    milli, reps = [], []
    for k, p in enumerate(order):
        m = int(w.gpu_milli[p])
        if w.num_gpu[p] == 0:
            sl, m = CPU_SLICE, 0
        elif m > FULL // 2:
            sl, m = SliceRef(nodes.models[0], "whole"), FULL
        else:
            share = FULL // m
            sl, m = SliceRef(nodes.models[0], "share", share=share), FULL // share
        milli.append(m)
        svc = ServiceDemand(f"pod{k}", 1.0, 1.0, {}, {}, int(w.cpu_milli[p]) / 1000, int(w.memory_mib[p]) * MIB)
        reps.append((svc, sl))
    ix = np.array(order, dtype=np.int64)
    pods = Workload(
        names=tuple(f"pod{k}" for k in range(len(order))),
        cpu_milli=w.cpu_milli[ix],
        memory_mib=w.memory_mib[ix],
        num_gpu=np.array([1 if m else 0 for m in milli], dtype=np.int64),
        gpu_milli=np.array(milli, dtype=np.int64),
        gpu_spec=tuple(frozenset() for _ in order),
    )
    return pods, reps


CASES = [
    ("trace", 1, "kubeinfer", "G2"),
    ("gpushare40", 2, "kubeinfer", "T4"),
    ("gpushare100", 3, "kubeinfer", "G2"),
    ("cpu25", 1, "kubeinfer", "G2"),
    ("gpuspec33", 2, "kubeinfer", "T4"),
    ("multigpu50", 3, "kubeinfer", "G2"),
    ("gpushare40", 7, "fgd", "G2"),
    ("gpushare100", 8, "best-fit", "T4"),
    ("cpu25", 9, "first-fit", "G2"),
]


@pytest.mark.parametrize(("variant", "seed", "policy", "model"), CASES)
def test_plan_packing_and_replay_give_the_same_assignment(
    trace: tuple[Cluster, Workload], variant: str, seed: int, policy: str, model: str
) -> None:
    """Trace pods of a variant and seed on a slice of the trace's nodes: ``plan solve``'s packing path (node group
    and replicas) puts every pod on the same node and GPUs as the replay of the same pods on the same nodes."""
    nodes, group = _slice(trace[0], model, 10 if model == "G2" else 24)
    pods, reps = _arrivals(trace, nodes, variant, seed)
    assert len(pods) > 20
    cl, pw = policy_inputs(group, len(nodes.names), reps)
    for a, b in ((cl.cpu_milli, nodes.cpu_milli), (cl.memory_mib, nodes.memory_mib), (cl.gpus, nodes.gpus)):
        np.testing.assert_array_equal(a, b)
    for a, b in ((pw.cpu_milli, pods.cpu_milli), (pw.memory_mib, pods.memory_mib), (pw.gpu_milli, pods.gpu_milli)):
        np.testing.assert_array_equal(a, b)
    r = replay(nodes, pods, policy, seed=0, checkpoints=1, record=True, arrivals=range(len(pods)))
    from_replay: list[tuple[int, tuple[int, ...]] | None] = [None] * len(pods)
    for p, node, gpus in r.placements:
        from_replay[p] = (node, gpus)
    from_plan = assign_replicas(group, len(nodes.names), reps, policy)
    assert from_plan == from_replay
    assert sum(a is None for a in from_plan) == r.pods_failed
    assert r.pods_failed < len(pods)  # the slice is filled past capacity, not empty


def test_the_policies_disagree_on_the_trace_slices(trace: tuple[Cluster, Workload]) -> None:
    """The comparison above can fail: on the same pods the policies choose differently."""
    nodes, group = _slice(trace[0], "G2", 6)
    _, reps = _arrivals(trace, nodes, "gpushare40", 2)
    got = {p: assign_replicas(group, len(nodes.names), reps, p) for p in ("first-fit", "best-fit", "fgd", "kubeinfer")}
    assert len({str(v) for v in got.values()}) >= 3


def _services() -> list[ServiceDemand]:
    t4, half, quarter = SliceRef("T4", "whole"), SliceRef("T4", "share", share=2), SliceRef("T4", "share", share=4)
    out = []
    for i in range(9):
        caps = {t4: 40.0, half: 24.0, quarter: 13.0, CPU_SLICE: 2.0 if i % 3 == 0 else 0.0}
        out.append(ServiceDemand(f"s{i}", 10.0 + 7 * i, 5.0, caps, {}, 0.5 + (i % 4) * 0.5, (2 + i % 5) * GIB))
    return out


@pytest.mark.parametrize("policy", ["kubeinfer", "first-fit", "best-fit", "fgd"])
def test_plan_packs_each_group_with_the_policy(policy: str) -> None:
    """``plan``'s packing of each node group is the policy's assignment of the group's replicas (the first arrival
    order that places them all), node by node and GPU by GPU."""
    groups = [
        NodeGroup("t4x4", "g4dn.12xlarge", "T4", 4, 48, 192 * GIB, 3.912, 0, 20),
        NodeGroup("t4x1", "g4dn.xlarge", "T4", 1, 4, 16 * GIB, 0.526, 0, 20),
        NodeGroup("cpu", "c6i.2xlarge", None, 0, 8, 16 * GIB, 0.34, 0, 20),
    ]
    services = _services()
    p = plan(services, groups, PlannerOptions(share_counts=(2, 4), placement=policy), method="milp")
    assert not p.unplaced
    by_name = {s.name: s for s in services}
    for g in groups:
        packed = [n for n in p.packing if n.group == g.name]
        slices = {str(sl): sl for s in services for sl in s.capacity}
        reps = [(by_name[name], slices[sl]) for n in packed for name, sl, _ in n.replicas]
        n = p.nodes[g.name]
        for order in _pack_orders(g, reps, CATALOGUE):
            where = assign_replicas(g, n, order, policy)
            if all(w is not None for w in where):
                break
        expect: dict[int, list[tuple[str, str, int]]] = {i: [] for i in range(n)}
        for (s, sl), w in zip(order, where, strict=True):
            assert w is not None
            expect[w[0]].append((s.name, str(sl), w[1][0] if w[1] else -1))
        got = {node.index: sorted(node.replicas) for node in packed}
        assert got == {i: sorted(v) for i, v in expect.items()}


def test_plan_policies_can_differ_and_cost_what_their_nodes_cost() -> None:
    """``PlannerOptions.placement`` reaches the packing: an unknown policy is refused, and every policy's plan
    costs exactly its node counts."""
    with pytest.raises(ValueError, match="worst-fit"):
        PlannerOptions(placement="worst-fit")
    groups = [NodeGroup("t4x4", "g4dn.12xlarge", "T4", 4, 48, 192 * GIB, 3.912, 0, 6)]
    for policy in ("kubeinfer", "first-fit", "best-fit", "fgd"):
        p = plan(_services(), groups, PlannerOptions(share_counts=(2, 4), placement=policy))
        assert p.cost_per_hour == pytest.approx(3.912 * p.nodes["t4x4"])


# ------------------------------------------------------------------------------------ autoscaler and simulator


def _ca_case() -> tuple[list[NodeGroupSpec], list[Node], list[Pod]]:
    groups = [NodeGroupSpec("g4", 32000, 128000, 4, 2.0), NodeGroupSpec("g1", 8000, 32000, 1, 0.6)]
    busy = tuple(Pod(f"old{i}", 2000, 4000, 1) for i in range(3))
    nodes = [Node("g4-0", "g4", 0.0), Node("g4-1", "g4", 0.0, busy), Node("g1-2", "g1", 0.0), Node("g4-3", "g4", 0.0)]
    pods = [Pod(f"p{i}", 1000 + 500 * (i % 3), 2000, 1 if i % 4 else 0) for i in range(9)]
    return groups, nodes, pods


@pytest.mark.parametrize("policy", ["kubeinfer", "first-fit", "best-fit", "fgd"])
def test_autoscaler_binds_pods_where_the_policy_puts_them(policy: str) -> None:
    """The cluster autoscaler model's scheduling step binds each pending pod to the node ``place_pods`` gives for
    the nodes' free CPU, memory and GPUs (first-fit too: one code path)."""
    groups, nodes, pods = _ca_case()
    ca = ClusterAutoscaler(groups, AutoscalerConfig(placement=policy, scale_down_enabled=False))
    actions, _ = ca.step(ClusterState(nodes=tuple(nodes), created=4), pods, 10.0)
    binds = {a.pod: a.node for a in actions if isinstance(a, Bind)}
    spec = {g.name: g for g in groups}
    free = Cluster(
        names=tuple(n.name for n in nodes),
        cpu_milli=np.array([spec[n.group].cpu_milli - sum(p.cpu_milli for p in n.pods) for n in nodes]),
        memory_mib=np.array([spec[n.group].memory_mib - sum(p.memory_mib for p in n.pods) for n in nodes]),
        gpus=np.array([spec[n.group].gpus - sum(p.gpus for p in n.pods) for n in nodes]),
        models=tuple(n.group for n in nodes),
    )
    w = Workload(tuple(p.name for p in pods), np.array([p.cpu_milli for p in pods]),
                 np.array([p.memory_mib for p in pods]), np.array([p.gpus for p in pods]),
                 np.array([FULL if p.gpus else 0 for p in pods]), tuple(frozenset() for _ in pods))  # fmt: skip
    where = place_pods(free, w, policy)
    assert binds == {p.name: nodes[i].name for p, i in zip(pods, where, strict=True) if i is not None}
    assert [a[0] if a else None for a in assign(free, w, policy)] == where


def test_simulator_binds_a_new_replica_with_the_autoscalers_policy() -> None:
    """A replica created in the simulator binds where the autoscaler model's policy says: first-fit takes the first
    node with room, the kubeinfer policy the node whose GPUs are already partly used (a whole node stays free)."""
    from kubeinfer.sim.nodes import NodeModel, NodeSetup

    group = NodeGroupSpec("g4", 32000, 128000, 4, 2.0, min_size=2, max_size=2)
    pod = Pod("replica", 1000, 2000, 1)
    chosen = {}
    for policy in ("first-fit", "kubeinfer"):
        model = NodeModel(NodeSetup((group,), AutoscalerConfig(placement=policy)), pod)
        nodes = list(model.state.nodes)
        nodes[1] = replace(nodes[1], pods=(replace(pod, name="old"),))
        model.state = replace(model.state, nodes=tuple(nodes))
        assert model.create(7, 0.0)
        chosen[policy] = next(n.name for n in model.state.nodes if any(p.name == "7" for p in n.pods))
    assert chosen == {"first-fit": "g4-0", "kubeinfer": "g4-1"}


def test_node_groups_file_chooses_the_simulators_placement_policy() -> None:
    """``autoscaler.placement`` in the simulator's node groups file sets the policy; an unknown one is named."""
    from kubeinfer.sim.nodes import node_setup_from_dict

    groups = [{"name": "l4", "instanceType": "g6.xlarge", "accelerator": "L4", "gpus": 1, "cpu": "4",
               "memory": "16Gi", "pricePerHour": 0.8, "maxNodes": 4}]  # fmt: skip
    assert node_setup_from_dict({"nodeGroups": groups}).autoscaler.placement == "kubeinfer"
    setup = node_setup_from_dict({"nodeGroups": groups, "autoscaler": {"placement": "first-fit"}})
    assert setup.autoscaler.placement == "first-fit"
    with pytest.raises(ValueError, match=r"autoscaler.placement is 'worst-fit'"):
        node_setup_from_dict({"nodeGroups": groups, "autoscaler": {"placement": "worst-fit"}})


def test_mig_and_shares_never_share_a_gpu_and_mig_sets_are_valid_layouts() -> None:
    """MIG replicas are placed before the others, so no GPU is both partitioned and time-sliced; two 3g.40gb and a
    1g.10gb fit one GPU by compute slices but hold 9 of its 8 memory slices: with compute slices the packing of
    three one-GPU nodes fails, with memory slices counted it succeeds and every GPU gets a valid configuration."""
    from kubeinfer.placement.planner import _try_pack

    def mig(p: str) -> SliceRef:
        return SliceRef("A100-80GB", "mig", mig_profile=p)

    g = NodeGroup("a100", "a2", "A100-80GB", 1, 32, 256 * GIB, 5.0, 0, 4)
    svc = ServiceDemand("s", 1.0, 1.0, {}, {}, 1.0, 4 * GIB)
    share = SliceRef("A100-80GB", "share", share=2)
    reps = [(svc, mig("3g.40gb")), (svc, mig("3g.40gb")), (svc, mig("1g.10gb")), (svc, share), (svc, share)]
    opts = PlannerOptions(placement="first-fit")
    ok, _ = _try_pack(g, 3, reps, opts, CATALOGUE, "compute")
    assert not ok
    ok, nodes = _try_pack(g, 3, reps, opts, CATALOGUE, "slices")
    assert ok
    assert [(cfgs, [sl for _, sl, _ in placed]) for cfgs, placed, _, _ in nodes] == [
        (("all-3g.40gb",), ["A100-80GB/mig-3g.40gb", "A100-80GB/mig-3g.40gb"]),
        (("custom-1x1g.10gb",), ["A100-80GB/mig-1g.10gb"]),
        (("time-slicing-2",), ["A100-80GB/share-2", "A100-80GB/share-2"]),
    ]
