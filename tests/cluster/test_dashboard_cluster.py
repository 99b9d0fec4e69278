"""``kubeinfer dashboard`` against a real control plane (the cluster in KUBECONFIG, or ../shared/k8s started for the
session by conftest.py; no kubelet or image needed).

Two InferenceServices are created, their children applied by the operator's ``reconcile`` and their status written
as the operator writes it (the operator itself does not run here); the Deployment controller makes the pods and the
test marks them Running and Ready (there is no kubelet). ``alpha``'s pod is given the address 127.0.0.1, where a
real ``/metrics`` (the server's own Metrics) answers on its http port: the dashboard reads its request rate and
latency from it. ``beta``'s pod has an address nothing answers on, as pods are from outside the cluster network:
its page says it shows the status only. The dashboard runs as the real command, in its own process, and is read over
HTTP: ``/api/services``, ``/api/status`` and the event stream, where a scale and a status update show up within the
next two ticks (one tick may have read the cluster before the change). A Playwright check opens the page.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from controlplane_kit import Kube, PodDriver, wait_for

from kubeinfer.server.metrics import Metrics

pytestmark = [pytest.mark.controlplane, pytest.mark.timeout(300)]

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakePod:
    """A replica's ``/metrics`` on 127.0.0.1 (the server's own Metrics rendering the exposition)."""

    def __init__(self) -> None:
        self.metrics = Metrics()
        metrics = self.metrics

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = metrics.render() if self.path == "/metrics" else b""
                self.send_response(200 if body else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-pod-metrics", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _body(name: str, ns: str, port: int, policy: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubeinfer.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "model": {"format": "sklearn", "uri": "./model.joblib", "version": "7"},
            "server": {"port": port, "grpcPort": None},
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
            "autoscaling": {"policy": policy, "metric": "concurrency", "target": 4, "minReplicas": 1, "maxReplicas": 4},
        },
    }


@dataclass
class World:
    kube: Kube
    ns: str
    url: str
    pod: FakePod
    api: Any


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def _write_status(api: Any, ns: str, name: str, status: dict[str, Any], manager: str = "kubeinfer-operator") -> None:
    """A server-side apply of the status, as the operator writes it (one field manager per writer: an apply drops
    the fields its manager wrote before and leaves out now)."""
    api.patch_status("kubeinfer.io/v1alpha1", "InferenceService", name, ns, status, field_manager=manager)


@pytest.fixture
def world(kube: Kube, crd_installed: str, namespace: str, pods: PodDriver, tmp_path: Path) -> Iterator[World]:
    from kubeinfer.kube.api import connect
    from kubeinfer.kube.operator import reconcile

    ns = namespace
    pod = FakePod()
    api = connect()
    try:
        for name, port, policy in (("alpha", pod.port, "kpa"), ("beta", 8080, "hpa")):
            created = kube.custom.create_namespaced_custom_object(
                "kubeinfer.io", "v1alpha1", ns, "inferenceservices", _body(name, ns, port, policy)
            )
            result = reconcile(dict(created), api, "2026-01-01T00:00:00Z")
            _write_status(api, ns, name, result.status)
        pods.add_node(f"node-{ns}")
        pods.heartbeat()
        wait_for("both services' pods", lambda: len(kube.core.list_namespaced_pod(ns).items) == 2)
        wait_for("the pods scheduled and marked", lambda: pods.run_scheduled(ns) >= 0 and _all_ready(kube, ns, 2))
        alpha = next(p for p in kube.core.list_namespaced_pod(ns).items if p.metadata.name.startswith("alpha-"))
        kube.core.patch_namespaced_pod_status(alpha.metadata.name, ns, {"status": {"podIP": "127.0.0.1"}})
        for name in ("alpha", "beta"):  # the operator's next status: the Deployment's pod is ready now
            wait_for(
                f"{name}'s Deployment ready",
                lambda n=name: (kube.apps.read_namespaced_deployment(n, ns).status.ready_replicas or 0) == 1,
            )
            body = kube.custom.get_namespaced_custom_object("kubeinfer.io", "v1alpha1", ns, "inferenceservices", name)
            _write_status(api, ns, name, reconcile(dict(body), api, "2026-01-01T00:00:05Z").status)
        log = tmp_path / "dashboard.log"
        with log.open("w") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "kubeinfer", "dashboard", "--port", "0", "-n", ns, "--interval", "0.5"],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env={**os.environ, "KUBEINFER_PRICE_CPU_HOUR": "1", "KUBEINFER_PRICE_GIB_HOUR": "1"},
            )
        try:
            url = wait_for("the dashboard's URL", lambda: _dashboard_url(proc, log))
            yield World(kube, ns, url, pod, api)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    finally:
        pod.close()


def _all_ready(kube: Kube, ns: str, n: int) -> bool:
    items = kube.core.list_namespaced_pod(ns).items
    ready = [p for p in items if any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))]
    return len(ready) >= n


def _dashboard_url(proc: subprocess.Popen[bytes], log: Path) -> str | None:
    m = re.search(r"dashboard at (http://127\.0\.0\.1:\d+/)", log.read_text())
    if m:
        return m.group(1)
    if proc.poll() is not None:
        raise AssertionError(f"`kubeinfer dashboard` exited ({proc.returncode}):\n{log.read_text()}")
    return None


class Stream:
    """The dashboard's event stream for one service, read line by line in a thread."""

    def __init__(self, url: str) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.cond = threading.Condition()
        self.resp = urllib.request.urlopen(url, timeout=60)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        name = ""
        with contextlib.suppress(Exception):
            for raw in self.resp:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    with self.cond:
                        self.events.append((name, json.loads(line[6:])))
                        self.cond.notify_all()

    def wait(self, n: int, timeout: float = 60) -> list[tuple[str, dict[str, Any]]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.events) >= n, timeout), f"{len(self.events)} events, not {n}"
            return list(self.events[:n])

    def close(self) -> None:
        self.resp.close()
        self.thread.join(timeout=10)


