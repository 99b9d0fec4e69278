"""The InferenceService spec: defaults, and errors that name the file, line, field, value and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeinfer.spec import SpecError, load_spec, loads_spec, merge_overrides

ROOT = Path(__file__).resolve().parents[3]

MINIMAL = """apiVersion: kubeinfer.io/v1alpha1
kind: InferenceService
metadata: {name: iris}
spec:
  model: {format: sklearn, uri: ./m.joblib}
"""


def errors(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        loads_spec(text, "svc.yaml")
    return [e.render("svc.yaml") for e in info.value.errors]


def test_minimal_spec_gets_kubernetes_style_defaults() -> None:
    s = loads_spec(MINIMAL)
    assert s.model_name == "iris"
    assert s.spec.probes.liveness.successThreshold == 1
    assert s.spec.probes.readiness.timeoutSeconds == 1
    assert s.spec.rollout.maxSurge == 1
    assert s.spec.rollout.maxUnavailable == 0
    assert s.spec.server.limits.max_body_bytes == 64 * 2**20
    assert s.spec.autoscaling.effective_metrics[0].type == "concurrency"


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*/service.yaml")), ids=lambda p: p.parent.name)
def test_every_example_spec_is_valid(path: Path) -> None:
    assert load_spec(path).metadata.name


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ("  batching: {maxBatchSize: 0}\n", "svc.yaml:6: spec.batching.maxBatchSize: must be a number >= 1 (got 0)"),
        ("  batching: {maxBatchSze: 8}\n", "svc.yaml:6: spec.batching.maxBatchSze: unknown field"),
        ("  resources: {requests: {cpu: 2x}}\n", "spec.resources.requests.cpu: '2x' is not a quantity"),
        ("  resources: {requests: {memory: 2Gi}, limits: {memory: 1Gi}}\n", "requests.memory (2Gi) is larger than"),
        ("  autoscaling: {minReplicas: 3, maxReplicas: 2}\n", "minReplicas (3) is larger than maxReplicas (2)"),
        ("  autoscaling: {policy: fast}\n", "spec.autoscaling.policy: must be one of 'none', 'hpa', 'kpa' or"),
        ("  autoscaling: {metric: concurrency}\n", "metric and target go together"),
        ("  rollout: {maxSurge: 0, maxUnavailable: 0}\n", "cannot both be 0"),
        ("  rollout: {maxSurge: 'a lot'}\n", "must be a whole number or a percentage"),
        ("  resources: {gpu: {sharing: mig}}\n", "needs migProfile"),
        ("  resources: {gpu: {vendor: amd, sharing: time-slicing, fraction: 0.5}}\n", "whole devices only"),
        ("  probes: {liveness: {successThreshold: 2}}\n", "liveness.successThreshold must be 1"),
    ],
)
def test_errors_name_line_field_value_and_fix(patch: str, expected: str) -> None:
    got = errors(MINIMAL + patch)
    assert any(expected in e for e in got), got


def test_bad_name_and_missing_model() -> None:
    got = errors("apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: Iris_1}\nspec: {}\n")
    assert any("metadata.name" in e and "not a valid name" in e for e in got)
    assert any("spec.model: required field is missing" in e for e in got)


def test_python_format_needs_a_class() -> None:
    got = errors(MINIMAL.replace("format: sklearn, uri: ./m.joblib", "format: python"))
    assert any("needs className" in e for e in got)


def test_yaml_syntax_error_names_the_line() -> None:
    got = errors("metadata: {name: x\nspec: [")
    assert got
    assert got[0].startswith("svc.yaml:")
    assert "not valid YAML" in got[0]


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "nope.yaml")


def test_overrides_win_over_the_file_and_are_validated() -> None:
    s = merge_overrides(loads_spec(MINIMAL), {"spec.server.port": 9000, "spec.batching.maxBatchSize": None})
    assert s.spec.server.port == 9000
    assert s.spec.batching.maxBatchSize == 64
    with pytest.raises(SpecError, match=r"spec\.server\.port"):
        merge_overrides(s, {"spec.server.port": 70000})
