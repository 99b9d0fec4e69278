"""Rendering a service of several models (``spec.models``): the mounted spec names every model where the image holds
it, a changed model rolls the pods, and ``kubeinfer build`` says what it cannot bake."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

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


def test_build_refuses_several_models_and_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"spec\.models: kubeinfer build bakes the one model of spec\.model"):
        build_context(loads_spec(TWO), tmp_path, tmp_path / "ctx")
