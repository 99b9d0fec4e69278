"""``kubeinfer_arrivals_peak`` of a real replica of two server processes: each process counts its own arrivals and
a scrape of either one reports their sum."""

from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import python_model
from kubeinfer.testing import ServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

BODY = json.dumps({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]}).encode()


def test_a_two_process_replica_reports_the_sum_of_its_processes_peaks(tmp_path: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    spec = python_model(tmp_path, "pid", "Pid", "{delay: 0.02}", "  server: {processes: 2}\n")
    # a 10 s window: every request of the burst below falls within one, in whichever process served it
    two: ServerProcess = server_factory(spec, env={"KUBEINFER_PEAK_WINDOW_SECONDS": "10"})

    def infer(_: int) -> int:
        status, _h, body = two.post("/v2/models/pid/infer", BODY)
        assert status == 200, body
        return int(json.loads(body)["outputs"][0]["data"][0])

    with ThreadPoolExecutor(16) as pool:
        served = Counter(pool.map(infer, range(48)))
    assert len(served) == 2, served  # both processes took part
    time.sleep(1.2)  # each process publishes its figures every half second
    for _ in range(4):  # fresh connections: the scrapes land on either process
        status, text = two.get("/metrics")
        assert status == 200
        fams = {f.name: f for f in text_string_to_metric_families(text.decode())}
        assert fams["kubeinfer_arrivals_peak"].samples[0].value == 48
