"""The lower bound on unallocated GPUs: exact on instances small enough to solve by hand or by enumeration, never
above what a policy reaches, and never below the node-group LP it extends."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubeinfer.placement.bound import (
    configuration_lower_bound,
    group_configuration_lower_bound,
    lp_lower_bound,
    size_class_lower_bound,
    unallocated_lower_bound,
)
from kubeinfer.placement.fragmentation import FULL, Cluster, Workload, replay_many
from kubeinfer.placement.variants import PRESETS, make_variant

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
NODES = DATA / "alibaba_gpu2023_openb_node_list_gpu_node.csv"
PODS = DATA / "alibaba_gpu2023_openb_pod_list_default.csv"
POLICIES = ("first-fit", "best-fit", "fgd", "kubeinfer")


def cluster(rows: list[tuple[int, str]], cpu: int = 64000) -> Cluster:
    return Cluster.from_rows(
        {"sn": f"n{i}", "cpu_milli": str(cpu), "memory_mib": "262144", "gpu": str(g), "model": m}
        for i, (g, m) in enumerate(rows)
    )


def workload(pods: list[tuple[int, int, str]], cpu: int = 2000) -> Workload:
    return Workload.from_rows(
        {"name": f"p{i}", "cpu_milli": str(cpu), "memory_mib": "1024", "num_gpu": str(n), "gpu_milli": str(m),
         "gpu_spec": s, "creation_time": str(i)}
        for i, (n, m, s) in enumerate(pods)
    )  # fmt: skip


def shares(*milli: int) -> Workload:
    return workload([(1, m, "") for m in milli])


FOUR = cluster([(4, "T4")])


# ------------------------------------------------------------------------------------ hand-computed instances


def test_gaps_of_the_big_pods_that_only_small_pods_fit_stay_free() -> None:
    """Four GPUs; 700, 700, 700, 600 take one GPU each and leave gaps 300, 300, 300, 400. The two 350s only fit
    the 400 gap (one of them), the two 200s fit two 300 gaps: at best 2700 + 350 + 400 = 3450 of 4000 milli are
    placed, 13.75% stays free. The node-group LP sees 3800 milli of room (5%)."""
    w = shares(700, 700, 700, 600, 350, 350, 200, 200)
    assert lp_lower_bound(FOUR, w) == pytest.approx(0.05)
    assert configuration_lower_bound(FOUR, w) == pytest.approx(0.1375, abs=1e-6)
    assert unallocated_lower_bound(FOUR, w) == pytest.approx(0.1375, abs=1e-6)
    # the closed form lets a 350 into the 400 gap in part (fractional flow): 800 of gaps filled, 12.5%
    assert size_class_lower_bound(FOUR, w) == pytest.approx(0.125)


def test_leaving_a_big_pod_out_can_place_more() -> None:
    """700 x 3, 600, 450, 450, 200 on four GPUs: placing every big pod gives 2700 + 200 (the 450s fit no gap), but
    leaving the 600 out frees a GPU for both 450s: 2100 + 900 + 200 = 3200, 20% free, which is the optimum. A
    bound that assumed every big pod placed (27.5%) would be wrong here."""
    w = shares(700, 700, 700, 600, 450, 450, 200)
    for bound in (size_class_lower_bound, configuration_lower_bound, unallocated_lower_bound):
        assert bound(FOUR, w) == pytest.approx(0.2, abs=1e-6)


def test_three_pods_above_a_third_never_share_a_gpu() -> None:
    """Nine 470s on four GPUs: two per GPU, one left out: 8 x 470 = 3760, 6% free (only the configuration LP sees
    it; the size classes call every 470 small)."""
    w = shares(*[470] * 9)
    assert size_class_lower_bound(FOUR, w) == pytest.approx(0.0)
    assert unallocated_lower_bound(FOUR, w) == pytest.approx(0.06, abs=1e-6)


def test_cpu_of_a_node_strands_its_gpus() -> None:
    """One node of 4 GPUs and 96 cores; two pods of 40 cores and two of 35, each one whole GPU: no three fit the
    CPU (110 cores), so two GPUs stay free (50%). The node-group LP fills the CPU in part (96 / 35 ...: 33.75%) and
    the per-GPU bounds do not see CPU at all (0%); the node-group configuration LP's cut (a pod above a third of
    the node's CPU counts as half a node) gives the exact 50%."""
    c = Cluster.from_rows([{"sn": "n0", "cpu_milli": "96000", "memory_mib": "262144", "gpu": "4", "model": "G2"}])
    w = Workload.from_rows(
        {"name": f"p{i}", "cpu_milli": str(cpu), "memory_mib": "1024", "num_gpu": "1", "gpu_milli": "1000",
         "creation_time": str(i)}
        for i, cpu in enumerate([40000, 40000, 35000, 35000])
    )  # fmt: skip
    assert lp_lower_bound(c, w) == pytest.approx(0.3375, abs=1e-6)
    assert configuration_lower_bound(c, w) == pytest.approx(0.0, abs=1e-6)
    assert group_configuration_lower_bound(c, w) == pytest.approx(0.5, abs=1e-6)
    assert unallocated_lower_bound(c, w) == pytest.approx(0.5, abs=1e-6)


