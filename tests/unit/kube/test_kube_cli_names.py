"""Kubernetes commands take a service by name as kubectl does, name images per service, and say what a default
image means; the CRD's short names are kubeinfer's own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from kubeinfer.cli.app import app
from kubeinfer.kube.build import service_image
from kubeinfer.kube.crd import crd
from kubeinfer.spec import load_spec, validate_spec

ROOT = Path(__file__).resolve().parents[3]
IRIS = ROOT / "examples/iris/service.yaml"


def test_short_names_do_not_collide_with_kserve() -> None:
    names = crd()["spec"]["names"]
    assert "isvc" not in names["shortNames"] and names["shortNames"] == ["kis", "kisvc"]


@pytest.mark.parametrize("command", ["status", "delete"])
def test_status_and_delete_take_a_name_or_a_file(command: str, monkeypatch: Any) -> None:
    monkeypatch.setenv("KUBECONFIG", "/nonexistent")
    monkeypatch.setenv("HOME", "/nonexistent")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    for target in ("iris", str(IRIS)):  # both get as far as the cluster connection
        r = CliRunner().invoke(app, [command, target, "-n", "ml"])
        assert r.exit_code == 1 and "no Kubernetes configuration found" in r.output, r.output
    r = CliRunner().invoke(app, [command, "Not_A_Name"])
    assert r.exit_code == 2 and "neither a spec file nor a service name" in r.output
    r = CliRunner().invoke(app, [command, "missing.yaml"])
    assert r.exit_code == 2 and "missing.yaml" in r.output


def spec(name: str, version: str, image: str | None = None) -> Any:
    extra = {"image": image} if image else {}
    return validate_spec(
        {
            "apiVersion": "kubeinfer.io/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": name},
            "spec": {"model": {"format": "onnx", "uri": "m.onnx", "version": version}, **extra},
        },
        "test",
    )


def test_each_service_and_version_builds_its_own_image() -> None:
    assert service_image(spec("iris", "1")) == "kubeinfer/iris:1"
    assert service_image(spec("wine", "2024.05_rc-1")) == "kubeinfer/wine:2024.05_rc-1"
    assert service_image(spec("iris", "1")) != service_image(spec("wine", "1"))
    assert service_image(spec("iris", "1", image="registry.example/ml/iris:7")) == "registry.example/ml/iris:7"


def test_build_prints_the_service_image_and_render_says_the_default_holds_no_model(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["build", str(IRIS), "-o", str(tmp_path / "ctx")])
    assert r.exit_code == 0, r.output
    svc = load_spec(IRIS)
    assert f"docker build -t kubeinfer/iris:{svc.spec.model.version} {tmp_path / 'ctx'}" in r.output
    assert f"--image kubeinfer/iris:{svc.spec.model.version}" in r.output
    r = CliRunner().invoke(app, ["render", str(IRIS)])
    assert r.exit_code == 0 and "spec.image is not set" in r.output and "holds no model" in r.output
    r = CliRunner().invoke(app, ["render", str(IRIS), "--image", "kubeinfer/iris:1"])
    assert r.exit_code == 0 and "spec.image is not set" not in r.output


def test_every_model_format_names_the_extra_its_image_needs() -> None:
    from typing import get_args

    from kubeinfer.kube.build import EXTRAS
    from kubeinfer.spec.service import ModelFormat

    assert set(get_args(ModelFormat)) <= set(EXTRAS)
