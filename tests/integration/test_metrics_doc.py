"""docs/metrics.md is what the code emits: a real replica (``kubeinfer serve``) and a real router in front of it are
scraped after a request, every documented family is there, every emitted ``kubeinfer_*`` family is documented, and
every metric the Grafana dashboard queries is one of them."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

from kubeinfer.local.router import Backend, Router
from kubeinfer.testing import ServerProcess
from metrics_doc import dashboard_names, documented, exposition_names, sample_names

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

IRIS_ROW = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}


def infer(base: str) -> None:
    req = urllib.request.Request(
        f"{base}/v2/models/iris/infer", json.dumps(IRIS_ROW).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=20) as r:
        assert r.status == 200


def scrape(base: str) -> str:
    with urllib.request.urlopen(f"{base}/metrics", timeout=20) as r:
        return str(r.read().decode())


class RouterThread:
    """A Router on its own uvloop loop in a daemon thread, as ``kubeinfer up`` runs it."""

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self.router = Router(replica_metrics=True)  # as kubeinfer up makes it
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="router-loop")
        self.thread.start()
        self.http_port, _ = self.run(self.router.start("127.0.0.1", 0, None))

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(15)

    def set_backends(self, backends: list[Backend]) -> None:
        async def go() -> None:
            self.router.set_backends(backends)

        self.run(go())

    def close(self) -> None:
        self.run(self.router.stop(grace=1.0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(scope="module")
def replica(examples: Path) -> Iterator[ServerProcess]:
    # the window and the SLO a predictive spec's Deployment sets: kubeinfer_arrivals_peak and
    # kubeinfer_requests_late_total are emitted only with them
    env = {"KUBEINFER_PEAK_WINDOW_SECONDS": "0.1", "KUBEINFER_SLO_SECONDS": "0.1"}
    with ServerProcess(examples / "iris" / "service.yaml", grpc=False, env=env) as s:
        infer(s.url)
        yield s


@pytest.fixture(scope="module")
def router(replica: ServerProcess) -> Iterator[RouterThread]:
    r = RouterThread()
    r.set_backends([Backend("iris-0", "127.0.0.1", replica.http_port, None)])
    infer(f"http://127.0.0.1:{r.http_port}")
    yield r
    r.close()


def test_the_replica_emits_every_documented_family_and_nothing_undocumented(replica: ServerProcess) -> None:
    docs = documented()["Replica"]
    emitted = exposition_names(scrape(replica.url))
    gpu = {n for n in docs if n.startswith("kubeinfer_gpu_")}  # only where NVML finds a GPU
    missing = {n for n in docs if n not in emitted and n not in gpu}
    assert not missing, f"documented in docs/metrics.md, not emitted: {sorted(missing)}"
    undocumented = {n for n in emitted if n.startswith("kubeinfer_") and n not in docs}
    assert not undocumented, f"emitted, not in docs/metrics.md: {sorted(undocumented)}"
    wrong_type = {n: (docs[n], t) for n, t in emitted.items() if n in docs and docs[n] != t}
    assert not wrong_type, wrong_type


def test_the_router_emits_every_documented_family_and_nothing_undocumented(router: RouterThread) -> None:
    docs = documented()["Router (`kubeinfer up`)"]
    emitted = exposition_names(scrape(f"http://127.0.0.1:{router.http_port}"))
    mine = {n: t for n, t in emitted.items() if n.startswith("kubeinfer_router_")}
    assert set(docs) - set(mine) == set(), "documented in docs/metrics.md, not emitted"
    assert set(mine) - set(docs) == set(), "emitted, not in docs/metrics.md"
    assert all(docs[n] == t for n, t in mine.items())


def test_every_metric_the_dashboard_queries_is_emitted(replica: ServerProcess, router: RouterThread) -> None:
    emitted: dict[str, str] = {}
    for base in (replica.url, f"http://127.0.0.1:{router.http_port}"):
        emitted |= exposition_names(scrape(base))
    missing = dashboard_names() - sample_names(emitted)
    assert not missing, f"deploy/grafana/kubeinfer.json queries metrics nothing emits: {sorted(missing)}"


def test_the_router_carries_each_ready_replicas_families_labelled_by_replica(
    replica: ServerProcess, router: RouterThread
) -> None:
    """One scrape of the router has the replica's ``kubeinfer_*`` families, each sample with ``replica`` and
    ``revision``, in a valid exposition (one family per name); a replica that left the ready set leaves it."""
    from prometheus_client.parser import text_string_to_metric_families

    base = f"http://127.0.0.1:{router.http_port}"
    replica_docs = documented()["Replica"]

    def replica_samples() -> list[Any]:
        return [
            s
            for f in text_string_to_metric_families(scrape(base))
            if not f.name.startswith("kubeinfer_router_")
            for s in f.samples
            if s.name.startswith("kubeinfer_")
        ]

    deadline = time.monotonic() + 30
    samples = replica_samples()
    while not any(s.name == "kubeinfer_requests_total" for s in samples) and time.monotonic() < deadline:
        time.sleep(0.2)  # the router scrapes a new replica within a poll
        samples = replica_samples()
    assert samples, "the router's /metrics has none of the replica's families"
    assert all(s.labels.get("replica") == "iris-0" and s.labels.get("revision") == "0" for s in samples)
    families = exposition_names(scrape(base))
    carried = {n for n in families if n in replica_docs}
    assert {"kubeinfer_requests_total", "kubeinfer_request_duration_seconds", "kubeinfer_model_ready"} <= carried
    ok = [s for s in samples if s.name == "kubeinfer_requests_total" and s.labels.get("code") == "200"]
    assert ok and ok[0].labels["model"] == "iris" and ok[0].value >= 2  # this module's requests, direct and routed

    router.set_backends([])
    assert not replica_samples()
    router.set_backends([Backend("iris-0", "127.0.0.1", replica.http_port, None)])


def test_the_replica_counts_its_inference_requests_in_the_arrivals_peak(replica: ServerProcess) -> None:
    """With a window set, a burst of inference requests shows in ``kubeinfer_arrivals_peak``; probes and scrapes do
    not count (the gauge stays below the requests sent plus the fixture's one)."""
    from prometheus_client.parser import text_string_to_metric_families

    for _ in range(3):
        infer(replica.url)  # three requests within well under the 15 s look-back; a 0.1 s window holds one or more

    def peak() -> float:
        for fam in text_string_to_metric_families(scrape(replica.url)):
            if fam.name == "kubeinfer_arrivals_peak":
                return float(fam.samples[0].value)
        raise AssertionError("kubeinfer_arrivals_peak is not emitted")

    for _ in range(5):
        urllib.request.urlopen(f"{replica.url}/v2/health/ready", timeout=20).close()
    assert 1 <= peak() <= 4
