"""``kubeinfer bench`` as a script sees it: the exit code follows --max-error-rate, and the JSON document has the
same keys whichever engine measured (status keys are HTTP codes and ``error:<kind>``; an open loop reports its
rate, not a concurrency)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeinfer.bench.loadgen import wrk_available
from kubeinfer.testing import ServerProcess

pytestmark = pytest.mark.integration

ENGINES = [
    "python",
    pytest.param("wrk", marks=pytest.mark.skipif(not wrk_available(), reason="wrk is not installed")),
]

PAIR_MODEL = """
import numpy as np


class Pair:
    inputs = [{"name": "a", "datatype": "FP32", "shape": [-1, 2]}, {"name": "b", "datatype": "FP32", "shape": [-1, 2]}]
    outputs = [{"name": "sum", "datatype": "FP32", "shape": [-1, 2]}]

    def predict(self, inputs):
        return {"sum": inputs["a"] + inputs["b"]}
"""

SPEC = """
apiVersion: kubeinfer.io/v1alpha1
kind: InferenceService
metadata: {name: pair}
spec:
  model: {format: python, className: "pair_model:Pair"}
"""


def _body(*names: str) -> str:
    return json.dumps({"inputs": [{"name": n, "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]} for n in names]})


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    """A two-input model (so a wrong input name is refused, not taken as the single input) and its bodies."""
    d = tmp_path_factory.mktemp("bench")
    (d / "pair_model.py").write_text(PAIR_MODEL)
    (d / "service.yaml").write_text(SPEC)
    (d / "good.json").write_text(_body("a", "b"))
    (d / "bad.json").write_text(_body("a", "c"))  # wrong input name: every request answers 400
    with ServerProcess(d / "service.yaml", grpc=False) as server:
        yield server, d


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "kubeinfer", "bench", *args, "--duration", "1", "--warmup", "0"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def _json(done: subprocess.CompletedProcess[str]) -> dict[str, object]:
    doc: dict[str, object] = json.loads(done.stdout)
    return doc


@pytest.mark.parametrize("engine", ENGINES)
def test_every_request_failing_exits_non_zero_and_says_why(pair: tuple[ServerProcess, Path], engine: str) -> None:
    server, d = pair
    url = f"{server.url}/v2/models/pair/infer"
    done = bench(url, "--body", str(d / "bad.json"), "-c", "4", "--engine", engine, "-o", "json")
    assert done.returncode == 1, done.stderr
    doc = _json(done)
    assert doc["ok"] == 0 and doc["errors"] == doc["requests"] and doc["error_rate"] == 1.0
    assert list(doc["statuses"]) == ["400"], doc["statuses"]  # type: ignore[call-overload]
    assert "bench failed:" in done.stderr and "above --max-error-rate 0.01" in done.stderr, done.stderr
    assert "400: " in done.stderr  # the line names what the server answered


@pytest.mark.parametrize("engine", ENGINES)
def test_error_rate_at_or_below_the_threshold_exits_zero(pair: tuple[ServerProcess, Path], engine: str) -> None:
    server, d = pair
    url = f"{server.url}/v2/models/pair/infer"
    done = bench(url, "--body", str(d / "bad.json"), "-c", "2", "--engine", engine, "--max-error-rate", "1")
    assert done.returncode == 0, done.stderr


def test_good_run_exits_zero_with_the_same_json_keys_for_both_engines(pair: tuple[ServerProcess, Path]) -> None:
    if not wrk_available():
        pytest.skip("wrk is not installed")
    server, d = pair
    url = f"{server.url}/v2/models/pair/infer"
    docs = {}
    for engine in ("python", "wrk"):
        done = bench(url, "--body", str(d / "good.json"), "-c", "4", "--engine", engine, "-o", "json")
        assert done.returncode == 0, done.stderr
        docs[engine] = _json(done)
    py, wrk = docs["python"], docs["wrk"]
    assert list(py) == list(wrk)
    assert list(py["latency_ms"]) == list(wrk["latency_ms"])  # type: ignore[call-overload]
    for engine, doc in docs.items():
        assert doc["engine"] == engine and doc["mode"] == "closed" and doc["concurrency"] == 4 and doc["rate"] is None
        assert doc["statuses"] == {"200": doc["ok"]} and doc["errors"] == 0 and doc["error_rate"] == 0.0


def test_bench_of_a_spec_file_starts_a_replica_and_exits_zero(pair: tuple[ServerProcess, Path]) -> None:
    _, d = pair
    done = bench(str(d / "service.yaml"), "--engine", "python", "-c", "2")
    assert done.returncode == 0, done.stderr
    assert "closed loop, concurrency 2 (python)" in done.stdout


def test_open_loop_reports_its_mode_and_rate_not_a_concurrency(pair: tuple[ServerProcess, Path]) -> None:
    server, d = pair
    url = f"{server.url}/v2/models/pair/infer"
    done = bench(url, "--body", str(d / "good.json"), "--rate", "100", "-o", "json")
    assert done.returncode == 0, done.stderr
    doc = _json(done)
    assert doc["engine"] == "python" and doc["mode"] == "open" and doc["rate"] == 100.0
    assert doc["concurrency"] is None


def test_transport_errors_are_keyed_by_kind(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on: every connection is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    body = tmp_path / "body.json"
    body.write_text(_body("a"))
    url = f"http://127.0.0.1:{port}/v2/models/pair/infer"
    done = bench(url, "--body", str(body), "-c", "1", "--engine", "python", "-o", "json")
    assert done.returncode == 1
    doc = _json(done)
    assert list(doc["statuses"]) == ["error:connect"], doc["statuses"]  # type: ignore[call-overload]
    assert "bench failed:" in done.stderr and "error:connect" in done.stderr
