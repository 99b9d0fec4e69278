"""Open Inference Protocol v2 over gRPC, against a real server process, driven by the real tritonclient.grpc.

The server runs as ``kubeinfer.server.runner.run`` does in production, on uvloop, with HTTP and gRPC on one loop.
The fixtures live in this file so that it stands alone.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tg
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.integration

N_FEATURES = 64
N_CLASSES = 3
START_TIMEOUT = 20.0

SERVE = (
    "import sys; from pathlib import Path; from kubeinfer.spec import load_spec; "
    "from kubeinfer.server.runner import run; "
    "sys.exit(run(load_spec(sys.argv[1]), Path(sys.argv[1]).parent))"
)


@dataclass
class Server:
    proc: subprocess.Popen[str]
    http: int
    grpc: int
    lines: queue.Queue[str]

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc}"

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}{path}", timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()


def _spec(folder: Path, model: str) -> Path:
    path = folder / "spec.yaml"
    path.write_text(
        "apiVersion: kubeinfer.io/v1alpha1\n"
        "kind: InferenceService\n"
        "metadata: {name: clf}\n"
        "spec:\n"
        f"  model: {model}\n"
        "  batching: {maxBatchSize: 64, maxDelayMs: 2}\n"
        "  server: {port: 0, grpcPort: 0, limits: {drainTimeoutSeconds: 10}}\n"
    )
    return path


def _start(spec: Path) -> Server:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        with proc.stdout:
            for line in proc.stdout:
                lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT
    seen: list[str] = []
    ports: dict[str, Any] | None = None
    while ports is None:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            proc.kill()
            pytest.fail("server did not announce its ports:\n" + "".join(seen))
        seen.append(line)
        if line.startswith("KUBEINFER_LISTENING "):
            ports = json.loads(line.split(" ", 1)[1])
    server = Server(proc, int(ports["http"]), int(ports["grpc"]), lines)
    while time.monotonic() < deadline:
        try:
            if server.get("/v2/health/ready")[0] == 200:
                return server
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    pytest.fail("server did not become ready:\n" + "".join(seen) + _drain(lines))


def _drain(lines: queue.Queue[str]) -> str:
    out = []
    while not lines.empty():
        out.append(lines.get_nowait())
    return "".join(out)


def _stop(server: Server) -> int:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
    try:
        return server.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
        raise


@pytest.fixture(scope="module")
def estimator_path(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    import joblib
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, N_FEATURES)).astype(np.float32)
    y = (x[:, :N_CLASSES] * [1.0, 2.0, 3.0]).argmax(axis=1)
    est = LogisticRegression(max_iter=500).fit(x, y)
    folder = tmp_path_factory.mktemp("sklearn")
    joblib.dump(est, folder / "model.joblib")
    return est, folder


@pytest.fixture(scope="module")
def estimator(estimator_path: tuple[Any, Path]) -> Any:
    return estimator_path[0]


@pytest.fixture(scope="module")
def server(estimator_path: tuple[Any, Path]) -> Iterator[Server]:
    srv = _start(_spec(estimator_path[1], "{format: sklearn, uri: model.joblib}"))
    yield srv
    assert _stop(srv) == 0, _drain(srv.lines)


@pytest.fixture
def client(server: Server) -> Iterator[tg.InferenceServerClient]:
    c = tg.InferenceServerClient(server.grpc_url)
    yield c
    c.close()


def _rows(n: int, seed: int) -> np.ndarray[Any, Any]:
    return np.random.default_rng(seed).normal(size=(n, N_FEATURES)).astype(np.float32)


def _infer(
    c: tg.InferenceServerClient, x: np.ndarray[Any, Any], outputs: list[str] | None = None, request_id: str = ""
) -> tg.InferResult:
    inp = tg.InferInput("input-0", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    outs = [tg.InferRequestedOutput(n) for n in outputs] if outputs is not None else None
    return c.infer("clf", [inp], outputs=outs, request_id=request_id)


def _status(e: InferenceServerException) -> str:
    return str(e.status()).removeprefix("StatusCode.")


# -- the wire contract ---------------------------------------------------------------------------------------
def test_generated_messages_match_tritonclient_on_the_wire() -> None:
    """kubeinfer's generated messages load beside tritonclient's (own descriptor pool) and read its bytes."""
    from kubeinfer.server._proto import grpc_predict_v2_pb2 as ours

    theirs = service_pb2.ModelInferRequest(model_name="m", model_version="2", id="x")
    t = theirs.inputs.add(name="a", datatype="FP32", shape=[1, 2])
    t.contents.fp32_contents.extend([1.0, 2.0])
    theirs.outputs.add(name="y")
    theirs.raw_input_contents.append(b"\x00" * 8)
    params = theirs.parameters
    params["b"].bool_param = True
    params["i"].int64_param = -3
    params["s"].string_param = "v"
    params["d"].double_param = 0.5
    params["u"].uint64_param = 2**63
    mine = ours.ModelInferRequest.FromString(theirs.SerializeToString())
    assert mine.SerializeToString(deterministic=True) == theirs.SerializeToString(deterministic=True)
    assert mine.parameters["u"].uint64_param == 2**63
    assert mine.parameters["d"].double_param == 0.5
    assert ours.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name == "inference.GRPCInferenceService"


# -- health and metadata -------------------------------------------------------------------------------------
def test_health_rpcs_report_live_and_ready(client: tg.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("clf")
    assert client.is_model_ready("clf", "1")


def test_server_metadata_names_kubeinfer(client: tg.InferenceServerClient) -> None:
    meta = client.get_server_metadata(as_json=True)
    assert meta["name"] == "kubeinfer"
    assert meta["version"]
    assert "extensions" in meta


def test_model_metadata_describes_sklearn_tensors(client: tg.InferenceServerClient) -> None:
    meta = client.get_model_metadata("clf", as_json=True)
    assert meta["name"] == "clf"
    assert meta["versions"] == ["1"]
    assert meta["platform"] == "sklearn"
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP32", "shape": ["-1", str(N_FEATURES)]}]
    outputs = {o["name"]: o for o in meta["outputs"]}
    assert outputs["predict"]["datatype"] == "INT64"
    assert outputs["predict_proba"] == {"name": "predict_proba", "datatype": "FP32", "shape": ["-1", str(N_CLASSES)]}


def test_unknown_model_or_version_is_not_found(client: tg.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as ei:
        client.get_model_metadata("nope")
    assert _status(ei.value) == "NOT_FOUND"
    assert "unknown model 'nope'" in ei.value.message()
    with pytest.raises(InferenceServerException) as ei:
        client.is_model_ready("clf", "7")
    assert _status(ei.value) == "NOT_FOUND"
    assert "no version '7'" in ei.value.message()


def test_repository_index_lists_the_model(client: tg.InferenceServerClient) -> None:
    index = client.get_model_repository_index(as_json=True)
    assert index["models"] == [{"name": "clf", "version": "1", "state": "READY"}]


# -- inference -----------------------------------------------------------------------------------------------
def test_infer_matches_sklearn_in_process(client: tg.InferenceServerClient, estimator: Any) -> None:
    x = _rows(5, seed=1)
    result = _infer(client, x, request_id="req-7")
    np.testing.assert_array_equal(result.as_numpy("predict"), estimator.predict(x))
    proba = result.as_numpy("predict_proba")
    assert proba.dtype == np.float32
    assert proba.shape == (5, N_CLASSES)
    np.testing.assert_allclose(proba, estimator.predict_proba(x), rtol=1e-5, atol=1e-6)
    response = result.get_response()
    assert response.id == "req-7"
    assert response.model_name == "clf"
    assert response.model_version == "1"


def test_requested_outputs_are_the_only_outputs(client: tg.InferenceServerClient, estimator: Any) -> None:
    x = _rows(3, seed=2)
    result = _infer(client, x, outputs=["predict_proba"])
    assert [o.name for o in result.get_response().outputs] == ["predict_proba"]
    assert result.as_numpy("predict") is None
    np.testing.assert_allclose(result.as_numpy("predict_proba"), estimator.predict_proba(x), rtol=1e-5, atol=1e-6)


def test_typed_contents_are_decoded(server: Server, estimator: Any) -> None:
    """A request with fp32_contents instead of raw bytes (Triton's own generated stub) gives the same answer."""
    x = _rows(2, seed=3)
    req = service_pb2.ModelInferRequest(model_name="clf", id="typed")
    t = req.inputs.add(name="input-0", datatype="FP32", shape=list(x.shape))
    t.contents.fp32_contents.extend(x.reshape(-1).tolist())
    req.parameters["note"].string_param = "parameters are accepted"
    with grpc.insecure_channel(server.grpc_url) as ch:
        resp = service_pb2_grpc.GRPCInferenceServiceStub(ch).ModelInfer(req, timeout=5)
    assert resp.id == "typed"
    by_name = {o.name: (o, raw) for o, raw in zip(resp.outputs, resp.raw_output_contents, strict=True)}
    out, raw = by_name["predict"]
    assert (out.datatype, list(out.shape)) == ("INT64", [2])
    np.testing.assert_array_equal(np.frombuffer(raw, dtype="<i8"), estimator.predict(x))


def test_typed_contents_in_the_wrong_field_say_where_the_data_is(server: Server) -> None:
    req = service_pb2.ModelInferRequest(model_name="clf")
    t = req.inputs.add(name="input-0", datatype="FP32", shape=[1, N_FEATURES])
    t.contents.fp64_contents.extend([0.0] * N_FEATURES)
    with grpc.insecure_channel(server.grpc_url) as ch, pytest.raises(grpc.RpcError) as ei:
        service_pb2_grpc.GRPCInferenceServiceStub(ch).ModelInfer(req, timeout=5)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "contents.fp64_contents" in ei.value.details()
    assert "contents.fp32_contents" in ei.value.details()


# -- bad requests --------------------------------------------------------------------------------------------
def test_infer_on_unknown_model_is_not_found(client: tg.InferenceServerClient) -> None:
    inp = tg.InferInput("input-0", [1, N_FEATURES], "FP32")
    inp.set_data_from_numpy(_rows(1, seed=4))
    with pytest.raises(InferenceServerException) as ei:
        client.infer("nope", [inp])
    assert _status(ei.value) == "NOT_FOUND"
    assert "unknown model 'nope': this server serves 'clf'" in ei.value.message()


def test_wrong_datatype_is_invalid_argument(client: tg.InferenceServerClient) -> None:
    # Numbers of another type are cast for a scikit-learn model (as its own predict does); text is refused.
    inp = tg.InferInput("input-0", [1, N_FEATURES], "FP64")
    rows = _rows(1, seed=5)
    inp.set_data_from_numpy(rows.astype(np.float64))
    assert client.infer("clf", [inp]).as_numpy("predict").shape == (1,)
    inp = tg.InferInput("input-0", [1, N_FEATURES], "BYTES")
    inp.set_data_from_numpy(np.full((1, N_FEATURES), b"x", dtype=np.object_))
    with pytest.raises(InferenceServerException) as ei:
        client.infer("clf", [inp])
    assert _status(ei.value) == "INVALID_ARGUMENT"
    assert "datatype BYTES but model 'clf' expects FP32" in ei.value.message()


def test_wrong_shape_is_invalid_argument(client: tg.InferenceServerClient) -> None:
    inp = tg.InferInput("input-0", [1, N_FEATURES - 1], "FP32")
    inp.set_data_from_numpy(np.zeros((1, N_FEATURES - 1), dtype=np.float32))
    with pytest.raises(InferenceServerException) as ei:
        client.infer("clf", [inp])
    assert _status(ei.value) == "INVALID_ARGUMENT"
    assert f"shape [1, {N_FEATURES - 1}] but model 'clf' expects [-1, {N_FEATURES}]" in ei.value.message()


def test_unknown_input_and_output_names_are_invalid_argument(client: tg.InferenceServerClient) -> None:
    # The one input of a one-input model is taken under any name (as MLServer's and KServe's servers do) ...
    inp = tg.InferInput("pixels", [1, N_FEATURES], "FP32")
    inp.set_data_from_numpy(_rows(1, seed=6))
    assert client.infer("clf", [inp]).as_numpy("predict").shape == (1,)
    # ... but a second input is not the model's.
    own = tg.InferInput("input-0", [1, N_FEATURES], "FP32")
    own.set_data_from_numpy(_rows(1, seed=6))
    with pytest.raises(InferenceServerException) as ei:
        client.infer("clf", [own, inp])
    assert _status(ei.value) == "INVALID_ARGUMENT"
    assert "unknown input 'pixels'" in ei.value.message()
    with pytest.raises(InferenceServerException) as ei:
        _infer(client, _rows(1, seed=6), outputs=["logits"])
    assert _status(ei.value) == "INVALID_ARGUMENT"
    assert "unknown output 'logits'" in ei.value.message()


def test_raw_contents_of_the_wrong_length_are_invalid_argument(server: Server) -> None:
    req = service_pb2.ModelInferRequest(model_name="clf")
    req.inputs.add(name="input-0", datatype="FP32", shape=[2, N_FEATURES])
    req.raw_input_contents.append(np.zeros(N_FEATURES, dtype=np.float32).tobytes())
    with grpc.insecure_channel(server.grpc_url) as ch, pytest.raises(grpc.RpcError) as ei:
        service_pb2_grpc.GRPCInferenceServiceStub(ch).ModelInfer(req, timeout=5)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"needs {2 * N_FEATURES * 4} bytes of data, got {N_FEATURES * 4}" in ei.value.details()


# -- concurrency, streaming, metrics -------------------------------------------------------------------------
def test_concurrent_infers_are_batched_and_all_correct(server: Server, estimator: Any) -> None:
    threads, per_thread = 32, 8
    metrics_before = _metric_sum(server, "kubeinfer_model_executions_total")

    def work(i: int) -> int:
        c = tg.InferenceServerClient(server.grpc_url)
        try:
            for j in range(per_thread):
                x = _rows(1 + (i + j) % 4, seed=1000 + i * per_thread + j)
                r = _infer(c, x, request_id=f"{i}-{j}")
                assert r.get_response().id == f"{i}-{j}"
                np.testing.assert_array_equal(r.as_numpy("predict"), estimator.predict(x))
                np.testing.assert_allclose(
                    r.as_numpy("predict_proba"), estimator.predict_proba(x), rtol=1e-5, atol=1e-6
                )
            return per_thread
        finally:
            c.close()

    # 256 concurrent requests merged into fewer model calls: the batcher saw gRPC requests together. With one instance,
    # a model this fast runs its batches on the event loop (server/batcher.py), so only requests that arrive in the same
    # turn of the loop merge; 32 client threads sharing this process's GIL on a busy 2-CPU machine can space their
    # sends so that none do in one round (CI saw 256 calls once). A round that merges nothing is run again, at most
    # twice; every answer of every round is checked.
    for _ in range(3):
        with ThreadPoolExecutor(threads) as pool:
            assert sum(pool.map(work, range(threads))) == threads * per_thread
        executions = _metric_sum(server, "kubeinfer_model_executions_total") - metrics_before
        assert executions > 0
        if executions < threads * per_thread:
            break
        metrics_before += executions
    else:
        pytest.fail("three rounds of 256 concurrent gRPC requests ran as 256 model calls each: nothing was batched")


def test_stream_infer_answers_every_request(server: Server, estimator: Any) -> None:
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    c = tg.InferenceServerClient(server.grpc_url)
    try:
        c.start_stream(callback=lambda result, error: answers.put((result, error)))
        xs = {f"s{i}": _rows(1 + i % 3, seed=2000 + i) for i in range(12)}
        for rid, x in xs.items():
            inp = tg.InferInput("input-0", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            c.async_stream_infer("clf", [inp], request_id=rid)
        bad = tg.InferInput("input-0", [1, 2], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 2), dtype=np.float32))
        c.async_stream_infer("clf", [bad], request_id="bad")
        got = [answers.get(timeout=10) for _ in range(len(xs) + 1)]
    finally:
        c.stop_stream()
        c.close()
    errors = [e for _, e in got if e is not None]
    assert len(errors) == 1
    assert "expects [-1, 64]" in errors[0].message()
    for result, _ in (g for g in got if g[1] is None):
        x = xs[result.get_response().id]
        np.testing.assert_array_equal(result.as_numpy("predict"), estimator.predict(x))


