"""The local platform's revision files for a service of several models: every local model uri made absolute, and
the file read back as the same spec."""

from __future__ import annotations

from pathlib import Path

import yaml

from kubeinfer.local.controller.revisions import RevisionStore
from kubeinfer.spec import InferenceService, loads_spec


def test_a_revision_of_several_models_resolves_each_uri(tmp_path: Path) -> None:
    svc = loads_spec(
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: repo}\nspec:\n  models:\n"
        "    - {name: a, format: sklearn, uri: ./a.joblib}\n"
        "    - {name: b, format: python, className: 'm:B'}\n"
        "    - {name: c, format: onnx, uri: 'file:///abs/c.onnx'}\n"
    )
    models = tmp_path / "models"
    rev = RevisionStore(tmp_path / "svc").add(svc, models)
    written = yaml.safe_load(rev.spec_path.read_text())
    assert "model" not in written["spec"]
    assert [m.get("uri", "") for m in written["spec"]["models"]] == [
        str((models / "a.joblib").resolve()),
        "",
        "/abs/c.onnx",
    ]
    again = InferenceService.model_validate(written)
    assert again.spec.models is not None and [m.name for m in again.spec.models] == ["a", "b", "c"]
