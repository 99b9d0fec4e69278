"""Against a real cluster (opt-in: `pytest -m cluster tests/cluster`, with KUBECONFIG set): deploy examples/iris,
wait until Ready, send an inference through a port-forward, roll an update, delete.

The image must be reachable by the cluster: build it with `kubeinfer build examples/iris/service.yaml -o build`
plus deploy/Dockerfile (see deploy/README.md), load it (e.g. `kind load docker-image`), and name it in
KUBEINFER_TEST_IMAGE. Objects go to the namespace in KUBEINFER_TEST_NAMESPACE (default `kubeinfer-test`), which
must exist.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from kubeinfer.kube.api import SystemClock, connect
from kubeinfer.kube.deploy import delete_service, execute, observe, plan, wait_rollout
from kubeinfer.kube.render import RenderOptions, render
from kubeinfer.spec import load_spec, merge_overrides

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="needs KUBECONFIG pointing at a real cluster"),
    pytest.mark.skipif(
        not os.environ.get("KUBEINFER_TEST_IMAGE"), reason="needs KUBEINFER_TEST_IMAGE (see module docstring)"
    ),
]

ROOT = Path(__file__).resolve().parents[2]
NS = os.environ.get("KUBEINFER_TEST_NAMESPACE", "kubeinfer-test")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_deploy_infer_roll_delete() -> None:
    api = connect()
    svc = load_spec(ROOT / "examples" / "iris" / "service.yaml")
    opts = RenderOptions(namespace=NS, image=os.environ["KUBEINFER_TEST_IMAGE"], monitoring=False)
    try:
        execute(plan(render(svc, opts), api, name=svc.name, namespace=NS), api)
        st = wait_rollout(api, svc.name, NS, SystemClock(), timeout=300)
        assert st.phase == "Ready", st

        kubectl = shutil.which("kubectl") or str(Path(sys.executable).with_name("kubectl"))
        port = _free_port()
        pf = subprocess.Popen(
            [kubectl, "-n", NS, "port-forward", f"svc/{svc.name}", f"{port}:8080"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            body = json.dumps(
                {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}
            ).encode()
            deadline = time.monotonic() + 30
            while True:
                try:
                    req = urllib.request.Request(
                        f"http://127.0.0.1:{port}/v2/models/iris/infer", body, {"Content-Type": "application/json"}
                    )
                    with urllib.request.urlopen(req, timeout=5) as r:
                        out = json.loads(r.read())
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(1)
            assert out["outputs"]
        finally:
            pf.terminate()

        rolled = merge_overrides(svc, {"spec.batching.maxBatchSize": 32})
        execute(plan(render(rolled, opts), api, name=svc.name, namespace=NS), api)
        st = wait_rollout(api, svc.name, NS, SystemClock(), timeout=300)
        assert st.phase == "Ready", st
    finally:
        delete_service(api, svc.name, NS)
    deadline = time.monotonic() + 120
    while observe(api, svc.name, NS).reason != "NotFound":
        assert time.monotonic() < deadline, "the Deployment was not deleted within 120 s"
        time.sleep(2)
