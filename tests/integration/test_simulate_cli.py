"""`kubeinfer simulate` end to end in a subprocess: a generated trace, every policy, JSON out, a PNG."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SPEC = """\
apiVersion: kubeinfer.io/v1alpha1
kind: InferenceService
metadata: {name: clf}
spec:
  model: {format: python, className: "m:C"}
  server: {workers: 2}
  autoscaling: {policy: hpa, metric: concurrency, target: 1, minReplicas: 1, maxReplicas: 20}
"""


def _simulate(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    spec = tmp_path / "svc.yaml"
    spec.write_text(SPEC)
    cmd = [sys.executable, "-m", "kubeinfer", "simulate", str(spec), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_simulate_compares_policies_and_writes_json_and_a_plot(tmp_path: Path) -> None:
    png = tmp_path / "out.png"
    proc = _simulate(
        tmp_path,
        "--trace", "gen:step,base=20,high=120,at=120,duration=360",
        "--policy", "hpa,kpa,predictive",
        "--service-ms", "25",
        "--slo-ms", "100",
        "--price", "2.5",
        "--seed", "3",
        "-o", "json",
        "--plot", str(png),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [p["policy"] for p in doc["policies"]] == ["hpa", "kpa", "predictive"]
    assert doc["slo"]["ms"] == 100 and doc["price_per_replica_hour"] == 2.5
    for p in doc["policies"]:
        assert 0 <= p["slo_attainment"] <= 1
        assert p["cost"] == pytest.approx(p["replica_seconds"] / 3600 * 2.5)
    assert png.stat().st_size > 10_000


def test_simulate_rejects_an_unknown_policy_with_a_usage_error(tmp_path: Path) -> None:
    proc = _simulate(tmp_path, "--trace", "gen:poisson,rate=5,duration=60", "--policy", "magic")
    assert proc.returncode == 2
    assert "hpa, kpa, predictive" in proc.stderr


def test_the_readme_example_prints_the_table_the_readme_shows() -> None:
    """README.md shows `kubeinfer simulate` against the oracle, the hindsight schedule and the static frontier: the
    command it quotes, run as written (the simulation is deterministic), prints the same rows."""
    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    block = readme[readme.index("```console\n$ kubeinfer simulate") + len("```console\n") :]
    block = block[: block.index("```")]
    lines = block.splitlines()
    command = ""
    for line in lines:
        command += line.removeprefix("$ ").rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            break
    args = command.split()
    assert args[:2] == ["kubeinfer", "simulate"], command
    shown = [line for line in lines if line.startswith("│")]
    assert [r.split("│")[1].strip() for r in shown] == [
        "hpa", "kpa", "predictive", "oracle (queueing bound)", "hindsight", "static 2",
    ]  # fmt: skip
    env = {**os.environ, "COLUMNS": "118"}
    proc = subprocess.run(
        [sys.executable, "-m", "kubeinfer", *args[1:]],
        capture_output=True, text=True, timeout=120, check=False, cwd=root, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    printed = [line.rstrip() for line in proc.stdout.splitlines() if line.startswith("│")]
    assert printed == shown
