"""A model repository (``spec.models``, versions, the Open Inference Protocol repository extension) against a real
server process, driven by the real ``tritonclient.http`` and ``tritonclient.grpc``.

The models are scikit-learn classifiers that always answer their own version number, so every answer says which
version served it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import joblib
import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sklearn.dummy import DummyClassifier
from tritonclient.utils import InferenceServerException

from helpers import MODELS
from kubeinfer.testing import ServerProcess

pytestmark = pytest.mark.integration

X = np.random.default_rng(0).random((8, 4)).astype(np.float32)


def constant_model(path: Path, answer: int) -> Path:
    """A classifier of 4 features that answers ``answer`` for every row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(DummyClassifier(strategy="constant", constant=answer).fit(X, np.arange(8) % 4 + answer), path)
    return path


def write_repository(folder: Path) -> Path:
    """clf: versions 1-3 in Triton's folder layout, the latest 2 served; listed: two entries of one name (versions 7
    and 8, both served); double: a Python model with its own batching."""
    for v in (1, 2, 3):
        constant_model(folder / "clf" / str(v) / "model.joblib", v)
    constant_model(folder / "seven.joblib", 7)
    constant_model(folder / "eight.joblib", 8)
    spec = folder / "repo.yaml"
    spec.write_text(
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: repo}\nspec:\n  models:\n"
        "    - {name: clf, format: sklearn, uri: clf, versionPolicy: {latest: 2}}\n"
        "    - {name: listed, format: sklearn, uri: seven.joblib, version: '7'}\n"
        "    - {name: listed, format: sklearn, uri: eight.joblib, version: '8'}\n"
        f"    - {{name: double, format: python, className: 'testmodels:SlowDouble', uri: '{MODELS}', args: {{delay: 0}},"
        " batching: {maxBatchSize: 1}}\n"
    )
    return spec


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[tuple[ServerProcess, Path]]:
    spec = write_repository(tmp_path)
    server = ServerProcess(spec, grpc=True).start()
    try:
        yield server, tmp_path
    finally:
        server.kill()


def http_infer(client: th.InferenceServerClient, name: str, version: str = "") -> int:
    x = th.InferInput("input-0", [1, 4], "FP32")
    x.set_data_from_numpy(np.ones((1, 4), np.float32))
    return int(client.infer(name, [x], model_version=version).as_numpy("predict")[0])


def grpc_infer(client: tg.InferenceServerClient, name: str, version: str = "") -> int:
    x = tg.InferInput("input-0", [1, 4], "FP32")
    x.set_data_from_numpy(np.ones((1, 4), np.float32))
    return int(client.infer(name, [x], model_version=version).as_numpy("predict")[0])


def health(server: ServerProcess, service: str) -> str:
    """What grpc.health.v1 answers for ``service`` (a model's name)."""
    with grpc.insecure_channel(server.grpc_url) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))


def index(server: ServerProcess) -> list[tuple[str, str, str]]:
    status, _, body = server.post("/v2/repository/index", b"")
    assert status == 200
    return [(e["name"], e["version"], e["state"]) for e in json.loads(body)]


def test_every_selected_version_is_served_at_once_and_the_default_is_the_highest(
    repo: tuple[ServerProcess, Path],
) -> None:
    server, _ = repo
    h = th.InferenceServerClient(server.url.removeprefix("http://"))
    assert index(server) == [
        ("clf", "2", "READY"),
        ("clf", "3", "READY"),
        ("double", "1", "READY"),
        ("listed", "7", "READY"),
        ("listed", "8", "READY"),
    ]
    assert http_infer(h, "clf") == 3 and http_infer(h, "clf", "2") == 2 and http_infer(h, "clf", "3") == 3
    assert http_infer(h, "listed") == 8 and http_infer(h, "listed", "7") == 7
    with pytest.raises(InferenceServerException, match="has no version '1'") as info:
        http_infer(h, "clf", "1")  # outside the policy: latest 2
    assert info.value.status() == "404"
    assert h.get_model_metadata("clf", "2")["versions"] == ["2", "3"]
    assert h.is_model_ready("clf", "2") and not h.is_model_ready("clf", "1")
    out = h.infer("double", [_double_input()]).as_numpy("y")
    assert out.tolist() == [[2.0, 4.0]]


def _double_input() -> th.InferInput:
    x = th.InferInput("x", [1, 2], "FP32")
    x.set_data_from_numpy(np.array([[1.0, 2.0]], np.float32))
    return x


def test_tritonclient_http_unloads_and_loads_a_model(repo: tuple[ServerProcess, Path]) -> None:
    server, _ = repo
    h = th.InferenceServerClient(server.url.removeprefix("http://"))
    h.unload_model("clf")
    assert [e for e in h.get_model_repository_index() if e["name"] == "clf"] == [
        {"name": "clf", "version": "2", "state": "UNAVAILABLE", "reason": "unloaded"},
        {"name": "clf", "version": "3", "state": "UNAVAILABLE", "reason": "unloaded"},
    ]
    with pytest.raises(InferenceServerException, match="'clf' has no available versions") as info:
        http_infer(h, "clf")
    assert info.value.status() == "404"
    assert not h.is_model_ready("clf")
    assert http_infer(h, "listed") == 8  # the other models serve on, and the server stays ready
    assert h.is_server_ready()
    status, _, body = server.post("/v2/repository/index", b'{"ready": true}')
    assert status == 200 and "clf" not in {e["name"] for e in json.loads(body)}
    h.unload_model("clf")  # unloading an unloaded model is no error (as Triton)
    h.load_model("clf")
    assert http_infer(h, "clf") == 3 and http_infer(h, "clf", "2") == 2
    assert h.is_model_ready("clf")