def test_grpc_requests_are_counted_in_metrics(server: Server, client: tg.InferenceServerClient) -> None:
    _infer(client, _rows(1, seed=7))
    status, body = server.get("/metrics")
    assert status == 200
    text = body.decode()
    assert 'protocol="grpc"' in text
    # The status label of a gRPC request holds the gRPC status code number: 0 is OK.
    ok = [
        ln
        for ln in text.splitlines()
        if ln.startswith("kubeinfer_requests_total{")
        and 'protocol="grpc"' in ln
        and 'model="clf"' in ln
        and '="0"' in ln
    ]
    assert ok, text
    assert float(ok[0].rsplit(" ", 1)[1]) >= 1


def _metric_sum(server: Server, name: str) -> float:
    _, body = server.get("/metrics")
    return sum(
        float(ln.rsplit(" ", 1)[1])
        for ln in body.decode().splitlines()
        if ln.startswith(name) and not ln.startswith("#")
    )


# -- graceful shutdown ---------------------------------------------------------------------------------------
SLOW_MODEL = '''
import time
import numpy as np


class Slow:
    """Doubles its input, taking 0.3 s a batch: long enough to have requests in flight at SIGTERM."""

    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    outputs = [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]

    def __init__(self):
        self.warm = False

    def predict(self, inputs):
        if self.warm:
            time.sleep(0.3)
        self.warm = True
        return {"y": inputs["x"] * 2}
'''


