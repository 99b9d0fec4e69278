"""`kubeinfer plan solve` on the example files and `kubeinfer plan replay` on a trace subset, in subprocesses."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubeinfer.spec.service import ResourcesSpec

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "plan"
DATA = ROOT.parent / "shared" / "data"
NODES = DATA / "alibaba_gpu2023_openb_node_list_gpu_node.csv"
PODS = DATA / "alibaba_gpu2023_openb_pod_list_default.csv"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "kubeinfer", "plan", *args]
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, env=env)


def test_solve_on_the_example_meets_every_peak_within_capacity_and_beats_naive(tmp_path: Path) -> None:
    """The plan covers each service's peak, costs what its nodes cost, and the emitted blocks are valid specs."""
    proc = _run("solve", "--services", str(EXAMPLE / "services.yaml"), "--node-groups",
                str(EXAMPLE / "node-groups.yaml"), "-o", "json", "--emit-spec", str(tmp_path / "out"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    services = yaml.safe_load((EXAMPLE / "services.yaml").read_text())["services"]
    groups = {g["name"]: g for g in yaml.safe_load((EXAMPLE / "node-groups.yaml").read_text())["nodeGroups"]}
    for s in services:
        placed = [p for p in doc["services"] if p["service"] == s["name"]]
        assert sum(p["capacityRps"] for p in placed) >= s["peakRps"] - 1e-6
        assert sum(p["replicas"] for p in placed) >= s.get("minReplicas", 1)
    cost = sum(groups[g]["pricePerHour"] * n for g, n in doc["nodes"].items())
    assert doc["costPerHour"] == pytest.approx(cost, abs=1e-3)
    assert all(n <= groups[g]["maxNodes"] for g, n in doc["nodes"].items())
    assert doc["lowerBound"] <= doc["costPerHour"] + 1e-6
    assert doc["costPerHour"] <= doc["naiveCostPerHour"] + 1e-6
    assert sum(c["costPerHour"] for c in doc["serviceCosts"].values()) == pytest.approx(doc["costPerHour"], abs=1e-2)
    assert doc["unplaced"] == []
    assert doc["emitted"]
    for f in doc["emitted"]:
        ResourcesSpec.model_validate(yaml.safe_load(Path(f).read_text())["resources"])


def test_solve_rejects_a_bad_input_file_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "s.yaml"
    bad.write_text("services:\n  - {name: a, profile: {points: []}, sloMs: 10, peakRps: 5}\n")
    proc = _run("solve", "--services", str(bad), "--node-groups", str(EXAMPLE / "node-groups.yaml"))
    assert proc.returncode == 2
    assert "services[0].profile" in proc.stderr


@pytest.mark.skipif(not (NODES.exists() and PODS.exists()), reason="Alibaba trace not in ../shared/data")
def test_replay_on_a_trace_subset_prints_json_and_a_plot(tmp_path: Path) -> None:
    """A 60-node / 400-pod subset in the Alibaba column layout replays under three policies."""
    nodes, pods = tmp_path / "nodes.csv", tmp_path / "pods.csv"
    for src, dst, n in ((NODES, nodes, 60), (PODS, pods, 400)):
        with open(src, newline="") as f, open(dst, "w", newline="") as g:
            rows = list(csv.reader(f))[: n + 1]
            csv.writer(g).writerows(rows)
    png = tmp_path / "curve.png"
    proc = _run("replay", "--nodes", str(nodes), "--pods", str(pods), "--policy", "first-fit,best-fit,kubeinfer",
                "--seed", "1,2", "-o", "json", "--plot", str(png))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["nodes"] == 60 and doc["pods"] == 400 and doc["seeds"] == [1, 2]
    assert [r["policy"] for r in doc["results"]] == ["first-fit", "best-fit", "kubeinfer"]
    for r in doc["results"]:
        assert 0 <= r["unallocatedAt"]["1.00"] <= 1
        assert len(r["curve"]["arrived"]) == 130
    assert png.stat().st_size > 1000
    table = _run("replay", "--nodes", str(nodes), "--pods", str(pods), "--policy", "best-fit")
    assert table.returncode == 0 and "best-fit" in table.stdout


def test_replay_rejects_an_unknown_policy() -> None:
    proc = _run("replay", "--nodes", "n.csv", "--pods", "p.csv", "--policy", "worst-fit")
    assert proc.returncode == 2 and "worst-fit" in proc.stderr


def test_solve_places_with_the_chosen_policy_and_rejects_an_unknown_one() -> None:
    """`--policy` picks the placement policy of the packing (reported in the output); a name outside the replay's
    policies is refused with exit code 2, naming it."""
    args = ("solve", "--services", str(EXAMPLE / "services.yaml"), "--node-groups", str(EXAMPLE / "node-groups.yaml"))
    for policy in ("kubeinfer", "first-fit"):
        proc = _run(*args, "-o", "json", "--policy", policy)
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        assert doc["placement"] == policy and doc["unplaced"] == []
    bad = _run(*args, "--policy", "worst-fit")
    assert bad.returncode == 2 and "worst-fit" in bad.stderr
