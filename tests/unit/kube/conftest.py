"""Shared fixtures for the Kubernetes backend tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeinfer.spec import InferenceService, load_spec, validate_spec

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*/service.yaml"))


def make_svc(**spec: object) -> InferenceService:
    """A spec with a sklearn model and the given spec fields."""
    doc = {
        "apiVersion": "kubeinfer.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "svc", "namespace": "ml"},
        "spec": {"model": {"format": "sklearn", "uri": "./model.joblib"}, **spec},
    }
    return validate_spec(doc)


@pytest.fixture
def iris() -> InferenceService:
    return load_spec(ROOT / "examples" / "iris" / "service.yaml")
