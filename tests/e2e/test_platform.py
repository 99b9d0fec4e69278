"""``kubeinfer up`` end to end: real replica processes, a real client load, and the promises that cost no request."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from conftest import Load, Platform, spec_text

pytestmark = pytest.mark.e2e

Up = Callable[..., Platform]


def ready_count(st: dict[str, Any]) -> int:
    return sum(1 for r in st["replicas"] if r["ready"])


def kill_under_load(p: Platform, name: str, pid: int, timeout: float) -> tuple[dict[str, Any], Load]:
    """SIGKILL ``pid`` (a replica, or one of its processes) under a steady client load; wait until the service has
    its two replicas ready again, one of them restarted once."""
    with Load(p.url, name) as load:
        time.sleep(0.5)
        os.kill(pid, signal.SIGKILL)
        st = p.wait(
            f"the replica of pid {pid} to come back",
            lambda s: ready_count(s) == 2 and any(r["restarts"] == 1 for r in s["replicas"]),
            timeout,
        )
        time.sleep(0.5)
    return st, load


def test_sigkilled_replica_under_load_costs_no_request_and_is_replaced(platform: Up) -> None:
    p = platform("kill", spec_text("kill", extra="  autoscaling: {policy: none}\n  replicas: 2\n"))
    st = json.loads(p.cli("describe", "kill", "-o", "json").stdout)
    assert len(st["replicas"]) == 2 and all(r["pid"] and r["uds"] and r["state"] == "Running" for r in st["replicas"])
    victim = st["replicas"][0]
    st, load = kill_under_load(p, "kill", victim["pid"], 20)
    assert load.failures == [] and load.ok > 20
    back = next(r for r in st["replicas"] if r["id"] == victim["id"])
    assert back["pid"] != victim["pid"] and back["last_exit"]["code"] == -9


@pytest.mark.slow  # ~8 s; the default run keeps a SIGKILLed replica under load and tests/integration/test_processes.py
def test_a_killed_process_of_a_multi_process_replica_costs_no_request(platform: Up) -> None:
    text = spec_text("procs", extra="  autoscaling: {policy: none}\n  replicas: 2\n")
    p = platform("procs", text.replace("server: {grpcPort: null,", "server: {processes: 2, grpcPort: null,"))
    victim = p.status()["replicas"][0]
    children = psutil.Process(victim["pid"]).children()
    assert len(children) == 2
    st, load = kill_under_load(p, "procs", children[0].pid, 30)
    assert load.failures == [] and load.ok > 20
    back = next(r for r in st["replicas"] if r["id"] == victim["id"])
    assert back["pid"] != victim["pid"] and back["last_exit"]["code"] == 1
    assert len(psutil.Process(back["pid"]).children()) == 2


def test_hung_replica_is_restarted_by_liveness_with_no_failed_request(platform: Up) -> None:
    p = platform("hang", spec_text("hang", extra="  autoscaling: {policy: none}\n  replicas: 2\n"))
    victim = p.status()["replicas"][0]
    with Load(p.url, "hang") as load:
        time.sleep(0.5)
        os.kill(victim["pid"], signal.SIGSTOP)
        p.wait(
            "the hung replica to be restarted",
            lambda s: (
                ready_count(s) == 2 and any(r["id"] == victim["id"] and r["restarts"] >= 1 for r in s["replicas"])
            ),
            30,
        )
        time.sleep(0.5)
    assert load.failures == []
    reasons = [(e["reason"], e["message"]) for e in p.status()["events"] if e["object"] == victim["id"]]
    assert any(r == "Killing" and "liveness probe failed" in m for r, m in reasons)


def test_apply_rolls_out_a_new_version_under_load_then_a_broken_one_is_rolled_back(platform: Up, tmp_path: Any) -> None:
    extra = "  autoscaling: {policy: none}\n  replicas: 2\n  rollout: {maxSurge: 1, maxUnavailable: 0, progressDeadlineSeconds: %s}\n"
    p = platform("roll", spec_text("roll", extra=extra % 30))
    v2 = tmp_path / "v2.yaml"
    v2.write_text(spec_text("roll", version="2", extra=extra % 30))
    with Load(p.url, "roll") as load:
        time.sleep(0.5)
        p.cli("apply", str(v2))
        p.wait(
            "revision 2 everywhere", lambda s: s["rollout"] is None and s["revision"] == 2 and ready_count(s) == 2, 40
        )
        t_done = time.monotonic()
        time.sleep(1.0)
    assert load.failures == []
    assert {v for t, v in load.versions if t > t_done + 0.2} == {"2"}
    assert {r["version"] for r in p.status()["replicas"] if r["state"] != "Terminating"} == {"2"}

    broken = tmp_path / "v3.yaml"
    # A progress deadline far beyond the wait below: the rollback must come from the replica's report.
    broken.write_text(spec_text("roll", cls="NoSuchModel", version="3", extra=extra % 120))
    with Load(p.url, "roll") as load:
        p.cli("apply", str(broken))
        t0 = time.monotonic()
        st = p.wait(
            "the rollback",
            lambda s: any(e["reason"] == "ModelLoadFailed" for e in s["events"]) and s["rollout"] is None,
            30,
        )
        took = time.monotonic() - t0
        time.sleep(0.5)
    assert load.failures == []
    # A model that fails to load is rolled back on the replica's own report, not after the progress deadline.
    failed = next(e for e in st["events"] if e["reason"] == "ModelLoadFailed")
    assert "has no class 'NoSuchModel'" in failed["message"]
    assert took < 30
    assert {r["version"] for r in st["replicas"] if r["state"] != "Terminating"} == {"2"}
    assert {v for _, v in load.versions} == {"2"}


def test_load_step_scales_up_idle_scales_to_zero_and_the_first_request_after_zero_is_served(platform: Up) -> None:
    extra = (
        "  autoscaling:\n    policy: hpa\n    metric: concurrency\n    target: 1\n    minReplicas: 0\n    maxReplicas: 3\n"
        "    syncPeriodSeconds: 1\n    behavior:\n      scaleDown: {stabilizationWindowSeconds: 2}\n"
    )
    p = platform("auto", spec_text("auto", args="{delay: 0.05}", extra=extra))
    # Idle from the start with minReplicas 0: the first replica may already be on its way to zero.
    assert ready_count(p.status()) <= 1
    with Load(p.url, "auto", threads=4) as load:
        t0 = time.monotonic()
        p.wait("a scale-up", lambda s: s["desired"] >= 2, 10)
        t_decided = time.monotonic() - t0
        p.wait("the new replicas to be ready", lambda s: ready_count(s) >= 2, 20)
    assert load.failures == []
    assert t_decided <= 4.0  # one or two 1 s sync periods, plus the sampling second
    p.wait("scale to zero when idle", lambda s: s["desired"] == 0 and not s["replicas"], 30)
    with Load(p.url, "auto", threads=1) as first:
        p.wait("a replica for the waiting request", lambda s: first.ok > 0, 30)
    assert first.failures == []
    st = p.status()
    assert len(st["cold_starts"]) >= 1 and st["cold_starts"][0] > 0
    assert any(e["reason"] == "ColdStart" for e in st["events"])
    # the waiting request's cold start is the last one (the first load step may have started from zero too)
    assert first.latencies[0] >= st["cold_starts"][-1] * 0.5


@pytest.mark.slow  # ~10-13 s; tests/unit/local/test_controller.py keeps the back-off of a crashed replica
def test_a_crash_looping_replica_backs_off_and_describe_says_why(platform: Up) -> None:
    extra = "  autoscaling: {policy: none}\n  replicas: 1\n"
    p = platform("crash", spec_text("crash", cls="CrashOnReplica", args="{suffix: '-2'}", extra=extra))
    with Load(p.url, "crash", threads=2) as load:
        p.cli("scale", "crash", "--replicas", "2")
        st = p.wait("three restarts", lambda s: any(r["restarts"] >= 3 for r in s["replicas"]), 20)
    assert load.failures == [] and load.ok > 10
    good, bad = sorted(st["replicas"], key=lambda r: r["restarts"])
    assert good["restarts"] == 0 and good["ready"] and not bad["ready"]
    backoffs = [e["message"] for e in st["events"] if e["reason"] == "BackOff" and e["object"] == bad["id"]]
    assert [m.split(" s ")[0] for m in backoffs[:3]] == ["back-off 0.5", "back-off 1", "back-off 2"]
    described = p.cli("describe", "crash").stdout
    assert "CrashLoopBackOff" in described and "exit code 3" in described


@pytest.mark.slow  # 35-125 s: opt-in (-m slow), to keep the default run within its time budget
def test_a_cpu_limit_holds_each_replica_to_its_quota_and_throttling_is_reported(platform: Up) -> None:
    from kubeinfer.local.resources import CpuQuota

    quota = CpuQuota()
    if not quota.available:
        pytest.skip(f"no CPU quota on this machine: {quota.why_not}")
    extra = "  autoscaling: {policy: none}\n  replicas: 1\n  resources: {limits: {cpu: 200m}}\n"
    p = platform("capped", spec_text("capped", extra=extra))
    (rep,) = json.loads(p.cli("describe", "capped", "-o", "json").stdout)["replicas"]
    lines = Path(f"/proc/{rep['pid']}/cgroup").read_text().splitlines()
    groups = [line.split(":", 2)[2] for line in lines]
    mine = [g for g in groups if f"/kubeinfer-{rep['id']}-" in g]
    assert len(mine) == 1, f"replica {rep['id']} is not in one group of its own: {groups}"
    assert quota.base is not None
    group = quota.base / mine[0].rsplit("/", 1)[1]
    limit = (group / "cpu.max").read_text().split()[0] if quota.v2 else (group / "cpu.cfs_quota_us").read_text()
    assert int(limit) == 20000
    with Load(p.url, "capped", threads=8) as load:  # more than a fifth of a core of work: the quota bites
        st = p.wait(
            "the replica to be throttled and its CPU measured",
            lambda s: (s["replicas"][0]["cpu_throttled_seconds"] or 0) > 0 and s["replicas"][0]["cpu"] is not None,
            30,
        )
    assert load.failures == [] and load.ok > 0
    assert st["replicas"][0]["cpu"] < 0.35  # cores used, under a quota of 0.2
    p.down()
    assert not group.exists()


def _listening_inet(pid: int) -> list[Any]:
    """The TCP/UDP sockets in LISTEN state of a replica: its process and its children (server.processes)."""
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return [c for q in procs for c in q.net_connections("inet") if c.status == psutil.CONN_LISTEN]


def test_replicas_listen_on_no_tcp_port_and_serve_http_and_grpc_through_the_router(platform: Up) -> None:
    """A replica is reachable only through its Unix sockets, in the private state folder: the router's way in."""
    import numpy as np
    import tritonclient.grpc as tg

    extra = "  autoscaling: {policy: none}\n  replicas: 1\n"
    text = spec_text("private", extra=extra).replace("server: {grpcPort: null,", "server: {grpcPort: 0, processes: 2,")
    p = platform("private", text, grpc=True)
    st = p.status()
    (rep,) = st["replicas"]
    assert rep["port"] is None and rep["grpc_port"] is None
    assert Path(rep["uds"]).is_socket() and len(rep["grpc_uds"]) == 2
    assert _listening_inet(rep["pid"]) == []
    ok, version, _ = Load(p.url, "private").one()
    assert ok and version == "1"
    with tg.InferenceServerClient(f"127.0.0.1:{st['endpoint']['grpc']}") as client:
        x = tg.InferInput("x", [1, 2], "FP32")
        x.set_data_from_numpy(np.array([[1.0, 2.0]], np.float32))
        for _ in range(4):  # in turn to each process's socket
            assert client.infer("private", [x]).as_numpy("y").tolist() == [[1.0, 2.0]]
    assert json.loads(p.cli("describe", "private", "-o", "json").stdout)["replicas"][0]["uds"] == rep["uds"]


def test_replica_tcp_setting_gives_replicas_their_loopback_port_again(platform: Up) -> None:
    import urllib.request

    extra = "  autoscaling: {policy: none}\n  replicas: 1\n"
    p = platform("tcp", spec_text("tcp", extra=extra), extra_env={"KUBEINFER_REPLICA_TCP": "1"})
    (rep,) = p.status()["replicas"]
    assert rep["port"] and {c.laddr.port for c in _listening_inet(rep["pid"])} == {rep["port"]}
    with urllib.request.urlopen(f"http://127.0.0.1:{rep['port']}/readyz", timeout=5) as r:
        assert r.status == 200
    ok, _, _ = Load(p.url, "tcp").one()
    assert ok
