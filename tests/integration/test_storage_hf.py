"""hf:// goes through huggingface_hub and its cache; with HF_HUB_OFFLINE=1 nothing is requested: a cached snapshot is
used, a missing one is a clear error naming the URI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def hub_cache(home: Path) -> Path:
    """A Hugging Face cache holding org/tiny at one commit, laid out as huggingface_hub writes it."""
    repo = home / "hub" / "models--org--tiny"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    (snap / "onnx").mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (snap / "onnx" / "model.onnx").write_bytes(b"graph")
    return snap


def fetch(uri: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "kubeinfer", "fetch", "--no-progress", uri, *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True)


def test_an_hf_repository_is_read_from_the_hub_cache_offline(tmp_path: Path) -> None:
    snap = hub_cache(tmp_path / "hf")
    done = fetch("hf://org/tiny", tmp_path / "hf", "--to", str(tmp_path / "models"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "models" / "tiny" / "onnx" / "model.onnx").read_bytes() == b"graph"
    one = fetch("hf://org/tiny/onnx/model.onnx", tmp_path / "hf")
    assert one.returncode == 0, one.stderr
    assert Path("".join(one.stdout.split())) == snap / "onnx" / "model.onnx"


def test_an_hf_repository_missing_offline_is_a_clear_error(tmp_path: Path) -> None:
    done = fetch("hf://org/absent", tmp_path / "hf")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    message = " ".join(done.stderr.split())
    assert "hf://org/absent: not in the Hugging Face cache" in message and "HF_HUB_OFFLINE" in message
