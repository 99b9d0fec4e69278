"""The share plan of the kubeinfer placement policy: GPU fill patterns from the configuration LP of the shares
arrived so far, and the online ranks that make shares build them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubeinfer.placement import fragmentation, shareplan
from kubeinfer.placement.fragmentation import FULL, Cluster, Workload, replay
from kubeinfer.placement.shareplan import SharePlan
from kubeinfer.placement.variants import PRESETS, Variant, make_variant
from kubeinfer.sim.openb import load_nodes_csv, load_pods_csv

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
NODES = DATA / "alibaba_gpu2023_openb_node_list_gpu_node.csv"
PODS = DATA / "alibaba_gpu2023_openb_pod_list_default.csv"


def solved(counts: dict[int, int], extra: tuple[int, ...] = ()) -> SharePlan:
    """A plan over two 4-GPU nodes whose shares arrived in ``counts`` (size: how many); ``extra`` sizes exist in
    the workload but have not arrived."""
    free = np.full((2, 4), FULL, dtype=np.int64)
    plan = SharePlan(free.shape, [*counts, *extra], FULL)
    for milli, n in counts.items():
        for _ in range(n):
            plan.arrive(milli)
    plan.next_solve = 0
    plan.arrive(next(iter(counts)))  # solve now, on what arrived
    return plan


def patterns(plan: SharePlan) -> set[tuple[int, ...]]:
    assert plan.plan is not None
    return {
        tuple(sorted((int(s) for s, k in zip(plan.sizes, row, strict=True) for _ in range(int(k))), reverse=True))
        for row in plan.plan
    }


def test_the_plan_pairs_sizes_that_fill_a_gpu() -> None:
    plan = solved({810: 50, 160: 51, 650: 40, 350: 40, 470: 60})
    got = patterns(plan)
    assert {(810, 160), (650, 350)} <= got
    # the LP's optimum: 50 GPUs of (810, 160), 40 of (650, 350), 30 of (470, 470) -- no pattern wastes more
    assert all(sum(p) >= 810 for p in got), got
    assert plan.plan is not None and len(plan.plan) <= len(plan.sizes)


def test_ranks_complete_then_continue_then_start_then_off_the_plan() -> None:
    plan = solved({810: 50, 160: 50, 650: 40, 350: 40}, extra=(230,))
    nodes = np.array([0, 1])
    plan.place(0, 0, 160)  # waits for an 810
    plan.place(0, 1, 650)  # waits for a 350
    free = np.array([[840, 350, FULL, FULL], [FULL, FULL, FULL, FULL]])
    r810 = plan.ranks(nodes, 810, free >= 810)
    assert r810[0].tolist() == [0, 9, 2, 2]  # completes (810, 160); cannot fit next to the 650; starts a pattern
    r350 = plan.ranks(nodes, 350, free >= 350)
    assert r350[0].tolist() == [3, 0, 2, 2]  # 160 + 350 is on no pattern; 650 + 350 completes one
    r230 = plan.ranks(nodes, 230, free >= 230)
    assert (r230[free >= 230] == 3).all()  # a size that arrived after the plan was solved: off the plan anywhere
    assert SharePlan.pick(free[0], r350[0], value=FULL) == 1  # FGD's free value is off the best rank: the fullest
    assert SharePlan.pick(free[0], r810[0], value=840) == 0


def test_no_plan_before_enough_shares_arrived() -> None:
    free = np.full((1, 2), FULL, dtype=np.int64)
    plan = SharePlan(free.shape, [500], FULL)
    for _ in range(shareplan.PLAN_MIN_SHARES - 1):
        plan.arrive(500)
    assert plan.plan is None
    assert plan.ranks(np.array([0]), 500, np.array([[True, False]])).tolist() == [[0, 9]]
    plan.arrive(500)
    assert patterns(plan) == {(500, 500)}


def subset(c: Cluster, n: int, seed: int) -> Cluster:
    idx = np.random.default_rng(seed).choice(len(c.names), n, replace=False)
    return Cluster(
        names=tuple(c.names[i] for i in idx.tolist()),
        cpu_milli=c.cpu_milli[idx],
        memory_mib=c.memory_mib[idx],
        gpus=c.gpus[idx],
        models=tuple(c.models[i] for i in idx.tolist()),
    )


@pytest.mark.skipif(not NODES.exists(), reason="Alibaba trace not present in ../shared/data")
def test_following_the_plan_leaves_fewer_gpus_unallocated_when_every_gpu_pod_shares(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """150 nodes of the Alibaba cluster, every GPU pod a share (the ``gpushare100`` mix), three draws: with the
    plan, fewer GPUs are unallocated at 100% arrival on every draw (0.6-1.0 point fewer when this was written)."""
    c = subset(load_nodes_csv(NODES), 150, seed=0)
    source = load_pods_csv(PODS)
    for seed in (1, 2, 3):
        w = make_variant(source, PRESETS["gpushare100"], seed, c)
        got = {}
        for guided in (False, True):
            monkeypatch.setattr(fragmentation, "PLAN_GUIDED", guided)
            r = replay(c, w, "kubeinfer", seed=seed, target=1.3, order="shuffle")
            got[guided] = fragmentation._at(r.unallocated_share, r.arrived_share, 1.0)
        assert got[True] < got[False] - 0.003, (seed, got)


@pytest.mark.skipif(not NODES.exists(), reason="Alibaba trace not present in ../shared/data")
def test_nodes_kept_for_large_multi_gpu_pods_never_cost_and_save_where_they_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two draws of 200 Alibaba nodes, a mix of a tenth shares and a quarter multi-GPU pods, four draws of pods:
    keeping the hosts of large multi-GPU pods for them is never worse, and where 8-GPU pods of 120 cores found no
    node without it (draw 3 on both clusters: 3.05% -> 2.27% and 4.55% -> 3.78% when this was written) it is
    better."""
    source = load_pods_csv(PODS)
    nodes = load_nodes_csv(NODES)
    mix = Variant("multi", gpu_share=0.1, multi_gpu=0.25)
    better = 0
    for cluster_seed in (0, 1):
        c = subset(nodes, 200, seed=cluster_seed)
        for seed in (1, 2, 3, 4):
            w = make_variant(source, mix, seed, c)
            got = {}
            for keep in (False, True):
                monkeypatch.setattr(fragmentation, "KEEP_WHOLE", keep)
                r = replay(c, w, "kubeinfer", seed=seed, target=1.3, order="shuffle")
                got[keep] = fragmentation._at(r.unallocated_share, r.arrived_share, 1.0)
            assert got[True] <= got[False] + 1e-9, (cluster_seed, seed, got)
            better += got[True] < got[False] - 0.003
    assert better >= 2


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    sizes=st.lists(st.integers(50, 950), min_size=1, max_size=6),
    multi=st.floats(0.0, 0.5),
    share=st.floats(0.3, 1.0),
)
def test_with_the_plan_and_kept_nodes_no_gpu_is_overfilled_and_multi_gpu_pods_get_untouched_gpus(
    seed: int, sizes: list[int], multi: float, share: float
) -> None:
    """The plan from the fourth share on and the kept nodes refreshed at every arrival, on random share sizes: the
    hard guarantees of a placement hold (no GPU above 1000 milli, a multi-GPU pod's GPUs whole and untouched)."""
    rng = np.random.default_rng(seed)
    c = Cluster.from_rows(
        {"sn": f"n{i}", "cpu_milli": str(int(rng.choice([16000, 64000, 128000]))), "memory_mib": "262144",
         "gpu": str(int(rng.choice([1, 2, 4, 8]))), "model": "T4"}
        for i in range(12)
    )  # fmt: skip
    rows = []
    for i in range(200):
        kind = rng.random()
        n, m = (int(rng.choice([2, 4, 8])), FULL) if kind < multi else (1, int(rng.choice(sizes)))
        if kind >= multi + share * (1 - multi):
            m = FULL
        rows.append({"name": f"p{i}", "cpu_milli": str(int(rng.choice([1000, 4000, 12000]))), "memory_mib": "1024",
                     "num_gpu": str(n), "gpu_milli": str(m), "creation_time": str(i)})  # fmt: skip
    w = Workload.from_rows(rows)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(shareplan, "PLAN_MIN_SHARES", 4)
        mp.setattr(fragmentation, "KEEP_EVERY", 1)
        r = replay(c, w, "kubeinfer", seed=seed, target=1.2, order="shuffle", record=True)
    used = np.zeros((len(c.names), int(c.gpus.max())), dtype=np.int64)
    for pod, node, gpus in r.placements:
        num, milli = int(w.num_gpu[pod]), int(w.gpu_milli[pod])
        assert len(gpus) == num and len(set(gpus)) == num and all(g < int(c.gpus[node]) for g in gpus)
        if num > 1:
            assert all(used[node, g] == 0 for g in gpus)
        for g in gpus:
            used[node, g] += milli
    assert (used <= FULL).all()
