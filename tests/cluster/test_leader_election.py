"""Two `kubeinfer operator` processes against a real API server: one leads over a Lease and reconciles, the other
waits; killing the leader hands the Lease (and the reconciling) to the other within the lease duration + 2 s."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from controlplane_kit import Kube, wait_for

pytestmark = [pytest.mark.controlplane, pytest.mark.timeout(240)]

GROUP, VERSION, PLURAL = "kubeinfer.io", "v1alpha1", "inferenceservices"
LEASE = 6.0


def _operator(namespace: str, log: Path) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("kubeinfer")
    args = [str(exe), "operator", "--namespace", namespace, "--leader-namespace", namespace, "--interval", "5",
            "--lease-duration", str(LEASE), "--renew-deadline", "4", "--retry-period", "1"]  # fmt: skip
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "POD_NAME": log.stem})


def test_one_operator_leads_and_the_other_takes_over_when_it_dies(
    kube: Kube, crd_installed: str, namespace: str, tmp_path: Path
) -> None:
    logs = {name: tmp_path / f"{name}.log" for name in ("op-a", "op-b")}
    procs = {name: _operator(namespace, path) for name, path in logs.items()}
    try:

        def holder() -> str | None:
            try:
                return kube.coordination.read_namespaced_lease("kubeinfer-operator", namespace).spec.holder_identity
            except Exception:
                return None

        first = wait_for("a leader", holder, timeout=60)
        leader = next(n for n in procs if first.startswith(n + "_"))
        standby = next(n for n in procs if n != leader)
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "InferenceService",
            "metadata": {"name": "svc", "namespace": namespace},
            "spec": {"model": {"format": "sklearn", "uri": "./model.joblib"}, "autoscaling": {"policy": "none"}},
        }
        kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        wait_for("the leader's Deployment", lambda: kube.apps.list_namespaced_deployment(namespace).items)
        assert "leads" not in logs[standby].read_text()  # the standby never ran the operator

        procs[leader].send_signal(signal.SIGKILL)  # no release: the standby must wait the lease out
        procs[leader].wait(10)
        killed = time.monotonic()
        wait_for("the standby to take the Lease", lambda: (holder() or "").startswith(standby + "_"), timeout=30)
        took = time.monotonic() - killed
        assert took <= LEASE + 2, took
        assert "leads" in logs[standby].read_text()

        # The new leader reconciles: a spec change reaches the Deployment.
        kube.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "svc", {"spec": {"batching": {"maxBatchSize": 8}}}
        )
        wait_for(
            "the new leader to roll the spec change",
            lambda: kube.apps.read_namespaced_deployment("svc", namespace).metadata.generation >= 2,
            timeout=60,
        )
        for path in logs.values():  # kopf could store its progress: no annotation refused by the API server
            assert "UnprocessableEntity" not in path.read_text(), path.read_text()[-2000:]
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
