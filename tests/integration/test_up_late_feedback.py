"""The SLO feedback under ``kubeinfer up``, with real processes: a predictive service's replica is told the SLO,
counts the requests that exceed it, and the controller's load samples -- what the policy learns from -- carry
their rate."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest

from helpers import MODELS
from kubeinfer.local.platform import Platform, RouterOptions
from kubeinfer.local.settings import LocalSettings
from kubeinfer.spec import validate_spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

BODY = orjson.dumps({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}]})


def _spec(slo_ms: float) -> dict[str, object]:
    return {
        "apiVersion": "kubeinfer.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "fb"},
        "spec": {
            "model": {
                "format": "python",
                "className": "testmodels:SlowDouble",
                "uri": str(MODELS),
                "args": {"delay": 0.1},
            },
            "batching": {"enabled": False},
            "autoscaling": {
                "policy": "predictive",
                "minReplicas": 1,
                "maxReplicas": 1,
                "predictive": {"capacityRps": 5, "sloLatencyMs": slo_ms, "syncPeriodSeconds": 0.5},
            },
            "probes": {
                "startup": {"periodSeconds": 0.2, "failureThreshold": 100},
                "readiness": {"periodSeconds": 0.25, "timeoutSeconds": 1, "failureThreshold": 2},
            },
            "server": {"grpcPort": None, "limits": {"drainTimeoutSeconds": 2}},
        },
    }


def _infer(port: int) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v2/models/fb/infer", data=BODY, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status


@pytest.mark.parametrize(("slo_ms", "late"), [(50, True), (5000, False)])
def test_a_predictive_services_load_samples_carry_its_misses(tmp_path: Path, slo_ms: float, late: bool) -> None:
    platform = Platform(
        validate_spec(_spec(slo_ms)),
        tmp_path,
        LocalSettings(home=tmp_path / "home"),
        RouterOptions(port=0, grpc=False),
    )
    ctl = platform.controller

    async def main() -> list[float]:
        task = asyncio.create_task(platform.run())
        deadline = time.monotonic() + 60
        while not (platform.http_port and any(r.machine.ready for r in ctl.replicas)):
            assert time.monotonic() < deadline, "no ready replica within 60 s"
            await asyncio.sleep(0.1)
        with ThreadPoolExecutor(4) as pool:  # 0.1 s a request, one at a time: each waits for the ones before it
            statuses = await asyncio.gather(
                *(asyncio.get_running_loop().run_in_executor(pool, _infer, platform.http_port) for _ in range(12))
            )
        assert set(statuses) == {200}
        await asyncio.sleep(1.5)  # two more scrapes: a rate from the difference
        reported = [x.late for x in ctl.observer.loads if x.late is not None]
        shown = ctl.status()["autoscaling"]["details"]  # what `kubeinfer describe` prints under the reason
        platform._stop.set()  # what `kubeinfer down` and SIGTERM do
        await asyncio.wait_for(task, 30)
        # The numbers behind predictive's last decision; no share of misses yet (an hour's window, two minutes
        # before anything is learned from it), so the budget stands as configured.
        assert shown["current_rps"] >= 0 and shown["burst_budget_factor"] == 1.0 and "miss_share" not in shown
        return reported

    reported = asyncio.run(main())
    assert reported, "no load sample carried a late rate"
    assert (max(reported) > 0) == late
