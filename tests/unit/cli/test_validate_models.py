"""``kubeinfer validate --files`` checks every model of a service of several models, naming each entry's field."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from kubeinfer.cli.app import app


def test_validate_names_the_entry_of_spec_models_whose_file_is_missing(tmp_path: Path) -> None:
    (tmp_path / "clf" / "3").mkdir(parents=True)
    (tmp_path / "clf" / "3" / "model.joblib").write_bytes(b"x")
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: repo}\nspec:\n  models:\n"
        "    - {name: clf, format: sklearn, uri: clf}\n"
        "    - {name: gone, format: onnx, uri: gone.onnx}\n"
    )
    result = CliRunner().invoke(app, ["validate", "--files", str(spec)])
    assert result.exit_code != 0
    assert "spec.models[1].uri 'gone.onnx'" in result.output and "does not exist" in result.output
    assert "spec.models[0]" not in result.output  # the versioned folder is fine
