"""The oracle: Erlang C capacity, demand per interval, start-up lead time and kept gaps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kubeinfer.sim import capacity, erlang_c, oracle


def test_erlang_c_matches_the_textbook_values() -> None:
    assert erlang_c(1, 0.5) == pytest.approx(0.5)  # M/M/1: P(wait) = rho
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)


def test_capacity_meets_the_wait_quantile_exactly_for_one_server() -> None:
    # M/M/1: P(W > t) = rho exp(-(mu - lam) t); with mu = 10/s and t = 0.5 s solve for P = 1%.
    lam = capacity(1, 0.1, 0.5, 0.99)
    rho = lam * 0.1
    assert rho * math.exp(-(10 - lam) * 0.5) == pytest.approx(0.01, rel=1e-6)


def test_oracle_on_a_step_starts_replicas_one_startup_early_and_pays_for_it() -> None:
    # 100 s at 10 req/s then 100 s at 100 req/s, 1 slot of 10 ms: need(10/s)=1 replica, need(100/s) more.
    arrivals = np.concatenate([np.arange(0, 100, 0.1), 100 + np.arange(0, 100, 0.01)])
    service = np.full(len(arrivals), 0.01)
    r = oracle(arrivals, service, 200, slots=1, slo_s=0.1, startup=10, min_replicas=1, max_replicas=20)
    low, high = int(r.need[50]), int(r.need[150])
    assert low == 1 and high > 1
    assert np.all(r.need[:100] == low) and np.all(r.need[100:] == high)
    # The extra replicas exist (are billed) only from t=100; their 10 s start-up is paid on top.
    assert r.replica_seconds == pytest.approx(100 * low + 100 * high + 10 * (high - low))


def test_oracle_keeps_a_replica_through_a_gap_shorter_than_its_startup() -> None:
    on = lambda a, b: np.arange(a, b, 0.01)  # noqa: E731 - 100 req/s
    arrivals = np.concatenate([np.arange(0, 300, 1.0), on(100, 110), on(115, 125), on(200, 210)])
    arrivals.sort()
    service = np.full(len(arrivals), 0.01)
    r = oracle(arrivals, service, 300, slots=1, slo_s=0.1, startup=30, min_replicas=1, max_replicas=20, interval=1.0)
    assert np.all(r.provisioned[110:120] == r.provisioned[105])  # 10 s gap < 30 s start-up: kept
    assert r.provisioned[150] == 1  # 75 s gap: removed and started again
