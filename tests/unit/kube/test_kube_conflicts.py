"""A refused server-side apply (409) read from the API server's Status: each field and its manager, and the
message `kubeinfer deploy` prints (checked against a real API server in tests/cluster/test_field_ownership.py)."""

from __future__ import annotations

from kubeinfer.kube.api import ApplyConflictError, FieldConflict, conflicts_from_status
from kubeinfer.kube.deploy import explain_conflict

STATUS = {
    "kind": "Status",
    "status": "Failure",
    "reason": "Conflict",
    "code": 409,
    "message": "Apply failed with 2 conflicts: ...",
    "details": {
        "causes": [
            {
                "reason": "FieldManagerConflict",
                "message": 'conflict with "kubectl-scale" with subresource "scale" using apps/v1',
                "field": ".spec.replicas",
            },
            {"reason": "FieldManagerConflict", "message": 'conflict with "kubectl"', "field": ".data.a"},
            {"reason": "FieldValueInvalid", "message": "not a conflict", "field": ".spec"},
        ]
    },
}


def test_each_conflicting_field_and_its_manager_are_read_from_the_status() -> None:
    assert conflicts_from_status(STATUS) == [
        FieldConflict(".spec.replicas", "kubectl-scale", "apps/v1", "scale"),
        FieldConflict(".data.a", "kubectl"),
    ]
    assert conflicts_from_status({"message": "no details"}) == []


def test_the_explanation_names_the_object_fields_managers_and_the_ways_out() -> None:
    e = ApplyConflictError("apply Deployment ns/web", conflicts_from_status(STATUS)[:1], "")
    text = explain_conflict(e)
    assert text.startswith("Deployment ns/web: ")
    assert ".spec.replicas  owned by 'kubectl-scale' (apps/v1, subresource scale)" in text
    assert "kubectl scale" in text and "spec.replicas" in text  # the hint for replicas
    assert "--force-conflicts" in text