@pytest.mark.slow  # ~10-25 s; the default run stays under 15 minutes
def test_the_dashboard_shows_a_clusters_services_and_a_change_within_the_next_tick(world: World) -> None:
    ns, url, kube = world.ns, world.url, world.kube
    services = _get(f"{url}api/services")["services"]
    assert [s["key"] for s in services] == [f"{ns}/alpha", f"{ns}/beta"], services

    st = _get(f"{url}api/status?service={ns}/alpha")
    assert st["name"] == "alpha" and st["namespace"] == ns and st["source"] == "cluster"
    assert (st["desired"], st["ready_replicas"], st["version"]) == (1, 1, "7")
    (replica,) = st["replicas"]
    assert replica["id"].startswith("alpha-") and replica["state"] == "Running" and replica["ready"] is True
    assert replica["ip"] == "127.0.0.1" and replica["port"] == world.pod.port and replica["node"] == f"node-{ns}"
    assert {c["type"]: c["status"] for c in st["conditions"]} == {"Ready": "True", "Progressing": "False",
                                                                   "Degraded": "False"}  # fmt: skip
    assert st["rollout_status"]["phase"] == "Ready"
    assert st["autoscaling"]["policy"] == "kpa" and st["endpoint"]["http"].endswith(
        f"{ns}.svc.cluster.local:{world.pod.port}"
    )
    reasons = {(e["kind"], e["reason"]) for e in st["events"]}
    assert ("Deployment", "ScalingReplicaSet") in reasons and ("Pod", "Scheduled") in reasons, reasons
    assert all(e["object"] == "alpha" or e["object"].startswith("alpha-") for e in st["events"])

    beta = _get(f"{url}api/status?service={ns}/beta")
    assert beta["autoscaling"]["policy"] == "hpa"
    # the real HPA controller reads the HorizontalPodAutoscaler kubeinfer rendered; its status comes with the service
    wait_for("the HPA's status", lambda: (_get(f"{url}api/status?service={ns}/beta")["hpa"] or {}).get("conditions"))

    with pytest.raises(urllib.error.HTTPError) as e:
        _get(f"{url}api/status?service={ns}/nope")
    with e.value:
        assert e.value.code == 404 and json.loads(e.value.read())["services"] == [f"{ns}/alpha", f"{ns}/beta"]

    # alpha's pod answers /metrics: the request rate and latency come from its counters; beta's does not: a note
    stream = Stream(f"{url}api/events?service={ns}/alpha")
    try:
        name, init = stream.wait(1)[0]
        assert name == "init" and init["key"] == f"{ns}/alpha" and init["status"]["desired"] == 1
        assert [s["key"] for s in init["services"]] == [f"{ns}/alpha", f"{ns}/beta"]
        assert init["metrics"]["targets"] == 1 and init["metrics"]["answered"] == 1 and init["metrics"]["note"] == ""
        assert init["cost"]["per_hour"] == pytest.approx(2.0)  # 1 replica x (1 CPU + 1 GiB) at 1 each
        for _ in range(40):
            world.pod.metrics.request("m", "7", "rest", 200, 0.004)
        world.pod.metrics.request("m", "7", "rest", 500, 0.004)
        seen = len(stream.events)
        stream.wait(seen + 2)
        with stream.cond:
            samples = [s for _, ev in stream.events[seen:] for s in ev.get("samples", [])]
        assert any(s["rps"] and s["rps"] > 0 and s["p50"] is not None for s in samples), samples
        assert any(s["errors"] and s["errors"] > 0 for s in samples), samples

        # a status update and a scale: in one of the next two ticks (the one under way may have read before)
        _write_status(
            world.api,
            ns,
            "alpha",
            {
                "autoscaler": {
                    "desiredReplicas": 2,
                    "reason": "ScaleUp: concurrency 9 over target 4",
                    "details": {"stable_average": 9.0, "desired_stable": 2},
                }
            },
            manager="kubeinfer-autoscaler",
        )
        kube.apps.patch_namespaced_deployment_scale("alpha", ns, {"spec": {"replicas": 2}})
        seen = len(stream.events)
        ticks = [ev for _, ev in stream.wait(seen + 2)[seen:]]
        assert [t["status"]["desired"] for t in ticks][-1] == 2, [t["status"]["desired"] for t in ticks]
        assert ticks[-1]["status"]["autoscaling"]["reason"] == "ScaleUp: concurrency 9 over target 4"
        # the numbers behind it: kept by the API server (the CRD's schema declares them; an undeclared field is
        # pruned) and shown
        assert ticks[-1]["status"]["autoscaling"]["details"] == {"stable_average": 9.0, "desired_stable": 2.0}
        shown = next(t for t in ticks if t["status"]["desired"] == 2)
        assert shown["decision"] is not None and (shown["decision"]["before"], shown["decision"]["after"]) == (1, 2)
        # the operator's conditions are kept beside the autoscaler's status (another field manager wrote it)
        assert {c["type"] for c in ticks[-1]["status"]["conditions"]} == {"Ready", "Progressing", "Degraded"}
        # the Deployment controller makes the second pod: a later tick lists it
        stream.wait(len(stream.events) + 1)
        wait_for("the second pod on the page", lambda: len(stream.events[-1][1]["status"]["replicas"]) == 2)
    finally:
        stream.close()

    beta_stream = Stream(f"{url}api/events?service={ns}/beta")
    try:
        _, init = beta_stream.wait(1)[0]
        assert init["metrics"]["answered"] == 0 and "status only" in init["metrics"]["note"]
        assert init["history"]["samples"][-1]["rps"] is None and init["history"]["samples"][-1]["p50"] is None
    finally:
        beta_stream.close()

    # the Host rule holds for the cluster dashboard too (kubectl port-forward arrives as localhost)
    req = urllib.request.Request(f"{url}api/services", headers={"Host": "kubeinfer-dashboard.kubeinfer-system"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    with e.value:
        assert e.value.code == 403


@pytest.mark.slow  # ~13 s in a browser; the default run keeps tests/e2e/test_dashboard.py's browser test of the page
@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install -y chromium; ./install.sh --dev)"
)
@pytest.mark.skipif(
    importlib.util.find_spec("playwright") is None, reason="the playwright package (the [dev] extra) is missing"
)
def test_the_page_shows_the_cluster_services_conditions_and_events(world: World, tmp_path: Path) -> None:
    """The page (Playwright, Debian's Chromium) against the cluster source; screenshots in
    ``$KUBEINFER_TEST_ARTIFACTS/dashboard-cluster/`` when that is set."""
    from playwright import sync_api

    root = os.environ.get("KUBEINFER_TEST_ARTIFACTS")
    artifacts = Path(root) / "dashboard-cluster" if root else tmp_path
    artifacts.mkdir(parents=True, exist_ok=True)
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run", "--disable-quic"]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(world.url)
            sync_api.expect(page.locator("#name")).to_have_text("alpha", timeout=30_000)
            rows = page.locator("#replicas tbody tr[data-replica-id]")
            sync_api.expect(rows).to_have_count(1, timeout=30_000)
            sync_api.expect(rows.first).to_have_attribute("data-state", "Running")
            sync_api.expect(page.locator("#conditions tbody")).to_contain_text("Ready")
            sync_api.expect(page.locator("#events tbody")).to_contain_text("ScalingReplicaSet")
            sync_api.expect(page.locator("#service option")).to_have_count(2)
            page.screenshot(path=str(artifacts / "1-alpha.png"), full_page=True)
            page.select_option("#service", f"{world.ns}/beta")
            sync_api.expect(page.locator("#name")).to_have_text("beta", timeout=30_000)
            sync_api.expect(page.locator("#note")).to_contain_text("status only", timeout=30_000)
            sync_api.expect(page.locator("#hpa")).to_contain_text("ScalingActive", timeout=30_000)
            page.screenshot(path=str(artifacts / "2-beta.png"), full_page=True)
        finally:
            browser.close()


