"""``kubeinfer_requests_late_total``: with ``KUBEINFER_SLO_SECONDS`` set, the requests that took longer than it, or
were refused for want of capacity (HTTP 503/504, gRPC UNAVAILABLE/DEADLINE_EXCEEDED), summed over a multi-process
replica's processes; no counter without an SLO."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kubeinfer.server.metrics import Metrics, slo_from_env


def counter(m: Metrics) -> float | None:
    for fam in text_string_to_metric_families(m.render().decode()):
        if fam.name == "kubeinfer_requests_late":
            [s] = fam.samples
            assert s.name == "kubeinfer_requests_late_total"
            return float(s.value)
    return None


def test_slow_requests_and_capacity_refusals_count_quick_ones_and_other_errors_do_not() -> None:
    m = Metrics(slo=0.1)
    m.request("m", "1", "v2", 200, 0.05)
    m.request("m", "1", "v2", 200, 0.1)  # at the SLO: met
    # a client's errors, an API key's rate, a body too large, the model's own error, a request out of memory: more
    # replicas fix none of them, and a client sending them must not buy the service spare capacity
    for code in (400, 404, 413, 429, 500, 507):
        m.request("m", "1", "v2", code, 0.01)
    for code in (3, 5, 8, 13):  # INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED, INTERNAL
        m.request("m", "1", "grpc", code, 0.01)
    assert counter(m) == 0
    m.request("m", "1", "v2", 200, 0.25)
    m.request("m", "1", "v2", 500, 0.25)  # slow, whatever the answer
    m.request("m", "1", "v2", 503, 0.01)  # queue full, not ready, draining
    m.request("m", "1", "v2", 504, 0.01)  # its deadline passed
    for code in (4, 14):  # DEADLINE_EXCEEDED, UNAVAILABLE
        m.request("m", "1", "grpc", code, 0.01)
    m.request("m", "1", "grpc", 0, 0.3)
    assert counter(m) == 7


def test_a_replicas_counter_is_the_sum_of_its_processes() -> None:
    a, b = Metrics(slo=0.1), Metrics(slo=0.1)
    a.request("m", "1", "v2", 200, 1.0)
    for _ in range(3):
        b.request("m", "1", "v2", 503, 0.0)
    a.siblings = lambda: [b.snapshot()]
    assert counter(a) == 4


def test_no_slo_no_counter() -> None:
    m = Metrics()
    m.request("m", "1", "v2", 503, 5.0)
    assert counter(m) is None


@pytest.mark.parametrize(("raw", "want"), [("", 0.0), ("0.25", 0.25), ("0", 0.0), ("-1", 0.0), ("fast", 0.0)])
def test_the_slo_is_read_from_the_environment(raw: str, want: float, capsys: pytest.CaptureFixture[str]) -> None:
    assert slo_from_env({"KUBEINFER_SLO_SECONDS": raw}) == want
    err = capsys.readouterr().err
    assert ("kubeinfer_requests_late_total is off" in err) == (raw not in ("", "0.25"))
