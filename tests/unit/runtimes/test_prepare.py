"""`kubeinfer prepare`: loads the model once and leaves the compiled graph where replicas find it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _kubeinfer(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBEINFER_CACHE_DIR": str(cache)}
    return subprocess.run(
        [sys.executable, "-m", "kubeinfer", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_prepare_compiles_once_and_replicas_then_hit_the_cache(tmp_path: Path) -> None:
    spec = ROOT / "examples" / "iris" / "service.yaml"
    if not (spec.parent / "model.joblib").exists():
        pytest.skip("examples/iris is not built (python examples/build.py iris)")
    first = _kubeinfer("prepare", str(spec), cache=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "compiled to onnx" in first.stdout
    assert len(list((tmp_path / "sklearn-onnx").glob("*.onnx"))) == 1
    code = (
        "import sys; from pathlib import Path\n"
        "from kubeinfer.runtimes.sklearn import SklearnModel\n"
        f"info = SklearnModel('iris', '1', Path({str(spec.parent / 'model.joblib')!r}), {{}}).load()\n"
        "print(info.extra['cache'], 'sklearn' in sys.modules)"
    )
    env = {**os.environ, "KUBEINFER_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["hit", "False"]


def test_prepare_names_the_file_when_the_model_cannot_load(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: x}\n"
        "spec: {model: {format: sklearn, uri: ./missing.joblib}}\n"
    )
    res = _kubeinfer("prepare", str(spec), cache=tmp_path / "c")
    assert res.returncode == 1
    assert "s.yaml" in res.stderr and "missing.joblib" in res.stderr and "Traceback" not in res.stderr


def test_prepare_says_which_path_serves_and_why_and_the_inputs(tmp_path: Path) -> None:
    import joblib
    import numpy as np
    from sklearn.ensemble import IsolationForest

    joblib.dump(IsolationForest(n_estimators=5, random_state=0).fit(np.zeros((20, 3))), tmp_path / "iso.joblib")
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: iso}\n"
        "spec: {model: {format: sklearn, uri: ./iso.joblib, outputs: [{name: score_samples}, {name: predict}]}}\n"
    )
    res = _kubeinfer("prepare", str(spec), cache=tmp_path / "c")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "served by sklearn (not compiled: an outlier detector's decision_function" in lines[0]
    assert lines[1:] == ["  inputs: input-0 FP32 [-1, 3]", "  outputs: score_samples FP64 [-1], predict INT64 [-1]"]
