"""Rendering a service of several models (``spec.models``): the mounted spec names every model where the image holds
it, a changed model rolls the pods, ``kubeinfer build`` bakes every model there and ``kubeinfer prepare`` loads each."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from kubeinfer.kube.build import BuildError, build_context
from kubeinfer.kube.names import CONFIG_KEY, MODEL_DIR
from kubeinfer.kube.render import RenderOptions, pod_spec_hash, render_all
from kubeinfer.spec import loads_spec

TWO = (
    "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: repo}\nspec:\n  models:\n"
    "    - {name: clf, format: sklearn, uri: ./models/clf, versionPolicy: {latest: 2}}\n"
    "    - {name: emb, format: onnx, uri: ./emb.onnx}\n"
)


def test_the_mounted_spec_lists_every_model_at_its_place_in_the_image() -> None:
    rendered = render_all(loads_spec(TWO), RenderOptions())
    [cm] = [o for o in rendered.objects if o["kind"] == "ConfigMap"]
    spec = yaml.safe_load(cm["data"][CONFIG_KEY])["spec"]
    assert "model" not in spec
    assert [(m["name"], m["uri"]) for m in spec["models"]] == [
        ("clf", f"{MODEL_DIR}/clf"),
        ("emb", f"{MODEL_DIR}/emb.onnx"),
    ]
    assert spec["models"][0]["versionPolicy"] == {"latest": 2}
    assert loads_spec(yaml.safe_dump({**yaml.safe_load(TWO), "spec": spec})).spec.models is not None


def test_a_change_to_any_model_rolls_the_pods() -> None:
    before = pod_spec_hash(loads_spec(TWO))
    assert pod_spec_hash(loads_spec(TWO.replace("./emb.onnx", "./emb2.onnx"))) != before


def _two_models(tmp_path: Path) -> Path:
    """TWO's files: a versioned scikit-learn folder and an ONNX file, from the examples."""
    for v in ("1", "2"):
        (tmp_path / "models" / "clf" / v).mkdir(parents=True)
        shutil.copy2(ROOT / "examples" / "iris" / "model.joblib", tmp_path / "models" / "clf" / v / "model.joblib")
    shutil.copy2(ROOT / "examples" / "onnx" / "model.onnx", tmp_path / "emb.onnx")
    spec = tmp_path / "service.yaml"
    spec.write_text(TWO)
    return spec


def _prepare(spec: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``kubeinfer prepare SPEC`` in a process of its own, compiling into a cache under ``tmp_path``."""
    env = {**os.environ, "KUBEINFER_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run(
        [sys.executable, "-m", "kubeinfer", "prepare", str(spec)], capture_output=True, text=True, env=env, timeout=120
    )


def test_build_bakes_every_model_where_the_mounted_spec_names_it(tmp_path: Path) -> None:
    spec = _two_models(tmp_path)
    ctx = build_context(loads_spec(TWO), tmp_path, tmp_path / "ctx")
    assert ctx.extras == "onnx,sklearn" and ctx.base_image == "kubeinfer/server:onnx-sklearn"
    assert "model/clf/1/model.joblib" in ctx.files and "model/clf/2/model.joblib" in ctx.files
    assert "model/emb.onnx" in ctx.files
    baked = loads_spec((tmp_path / "ctx" / CONFIG_KEY).read_text())
    assert baked.spec.models is not None
    for m in baked.spec.models:  # every uri the image's spec names is a file or folder the context holds
        assert (tmp_path / "ctx" / "model" / Path(m.uri).relative_to(MODEL_DIR)).exists(), m.uri
    # the scikit-learn versions are compiled in the image by the same command, which loads every version
    assert "RUN kubeinfer prepare" in (tmp_path / "ctx" / "Dockerfile").read_text()
    done = _prepare(spec, tmp_path)
    assert done.returncode == 0, done.stderr
    loaded = [line.split(":")[0] for line in done.stdout.splitlines() if ": loaded in" in line]
    assert loaded == ["clf version 1", "clf version 2", "emb version 1"]


def test_build_refuses_two_models_that_land_on_one_path(tmp_path: Path) -> None:
    _two_models(tmp_path)
    (tmp_path / "other").mkdir()
    shutil.copy2(ROOT / "examples" / "onnx" / "model.onnx", tmp_path / "other" / "emb.onnx")
    clash = TWO + "    - {name: emb2, format: onnx, uri: ./other/emb.onnx}\n"
    with pytest.raises(
        BuildError, match=r"spec\.models\[2\]\.uri './other/emb\.onnx': lands at /opt/kubeinfer/model/emb\.onnx"
    ):
        build_context(loads_spec(clash), tmp_path, tmp_path / "ctx")


def test_build_names_the_entry_whose_model_is_missing(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"spec\.models\[0\]\.uri './models/clf'"):
        build_context(loads_spec(TWO), tmp_path, tmp_path / "ctx")


def test_prepare_names_the_model_that_does_not_load(tmp_path: Path) -> None:
    spec = _two_models(tmp_path)
    (tmp_path / "emb.onnx").write_bytes(b"not an onnx model")
    done = _prepare(spec, tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "spec.models (model 'emb' version 1):" in " ".join(done.stderr.split())