def test_tritonclient_grpc_unloads_and_loads_a_model(repo: tuple[ServerProcess, Path]) -> None:
    server, _ = repo
    g = tg.InferenceServerClient(server.grpc_url)
    names = {(m["name"], m["version"]) for m in g.get_model_repository_index(as_json=True)["models"]}
    assert ("clf", "3") in names and ("listed", "7") in names
    g.unload_model("listed", unload_dependents=True)
    assert health(server, "listed") == "NOT_SERVING" and health(server, "clf") == "SERVING"
    with pytest.raises(InferenceServerException, match="has no available versions") as info:
        grpc_infer(g, "listed")
    assert info.value.status() == "StatusCode.NOT_FOUND"
    assert g.is_model_ready("listed") is False  # a repository model that is not loaded: not ready, no error
    ready = g.get_model_repository_index(as_json=True)["models"]
    assert {m["state"] for m in ready if m["name"] == "listed"} == {"UNAVAILABLE"}
    g.load_model("listed")
    assert health(server, "listed") == "SERVING"
    assert grpc_infer(g, "listed") == 8 and grpc_infer(g, "listed", "7") == 7
    assert list(g.get_model_metadata("listed").versions) == ["7", "8"]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_load_refuses_unknown_models_and_config_overrides(repo: tuple[ServerProcess, Path], protocol: str) -> None:
    server, _ = repo
    client: th.InferenceServerClient | tg.InferenceServerClient = (
        th.InferenceServerClient(server.url.removeprefix("http://"))
        if protocol == "http"
        else tg.InferenceServerClient(server.grpc_url)
    )
    code = "400" if protocol == "http" else "StatusCode.INVALID_ARGUMENT"
    with pytest.raises(InferenceServerException, match="no model of that name in the repository") as info:
        client.load_model("nope")
    assert info.value.status() == code
    with pytest.raises(InferenceServerException, match="no model of that name") as info:
        client.unload_model("nope")
    assert info.value.status() == code
    with pytest.raises(InferenceServerException, match="parameter 'config' is not supported") as info:
        client.load_model("clf", config='{"backend": "onnxruntime"}')
    assert info.value.status() == code


def test_a_load_rereads_the_folder_and_a_failed_one_keeps_the_served_versions(
    repo: tuple[ServerProcess, Path],
) -> None:
    server, folder = repo
    h = th.InferenceServerClient(server.url.removeprefix("http://"))
    constant_model(folder / "clf" / "4" / "model.joblib", 4)
    h.load_model("clf")
    assert [v for n, v, _ in index(server) if n == "clf"] == ["3", "4"]
    assert http_infer(h, "clf") == 4
    broken = folder / "clf" / "5" / "model.joblib"
    broken.parent.mkdir()
    broken.write_bytes(b"not a model")
    with pytest.raises(InferenceServerException, match="failed to load 'clf': version '5'") as info:
        h.load_model("clf")
    assert info.value.status() == "400"
    assert http_infer(h, "clf") == 4 and http_infer(h, "clf", "3") == 3  # the old versions serve on


def test_repository_requests_with_bad_bodies_get_400(repo: tuple[ServerProcess, Path]) -> None:
    server, _ = repo
    for path, body in (
        ("/v2/repository/index", b'{"ready": "yes"}'),
        ("/v2/repository/index", b"[1]"),
        ("/v2/repository/models/clf/load", b'{"parameters": []}'),
        ("/v2/repository/models/clf/unload", b"{not json"),
    ):
        status, _, answer = server.post(path, body)
        assert status == 400, (path, body, answer)
        assert json.loads(answer)["error"]
    status, _ = server.get("/v2/repository/models/clf/load")
    assert status == 405


def test_a_model_that_cannot_be_served_at_start_is_named_and_can_be_loaded_later(tmp_path: Path) -> None:
    constant_model(tmp_path / "clf" / "1" / "model.joblib", 1)
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: clf}\nspec:\n"
        "  model: {format: sklearn, uri: clf, versionPolicy: {specific: ['2']}}\n"
    )
    server = ServerProcess(spec, grpc=False, wait_ready=False).start()
    try:
        h = th.InferenceServerClient(server.url.removeprefix("http://"))
        status, body = server.get("/readyz")
        assert status == 503 and b"versionPolicy.specific names '2'" in body
        assert h.get_model_repository_index()[0]["state"] == "UNAVAILABLE"
        constant_model(tmp_path / "clf" / "2" / "model.joblib", 2)
        h.load_model("clf")
        assert http_infer(h, "clf") == 2
        server.wait_until_ready(10)  # every model of the spec is served now: the replica has started
    finally:
        server.kill()
