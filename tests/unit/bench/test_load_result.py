"""The JSON document of ``kubeinfer bench`` (``LoadResult.to_json``): its keys, the error rate, the status keys."""

from __future__ import annotations

import pytest

from kubeinfer.bench.loadgen import ERROR_KINDS, LoadResult, error_key

KEYS = [
    "engine",
    "mode",
    "concurrency",
    "rate",
    "duration",
    "requests",
    "ok",
    "errors",
    "statuses",
    "throughput",
    "latency_ms",
    "late",
    "per_second",
    "error_rate",
]


def _result(ok: int, errors: int) -> LoadResult:
    return LoadResult(
        engine="python",
        mode="open",
        concurrency=None,
        rate=50.0,
        duration=1.0,
        requests=ok + errors,
        ok=ok,
        errors=errors,
        statuses={"200": ok, "error:timeout": errors},
        throughput=float(ok),
        latency_ms={"p50": 1.0},
    )


def test_the_document_has_the_documented_keys_and_survives_the_round_trip() -> None:
    r = _result(ok=3, errors=1)
    doc = r.to_json()
    assert list(doc) == KEYS
    assert doc["error_rate"] == 0.25
    assert LoadResult.from_json(doc) == r  # what the load generator's process sends back to the CLI


def test_error_rate_of_nothing_is_zero() -> None:
    assert _result(ok=0, errors=0).error_rate == 0.0


def test_transport_error_keys_are_the_four_kinds() -> None:
    assert [error_key(k) for k in ERROR_KINDS] == ["error:connect", "error:read", "error:write", "error:timeout"]
    with pytest.raises(ValueError, match="ConnectionResetError"):
        error_key("ConnectionResetError")
