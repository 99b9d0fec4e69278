"""spec.models with remote entries renders one model-fetch init container per remote entry, each into its own folder
of the model volume, and the mounted spec points every entry there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from test_kube_render import assert_valid, by_kind, container
from typer.testing import CliRunner

from kubeinfer.cli.app import app
from kubeinfer.kube.names import MODEL_DIR
from kubeinfer.kube.render import CACHE_MOUNT, SUPPORTED_VERSIONS, RenderOptions, pod_spec_hash, render
from kubeinfer.spec import InferenceService, validate_spec

SHA = "cd" * 32


def models_svc(*models: dict[str, Any]) -> InferenceService:
    doc = {
        "apiVersion": "kubeinfer.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "svc", "namespace": "ml"},
        "spec": {"models": list(models)},
    }
    return validate_spec(doc)


def two_remote(second: str = "gs://other/tab/model.onnx") -> InferenceService:
    return models_svc(
        {"name": "iris", "format": "onnx", "uri": "s3://models/iris/model.onnx", "sha256": SHA, "storageSecret": "s3"},
        {"name": "tab", "format": "onnx", "uri": second, "cacheClaim": "models-cache"},
        {"name": "local", "format": "sklearn", "uri": "./model.joblib"},
    )


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_each_remote_entry_of_spec_models_has_its_own_init_container(version: str) -> None:
    objs = render(two_remote(), RenderOptions(target_version=version))
    assert_valid(objs, version)
    pod = by_kind(objs, "Deployment")["spec"]["template"]["spec"]
    first, second = pod["initContainers"]  # the local entry is in the image: nothing to fetch
    assert [first["name"], second["name"]] == ["model-fetch-0", "model-fetch-1"]
    assert first["args"][:5] == ["fetch", "s3://models/iris/model.onnx", "--to", "/mnt/models/0", "--no-progress"]
    assert first["args"][5:] == ["--sha256", SHA]
    assert first["envFrom"] == [{"secretRef": {"name": "s3"}}] and "envFrom" not in second
    assert second["args"] == ["fetch", "gs://other/tab/model.onnx", "--to", "/mnt/models/1", "--no-progress"]
    assert {e["name"]: e["value"] for e in second["env"]}["KUBEINFER_MODEL_CACHE"] == CACHE_MOUNT
    assert {"name": "model-cache", "mountPath": CACHE_MOUNT} in second["volumeMounts"]
    assert {"name": "model-cache", "persistentVolumeClaim": {"claimName": "models-cache"}} in pod["volumes"]
    assert {e["name"]: e["value"] for e in first["env"]}["KUBEINFER_MODEL_CACHE"] == "/mnt/models/.cache"
    assert [v for v in pod["volumes"] if v["name"] == "model"] == [{"name": "model", "emptyDir": {}}]
    assert {"name": "model", "mountPath": "/mnt/models", "readOnly": True} in container(objs)["volumeMounts"]
    served = yaml.safe_load(by_kind(objs, "ConfigMap")["data"]["service.yaml"])["spec"]["models"]
    # two entries ending in the same name do not collide: each has its folder
    assert [m["uri"] for m in served] == [
        "/mnt/models/0/model.onnx",
        "/mnt/models/1/model.onnx",
        f"{MODEL_DIR}/model.joblib",
    ]
    assert "sha256" not in served[0] and "storageSecret" not in served[0] and "cacheClaim" not in served[1]


def test_a_new_uri_of_any_remote_entry_rolls_the_pods() -> None:
    assert pod_spec_hash(two_remote()) != pod_spec_hash(two_remote("gs://other/tab-v2/model.onnx"))


def test_models_in_the_image_need_no_init_container() -> None:
    objs = render(two_remote(), RenderOptions(model_in_image=True))
    assert "initContainers" not in by_kind(objs, "Deployment")["spec"]["template"]["spec"]


def test_render_says_the_default_image_holds_no_model_only_when_an_entry_is_local(tmp_path: Path) -> None:
    head = "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: svc}\nspec:\n  models:\n"
    remote = "  - {name: a, format: onnx, uri: 's3://m/a.onnx'}\n  - {name: b, format: onnx, uri: 'hf://o/r/b.onnx'}\n"
    spec = tmp_path / "service.yaml"
    spec.write_text(head + remote)
    r = CliRunner().invoke(app, ["render", str(spec)])
    assert r.exit_code == 0 and "holds no model" not in r.output, r.output
    spec.write_text(head + remote + "  - {name: c, format: onnx, uri: ./c.onnx}\n")
    r = CliRunner().invoke(app, ["render", str(spec)])
    assert r.exit_code == 0 and "holds no model" in r.output, r.output
