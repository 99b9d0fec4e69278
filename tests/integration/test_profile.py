"""`kubeinfer profile` against a real replica of examples/iris: a two-point sweep, the file validated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubeinfer.placement.profile import profile_from_dict

pytestmark = pytest.mark.integration


def test_profile_of_iris_writes_a_valid_profile(examples: Path, tmp_path: Path) -> None:
    out = tmp_path / "iris.profile.yaml"
    cmd = [sys.executable, "-m", "kubeinfer", "profile", str(examples / "iris" / "service.yaml"), "-o", str(out),
           "--batch-sizes", "1,8", "--concurrency", "2", "--duration", "1", "--warmup", "0.2"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    prof = profile_from_dict(yaml.safe_load(out.read_text()))
    assert prof.model == "iris"
    assert [(p.batch_size, p.concurrency) for p in prof.points] == [(1, 2), (8, 2)]
    for p in prof.points:
        assert str(p.slice) == "cpu"
        assert p.throughput_rps > 0
        assert 0 < p.latency_ms["p50"] <= p.latency_ms["p90"] <= p.latency_ms["p99"]
        assert p.peak_memory_bytes > 10 * 2**20
        assert p.cpu_cores is not None and p.cpu_cores >= 0
    assert prof.host_memory_bytes >= max(p.peak_memory_bytes for p in prof.points)
    assert prof.extra["machine"]["cpus"] >= 1


def test_profile_rejects_a_bad_sweep(examples: Path) -> None:
    cmd = [sys.executable, "-m", "kubeinfer", "profile", str(examples / "iris" / "service.yaml"),
           "--batch-sizes", "0,x"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "--batch-sizes" in proc.stderr
