"""The router's declared inside (``api.RouterApi``), called as the HTTP and gRPC fronts call it: one count of
requests, tries and retries, through the retry budget."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

import kubeinfer.local.router.router as router_module
from kubeinfer.local.router import Backend, Router
from kubeinfer.local.router.api import RouterApi

FLOOR = 100  # RetryBudget's floor: 10 retries per second over its 10 s window


def test_router_is_what_the_fronts_call() -> None:
    """Router implements RouterApi (a front given a Router sees only that interface)."""
    api: RouterApi = Router()
    assert api.begin_try(()) is None and not api.has_ready()


def test_a_retry_is_refused_past_max_retries_and_not_counted() -> None:
    r = Router(max_retries=2)
    assert r.may_retry(2, "connect")
    assert not r.may_retry(3, "connect")
    assert (r.retries, r.retry_reasons) == (1, {"connect": 1})


def test_retries_spend_the_budget_and_accepted_requests_refill_it() -> None:
    """Every accepted request deposits ``ratio`` of a retry (RetryBudget.deposit), for both fronts alike."""
    r = Router(retry_budget_ratio=1.0)
    granted = sum(r.may_retry(1, "reset") for _ in range(FLOOR + 5))
    assert granted == FLOOR and r.retries == FLOOR
    r.request_accepted()
    assert r.may_retry(1, "reset") and not r.may_retry(1, "reset")
    assert r.stats().requests == 1 and r.retry_reasons == {"reset": FLOOR + 1}


def test_no_budget_ratio_leaves_only_the_floor() -> None:
    r = Router(retry_budget_ratio=0.0)
    for _ in range(FLOOR):
        assert r.may_retry(1, "timeout")
    r.request_accepted()
    assert not r.may_retry(1, "timeout")


def test_a_retired_backend_stays_until_its_last_try_ends() -> None:
    r = Router()
    r.set_backends([Backend("a", "127.0.0.1", 1, None)])
    st = r.begin_try(())
    assert st is not None and r.has_ready() and not r.has_ready_besides(st)
    r.set_backends([])
    a = r.stats().backends["a"]
    assert (a.outstanding, a.total, a.ready) == (1, 1, False)
    r.end_try(st)
    assert r.stats().backends == {}


@pytest.mark.parametrize("grpc", [False, True])
def test_grpc_tries_skip_backends_without_grpc(grpc: bool) -> None:
    random.seed(7)  # the router draws with random.random
    r = Router()
    r.set_backends([Backend("http-only", "127.0.0.1", 1, None), Backend("both", "127.0.0.1", 2, 3)])
    ids = set()
    for _ in range(50):
        st = r.begin_try((), grpc=grpc)
        assert st is not None
        ids.add(st.id)
        r.end_try(st)
    assert ids == ({"both"} if grpc else {"http-only", "both"})


def test_the_peak_of_accepted_requests_is_read_with_the_rate_of_the_same_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each accepted request (either front) is an arrival of the peak window; the tick closes its second with the
    rate's, and stats() reads both (non-destructively: the canary analysis and the status read stats() too)."""
    times: Iterator[float] = iter([0.30, 0.32, 0.34, 0.80, 1.20])
    monkeypatch.setattr(router_module.time, "monotonic", lambda: next(times))
    r = Router(peak_window=0.1)
    for _ in range(4):
        r.request_accepted()
    r._tick(1.0)
    assert (r.stats().rps, r.stats().peak, r.stats().peak_window) == (4.0, 3, 0.1)
    assert r.stats().peak == 3
    r.request_accepted()
    r._tick(2.0)
    assert (r.stats().rps, r.stats().peak) == (1.0, 1)
    r.set_peak_window(0.0)
    assert (r.stats().peak, r.stats().peak_window) == (0, 0.0)
    r.request_accepted()  # counted without a clock read (the iterator is spent: a read would raise)
    with pytest.raises(ValueError, match="peak_window must be a number of seconds >= 0"):
        r.set_peak_window(-0.1)


def test_without_a_peak_window_the_router_counts_no_peak() -> None:
    r = Router()
    r.request_accepted()
    r._tick(1.0)
    assert (r.stats().rps, r.stats().peak, r.stats().peak_window) == (1.0, 0, 0.0)
