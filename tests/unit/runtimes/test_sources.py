"""A model that cannot be found is refused before anything starts, with the field, the path and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeinfer.runtimes.sources import model_source_problems
from kubeinfer.spec.service import ModelSpec


def model(**kw: object) -> ModelSpec:
    return ModelSpec.model_validate(kw)


def test_an_existing_file_relative_to_the_spec_folder_is_fine(tmp_path: Path) -> None:
    (tmp_path / "m.joblib").write_bytes(b"x")
    assert model_source_problems(model(format="sklearn", uri="m.joblib"), tmp_path) == []
    assert model_source_problems(model(format="sklearn", uri=f"file://{tmp_path}/m.joblib"), Path("/")) == []


def test_a_missing_file_names_the_field_the_resolved_path_and_the_folder(tmp_path: Path) -> None:
    (problem,) = model_source_problems(model(format="onnx", uri="models/m.onnx"), tmp_path)
    assert problem.startswith("spec.model.uri 'models/m.onnx': ")
    assert f"{tmp_path}/models/m.onnx does not exist" in problem and f"spec file's folder, {tmp_path}" in problem


@pytest.mark.parametrize(
    "uri",
    ["s3://bucket/m.onnx", "gs://b/m", "az://c/m", "abfs://c@acct.dfs.core.windows.net/m", "https://e/m", "hf://o/m"],
)
def test_a_remote_uri_is_accepted_and_found_when_fetched(tmp_path: Path, uri: str) -> None:
    assert model_source_problems(model(format="onnx", uri=uri), tmp_path) == []


@pytest.mark.parametrize(
    ("uri", "says"),
    [("ftp://host/m.onnx", "is not a storage kubeinfer reads"), ("s3:///m.onnx", "needs a bucket"), ("s3://b", "path")],
)
def test_an_unknown_scheme_or_a_uri_without_bucket_is_refused(tmp_path: Path, uri: str, says: str) -> None:
    (problem,) = model_source_problems(model(format="onnx", uri=uri), tmp_path)
    assert problem.startswith(f"spec.model.uri {uri!r}: ") and says in problem


def test_file_or_folder_must_match_the_format(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "f.bin").write_bytes(b"x")
    assert "reads a file" in model_source_problems(model(format="sklearn", uri="dir"), tmp_path)[0]
    st = model_source_problems(model(format="sentence-transformers", uri="f.bin"), tmp_path)
    assert "reads a folder" in st[0]


def test_a_python_model_module_is_found_without_importing_it(tmp_path: Path) -> None:
    # importing this module would raise: the check must find it without running it
    (tmp_path / "mymodel.py").write_text("raise SystemExit('imported')\nclass M: ...\n")
    assert model_source_problems(model(format="python", className="mymodel:M"), tmp_path) == []
    assert model_source_problems(model(format="python", className="numpy:ndarray"), tmp_path) == []
    (problem,) = model_source_problems(model(format="python", className="nosuch.sub:M"), tmp_path)
    assert (
        problem.startswith("spec.model.className 'nosuch.sub:M': no module 'nosuch'") and "beside the spec" in problem
    )


def test_a_python_model_in_its_uri_folder_is_found(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "pkgmodel.py").write_text("class M: ...\n")
    assert model_source_problems(model(format="python", className="pkgmodel:M", uri="code"), tmp_path) == []


def test_a_python_model_beside_its_uri_file_is_found_and_loads(tmp_path: Path) -> None:
    from kubeinfer.runtimes import create_model
    from kubeinfer.spec import validate_spec

    (tmp_path / "opt").mkdir()
    (tmp_path / "opt" / "besidemodel.py").write_text(
        "import numpy as np\nclass M:\n    def predict(self, inputs):\n        return {'y': np.ones(1)}\n"
    )
    (tmp_path / "opt" / "weights.json").write_text("{}")
    m = model(format="python", className="besidemodel:M", uri="opt/weights.json")
    assert model_source_problems(m, tmp_path) == []
    svc = validate_spec(
        {
            "apiVersion": "kubeinfer.io/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": "beside"},
            "spec": {"model": m.model_dump(exclude_none=True) | {"uri": str(tmp_path / "opt" / "weights.json")}},
        },
        "test",
    )
    # the spec's own folder (as /etc/kubeinfer in an image) does not hold the module: the uri's folder does
    create_model(svc, tmp_path / "etc").load()


def test_a_folder_of_version_folders_is_a_model_of_several_versions(tmp_path: Path) -> None:
    """Triton's layout (uri/<version>/) is not refused as 'a folder for a format that reads a file'."""
    (tmp_path / "clf" / "1").mkdir(parents=True)
    (tmp_path / "clf" / "1" / "model.joblib").write_bytes(b"x")
    assert model_source_problems(model(format="sklearn", uri="clf"), tmp_path) == []
    (tmp_path / "plain").mkdir()
    (problem,) = model_source_problems(model(format="sklearn", uri="plain"), tmp_path, "spec.models[1]")
    assert problem.startswith("spec.models[1].uri 'plain': format 'sklearn' reads a file")