def test_pinned_models_and_shares_together() -> None:
    """A T4 node and a V100 node of two GPUs each; three 600s and three 470s, all pinned to T4. A T4 GPU holds one
    600 or two 470s: 600 + 940 placed at best (61.5% free). The node-group LP splits the T4 milli (2000 placed: 50%),
    the per-GPU bounds put pods on the V100 GPUs (the configuration LP: 27.25%); the node-group configuration LP takes T4 patterns {600}
    and {470, 470} on two GPUs with 1.5 of the latter: 300 + 1410 = 1710 (57.25%)."""
    c = cluster([(2, "T4"), (2, "V100M16")])
    w = workload([(1, 600, "T4")] * 3 + [(1, 470, "T4")] * 3)
    assert lp_lower_bound(c, w) == pytest.approx(0.5, abs=1e-6)
    assert configuration_lower_bound(c, w) == pytest.approx(0.2725, abs=1e-6)
    assert group_configuration_lower_bound(c, w) == pytest.approx(0.5725, abs=1e-6)
    assert unallocated_lower_bound(c, w) == pytest.approx(0.5725, abs=1e-6)


def test_pods_that_fit_no_node_count_as_never_placed() -> None:
    """A 4-GPU pod on 2-GPU nodes and a pod pinned to a missing model are never placed: 2 of 4 GPUs stay free."""
    c = cluster([(2, "T4"), (2, "T4")])
    w = workload([(4, 1000, ""), (1, 1000, "V100M16"), (2, 1000, "")])
    assert configuration_lower_bound(c, w) == pytest.approx(0.5, abs=1e-6)
    assert size_class_lower_bound(c, w) == pytest.approx(0.5)


def test_edges() -> None:
    assert unallocated_lower_bound(cluster([(0, "")]), shares(500)) == 0.0  # no GPU capacity
    assert unallocated_lower_bound(FOUR, workload([(0, 0, "")])) == 1.0  # no GPU pod arrived
    assert unallocated_lower_bound(FOUR, shares(1000, 1000, 1000, 1000)) == pytest.approx(0.0, abs=1e-6)
    assert unallocated_lower_bound(FOUR, shares(500, 500, 300), pods=[0]) == pytest.approx(0.875, abs=1e-6)


# --------------------------------------------------------------------------------- against exact enumeration


def _most_placed(sizes: list[int], bins: int) -> int:
    """The most milli of ``sizes`` that ``bins`` GPUs hold (enumeration: each item on a GPU or left out)."""
    order = sorted(sizes, reverse=True)
    best = 0

    def go(i: int, free: list[int], placed: int) -> None:
        nonlocal best
        if placed + sum(order[i:]) <= best:
            return
        if i == len(order):
            best = placed
            return
        seen: set[int] = set()
        for b in range(bins):
            if free[b] >= order[i] and free[b] not in seen:
                seen.add(free[b])
                free[b] -= order[i]
                go(i + 1, free, placed + order[i])
                free[b] += order[i]
        go(i + 1, free, placed)

    go(0, [FULL] * bins, 0)
    return best


