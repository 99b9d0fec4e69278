"""``kubeinfer validate --strict`` and the python runtime refuse what would run arbitrary code."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from kubeinfer.cli.app import app
from kubeinfer.runtimes.base import ModelError
from kubeinfer.runtimes.python import PythonModel


def _spec(tmp_path: Path, model: str) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(
        f"apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {{name: a}}\nspec:\n  model: {model}\n"
    )
    return p


def test_strict_validate_refuses_a_standard_library_class(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "{format: python, className: 'os:system'}")
    assert CliRunner().invoke(app, ["validate", str(spec)]).exit_code == 0
    r = CliRunner().invoke(app, ["validate", "--strict", str(spec)])
    assert r.exit_code == 2 and "standard library" in r.output


def test_strict_validate_says_a_joblib_file_is_a_pickle(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "{format: sklearn, uri: ./m.joblib}")
    (tmp_path / "m.joblib").write_bytes(b"")
    r = CliRunner().invoke(app, ["validate", "--strict", str(spec)])
    assert r.exit_code == 0 and "pickle" in r.output


@pytest.mark.parametrize(("target", "why"), [("os:system", "not a class"), ("subprocess:Popen", "standard library")])
def test_the_python_runtime_loads_classes_only(target: str, why: str) -> None:
    model = PythonModel("m", "1", target, [], {"args": "echo pwned"})
    with pytest.raises(ModelError, match=why):
        model.load()


def test_validate_checks_the_model_file_unless_it_lives_in_an_image(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "{format: sklearn, uri: ./m.joblib}")
    r = CliRunner().invoke(app, ["validate", str(spec)])
    assert r.exit_code == 2 and f"{spec}: spec.model.uri './m.joblib': {tmp_path}/m.joblib does not exist" in r.output
    assert CliRunner().invoke(app, ["validate", "--no-files", str(spec)]).exit_code == 0
