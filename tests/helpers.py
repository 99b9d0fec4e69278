"""Helpers shared by the test folders (on sys.path through pytest's ``pythonpath``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def classifier_predictive_spec(max_replicas: int = 40) -> Any:
    """The simulator's classifier under predictive: 2 workers (slots), a 100 ms SLO, 10 s start-up."""
    from kubeinfer.spec.service import ServiceSpec

    return ServiceSpec.model_validate(
        {
            "model": {"format": "python", "className": "m:C"},
            "server": {"workers": 2},
            "autoscaling": {
                "policy": "predictive",
                "minReplicas": 1,
                "maxReplicas": max_replicas,
                "kpa": {"containerConcurrency": 2},
                "predictive": {"sloLatencyMs": 100, "startupSeconds": 10},
            },
        }
    )
