"""Planner: the MILP equals brute force on small instances; plans never exceed capacity; specs validate."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubeinfer.placement.planner import (
    InfeasiblePlan,
    NodeGroup,
    Plan,
    PlannerOptions,
    ServiceDemand,
    build_model,
    lp_bound,
    naive_plan,
    plan,
)
from kubeinfer.placement.profile import CPU_SLICE, SliceRef, parse_slice, profile_from_dict
from kubeinfer.spec.service import GpuSpec

GIB = 1024**3
T4 = SliceRef("T4", "whole")
T4_2 = SliceRef("T4", "share", share=2)
A40 = SliceRef("A100-40GB", "whole")


def mig(p: str, acc: str = "A100-40GB") -> SliceRef:
    return SliceRef(acc, "mig", mig_profile=p)


def brute_force(services: list[ServiceDemand], groups: list[NodeGroup], opts: PlannerOptions) -> float:
    """Cheapest cost by enumerating node counts, GPU configurations and replica counts."""
    m = build_model(services, groups, opts)
    best = math.inf
    for nodes in itertools.product(*[range(g.min_nodes, g.max_nodes + 1) for g in groups]):
        cost = sum(n * g.price_per_hour for n, g in zip(nodes, groups, strict=True))
        if cost >= best:
            continue
        per_group_cfgs = []
        for gi, g in enumerate(groups):
            k = g.gpus * nodes[gi]
            cfgs = [*m.configs[gi], None]  # None: GPU left idle
            per_group_cfgs.append(list(itertools.combinations_with_replacement(cfgs, k)))
        for choice in itertools.product(*per_group_cfgs):
            slots: dict[tuple[int, SliceRef], int] = {}
            for gi, cfgs in enumerate(choice):
                for c in cfgs:
                    for sl, n in c.slots if c else ():
                        slots[(gi, sl)] = slots.get((gi, sl), 0) + n
            if _assign(m, services, groups, nodes, slots):
                best = cost
                break
    return best


def _assign(m, services, groups, nodes, slots) -> bool:  # type: ignore[no-untyped-def]
    per_service = [[o for o in m.options if o.service == si] for si in range(len(services))]
    ranges = []
    for si, s in enumerate(services):
        opts = per_service[si]
        bounds = [range(max(s.min_replicas, math.ceil(s.peak_rps / o.capacity)) + 1) for o in opts]
        vecs = [
            v
            for v in itertools.product(*bounds)
            if sum(r * o.capacity for r, o in zip(v, opts, strict=True)) >= s.peak_rps - 1e-9
            and sum(v) >= s.min_replicas
        ]
        ranges.append(vecs)
    for combo in itertools.product(*ranges):
        use: dict[tuple[int, SliceRef], int] = {}
        cpu = [0.0] * len(groups)
        mem = [0] * len(groups)
        for si, vec in enumerate(combo):
            for r, o in zip(vec, per_service[si], strict=True):
                if o.slice.kind != "cpu":
                    use[(o.group, o.slice)] = use.get((o.group, o.slice), 0) + r
                cpu[o.group] += r * services[si].cpu
                mem[o.group] += r * services[si].host_memory_bytes
        if all(v <= slots.get(k, 0) for k, v in use.items()) and all(
            cpu[gi] <= g.cpu * nodes[gi] + 1e-9 and mem[gi] <= g.memory_bytes * nodes[gi] for gi, g in enumerate(groups)
        ):
            return True
    return False


def assert_within_capacity(p: Plan, services: list[ServiceDemand], groups: list[NodeGroup]) -> None:
    """Every node holds what it can; every GPU slot is used once; every service meets its peak."""
    by_name = {g.name: g for g in groups}
    sv = {s.name: s for s in services}
    assert not p.unplaced
    for node in p.packing:
        g = by_name[node.group]
        assert len(node.gpu_configs) <= g.gpus
        cpu = sum(sv[name].cpu for name, _, _ in node.replicas)
        mem = sum(sv[name].host_memory_bytes for name, _, _ in node.replicas)
        assert cpu <= g.cpu + 1e-9 and mem <= g.memory_bytes
        assert p.nodes[g.name] <= g.max_nodes
        assert node.index < p.nodes[g.name]
    for s in services:
        served = sum(pl.capacity_rps for pl in p.placements if pl.service == s.name)
        reps = sum(pl.replicas for pl in p.placements if pl.service == s.name)
        assert served >= s.peak_rps - 1e-6 and reps >= s.min_replicas
    placed = sum(len(n.replicas) for n in p.packing)
    assert placed == sum(pl.replicas for pl in p.placements)


SMALL_GROUPS = [
    NodeGroup("t4", "g4dn.xlarge", "T4", 1, 4, 16 * GIB, 0.53, 0, 3),
    NodeGroup("a100", "a2-highgpu-1g", "A100-40GB", 1, 12, 85 * GIB, 3.67, 0, 1),
    NodeGroup("cpu", "c6i.xlarge", None, 0, 4, 8 * GIB, 0.17, 0, 2),
]


def svc(name: str, peak: float, caps: dict[SliceRef, float], cpu: float = 1, mem_gib: int = 2) -> ServiceDemand:
    return ServiceDemand(name, peak, peak / 2, caps, {}, cpu, mem_gib * GIB)


CASES = [
    pytest.param([svc("a", 100, {T4: 120})], "one T4 covers the peak", id="single-t4"),
    pytest.param([svc("a", 300, {T4: 120, A40: 500})], "an A100 beats three T4s", id="a100-vs-3xt4"),
    pytest.param(
        [svc("a", 30, {mig("1g.5gb"): 40, T4: 60}), svc("b", 30, {mig("2g.10gb"): 50, T4: 60})],
        "two MIG slices on one A100 vs two T4s",
        id="mig-sharing",
    ),
    pytest.param(
        [svc("a", 20, {T4_2: 25, T4: 50}), svc("b", 20, {T4_2: 25, T4: 50})],
        "time-slicing puts both on one T4",
        id="time-slice",
    ),
    pytest.param([svc("a", 10, {CPU_SLICE: 6}, cpu=1)], "two CPU replicas on a CPU node", id="cpu-only"),
]


@pytest.mark.parametrize(("services", "why"), CASES)
def test_milp_equals_brute_force_on_small_instances(services: list[ServiceDemand], why: str) -> None:
    opts = PlannerOptions(share_counts=(2,))
    p = plan(services, SMALL_GROUPS, opts, method="milp")
    assert p.optimal
    assert p.cost_per_hour == pytest.approx(brute_force(services, SMALL_GROUPS, opts)), why
    assert_within_capacity(p, services, SMALL_GROUPS)


@st.composite
def small_instances(draw: st.DrawFn) -> list[ServiceDemand]:
    out = []
    for i in range(draw(st.integers(1, 2))):
        caps: dict[SliceRef, float] = {}
        for sl in draw(st.lists(st.sampled_from([T4, T4_2, A40, mig("1g.5gb"), mig("3g.20gb"), CPU_SLICE]),
                                min_size=1, max_size=3, unique=True)):  # fmt: skip
            caps[sl] = float(draw(st.integers(20, 60)))  # keeps brute force small
        peak = float(draw(st.integers(1, 60)))
        cpu = float(draw(st.sampled_from([0.5, 1, 2])))
        out.append(svc(f"s{i}", peak, caps, cpu=cpu))
    return out


@settings(max_examples=12, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_instances())
def test_milp_equals_brute_force_and_fits_for_random_small_instances(services: list[ServiceDemand]) -> None:
    opts = PlannerOptions(share_counts=(2,))
    expected = brute_force(services, SMALL_GROUPS, opts)
    if math.isinf(expected):
        with pytest.raises(InfeasiblePlan):
            plan(services, SMALL_GROUPS, opts, method="milp")
        return
    p = plan(services, SMALL_GROUPS, opts, method="milp")
    assert p.cost_per_hour == pytest.approx(expected)
    assert_within_capacity(p, services, SMALL_GROUPS)
    try:
        h = plan(services, SMALL_GROUPS, opts, method="heuristic")
    except InfeasiblePlan:
        return  # the greedy may miss a feasible packing; the exact solver did not
    assert h.cost_per_hour >= p.cost_per_hour - 1e-9
    assert h.lower_bound <= p.cost_per_hour + 1e-6
    assert_within_capacity(h, services, SMALL_GROUPS)


def test_memory_that_does_not_fit_a_slice_rules_it_out() -> None:
    """A model needing 8 GiB cannot use a 1g.5gb instance or half of a 16 GiB T4 shared 4 ways."""
    s = ServiceDemand(
        "big", 10, 5, {mig("1g.5gb"): 100, SliceRef("T4", "share", share=4): 100, T4: 20},
        {mig("1g.5gb"): 8 * GIB, SliceRef("T4", "share", share=4): 8 * GIB, T4: 8 * GIB},
    )  # fmt: skip
    m = build_model([s], SMALL_GROUPS, PlannerOptions(share_counts=(4,)))
    assert {str(o.slice) for o in m.options} == {"T4"}


def test_plan_beats_the_naive_plan_and_reports_spec_requests() -> None:
    services = [svc(f"m{i}", 20, {T4: 100, T4_2: 45}) for i in range(4)]
    groups = [NodeGroup("t4x4", "g4dn.12xlarge", "T4", 4, 48, 192 * GIB, 3.912, 0, 2)]
    p = plan(services, groups, PlannerOptions(share_counts=(2, 4)))
    naive = naive_plan(services, groups)
    assert p.naive_cost_per_hour == pytest.approx(naive.cost_per_hour)
    assert p.cost_per_hour <= naive.cost_per_hour
    for pl in p.placements:
        GpuSpec(**pl.gpu_spec)  # the gpu block is valid InferenceService spec
        assert pl.resource_name in pl.requests
    assert p.cost_per_million_requests == pytest.approx(p.cost_per_hour / (40 * 3600) * 1e6)


def test_min_nodes_are_paid_for_and_infeasible_demand_is_an_error() -> None:
    groups = [NodeGroup("t4", "g4dn.xlarge", "T4", 1, 4, 16 * GIB, 0.5, 2, 2)]
    p = plan([svc("a", 10, {T4: 100})], groups)
    assert p.nodes["t4"] == 2 and p.cost_per_hour == pytest.approx(1.0)
    with pytest.raises(InfeasiblePlan):
        plan([svc("a", 1000, {T4: 100})], groups)


def test_heuristic_gap_is_measured_against_the_lp_bound() -> None:
    services = [svc(f"m{i}", 10 + 7 * i, {T4: 40, T4_2: 18, A40: 150, mig("1g.5gb"): 25}) for i in range(6)]
    h = plan(services, SMALL_GROUPS, method="heuristic")
    bound = lp_bound(build_model(services, SMALL_GROUPS))
    assert h.lower_bound == pytest.approx(bound)
    assert 0 <= h.gap < 1


def test_service_demand_from_profile_estimates_unmeasured_slices() -> None:
    raw = {
        "model": "bert",
        "hostCpu": "500m",
        "hostMemory": "2Gi",
        "points": [
            {"slice": "A100-80GB", "batchSize": 8, "concurrency": 8, "throughputRps": 700,
             "latencyMs": {"p99": 40}, "peakMemory": "6Gi"},
            {"slice": "A100-80GB", "batchSize": 32, "concurrency": 64, "throughputRps": 1400,
             "latencyMs": {"p99": 120}, "peakMemory": "7Gi"},
        ],
    }  # fmt: skip
    prof = profile_from_dict(raw)
    d = ServiceDemand.from_profile("bert", prof, slo_ms=50, peak_rps=100)
    assert d.capacity[parse_slice("A100-80GB")] == 700
    assert d.capacity[parse_slice("A100-80GB/mig-1g.10gb")] == pytest.approx(100)
    assert d.capacity[parse_slice("A100-80GB/share-4")] == pytest.approx(175)
    assert d.memory_bytes[parse_slice("A100-80GB/mig-3g.40gb")] == 7 * GIB
    assert d.cpu == 0.5 and d.host_memory_bytes == 2 * GIB
    assert profile_from_dict(prof.to_dict()) == prof


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"points": []}, "points is empty"),
        ({"points": [{"slice": "A100-80GB/mig-9g.1gb", "throughputRps": 1, "latencyMs": {}}]}, "not a MIG profile"),
        ({"points": [{"slice": "T4", "throughputRps": -1, "latencyMs": {}}]}, "points[0].throughputRps"),
        ({"points": [{"slice": "T4", "throughputRps": 1, "latencyMs": {"p42": 1}}]}, "allowed p50"),
        ({"points": [{"slice": "T4", "latencyMs": {}}]}, "needs field 'throughputRps'"),
        ({"kind": "Other", "points": []}, "must be 'Profile'"),
    ],
)
def test_profile_errors_name_the_field(raw: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValueError, match=None) as e:
        profile_from_dict(raw)
    assert fragment in str(e.value)
