"""Node-level cost: replicas wait for the nodes the cluster autoscaler model adds, and nodes are billed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kubeinfer.autoscale.factory import FixedReplicas
from kubeinfer.placement.autoscaler import NodeGroupSpec
from kubeinfer.sim.engine import EngineConfig, simulate_policy
from kubeinfer.sim.nodes import NodeModel, NodeSetup, node_setup_from_dict, pod_from_requests

GROUP = NodeGroupSpec("gpu", cpu_milli=4000, memory_mib=16384, gpus=1, price_per_hour=3.6, max_size=5,
                      provision_seconds=100.0)  # fmt: skip


def test_a_replica_without_room_waits_for_a_new_node_and_both_nodes_are_billed() -> None:
    """Hand-computed: 1 warm replica on a warm node; at the 15 s tick the policy wants 2. The second pod is
    pending, the autoscaler's scan at 20 s adds a node (ready at 120 s), the pod is bound then and ready at 130 s.
    Over 300 s: nodes 0-300 s and 20-300 s = 580 node-seconds, at $3.6/h = $0.58; 105 s spent pending."""
    pod = pod_from_requests(3.0, 12 * 2**30, 1)
    setup = NodeSetup((GROUP,))
    cfg = EngineConfig(slots=1, startup=10.0, tick=15.0, initial_replicas=1, nodes=lambda: NodeModel(setup, pod))
    arrivals = np.array([1.0, 200.0])
    run = simulate_policy(arrivals, np.array([0.1, 0.1]), 300.0, FixedReplicas(2), cfg)
    assert run.pods[1, 1] == pytest.approx(130.0)
    assert run.nodes is not None
    assert run.nodes.node_hours == pytest.approx(580 / 3600)
    assert run.nodes.gpu_hours == pytest.approx(580 / 3600)
    assert run.nodes.cost == pytest.approx(0.58)
    assert run.nodes.pending_seconds == pytest.approx(105.0)
    assert (run.nodes.peak_nodes, run.nodes.scale_ups) == (2, 1)


def test_without_node_groups_a_replica_starts_at_once() -> None:
    cfg = EngineConfig(slots=1, startup=10.0, tick=15.0, initial_replicas=1)
    run = simulate_policy(np.array([1.0]), np.array([0.1]), 300.0, FixedReplicas(2), cfg)
    assert run.pods[1, 1] == pytest.approx(25.0)
    assert run.nodes is None


def test_node_groups_file_reads_the_plan_format_with_provision_time_and_autoscaler_settings() -> None:
    setup = node_setup_from_dict(
        {
            "nodeGroups": [
                {"name": "l4", "accelerator": "L4", "gpus": 1, "cpu": "4", "memory": "16Gi", "pricePerHour": 0.8,
                 "maxNodes": 3, "provisionSeconds": 90},
            ],
            "autoscaler": {"expander": "price", "scaleDownUnneededTime": 300},
        }
    )  # fmt: skip
    g = setup.groups[0]
    assert (g.cpu_milli, g.memory_mib, g.gpus, g.max_size, g.provision_seconds) == (4000, 16384, 1, 3, 90.0)
    assert (setup.autoscaler.expander, setup.autoscaler.scale_down_unneeded_time) == ("price", 300)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"nodeGroups": [{"name": "a", "cpu": "4", "memory": "1Gi", "pricePerHour": 1, "provisionSeconds": -1}]},
         "provisionSeconds"),
        ({"nodeGroups": [{"name": "a", "cpu": "4", "memory": "1Gi", "pricePerHour": 1}], "autoscaler": {"x": 1}},
         "unknown fields"),
        ({"nodeGroups": []}, "non-empty"),
    ],
)  # fmt: skip
def test_node_groups_file_errors_name_the_field(raw: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        node_setup_from_dict(raw)


def test_a_replica_that_fits_no_group_is_refused() -> None:
    with pytest.raises(ValueError, match="fits no node group"):
        NodeModel(NodeSetup((GROUP,)), pod_from_requests(8.0, 2**30, 0))


SPEC = """\
apiVersion: kubeinfer.io/v1alpha1
kind: InferenceService
metadata: {name: llm}
spec:
  model: {format: python, className: "m:C"}
  server: {workers: 2}
  resources: {requests: {cpu: "3", memory: 12Gi}, gpu: {count: 1}}
  autoscaling:
    policy: hpa
    metric: concurrency
    target: 1.4
    minReplicas: 1
    maxReplicas: 10
    kpa: {containerConcurrency: 2}
    predictive: {sloLatencyMs: 200, startupSeconds: 10}
"""

GROUPS = """\
nodeGroups:
  - {name: l4, accelerator: L4, gpus: 1, cpu: "4", memory: 16Gi, pricePerHour: 0.8, maxNodes: 10, provisionSeconds: 60}
"""


def test_cli_simulate_reports_node_hours_gpu_hours_and_cost(tmp_path: Path) -> None:
    import json

    (tmp_path / "s.yaml").write_text(SPEC)
    (tmp_path / "g.yaml").write_text(GROUPS)
    cmd = [sys.executable, "-m", "kubeinfer", "simulate", str(tmp_path / "s.yaml"),
           "--trace", "gen:step,base=5,high=30,at=300,duration=900", "--policy", "hpa,predictive",
           "--node-groups", str(tmp_path / "g.yaml"), "-o", "json"]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    for pol in json.loads(p.stdout)["policies"]:
        assert pol["node_hours"] > 0
        assert pol["gpu_hours"] == pytest.approx(pol["node_hours"])
        assert pol["node_cost"] == pytest.approx(0.8 * pol["node_hours"])


def test_cli_simulate_rejects_a_bad_node_groups_file(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(SPEC)
    (tmp_path / "g.yaml").write_text("nodeGroups: []\n")
    cmd = [sys.executable, "-m", "kubeinfer", "simulate", str(tmp_path / "s.yaml"),
           "--trace", "gen:poisson,rate=5,duration=60", "--node-groups", str(tmp_path / "g.yaml")]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 2
    assert "--node-groups" in p.stderr
