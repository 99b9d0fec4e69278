"""The dashboard's pure arithmetic: cost from spec.resources and prices, histogram quantiles, error codes, the
history's decisions."""

from __future__ import annotations

import math
from typing import Any

import pytest

from kubeinfer.local.dashboard_model import (
    History,
    Prices,
    PricesError,
    Sample,
    cost,
    histogram_quantile,
    is_error_code,
)

PRICES = Prices(cpu_hour=0.04, gib_hour=0.005, gpu_hour=2.0)


def _status(resources: dict[str, Any] | None, replicas: list[dict[str, Any]]) -> dict[str, Any]:
    return {"spec": {"resources": resources} if resources is not None else {}, "replicas": replicas}


def _replica(state: str = "Running", cpu: float | None = None, memory: float | None = None) -> dict[str, Any]:
    return {"state": state, "cpu": cpu, "memory": memory}


def test_cost_per_hour_is_the_requests_of_every_existing_replica_at_the_prices() -> None:
    st = _status({"requests": {"cpu": "500m", "memory": "2Gi"}}, [_replica(), _replica("Starting"), _replica()])
    c = cost(st, PRICES, rps=0.0)
    assert c.replicas == 3 and c.cpu == 0.5 and c.memory == 2 * 2**30
    assert c.per_hour == pytest.approx(3 * (0.5 * 0.04 + 2 * 0.005))
    assert c.per_million is None  # no traffic: no cost per request
    assert c.basis == "cpu from requests, memory from requests"


def test_cost_per_million_requests_divides_the_hour_by_the_requests_an_hour() -> None:
    st = _status({"requests": {"cpu": "1", "memory": "1Gi"}}, [_replica()])
    c = cost(st, PRICES, rps=10.0)
    assert c.per_million == pytest.approx((0.04 + 0.005) / 36000 * 1e6)


def test_terminated_replicas_cost_nothing() -> None:
    st = _status({"requests": {"cpu": "1"}, "limits": {"memory": "1Gi"}}, [_replica("Terminated"), _replica()])
    c = cost(st, PRICES, rps=0.0)
    assert c.replicas == 1 and c.basis == "cpu from requests, memory from limits"


def test_without_requests_or_limits_the_measured_use_is_paid() -> None:
    st = _status(None, [_replica(cpu=0.2, memory=2**30), _replica(cpu=0.4, memory=3 * 2**30)])
    c = cost(st, PRICES, rps=0.0)
    assert c.cpu == pytest.approx(0.3) and c.memory == 2 * 2**30
    assert c.basis == "cpu from measured, memory from measured"


@pytest.mark.parametrize(
    ("gpu", "paid"),
    [({"count": 2}, 2.0), ({"fraction": 0.25, "sharing": "time-slicing"}, 0.25), ({"migProfile": "3g.40gb"}, 3 / 7)],
)
def test_gpus_are_paid_whole_or_by_their_share(gpu: dict[str, Any], paid: float) -> None:
    c = cost(_status({"requests": {"cpu": "1"}, "gpu": gpu}, [_replica()]), PRICES, rps=0.0)
    assert c.gpus == pytest.approx(paid)
    assert c.per_hour == pytest.approx(0.04 + paid * 2.0)


def test_prices_come_from_the_environment_and_default_to_the_documented_examples() -> None:
    assert Prices.from_env({}) == Prices()
    p = Prices.from_env({"KUBEINFER_PRICE_CPU_HOUR": "0.1", "KUBEINFER_PRICE_GPU_HOUR": " 3 "})
    assert (p.cpu_hour, p.gib_hour, p.gpu_hour) == (0.1, Prices().gib_hour, 3.0)


@pytest.mark.parametrize("raw", ["cheap", "-1", "nan", "inf"])
def test_a_bad_price_is_an_error_naming_the_variable(raw: str) -> None:
    with pytest.raises(PricesError) as e:
        Prices.from_env({"KUBEINFER_PRICE_GIB_HOUR": raw})
    assert str(e.value).startswith(f"KUBEINFER_PRICE_GIB_HOUR has value {raw!r}: ")


def test_quantile_is_linear_within_its_bucket_as_prometheus_does() -> None:
    bounds = (0.01, 0.1, 1.0, math.inf)
    assert histogram_quantile(bounds, [50, 50, 0, 0], 0.5) == pytest.approx(0.01)
    assert histogram_quantile(bounds, [0, 100, 0, 0], 0.5) == pytest.approx(0.055)
    assert histogram_quantile(bounds, [99, 0, 1, 0], 0.99) == pytest.approx(0.01)
    assert histogram_quantile(bounds, [0, 0, 0, 5], 0.5) == 1.0  # above the last bound: the bound is all we know
    assert histogram_quantile(bounds, [0, 0, 0, 0], 0.5) is None


@pytest.mark.parametrize(
    ("code", "error"),
    [("200", False), ("404", False), ("429", False), ("500", True), ("503", True), ("aborted", True),
     ("OK", False), ("INVALID_ARGUMENT", False), ("UNAVAILABLE", True), ("INTERNAL", True)],
)  # fmt: skip
def test_server_failures_are_errors_and_client_errors_are_not(code: str, error: bool) -> None:
    assert is_error_code(code) is error


def _sample(t: float, desired: int, reason: str = "", rps: float = 0.0) -> Sample:
    return Sample(t, rps, 0.0, None, None, 0.0, 0.0, desired, desired, desired, reason)


def test_history_records_a_decision_when_the_desired_count_changes_with_the_load_then() -> None:
    h = History(limit=3)
    assert h.add(_sample(0, 1), "") is not None  # the start: 0 -> 1
    assert h.add(_sample(1, 1, rps=5), "") is None
    d = h.add(_sample(2, 3, "ScaleUp", rps=40), "concurrency 12 > target 4")
    assert d is not None and (d.before, d.after, d.reason, d.rps) == (1, 3, "ScaleUp", 40)
    assert d.message == "concurrency 12 > target 4"
    h.add(_sample(3, 3, rps=20), "")
    assert len(h.samples) == 3 and [x.t for x in h.samples] == [1, 2, 3]  # bounded
    assert h.mean_rps(1.5) == pytest.approx(30.0)
    assert [x["after"] for x in h.to_json()["decisions"]] == [1, 3]


def test_a_service_scaled_to_zero_from_the_start_records_no_decision() -> None:
    h = History()
    assert h.add(_sample(0, 0), "") is None
    assert h.add(_sample(1, 1, "ScaleFromZero"), "") is not None
