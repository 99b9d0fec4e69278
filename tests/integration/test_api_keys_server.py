"""API keys (``server.auth.apiKeysFile``) against a real server process, with real clients: httpx for REST (the
direct infer path and the ASGI routes), tritonclient.grpc and grpc's health stub for gRPC."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as tg
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from kubeinfer.testing import ServerProcess

pytestmark = pytest.mark.integration

ROWS = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)
INFER = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": ROWS.reshape(-1).tolist()}]}
OPEN = ["/v2/health/live", "/v2/health/ready", "/healthz", "/readyz", "/startupz", "/metrics"]
# The direct infer path (http.py), the ASGI routes (app.py): inference, metadata, KServe v1, the model list.
CLOSED_GET = ["/v2", "/v2/models/iris", "/v2/models/iris/ready", "/v1/models", "/openapi.json"]


def write_spec(tmp_path: Path, examples: Path, keys: str) -> Path:
    (tmp_path / "keys.txt").write_text(keys)
    spec = tmp_path / "service.yaml"
    spec.write_text(
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: iris}\nspec:\n"
        f"  model: {{format: sklearn, uri: {examples / 'iris' / 'model.joblib'}}}\n"
        "  server: {auth: {apiKeysFile: keys.txt}}\n"
    )
    return spec


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def grpc_bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}  # gRPC metadata keys are lower-case


def test_rest_needs_a_key_except_probes_and_metrics(
    tmp_path: Path, examples: Path, server_factory: ServerProcess
) -> None:
    spec = write_spec(tmp_path, examples, "# the team's keys\nalpha\n\nbeta 0.01\n")
    server = server_factory(spec)  # type: ignore[operator]
    with httpx.Client(base_url=server.url) as client:
        for path in OPEN:
            assert client.get(path).status_code == 200, path
        for path in CLOSED_GET:
            r = client.get(path)
            assert r.status_code == 401, path
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert "Authorization: Bearer KEY" in r.json()["error"]
            assert client.get(path, headers=bearer("alpha")).status_code == 200, path
        for path in ("/v2/models/iris/infer", "/v2/models/iris/versions/1/infer"):
            r = client.post(path, json=INFER)
            assert r.status_code == 401 and "API key is required" in r.json()["error"]
            r = client.post(path, json=INFER, headers=bearer("wrong"))
            assert r.status_code == 401 and r.json() == {"error": "the API key is not valid"}
            r = client.post(path, json=INFER, headers={"Authorization": "Basic YWxwaGE6"})
            assert r.status_code == 401 and "Bearer KEY" in r.json()["error"]
            r = client.post(path, json=INFER, headers=bearer("alpha"))
            assert r.status_code == 200 and r.json()["outputs"]
        r = client.post("/v1/models/iris:predict", json={"instances": ROWS.tolist()})
        assert r.status_code == 401
        r = client.post("/v1/models/iris:predict", json={"instances": ROWS.tolist()}, headers=bearer("alpha"))
        assert r.status_code == 200 and len(r.json()["predictions"]) == 1
        # the same connection goes on after a refusal
        assert client.post("/v2/models/iris/infer", json=INFER, headers=bearer("alpha")).status_code == 200
        # "beta" may make one request per 100 s: the first is served, the next refused with Retry-After
        assert client.post("/v2/models/iris/infer", json=INFER, headers=bearer("beta")).status_code == 200
        r = client.post("/v2/models/iris/infer", json=INFER, headers=bearer("beta"))
        assert r.status_code == 429 and "rate limit of 0.01 requests per second" in r.json()["error"]
        assert int(r.headers["retry-after"]) >= 1
        r = client.get("/v2/models/iris", headers=bearer("beta"))
        assert r.status_code == 429
        # another key is not limited by beta's bucket
        assert client.get("/v2/models/iris", headers=bearer("alpha")).status_code == 200
        counted = client.get("/metrics").text
        assert 'code="401"' in counted and 'code="429"' in counted


def test_keys_file_is_read_again_when_it_changes(tmp_path: Path, examples: Path, server_factory: ServerProcess) -> None:
    spec = write_spec(tmp_path, examples, "old-key\n")
    server = server_factory(spec)  # type: ignore[operator]
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/v2/models/iris", headers=bearer("old-key")).status_code == 200
        (tmp_path / "keys.txt").write_text("new-key\n")
        deadline = time.monotonic() + 15
        while client.get("/v2/models/iris", headers=bearer("new-key")).status_code != 200:
            assert time.monotonic() < deadline, "the new key was never accepted"
            time.sleep(0.2)
        assert client.get("/v2/models/iris", headers=bearer("old-key")).status_code == 401
        # a broken file keeps the keys in force
        (tmp_path / "keys.txt").write_text("new-key -3\n")
        time.sleep(1.5)
        assert client.post("/v2/models/iris/infer", json=INFER, headers=bearer("new-key")).status_code == 200
    assert "not reloaded" in server.log() and "keys.txt:1" in server.log()


def test_grpc_needs_the_authorization_metadata(tmp_path: Path, examples: Path, server_factory: ServerProcess) -> None:
    spec = write_spec(tmp_path, examples, "alpha\nslow 0.01\n")
    server = server_factory(spec, grpc=True)  # type: ignore[operator]
    client = tg.InferenceServerClient(server.grpc_url)
    try:
        assert client.is_server_live() and client.is_server_ready()
        inp = tg.InferInput("input-0", [1, 4], "FP32")
        inp.set_data_from_numpy(ROWS)
        with pytest.raises(InferenceServerException) as err:
            client.infer("iris", [inp])
        assert "UNAUTHENTICATED" in str(err.value.status()) and "Bearer KEY" in err.value.message()
        with pytest.raises(InferenceServerException) as err:
            client.get_model_metadata("iris", headers=grpc_bearer("nope"))
        assert "UNAUTHENTICATED" in str(err.value.status())
        result = client.infer("iris", [inp], headers={"authorization": "Bearer alpha"})
        assert result.as_numpy("predict") is not None or result.get_response().outputs
        assert client.get_model_metadata("iris", headers=grpc_bearer("alpha")).name == "iris"
        client.infer("iris", [inp], headers=grpc_bearer("slow"))
        with pytest.raises(InferenceServerException) as err:
            client.infer("iris", [inp], headers=grpc_bearer("slow"))
        assert "RESOURCE_EXHAUSTED" in str(err.value.status())
    finally:
        client.close()
    with grpc.insecure_channel(server.grpc_url) as channel:  # the health service stays open
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_a_bad_keys_file_stops_the_start_with_its_line(tmp_path: Path, examples: Path) -> None:
    spec = write_spec(tmp_path, examples, "alpha\nbeta fast\n")
    done = subprocess.run(
        [sys.executable, "-m", "kubeinfer", "serve", str(spec), "--port", "0", "--no-grpc"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "keys.txt:2" in done.stderr and "'fast' is not a positive number" in done.stderr
    assert "Traceback" not in done.stderr
    (tmp_path / "keys.txt").unlink()
    done = subprocess.run(
        [sys.executable, "-m", "kubeinfer", "serve", str(spec), "--port", "0", "--no-grpc"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "cannot read the API keys file" in done.stderr
    assert "Traceback" not in done.stderr
