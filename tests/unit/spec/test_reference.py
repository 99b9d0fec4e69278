"""docs/spec.md is generated from the spec models: it must be current, and every field must be described."""

from __future__ import annotations

from pathlib import Path

from kubeinfer.spec import reference

ROOT = Path(__file__).resolve().parents[3]


def test_every_spec_field_has_a_description() -> None:
    missing = reference.missing_descriptions()
    assert missing == [], f"add description=... to these fields in src/kubeinfer/spec/service.py: {missing}"


def test_docs_spec_md_is_current() -> None:
    shipped = (ROOT / "docs" / "spec.md").read_text()
    assert shipped == reference.reference(), f"docs/spec.md is stale: regenerate it with `{reference.COMMAND}`"


def test_unit_and_kubernetes_tables_name_real_fields() -> None:
    """A renamed field must not leave its unit or Kubernetes mapping behind, silently dropped from the page."""
    fields = {f"{m.__name__}.{name}" for m in reference.models() for name in m.model_fields}
    assert set(reference.UNITS) - fields == set()
    assert set(reference.KUBERNETES) - fields == set()


def test_every_field_and_object_is_on_the_page() -> None:
    page = reference.reference()
    for model in reference.models():
        assert f"## {model.__name__}\n" in page
        for name in model.model_fields:
            assert f"| `{name}` |" in page
    # A sample row, whole: type, default, unit, range, description and the Kubernetes field.
    assert (
        "| `progressDeadlineSeconds` | number | `600` | seconds | > 0 | Roll back if not ready by then. | "
        "Deployment `spec.progressDeadlineSeconds` |"
    ) in page
    assert "| `startup` | [ProbeSpec](#probespec) | `failureThreshold: 150, periodSeconds: 2` |" in page
