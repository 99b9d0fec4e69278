"""``kubeinfer_requests_late_total`` of a real replica: requests that took longer than ``KUBEINFER_SLO_SECONDS`` in
the server are counted; quick ones, client errors and the model's own errors are not (more replicas fix none)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import python_model
from kubeinfer.testing import ServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

SLO = 0.5


def _late(s: ServerProcess) -> float | None:
    status, text = s.get("/metrics")
    assert status == 200
    for fam in text_string_to_metric_families(text.decode()):
        if fam.name == "kubeinfer_requests_late":
            return float(fam.samples[0].value)
    return None


def _body(value: float) -> bytes:
    return orjson.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [value] * 4}]})


def _post(s: ServerProcess, value: float) -> tuple[int, float]:
    t0 = time.perf_counter()
    status, _, _ = s.post("/v2/models/picky/infer", _body(value), timeout=30)
    return status, time.perf_counter() - t0


def test_slow_requests_are_counted_late_and_errors_are_not(tmp_path: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    spec = python_model(tmp_path, "picky", "FailsOnNegative", "{delay: 0.15}", "  batching: {enabled: false}\n")
    s: ServerProcess = server_factory(spec, env={"KUBEINFER_SLO_SECONDS": f"{SLO}"})
    assert _late(s) == 0
    for _ in range(4):
        assert _post(s, 1.0)[0] == 200
    assert s.post("/v2/models/nope/infer", b"{}")[0] == 404  # a client error: not the server's miss
    assert _late(s) == 0
    assert [_post(s, -1.0)[0] for _ in range(2)] == [500, 500]  # the model raised: no replica count helps
    assert _late(s) == 0
    with ThreadPoolExecutor(10) as pool:  # one model call at a time: the last of ten wait well past the SLO
        results = list(pool.map(lambda _: _post(s, 1.0), range(10)))
    assert all(status == 200 for status, _ in results)
    times = [t for _, t in results]
    surely_late = sum(t > SLO + 0.1 for t in times)
    maybe_late = sum(t > SLO for t in times)
    assert surely_late >= 1, times
    late = _late(s)
    assert late is not None and surely_late <= late <= maybe_late, (late, times)


def test_without_an_slo_there_is_no_counter(tmp_path: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    spec = python_model(tmp_path, "picky", "FailsOnNegative", "{delay: 0.0}")
    s: ServerProcess = server_factory(spec)
    assert _post(s, -1.0)[0] == 500
    assert _late(s) is None
