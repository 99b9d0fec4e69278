"""The Cluster Autoscaler model reproduces CA's documented scale-up and scale-down behaviour."""

from __future__ import annotations

from dataclasses import replace

import pytest

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
    utilization,
)

SMALL = NodeGroupSpec("small", 2000, 8192, price_per_hour=0.1, max_size=10, provision_seconds=60)
BIG = NodeGroupSpec("big", 8000, 32768, price_per_hour=0.5, max_size=10, provision_seconds=60)
GPU = NodeGroupSpec("gpu", 8000, 32768, gpus=2, price_per_hour=1.0, max_size=4, provision_seconds=120)


def pods(n: int, cpu: int = 1000, mem: int = 1024, gpus: int = 0, prefix: str = "p") -> list[Pod]:
    return [Pod(f"{prefix}{i}", cpu, mem, gpus) for i in range(n)]


def scale_ups(actions: tuple[object, ...]) -> list[ScaleUp]:
    return [a for a in actions if isinstance(a, ScaleUp)]


def deletes(actions: tuple[object, ...]) -> list[DeleteNode]:
    return [a for a in actions if isinstance(a, DeleteNode)]


# ------------------------------------------------------------------------------------------ scale-up


@pytest.mark.parametrize(
    ("groups", "expander", "pending", "group", "count"),
    [
        pytest.param([SMALL], "random", pods(5), "small", 3, id="binpacking-5x1cpu-on-2cpu-nodes"),
        pytest.param([SMALL, BIG], "least-waste", pods(5, 1500, 6000), "big", 1, id="least-waste-prefers-fuller-node"),
        pytest.param([SMALL, BIG], "least-waste", pods(2), "small", 1, id="least-waste-exact-fit"),
        pytest.param([SMALL, BIG], "price", pods(8), "small", 4, id="price-prefers-cheaper-per-pod"),
        pytest.param([SMALL, BIG], "most-pods", pods(2, cpu=3000), "big", 1, id="most-pods-only-big-fits"),
        pytest.param([SMALL, GPU], "random", pods(3, gpus=1), "gpu", 2, id="gpu-pods-need-gpu-group"),
    ],
)
def test_scale_up_simulates_scheduling_and_applies_the_expander(
    groups: list[NodeGroupSpec], expander: str, pending: list[Pod], group: str, count: int
) -> None:
    ca = ClusterAutoscaler(groups, AutoscalerConfig(expander=expander))  # type: ignore[arg-type]
    actions, state = ca.step(ca.initial_state(), pending, now=0.0)
    (up,) = scale_ups(actions)
    assert (up.group, up.count) == (group, count)
    assert len(state.nodes) == count and state.last_scale_up == 0.0


def test_priority_expander_picks_the_highest_priority_group() -> None:
    cfg = AutoscalerConfig(expander="priority", priorities={"big": 10, "small": 1})
    ca = ClusterAutoscaler([SMALL, BIG], cfg)
    (up,) = scale_ups(ca.step(ca.initial_state(), pods(1), 0.0)[0])
    assert up.group == "big"


def test_random_expander_is_deterministic_for_a_seed() -> None:
    picks = set()
    for _ in range(3):
        ca = ClusterAutoscaler([SMALL, BIG], AutoscalerConfig(expander="random", seed=7))
        picks.add(scale_ups(ca.step(ca.initial_state(), pods(1), 0.0)[0])[0].group)
    assert len(picks) == 1


def test_group_at_max_size_is_not_scaled_and_scale_up_is_capped() -> None:
    ca = ClusterAutoscaler([replace(SMALL, max_size=2)])
    actions, state = ca.step(ca.initial_state(), pods(10), 0.0)
    assert scale_ups(actions)[0].count == 2
    actions, _ = ca.step(state, pods(10, prefix="q"), 1.0)
    assert scale_ups(actions) == []


def test_pods_wait_for_provisioning_nodes_then_bind_when_ready() -> None:
    ca = ClusterAutoscaler([SMALL])
    actions, state = ca.step(ca.initial_state(), pods(2), 0.0)
    assert scale_ups(actions)[0].count == 1
    actions, state = ca.step(state, pods(2), 30.0)  # node not ready yet: no second scale-up
    assert actions == ()
    actions, state = ca.step(state, pods(2), 60.0)
    assert [a for a in actions if isinstance(a, Bind)] == [Bind("p0", "small-0"), Bind("p1", "small-0")]


def test_pods_that_fit_existing_nodes_do_not_scale_up() -> None:
    ca = ClusterAutoscaler([replace(SMALL, min_size=1)])
    actions, _ = ca.step(ca.initial_state(), pods(2), 0.0)
    assert scale_ups(actions) == [] and len(actions) == 2


def test_pod_too_big_for_every_group_triggers_nothing() -> None:
    ca = ClusterAutoscaler([SMALL])
    actions, _ = ca.step(ca.initial_state(), pods(1, cpu=4000), 0.0)
    assert actions == ()


