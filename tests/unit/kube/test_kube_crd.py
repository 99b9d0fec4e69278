"""The InferenceService CRD: generated from the pydantic spec, structural, valid, and what deploy/ ships."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import kube_schemas
import pytest
import yaml

from conftest import EXAMPLES, ROOT
from kubeinfer.kube.crd import crd
from kubeinfer.kube.render import SUPPORTED_VERSIONS


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        out.append((path, node))
        for k, v in node.get("properties", {}).items():
            out += _walk(v, f"{path}.{k}")
        for k in ("items", "additionalProperties"):
            if isinstance(node.get(k), dict):
                out += _walk(node[k], f"{path}[{k}]")
    return out


def schema() -> dict[str, Any]:
    return crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_crd_is_a_valid_apiextensions_v1_object(version: str) -> None:
    assert kube_schemas.errors(crd(), version) == []


def test_schema_is_structural() -> None:
    """Kubernetes' structural-schema rules: a type everywhere (or int-or-string / preserve-unknown), no $ref, no
    additionalProperties: false, anyOf only for int-or-string."""
    for path, node in _walk(schema()):
        assert "$ref" not in node, path
        assert node.get("additionalProperties") is not False, path
        assert (
            "type" in node or node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
        ), path
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string"), path
        assert not ({"properties", "additionalProperties"} <= node.keys()), path


def test_int_or_percent_and_free_form_fields() -> None:
    spec = schema()["properties"]["spec"]["properties"]
    assert spec["rollout"]["properties"]["maxSurge"]["x-kubernetes-int-or-string"] is True
    assert spec["model"]["properties"]["args"]["x-kubernetes-preserve-unknown-fields"] is True
    assert spec["autoscaling"]["properties"]["policy"]["enum"] == ["none", "hpa", "kpa", "predictive"]
    assert spec["server"]["properties"]["grpcPort"]["nullable"] is True


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.parent.name)
def test_examples_are_valid_custom_resources(example: Path) -> None:
    doc = yaml.safe_load(example.read_text())
    jsonschema.Draft7Validator(kube_schemas.to_json_schema(schema())).validate(doc)


def test_schema_rejects_what_the_spec_rejects() -> None:
    v = jsonschema.Draft7Validator(kube_schemas.to_json_schema(schema()))
    bad = {
        "apiVersion": "kubeinfer.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "x"},
        "spec": {"model": {"format": "tensorflow", "uri": "m"}, "batching": {"maxBatchSize": 0}},
    }
    messages = [e.message for e in v.iter_errors(bad)]
    assert len(messages) == 2


def test_status_and_scale_subresources() -> None:
    version = crd()["spec"]["versions"][0]
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    conds = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"]
    assert conds["x-kubernetes-list-map-keys"] == ["type"]


@pytest.mark.parametrize(
    "shipped",
    ["deploy/kustomize/base/crd.yaml", "deploy/helm/kubeinfer-operator/crds/inferenceservices.kubeinfer.io.yaml"],
)
def test_shipped_crd_is_current(shipped: str) -> None:
    """deploy/ carries `kubeinfer render --crd`; regenerate it when the spec changes."""
    assert yaml.safe_load((ROOT / shipped).read_text()) == crd()
