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


def test_kpa_and_predictive_take_the_metrics_they_read() -> None:
    for policy, metric in (("kpa", "rps"), ("kpa", "concurrency"), ("predictive", "rps")):
        spec = loads_spec(MINIMAL + f"  autoscaling: {{policy: {policy}, metric: {metric}, target: 5}}\n")
        assert spec.spec.autoscaling.effective_metrics[0].type == metric


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
        (
            "  autoscaling: {policy: kpa, metric: tokens, target: 50}\n",
            "policy kpa scales on concurrency or rps only (Knative's metrics), not 'tokens': use policy hpa",
        ),
        (
            "  autoscaling: {policy: kpa, metrics: [{type: rps, target: 5}, {type: cpu, target: 60}]}\n",
            "policy kpa scales on concurrency or rps only (Knative's metrics), not 'cpu'",
        ),
        (
            "  autoscaling: {policy: predictive, metric: sequences-waiting, target: 2}\n",
            "policy predictive forecasts arrivals (rps and work), it does not read 'sequences-waiting'",
        ),
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
    assert any("spec: needs model (the model to serve) or models" in e for e in got)


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


BILLION_LAUGHS = """\
a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def test_a_yaml_alias_bomb_is_refused_before_it_expands() -> None:
    # 500 bytes that PyYAML's safe_load builds into hundreds of millions of references (more than 12 GB).
    with pytest.raises(SpecError, match=r"expands to more than 100,000 values") as ei:
        loads_spec(BILLION_LAUGHS)
    assert len(str(ei.value)) < 500


def test_aliases_of_a_normal_size_are_still_taken() -> None:
    from kubeinfer.spec.load import safe_yaml

    assert safe_yaml("x: &x {a: 1}\ny: *x\nz: {<<: *x, b: 2}\n") == {
        "x": {"a": 1},
        "y": {"a": 1},
        "z": {"a": 1, "b": 2},
    }


def test_a_duplicate_key_is_refused_with_both_lines() -> None:
    text = (
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: a}\n"
        "spec:\n  model: {format: onnx, uri: ./m.onnx}\n  replicas: 1\n  replicas: 3\n"
    )
    with pytest.raises(SpecError, match=r"<spec>:7: replicas: the key is given twice \(first on line 6\)"):
        loads_spec(text)


def test_an_oversized_spec_is_refused_unread() -> None:
    with pytest.raises(SpecError, match="a spec is at most"):
        loads_spec("a: 1\n" + "#" * (2 << 20))


def test_strict_json_refuses_duplicate_keys() -> None:
    from kubeinfer.spec.load import strict_json

    assert strict_json('{"a": 1, "b": {"c": 2}}') == {"a": 1, "b": {"c": 2}}
    with pytest.raises(ValueError, match="key 'c' is given twice"):
        strict_json('{"a": 1, "b": {"c": 2, "c": 3}}')


def test_the_body_limit_follows_the_memory_limit_unless_given() -> None:
    base = (
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: a}\n"
        "spec:\n  model: {format: onnx, uri: ./m.onnx}\n"
    )
    assert loads_spec(base).spec.max_body_bytes == 64 << 20
    assert loads_spec(base + "  resources: {limits: {memory: 1Gi}}\n").spec.max_body_bytes == 32 << 20
    assert loads_spec(base + "  resources: {limits: {memory: 8Gi}}\n").spec.max_body_bytes == 64 << 20
    given = base + "  resources: {limits: {memory: 1Gi}}\n  server: {limits: {maxBodySize: 100Mi}}\n"
    assert loads_spec(given).spec.max_body_bytes == 100 << 20