def test_node_not_ready_within_max_provision_time_is_removed_and_group_backed_off() -> None:
    slow = replace(SMALL, provision_seconds=2000)
    ca = ClusterAutoscaler([slow, BIG], AutoscalerConfig(expander="priority", priorities={"small": 5}))
    _, state = ca.step(ca.initial_state(), pods(1), 0.0)
    actions, state = ca.step(state, pods(1), 900.0)
    assert deletes(actions)[0].reason.startswith("not ready")
    assert scale_ups(actions)[0].group == "big"  # "small" is backed off


# ---------------------------------------------------------------------------------------- scale-down


def cluster(*nodes: Node) -> ClusterState:
    return ClusterState(nodes=nodes, created=len(nodes))


@pytest.mark.parametrize(
    ("node", "group", "expected"),
    [
        (Node("n", "small", 0, tuple(pods(1))), SMALL, 0.5),
        (Node("n", "small", 0, (Pod("m", 100, 6144),)), SMALL, 0.75),  # memory dominates
        (Node("g", "gpu", 0, (Pod("c", 7000, 1000, 0), Pod("x", 100, 100, 1))), GPU, 0.5),  # GPU judged by GPU
        (Node("g", "gpu", 0, (Pod("c", 7000, 1000, 0),)), GPU, 0.0),
    ],
)
def test_utilization_is_gpu_requests_on_gpu_nodes_else_max_cpu_memory(
    node: Node, group: NodeGroupSpec, expected: float
) -> None:
    assert utilization(node, group) == pytest.approx(expected)


def two_small(p_on_second: tuple[Pod, ...] = (Pod("x", 500, 512),)) -> ClusterState:
    return cluster(Node("a", "small", 0, tuple(pods(1))), Node("b", "small", 0, p_on_second))


@pytest.mark.parametrize(
    ("times", "deleted_at"),
    [
        pytest.param([0, 300, 599], None, id="not-before-unneeded-time"),
        pytest.param([0, 300, 600], 600, id="after-10-minutes-unneeded"),
        pytest.param([100, 700], 700, id="clock-starts-when-first-seen-unneeded"),
    ],
)
def test_underused_node_is_removed_after_scale_down_unneeded_time(times: list[float], deleted_at: float | None) -> None:
    ca = ClusterAutoscaler([SMALL])
    state = two_small()
    seen = None
    for t in times:
        actions, state = ca.step(state, [], float(t))
        for d in deletes(actions):
            seen = t
            assert d.node == "b" and d.moved == (("x", "a"),)
    assert seen == deleted_at


def test_no_scale_down_within_delay_after_add() -> None:
    ca = ClusterAutoscaler([SMALL])
    state = replace(two_small(), last_scale_up=500.0)
    for t in (0, 600, 1099):
        actions, state = ca.step(state, [], float(t))
        assert deletes(actions) == []
    actions, state = ca.step(state, [], 1100.0)
    assert [d.node for d in deletes(actions)] == ["b"]


def test_delay_after_delete_defaults_to_the_scan_interval() -> None:
    ca = ClusterAutoscaler([SMALL])
    state = cluster(*(Node(f"e{i}", "small", 0) for i in range(12)), Node("f", "small", 0, tuple(pods(1))))
    _, state = ca.step(state, [], 0.0)
    actions, state = ca.step(state, [], 600.0)
    assert len(deletes(actions)) == 10  # max-empty-bulk-delete
    actions, state = ca.step(state, [], 605.0)
    assert deletes(actions) == []  # within 10 s of the last delete
    actions, state = ca.step(state, [], 610.0)
    assert len(deletes(actions)) == 2


@pytest.mark.parametrize(
    ("state", "groups", "why"),
    [
        (two_small(tuple(pods(1, prefix="y"))), [SMALL], "utilization 0.5 is not below the 0.5 threshold"),
        (two_small(), [replace(SMALL, min_size=2)], "group at min size"),
        (
            cluster(Node("a", "small", 0, tuple(pods(2))), Node("b", "small", 0, (Pod("x", 500, 512),))),
            [SMALL],
            "its pod fits nowhere else",
        ),
        (
            cluster(Node("g0", "gpu", 0, (Pod("a", 100, 100, 2),)), Node("g1", "gpu", 0, (Pod("b", 100, 100, 1),))),
            [GPU],
            "GPU node half used by GPU requests",
        ),
    ],
)
def test_needed_nodes_are_kept(state: ClusterState, groups: list[NodeGroupSpec], why: str) -> None:
    ca = ClusterAutoscaler(groups)
    for t in (0.0, 700.0, 1400.0):
        actions, state = ca.step(state, [], t)
        assert deletes(actions) == [], why


def test_gpu_node_with_busy_cpu_but_idle_gpus_is_scaled_down() -> None:
    ca = ClusterAutoscaler([GPU, BIG])
    state = cluster(
        Node("g0", "gpu", 0, (Pod("cpu-heavy", 4000, 1000),)),  # CPU 50% used, GPUs idle
        Node("b0", "big", 0, (Pod("other", 4000, 1000),)),
    )
    _, state = ca.step(state, [], 0.0)
    actions, _ = ca.step(state, [], 600.0)
    assert "g0" in [d.node for d in deletes(actions)]
