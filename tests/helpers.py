"""Helpers shared by the test folders (on sys.path through pytest's ``pythonpath``)."""

from __future__ import annotations

from pathlib import Path

MODELS = Path(__file__).resolve().parent / "integration" / "models"


def write_spec(folder: Path, name: str, model: str, extra: str = "") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        f"apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {{name: {name}}}\n"
        f"spec:\n  model: {model}\n{extra}"
    )
    return path


def python_model(tmp_path: Path, name: str, cls: str, args: str = "{}", extra: str = "") -> Path:
    return write_spec(
        tmp_path, name, f"{{format: python, className: 'testmodels:{cls}', uri: '{MODELS}', args: {args}}}", extra
    )
