"""Leader election's rule (client-go's): who may write itself into the Lease, and when."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubeinfer.kube.leader import Elector, LeaseRecord, may_acquire


def test_a_free_or_own_lease_may_be_taken() -> None:
    assert may_acquire(None, "a", 100.0)
    assert may_acquire(LeaseRecord(None, None, 15), "a", 100.0)
    assert may_acquire(LeaseRecord("", 99.0, 15), "a", 100.0)  # released
    assert may_acquire(LeaseRecord("a", 99.0, 15), "a", 100.0)  # renewing


def test_another_holder_s_lease_only_once_it_expired() -> None:
    held = LeaseRecord("b", 100.0, 15)
    assert not may_acquire(held, "a", 100.0)
    assert not may_acquire(held, "a", 115.0)  # exactly at the end: still b's
    assert may_acquire(held, "a", 115.01)


@given(st.integers(0, 10**9), st.integers(1, 60_000), st.integers(0, 120_000))
def test_never_two_holders_within_a_lease(renew_ms: int, duration_ms: int, later_ms: int) -> None:
    # Milliseconds as exact floats (a float sum would round at the boundary and test the rounding, not the rule).
    held = LeaseRecord("b", float(renew_ms), float(duration_ms))
    assert may_acquire(held, "a", float(renew_ms + later_ms)) == (later_ms > duration_ms)


def test_client_go_s_timing_rule_is_enforced() -> None:
    with pytest.raises(ValueError, match="retry_period < renew_deadline < lease_duration"):
        Elector(None, "ns", lease_duration=10, renew_deadline=10, retry_period=2)