@settings(max_examples=60, deadline=None)
@given(
    gpus=st.lists(st.integers(1, 2), min_size=1, max_size=2),
    milli=st.lists(st.sampled_from([100, 200, 250, 300, 350, 400, 450, 500, 550, 600, 700, 800, 1000]), max_size=8),
)
def test_no_packing_beats_the_bounds(gpus: list[int], milli: list[int]) -> None:
    """On random share lists small enough to enumerate, every bound is at most the exact least unallocated share."""
    c = cluster([(g, "T4") for g in gpus])
    w = shares(*milli) if milli else workload([(0, 0, "")])
    exact = 1.0 - _most_placed(milli, sum(gpus)) / (sum(gpus) * FULL) if milli else 1.0
    for bound in (lp_lower_bound, size_class_lower_bound, configuration_lower_bound, unallocated_lower_bound):
        assert bound(c, w) <= exact + 1e-9, bound.__name__


def _most_placed_on_nodes(c: Cluster, w: Workload) -> int:
    """The most GPU milli of ``w`` that ``c`` holds, every pod on one node within its CPU, memory, allowed models
    and GPUs (each of its ``num_gpu`` GPUs with ``gpu_milli`` free), or left out (enumeration)."""
    order = sorted(range(len(w)), key=lambda i: -int(w.gpu_request_milli[i]))
    req = [int(w.gpu_request_milli[i]) for i in order]
    rest = [sum(req[j:]) for j in range(len(req) + 1)]
    free = [[FULL] * int(g) for g in c.gpus.tolist()]
    cpu, mem = c.cpu_milli.tolist(), c.memory_mib.tolist()
    best = 0

    def go(k: int, placed: int) -> None:
        nonlocal best
        if placed + rest[k] <= best:
            return
        if k == len(order):
            best = placed
            return
        i = order[k]
        num, milli = int(w.num_gpu[i]), int(w.gpu_milli[i])
        pc, pm, spec = int(w.cpu_milli[i]), int(w.memory_mib[i]), w.gpu_spec[i]
        for n in range(len(free)):
            if cpu[n] < pc or mem[n] < pm or (spec and c.models[n] not in spec):
                continue
            for gpus in itertools.combinations(range(len(free[n])), num):
                if any(free[n][g] < milli for g in gpus):
                    continue
                cpu[n] -= pc
                mem[n] -= pm
                for g in gpus:
                    free[n][g] -= milli
                go(k + 1, placed + num * milli)
                cpu[n] += pc
                mem[n] += pm
                for g in gpus:
                    free[n][g] += milli
        go(k + 1, placed)

    go(0, 0)
    return best


@settings(max_examples=100, deadline=None)
@given(
    nodes=st.lists(
        st.tuples(st.integers(1, 3), st.sampled_from([4000, 8000, 12000]), st.sampled_from([8192, 16384]),
                  st.sampled_from(["T4", "V100M16"])),
        min_size=1, max_size=3,
    ),
    kinds=st.lists(
        st.tuples(st.sampled_from([0, 1, 1, 1, 2]), st.sampled_from([200, 350, 470, 500, 600, 810, 1000]),
                  st.sampled_from([1000, 2000, 3000, 5000, 7000]), st.sampled_from([1024, 4096, 9000]),
                  st.sampled_from(["", "", "T4", "V100M16"]), st.integers(1, 3)),
        max_size=4,
    ),
)  # fmt: skip
def test_no_packing_on_nodes_beats_the_bounds(
    nodes: list[tuple[int, int, int, str]], kinds: list[tuple[int, int, int, int, str, int]]
) -> None:
    """Random small clusters whose nodes differ in GPUs, CPU, memory and model, and pods that differ in all of
    those and in GPU share (multi-GPU pods ask for whole GPUs): every bound is at most the exact least unallocated
    share, found by enumerating every placement. Pods come in kinds of up to three alike (several pods of one type
    are what the per-type and per-node limits count)."""
    pods = [k[:5] for k in kinds for _ in range(k[5])]
    c = Cluster.from_rows(
        {"sn": f"n{i}", "cpu_milli": str(cpu), "memory_mib": str(mem), "gpu": str(g), "model": m}
        for i, (g, cpu, mem, m) in enumerate(nodes)
    )
    w = Workload.from_rows(
        {"name": f"p{i}", "cpu_milli": str(cpu), "memory_mib": str(mem), "num_gpu": str(num),
         "gpu_milli": str(FULL if num > 1 else milli), "gpu_spec": spec, "creation_time": str(i)}
        for i, (num, milli, cpu, mem, spec) in enumerate(pods or [(0, 0, 1000, 1024, "")])
    )  # fmt: skip
    exact = 1.0 - _most_placed_on_nodes(c, w) / c.gpu_capacity_milli if w.gpu_request_milli.sum() else 1.0
    for bound in (lp_lower_bound, size_class_lower_bound, configuration_lower_bound,
                  group_configuration_lower_bound, unallocated_lower_bound):  # fmt: skip
        assert bound(c, w) <= exact + 1e-9, bound.__name__


