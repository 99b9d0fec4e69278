"""``spec.models`` (several models behind one service) and ``versionPolicy``: validation and the pure version choice."""

from __future__ import annotations

import pytest

from kubeinfer.spec import InferenceService
from kubeinfer.spec.load import SpecError, loads_spec
from kubeinfer.spec.service import VersionPolicy

HEAD = "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: repo}\n"
TWO = HEAD + (
    "spec:\n"
    "  models:\n"
    "    - {name: a, format: sklearn, uri: a.joblib, batching: {maxBatchSize: 4}}\n"
    "    - {name: b, format: onnx, uri: b.onnx, versionPolicy: {latest: 2}}\n"
)


def errors(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        loads_spec(text, "svc.yaml")
    return [e.render("svc.yaml") for e in info.value.errors]


def test_models_list_is_served_and_model_reads_as_the_first() -> None:
    svc = loads_spec(TWO)
    assert [m.name for m in svc.spec.served_models] == ["a", "b"]
    assert svc.spec.model.name == "a" and svc.model_name == "a"
    assert svc.spec.models is not None and svc.spec.models[0].batching is not None
    assert svc.spec.models[0].batching.maxBatchSize == 4
    assert svc.spec.models[1].versionPolicy == VersionPolicy(latest=2)


def test_a_dump_writes_back_only_the_field_that_was_given() -> None:
    """The derived spec.model is not written out, so a dump validates again (no 'not both' error)."""
    svc = loads_spec(TWO)
    for doc in (svc.model_dump(mode="json"), svc.model_dump(mode="json", exclude_unset=True)):
        assert "model" not in doc["spec"] and len(doc["spec"]["models"]) == 2
        assert InferenceService.model_validate(doc) == svc
    one = loads_spec(HEAD + "spec:\n  model: {format: sklearn, uri: a.joblib}\n")
    assert "models" not in one.model_dump(mode="json")["spec"]
    assert one.spec.served_models == [one.spec.model]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            "spec:\n  model: {format: sklearn, uri: a}\n  models: [{name: a, format: sklearn, uri: a}]\n",
            "give either spec.model (one model) or spec.models (several models), not both",
        ),
        ("spec: {models: [{format: sklearn, uri: a}]}\n", "spec.models[0].name is required"),
        ("spec: {models: []}\n", "spec.models"),
        ("spec: {models: [{name: 'a/b', format: sklearn, uri: a}]}\n", "must be letters, digits"),
        (
            "spec: {models: [{name: a, format: sklearn, uri: a}, {name: a, format: sklearn, uri: b}]}\n",
            "spec.models[1] repeats model 'a' version '1' of spec.models[0]",
        ),
        (
            "spec: {models: [{name: a, format: sklearn, uri: a, versionPolicy: {latest: 1}},"
            " {name: a, version: '2', format: sklearn, uri: b, versionPolicy: {all: true}}]}\n",
            "give different versionPolicy",
        ),
        ("spec: {model: {format: sklearn, uri: a, versionPolicy: {}}}\n", "versionPolicy takes exactly one of"),
        (
            "spec: {model: {format: sklearn, uri: a, versionPolicy: {latest: 1, specific: ['2']}}}\n",
            "got latest, specific",
        ),
        ("spec: {model: {format: sklearn, uri: a, versionPolicy: {latest: 0}}}\n", "versionPolicy.latest"),
        ("spec: {model: {format: sklearn, uri: a, version: 'x/y'}}\n", "is a URL path segment"),
    ],
)
def test_bad_models_specs_are_refused_naming_the_field(spec: str, expected: str) -> None:
    got = errors(HEAD + spec)
    assert any(expected in e for e in got), got


@pytest.mark.parametrize(
    ("policy", "versions", "chosen"),
    [
        (VersionPolicy(latest=1), ["1", "3", "2"], ["3"]),
        (VersionPolicy(latest=2), ["1", "10", "9"], ["9", "10"]),  # numbers by value, not as text
        (VersionPolicy(latest=5), ["2", "1"], ["1", "2"]),
        (VersionPolicy(all=True), ["b", "2", "a", "1"], ["1", "2", "a", "b"]),  # names after numbers
        (VersionPolicy(specific=["3", "1"]), ["1", "2", "3"], ["1", "3"]),
    ],
)
def test_version_policy_selects_oldest_first(policy: VersionPolicy, versions: list[str], chosen: list[str]) -> None:
    assert policy.select(versions) == chosen


def test_specific_versions_that_do_not_exist_are_named() -> None:
    with pytest.raises(ValueError, match=r"names '4', which the model does not have \(it has '1', '2'\)"):
        VersionPolicy(specific=["1", "4"]).select(["2", "1"])
