"""The request families carry the model's ``version`` (Triton's and KServe's ``model``, ``version``): two versions of
one model served at once are counted apart, in one process and summed across the processes of a replica."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from kubeinfer.server.dataplane import DataPlane, ModelSlot
from kubeinfer.server.metrics import Metrics


def samples(metrics: Metrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for fam in text_string_to_metric_families(metrics.render().decode()):
        for s in fam.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_two_versions_of_a_model_are_counted_apart() -> None:
    plane = DataPlane()
    v1, v2 = (ModelSlot(model=Any, name="iris", version=v) for v in ("1", "2"))
    for slot, status in ((v1, 200), (v2, 200), (v2, 200), (v2, 400), (None, 404)):
        plane.end(plane.begin(), slot, "v2", status)
    got = samples(plane.metrics, "kubeinfer_requests_total")
    key = lambda model, version, code: (("code", code), ("model", model), ("protocol", "v2"), ("version", version))  # noqa: E731
    assert got == {
        key("iris", "1", "200"): 1,
        key("iris", "2", "200"): 2,
        key("iris", "2", "400"): 1,
        key("", "", "404"): 1,
    }
    counts = samples(plane.metrics, "kubeinfer_request_duration_seconds_count")
    assert counts[(("model", "iris"), ("protocol", "v2"), ("version", "2"))] == 3


def test_a_replicas_processes_are_summed_per_version() -> None:
    sibling = Metrics()
    sibling.request("iris", "2", "grpc", 0, 0.01)
    me = Metrics()
    me.request("iris", "2", "grpc", 0, 0.01)
    me.request("iris", "1", "grpc", 0, 0.01)
    me.siblings = lambda: [sibling.snapshot()]
    got = samples(me, "kubeinfer_requests_total")
    assert got[(("code", "0"), ("model", "iris"), ("protocol", "grpc"), ("version", "2"))] == 2
    assert got[(("code", "0"), ("model", "iris"), ("protocol", "grpc"), ("version", "1"))] == 1
