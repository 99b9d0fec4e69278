"""A remote model.uri renders an init container that downloads the model into a volume the server reads."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from test_kube_render import assert_valid, by_kind, container

from conftest import make_svc
from kubeinfer.kube.names import MODEL_DIR
from kubeinfer.kube.render import SUPPORTED_VERSIONS, RenderOptions, render


def pod(objs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = by_kind(objs, "Deployment")["spec"]["template"]["spec"]
    return spec


def served_uri(objs: list[dict[str, Any]]) -> str:
    doc = yaml.safe_load(by_kind(objs, "ConfigMap")["data"]["service.yaml"])
    uri: str = doc["spec"]["model"]["uri"]
    return uri


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_a_remote_model_is_fetched_by_an_init_container_into_an_empty_dir(version: str) -> None:
    sha = "ab" * 32
    svc = make_svc(model={"format": "onnx", "uri": "s3://models/iris/iris.onnx", "sha256": sha, "storageSecret": "s3"})
    objs = render(svc, RenderOptions(target_version=version))
    assert_valid(objs, version)
    p = pod(objs)
    [init] = p["initContainers"]
    assert init["image"] == container(objs)["image"]
    assert init["args"][:4] == ["fetch", "s3://models/iris/iris.onnx", "--to", "/mnt/models"]
    assert init["args"][-2:] == ["--sha256", sha]
    assert init["envFrom"] == [{"secretRef": {"name": "s3"}}]
    assert {"name": "model", "emptyDir": {}} in p["volumes"]
    assert {"name": "model", "mountPath": "/mnt/models", "readOnly": True} in container(objs)["volumeMounts"]
    # the server reads the downloaded copy; the checksum was checked by the init container, credentials never appear
    assert served_uri(objs) == "/mnt/models/iris.onnx"
    text = yaml.safe_dump(objs)
    assert "AWS_SECRET_ACCESS_KEY" not in text


def test_a_cache_claim_keeps_the_cache_in_a_persistent_volume() -> None:
    svc = make_svc(model={"format": "sentence-transformers", "uri": "hf://sentence-transformers/all-MiniLM-L6-v2"})
    objs = render(make_svc(model=svc.spec.model.model_dump(exclude_none=True) | {"cacheClaim": "model-cache"}))
    assert_valid(objs, SUPPORTED_VERSIONS[-1])
    p = pod(objs)
    assert {"name": "model-cache", "persistentVolumeClaim": {"claimName": "model-cache"}} in p["volumes"]
    env = {e["name"]: e["value"] for e in p["initContainers"][0]["env"]}
    assert env["KUBEINFER_MODEL_CACHE"] == "/mnt/model-cache"
    assert served_uri(objs) == "/mnt/models/all-MiniLM-L6-v2"


def test_a_local_model_or_one_baked_into_the_image_has_no_init_container() -> None:
    assert "initContainers" not in pod(render(make_svc()))
    svc = make_svc(model={"format": "onnx", "uri": "gs://b/m/model.onnx"})
    objs = render(svc, RenderOptions(model_in_image=True))
    assert "initContainers" not in pod(objs)
    assert served_uri(objs) == f"{MODEL_DIR}/model.onnx"


def test_a_new_remote_uri_rolls_the_pods() -> None:
    def spec_hash(uri: str) -> str:
        objs = render(make_svc(model={"format": "onnx", "uri": uri}))
        h: str = by_kind(objs, "Deployment")["spec"]["template"]["metadata"]["annotations"]["kubeinfer.io/spec-hash"]
        return h

    assert spec_hash("s3://b/v1/model.onnx") != spec_hash("s3://b/v2/model.onnx")