def test_combined_bound_is_the_largest_of_the_bounds() -> None:
    rng = np.random.default_rng(0)
    sizes = [100, 230, 320, 470, 550, 650, 810, 1000]
    c = cluster([(8, "G2")] * 3 + [(2, "T4")] * 4)
    for _ in range(10):
        w = shares(*rng.choice(sizes, size=int(rng.integers(10, 60))).tolist())
        parts = [b(c, w) for b in (lp_lower_bound, size_class_lower_bound, configuration_lower_bound,
                                   group_configuration_lower_bound)]  # fmt: skip
        got = unallocated_lower_bound(c, w)
        assert got == max(parts) and got >= lp_lower_bound(c, w)


# ----------------------------------------------------------------------------------------- against policies


def _check_policies(c: Cluster, w: Workload, seed: int) -> float:
    """Replay the four policies to 100% of capacity; each one's unallocated share is at least the bound, which is
    at least the LP's. Returns the bound."""
    lp: list[float] = []

    def bound(ws: Workload, arr: np.ndarray) -> float:
        lp.append(lp_lower_bound(c, ws, arr))
        return unallocated_lower_bound(c, ws, arr)

    doc = replay_many(c, w, POLICIES, seeds=(seed,), target=1.0, lower_bound=bound)
    got = doc["perSeedLowerBoundAt100"][0]
    assert got >= lp[0] - 1e-9
    for r in doc["results"]:
        assert r["perSeedUnallocatedAt100"][0] >= got - 1e-9, r["policy"]
    return float(got)


SOURCE = workload(
    [(0, 0, "")] * 10 + [(1, 160, ""), (1, 320, ""), (1, 470, ""), (1, 650, ""), (1, 810, "")] * 10
    + [(1, 1000, "")] * 20 + [(2, 1000, ""), (4, 1000, ""), (8, 1000, "")] * 5
)  # fmt: skip
CLUSTER = cluster([(8, "G2")] * 6 + [(2, "T4")] * 6 + [(4, "V100M16")] * 3 + [(2, "P100")] * 4)


@pytest.mark.parametrize("name", ["trace", "gpushare100", "gpuspec33", "multigpu50"])
@pytest.mark.parametrize("seed", [1, 2])
def test_no_policy_beats_the_bound_on_synthetic_mixes(name: str, seed: int) -> None:
    w = SOURCE if name == "trace" else make_variant(SOURCE, PRESETS[name], seed, CLUSTER)
    _check_policies(CLUSTER, w, seed)


@pytest.mark.skipif(not NODES.exists(), reason="Alibaba trace not present in ../shared/data")
@pytest.mark.parametrize("name", ["trace", "gpushare40", "gpushare100", "gpuspec33", "cpu25"])
@pytest.mark.parametrize("seed", [1, 7])
def test_no_policy_beats_the_bound_on_a_slice_of_the_real_trace(name: str, seed: int) -> None:
    """Every 25th node of the Alibaba cluster (about 50 nodes) with the trace's pods re-drawn to the mix."""
    from kubeinfer.sim.openb import load_nodes_csv, load_pods_csv

    full = load_nodes_csv(NODES)
    keep = np.arange(0, len(full.names), 25)
    c = Cluster(tuple(full.names[i] for i in keep), full.cpu_milli[keep], full.memory_mib[keep], full.gpus[keep],
                tuple(full.models[i] for i in keep))  # fmt: skip
    pods = load_pods_csv(PODS)
    w = pods if name == "trace" else make_variant(pods, PRESETS[name], seed, c)
    got = _check_policies(c, w, seed)
    if name == "gpushare100":
        assert got > 0.05  # the LP says 0 here; the per-GPU bounds do not
