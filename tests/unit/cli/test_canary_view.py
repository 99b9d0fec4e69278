"""``kubeinfer get`` and ``describe`` show a canary's split; the status object carries ``status.canary``."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from kubeinfer.cli.local import _service_table, _summary
from kubeinfer.cli.objects import as_object


def status(canary: dict[str, Any] | None) -> dict[str, Any]:
    st: dict[str, Any] = {
        "name": "iris",
        "revision": 1,
        "version": "1",
        "desired": 2,
        "ready_replicas": 3,
        "ready": False,
        "replicas": [],
        "autoscaling": {
            "policy": "none",
            "min": 2,
            "max": 2,
            "reason": "",
            "message": "",
            "buffering": False,
            "details": {},
        },
        "rollout": None,
        "cold_starts": [],
        "vpa": None,
        "events": [],
        "endpoint": {"http": "http://127.0.0.1:8080", "grpc": None},
        "created": 0.0,
    }
    if canary is not None:
        st["canary"] = canary
    return st


CANARY = {
    "stable": 1,
    "canary": 2,
    "weight": 10,
    "step": 1,
    "steps": [10, 50],
    "phase": "Analyzing",
    "analysis": {"requests": 40, "errors": 0, "errorPercent": 0.0, "p99Ms": 3.2, "seconds": 4.0},
}


def render(renderable: Any) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_get_shows_the_split_in_the_revision_column_during_a_canary() -> None:
    assert "1 90% / 2 10%" in render(_service_table([status(CANARY)], wide=False))
    plain = render(_service_table([status(None)], wide=False))
    assert "%" not in plain


def test_describe_summary_names_the_canary_and_its_step() -> None:
    assert "canary 1 90% / 2 10% (step 1/2)" in render(_summary(status(CANARY)))


def test_the_status_object_carries_the_canary_and_a_progressing_condition() -> None:
    obj = as_object(status(CANARY))["status"]
    assert obj["canary"]["weight"] == 10 and obj["canary"]["canaryRevision"] == 2
    assert obj["canary"]["analysis"]["requests"] == 40
    progressing = [c for c in obj["conditions"] if c["type"] == "Progressing"]
    assert (
        progressing[0]["reason"] == "Canary" and "10% of the traffic (step 1/2, analyzing)" in progressing[0]["message"]
    )
    assert "canary" not in as_object(status(None))["status"]
