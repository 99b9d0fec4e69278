"""The access log and JSON logs of a real server process: every request a JSON line with its status and latency."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from helpers import python_model
from kubeinfer.testing import ServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def post(url: str, body: dict[str, object]) -> int:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_json_access_log_of_each_request(tmp_path: Path) -> None:
    env = {"KUBEINFER_LOG_FORMAT": "json", "KUBEINFER_ACCESS_LOG": "1"}
    with ServerProcess(python_model(tmp_path, "dbl", "SlowDouble"), grpc=False, env=env) as server:
        url = f"http://127.0.0.1:{server.http_port}/v2/models/dbl/infer"
        good = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}
        assert post(url, good) == 200
        assert post(url, {"inputs": "nonsense"}) == 400
        deadline = time.monotonic() + 10
        lines: list[dict[str, object]] = []
        while len(lines) < 2 and time.monotonic() < deadline:
            lines = [
                json.loads(ln)
                for ln in server.log().splitlines()
                if ln.startswith("{") and '"logger":"kubeinfer.access"' in ln and '"model":"dbl"' in ln
            ]  # the start-up's readiness checks are logged too, without a model
            time.sleep(0.1)
    assert [(d["model"], d["status"]) for d in lines] == [("dbl", 200), ("dbl", 400)]
    assert all(d["protocol"] and float(d["duration_ms"]) >= 0 and d["level"] == "INFO" for d in lines)


def test_no_access_log_by_default(tmp_path: Path) -> None:
    with ServerProcess(python_model(tmp_path, "dbl", "SlowDouble"), grpc=False) as server:
        url = f"http://127.0.0.1:{server.http_port}/v2/models/dbl/infer"
        assert post(url, {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}) == 200
        time.sleep(0.3)
        assert "kubeinfer.access" not in server.log()