def test_the_dashboards_read_only_role_is_enough_to_read_and_allows_no_write(
    kube: Kube, crd_installed: str, namespace: str
) -> None:
    """The ClusterRole of deploy/kustomize/components/dashboard, bound to a service account in one namespace: the
    source reads every service's status through it; a write (a scale) is refused."""
    import yaml
    from kubernetes import client, dynamic

    from kubeinfer.kube.api import ClientKubeApi, KubeError, connect
    from kubeinfer.kube.dashboard_source import ClusterSource
    from kubeinfer.kube.operator import reconcile

    ns = namespace
    created = kube.custom.create_namespaced_custom_object(
        "kubeinfer.io", "v1alpha1", ns, "inferenceservices", _body("gamma", ns, 8080, "hpa")
    )
    admin = connect()
    reconcile(dict(created), admin, "2026-01-01T00:00:00Z")
    role_doc = next(
        d
        for d in yaml.safe_load_all((ROOT / "deploy/kustomize/components/dashboard/rbac.yaml").read_text())
        if d["kind"] == "ClusterRole"
    )
    role = f"kubeinfer-dashboard-{ns}"  # one per test namespace: the ClusterRole is cluster-wide
    role_doc["metadata"]["name"] = role
    kube.rbac.create_cluster_role(role_doc)
    try:
        kube.core.create_namespaced_service_account(ns, {"metadata": {"name": "dashboard"}})
        kube.rbac.create_namespaced_role_binding(
            ns,
            {
                "metadata": {"name": "dashboard"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"kind": "ServiceAccount", "name": "dashboard", "namespace": ns}],
            },
        )
        token = kube.core.create_namespaced_service_account_token("dashboard", ns, {"spec": {"expirationSeconds": 600}})
        cfg = client.Configuration()
        cfg.host = kube.api_client.configuration.host
        cfg.ssl_ca_cert = kube.api_client.configuration.ssl_ca_cert
        cfg.api_key = {"authorization": f"Bearer {token.status.token}"}
        reader = ClientKubeApi(dynamic.DynamicClient(client.ApiClient(cfg)))

        def read() -> list[dict[str, Any]] | None:
            try:
                return ClusterSource(reader, ns).read()
            except KubeError as e:  # the RoleBinding takes a moment to be honoured
                if "forbidden" in str(e).lower():
                    return None
                raise

        (st,) = wait_for("a read as the dashboard's service account", read)
        assert st["name"] == "gamma" and st["desired"] == 1 and st["hpa"] is not None
        # events are read too (the Deployment controller's, about gamma's ReplicaSet)
        wait_for(
            "gamma's events",
            lambda: any(e["reason"] == "ScalingReplicaSet" for e in ClusterSource(reader, ns).read()[0]["events"]),
        )
        with pytest.raises(KubeError, match=r"(?i)forbidden"):
            reader.scale("gamma", ns, 3, field_manager="dashboard")
        with pytest.raises(KubeError, match=r"(?i)forbidden"):
            ClusterSource(reader, None).read()  # bound in one namespace: every namespace is not readable
    finally:
        kube.rbac.delete_cluster_role(role)
