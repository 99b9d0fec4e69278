"""Fragmentation replay: hand-computed numbers on a tiny cluster, and the real Alibaba trace end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kubeinfer.placement.fragmentation import (
    POLICIES,
    Cluster,
    Workload,
    arrival_order,
    fragmentation_rate,
    replay,
)
from kubeinfer.sim.openb import load_nodes_csv, load_pods_csv, replay_files

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
NODES = DATA / "alibaba_gpu2023_openb_node_list_gpu_node.csv"
PODS = DATA / "alibaba_gpu2023_openb_pod_list_default.csv"


def cluster(*gpus: int, model: str = "T4") -> Cluster:
    return Cluster.from_rows(
        {"sn": f"n{i}", "cpu_milli": "64000", "memory_mib": "262144", "gpu": str(g), "model": model}
        for i, g in enumerate(gpus)
    )


def workload(*pods: tuple[int, int] | tuple[int, int, str]) -> Workload:
    return Workload.from_rows(
        {"name": f"p{i}", "cpu_milli": "1000", "memory_mib": "1024", "num_gpu": str(p[0]), "gpu_milli": str(p[1]),
         "gpu_spec": p[2] if len(p) > 2 else "", "creation_time": str(i)}  # type: ignore[misc]
        for i, p in enumerate(pods)
    )  # fmt: skip


# n0 has 2 GPUs, n1 has 1. A half-GPU pod, then a pod wanting 2 whole GPUs. Arrival stops at 80% of 3 GPUs.
# first-fit puts the half pod on n0, so the 2-GPU pod fails; best-fit (fuller node n1) and FGD (the move that
# fragments the least for this pod mix) keep n0 whole.
TINY = (cluster(2, 1), workload((1, 500), (2, 1000)))


@pytest.mark.parametrize(
    ("policy", "unallocated", "failed"),
    [
        ("first-fit", 1 - 500 / 3000, 2000 / 2500),
        ("best-fit", 500 / 3000, 0.0),
        ("fgd", 500 / 3000, 0.0),
        ("kubeinfer", 500 / 3000, 0.0),
    ],
)
def test_tiny_cluster_gives_hand_computed_shares(policy: str, unallocated: float, failed: float) -> None:
    r = replay(*TINY, policy, target=0.8, checkpoints=4)
    assert r.pods_arrived == 2
    assert r.final_unallocated == pytest.approx(unallocated)
    assert r.final_failed == pytest.approx(failed)
    assert len(r.unallocated_share) == 4 and r.arrived_share[-1] == pytest.approx(2500 / 3000)


def test_fragmentation_measure_matches_hand_computation() -> None:
    """Mix: half pods and 2-GPU pods (p=0.5 each). n0 = [500 free, 1000 free]: the half pod fits with no
    fragment; the 2-GPU pod cannot fit, so all 1500 free milli are fragments for it -> F = 750 of 3000."""
    c, w = TINY
    gpu_free = np.array([[500, 1000], [1000, -1]])
    cpu_free = c.cpu_milli - np.array([1000, 0])
    # n1: the 2-GPU pod never fits a 1-GPU node: 1000 fragment at p=0.5 -> 500. Total (750 + 500) / 3000.
    assert fragmentation_rate(c, w, gpu_free, cpu_free) == pytest.approx(1250 / 3000)


def test_gpu_model_constraint_is_honoured() -> None:
    r = replay(cluster(1), workload((1, 1000, "V100M16|V100M32")), "first-fit", target=1.0)
    assert r.pods_failed >= 1 and r.final_unallocated == 1.0


def test_arrival_resamples_with_a_fixed_seed_until_capacity_is_requested() -> None:
    w = workload((1, 300), (1, 700), (0, 0))
    a = arrival_order(w, 10_000, seed=3)
    b = arrival_order(w, 10_000, seed=3)
    assert np.array_equal(a, b) and list(a[:3]) == [0, 1, 2]
    total = w.gpu_request_milli[a].sum()
    assert total >= 10_000 and total - w.gpu_request_milli[a[-1]] < 10_000


def test_csv_loaders_read_the_alibaba_columns(tmp_path: Path) -> None:
    (tmp_path / "n.csv").write_text("sn,cpu_milli,memory_mib,gpu,model\nx,8000,1024,2,V100M16\n")
    (tmp_path / "p.csv").write_text(
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,"
        "scheduled_time\nb,100,10,1,250,V100M16|V100M32,LS,Running,5,9,5\na,100,10,0,0,,BE,Failed,1,2,1\n"
    )
    c = load_nodes_csv(tmp_path / "n.csv")
    w = load_pods_csv(tmp_path / "p.csv")
    assert c.names == ("x",) and int(c.gpus[0]) == 2 and c.models == ("V100M16",)
    assert w.names == ("a", "b")  # creation order
    assert w.gpu_spec[1] == frozenset({"V100M16", "V100M32"}) and int(w.gpu_milli[1]) == 250
    out = replay_files(tmp_path / "n.csv", tmp_path / "p.csv", ["first-fit", "fgd"], seed=1)
    json.dumps(out)
    assert [r["policy"] for r in out["results"]] == ["first-fit", "fgd"]


def test_unknown_policy_is_rejected_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"first-fit, best-fit, .*fgd, kubeinfer"):
        replay(*TINY, "worst-fit")


@pytest.mark.skipif(not NODES.exists(), reason="Alibaba trace not present in ../shared/data")
def test_real_trace_replays_and_fgd_leaves_fewer_gpus_unallocated_than_first_fit() -> None:
    c, w = load_nodes_csv(NODES), load_pods_csv(PODS)
    assert (len(c.names), len(w), c.gpu_capacity_milli // 1000) == (1213, 8152, 6212)
    res = {p: replay(c, w, p, seed=42) for p in ("first-fit", "fgd")}
    for r in res.values():
        assert r.pods_arrived > 8152 and r.arrived_share[-1] >= 1.0
        assert 0 < r.final_unallocated < 0.2
        assert r.unallocated_share == tuple(sorted(r.unallocated_share, reverse=True))
    assert res["fgd"].final_unallocated < res["first-fit"].final_unallocated
    assert set(POLICIES) >= set(res)