def test_sigterm_drains_in_flight_grpc_requests_and_exits_0(tmp_path: Path) -> None:
    (tmp_path / "slowmodel.py").write_text(SLOW_MODEL)
    srv = _start(_spec(tmp_path, "{format: python, className: 'slowmodel:Slow'}"))
    try:
        n = 16
        started = threading.Barrier(n + 1)

        def call(i: int) -> np.ndarray[Any, Any]:
            c = tg.InferenceServerClient(srv.grpc_url)
            try:
                x = np.full((1, 4), i, dtype=np.float32)
                inp = tg.InferInput("x", [1, 4], "FP32")
                inp.set_data_from_numpy(x)
                started.wait()
                return c.infer("clf", [inp], client_timeout=10).as_numpy("y")
            finally:
                c.close()

        with ThreadPoolExecutor(n) as pool:
            futures = [pool.submit(call, i) for i in range(n)]
            started.wait()
            time.sleep(0.15)  # the requests are now queued or running
            srv.proc.send_signal(signal.SIGTERM)
            results = [f.result(timeout=15) for f in futures]
        for i, y in enumerate(results):
            np.testing.assert_array_equal(y, np.full((1, 4), 2 * i, dtype=np.float32))
        assert srv.proc.wait(timeout=15) == 0, _drain(srv.lines)
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()
