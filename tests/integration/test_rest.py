"""Open Inference Protocol v2 REST, KServe v1 and embeddings against a real server process, with real clients."""

from __future__ import annotations

import gzip
import json
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import joblib
import numpy as np
import pytest
import tritonclient.http as th
from prometheus_client.parser import text_string_to_metric_families

from helpers import python_model
from kubeinfer.testing import ServerProcess

pytestmark = pytest.mark.integration

IRIS_ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]], dtype=np.float32)


def infer_body(rows: np.ndarray, name: str = "input-0", datatype: str = "FP32", **extra: object) -> bytes:
    return json.dumps(
        {
            "inputs": [
                {"name": name, "shape": list(rows.shape), "datatype": datatype, "data": rows.reshape(-1).tolist()}
            ],
            **extra,
        }
    ).encode()


def error_of(body: bytes) -> str:
    doc = json.loads(body)
    assert set(doc) == {"error"}
    assert doc["error"]
    return str(doc["error"])


@pytest.fixture(scope="module")
def iris_model(examples: Path) -> object:
    return joblib.load(examples / "iris" / "model.joblib")


def test_health_and_metadata_follow_the_protocol(iris_server: ServerProcess) -> None:
    assert iris_server.json("/v2/health/live") == (200, {"live": True})
    assert iris_server.json("/v2/health/ready") == (200, {"ready": True})
    assert iris_server.json("/healthz")[0] == 200
    assert iris_server.json("/readyz")[0] == 200
    assert iris_server.json("/startupz") == (200, {"started": True})
    status, meta = iris_server.json("/v2")
    assert status == 200 and meta["name"] == "kubeinfer" and "binary_tensor_data" in meta["extensions"]
    status, model = iris_server.json("/v2/models/iris")
    assert model["inputs"] == [{"name": "input-0", "datatype": "FP32", "shape": [-1, 4]}]
    assert {o["name"] for o in model["outputs"]} == {"predict", "predict_proba"}
    assert iris_server.json("/v2/models/iris/versions/1")[1] == model
    assert iris_server.json("/v2/models/iris/ready") == (200, {"name": "iris", "ready": True})
    assert iris_server.json("/v2/models/iris/versions/1/ready")[0] == 200
    assert iris_server.json("/v1/models/iris") == (200, {"name": "iris", "ready": True})


def test_json_infer_matches_the_model_in_process(iris_server: ServerProcess, iris_model: object) -> None:
    status, _, body = iris_server.post("/v2/models/iris/infer", infer_body(IRIS_ROWS, id="req-7"))
    assert status == 200, body
    doc = json.loads(body)
    assert doc["id"] == "req-7" and doc["model_name"] == "iris" and doc["model_version"] == "1"
    outs = {o["name"]: o for o in doc["outputs"]}
    assert outs["predict"]["datatype"] == "INT64" and outs["predict"]["shape"] == [3]
    assert outs["predict"]["data"] == iris_model.predict(IRIS_ROWS).tolist()  # type: ignore[attr-defined]
    proba = np.array(outs["predict_proba"]["data"], dtype=np.float32).reshape(outs["predict_proba"]["shape"])
    np.testing.assert_allclose(proba, iris_model.predict_proba(IRIS_ROWS), rtol=1e-5)  # type: ignore[attr-defined]


def test_nested_data_and_versioned_route_are_accepted(iris_server: ServerProcess) -> None:
    body = json.dumps(
        {
            "inputs": [{"name": "input-0", "shape": [3, 4], "datatype": "FP32", "data": IRIS_ROWS.tolist()}],
            "outputs": [{"name": "predict"}],
        }
    ).encode()
    status, _, resp = iris_server.post("/v2/models/iris/versions/1/infer", body)
    assert status == 200
    assert [o["name"] for o in json.loads(resp)["outputs"]] == ["predict"]


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_http_binary_and_json(iris_server: ServerProcess, iris_model: object, binary: bool) -> None:
    client = th.InferenceServerClient(f"127.0.0.1:{iris_server.http_port}")
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("iris")
    assert client.get_model_metadata("iris")["name"] == "iris"
    assert client.get_server_metadata()["name"] == "kubeinfer"
    inp = th.InferInput("input-0", list(IRIS_ROWS.shape), "FP32")
    inp.set_data_from_numpy(IRIS_ROWS, binary_data=binary)
    outs = [
        th.InferRequestedOutput("predict_proba", binary_data=binary),
        th.InferRequestedOutput("predict", binary_data=binary),
    ]
    result = client.infer("iris", [inp], outputs=outs, request_id="abc")
    np.testing.assert_allclose(result.as_numpy("predict_proba"), iris_model.predict_proba(IRIS_ROWS), rtol=1e-5)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(result.as_numpy("predict"), iris_model.predict(IRIS_ROWS))  # type: ignore[attr-defined]
    assert result.get_response()["id"] == "abc"
    client.close()


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_tritonclient_compressed_requests(iris_server: ServerProcess, iris_model: object, algorithm: str) -> None:
    client = th.InferenceServerClient(f"127.0.0.1:{iris_server.http_port}")
    inp = th.InferInput("input-0", list(IRIS_ROWS.shape), "FP32")
    inp.set_data_from_numpy(IRIS_ROWS)
    result = client.infer("iris", [inp], request_compression_algorithm=algorithm)
    np.testing.assert_array_equal(result.as_numpy("predict"), iris_model.predict(IRIS_ROWS))  # type: ignore[attr-defined]
    client.close()


def test_gzip_and_deflate_bodies_by_hand(iris_server: ServerProcess) -> None:
    raw = infer_body(IRIS_ROWS)
    for enc, data in (("gzip", gzip.compress(raw)), ("deflate", zlib.compress(raw))):
        status, _, _ = iris_server.post("/v2/models/iris/infer", data, {"Content-Encoding": enc})
        assert status == 200
    status, _, body = iris_server.post("/v2/models/iris/infer", b"not gzip", {"Content-Encoding": "gzip"})
    assert status == 400 and "gzip" in error_of(body)
    status, _, body = iris_server.post("/v2/models/iris/infer", raw, {"Content-Encoding": "br"})
    assert status == 415 and "br" in error_of(body)


def test_kserve_v1_predict(iris_server: ServerProcess, iris_model: object) -> None:
    status, _, body = iris_server.post(
        "/v1/models/iris:predict", json.dumps({"instances": IRIS_ROWS.tolist()}).encode()
    )
    assert status == 200
    assert json.loads(body) == {"predictions": iris_model.predict(IRIS_ROWS).tolist()}  # type: ignore[attr-defined]
    status, models = iris_server.json("/v1/models")
    assert (status, models["models"]) == (200, ["iris"])  # KServe v1's list, beside OpenAI's (test_openai_client.py)


_BIN_HEADER = b'{"inputs":[{"name":"input-0","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":64}}]}'
BAD = [
    ("malformed JSON", "/v2/models/iris/infer", b"{not json", {}, 400, "not valid JSON"),
    ("unknown model", "/v2/models/nope/infer", infer_body(IRIS_ROWS), {}, 404, "unknown model 'nope'"),
    ("unknown version", "/v2/models/iris/versions/9/infer", infer_body(IRIS_ROWS), {}, 404, "no version '9'"),
    (
        "wrong datatype",  # numbers of another type are cast for a scikit-learn model; text is not
        "/v2/models/iris/infer",
        json.dumps({"inputs": [{"name": "input-0", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}).encode(),
        {},
        400,
        "expects FP32",
    ),
    ("unknown datatype", "/v2/models/iris/infer", infer_body(IRIS_ROWS, datatype="FP8"), {}, 400, "datatype 'FP8'"),
    (
        "shape/data mismatch",
        "/v2/models/iris/infer",
        json.dumps({"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3]}]}).encode(),
        {},
        400,
        "needs 8 elements",
    ),
    ("wrong shape", "/v2/models/iris/infer", infer_body(np.zeros((2, 5), np.float32)), {}, 400, "expects [-1, 4]"),
    (
        "extra input",  # the one input of a one-input model is taken under any name, but not two inputs
        "/v2/models/iris/infer",
        json.dumps(
            {
                "inputs": [
                    {"name": n, "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]} for n in ("input-0", "other")
                ]
            }
        ).encode(),
        {},
        400,
        "unknown input 'other'",
    ),
    ("no inputs", "/v2/models/iris/infer", b'{"inputs": []}', {}, 400, "non-empty list"),
    (
        "unknown output",
        "/v2/models/iris/infer",
        infer_body(IRIS_ROWS, outputs=[{"name": "nope"}]),
        {},
        400,
        "unknown output 'nope'",
    ),
    (
        "text data for numbers",
        "/v2/models/iris/infer",
        json.dumps(
            {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": ["a", "b", "c", "d"]}]}
        ).encode(),
        {},
        400,
        "FP32 data must be numbers, got the string 'a'",
    ),
    (
        "wrong content type",
        "/v2/models/iris/infer",
        infer_body(IRIS_ROWS),
        {"Content-Type": "application/xml"},
        415,
        "not supported",
    ),
    (
        "binary size past the end",
        "/v2/models/iris/infer",
        _BIN_HEADER + b"\0" * 16,
        {"Inference-Header-Content-Length": str(len(_BIN_HEADER))},
        400,
        "binary_data_size",
    ),
    ("v1 ragged instances", "/v1/models/iris:predict", b'{"instances": [[1, 2, 3, 4], [1]]}', {}, 400, "rectangular"),
    ("v1 without instances", "/v1/models/iris:predict", b'{"rows": []}', {}, 400, "instances"),
    ("unknown route", "/v2/nothing", b"{}", {}, 404, "no route"),
]


@pytest.mark.parametrize(("what", "path", "body", "headers", "status", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_a_4xx_that_says_what_to_fix(
    iris_server: ServerProcess, what: str, path: str, body: bytes, headers: dict[str, str], status: int, message: str
) -> None:
    got, _, resp = iris_server.post(path, body, headers)
    assert got == status, resp
    assert message in error_of(resp)
    assert iris_server.get("/v2/health/ready")[0] == 200  # still up


def test_oversized_body_is_413_and_server_stays_up(examples: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    s = server_factory(examples / "iris" / "service.yaml", "--max-body-size", "1Ki")
    big = infer_body(np.zeros((200, 4), np.float32))
    status, _, body = s.post("/v2/models/iris/infer", big)
    assert status == 413 and "limit" in error_of(body)
    bomb = gzip.compress(b"[" + b"0," * 100_000 + b"0]")
    status, _, body = s.post("/v2/models/iris/infer", bomb, {"Content-Encoding": "gzip"})
    assert status == 413
    assert s.post("/v2/models/iris/infer", infer_body(IRIS_ROWS[:1]))[0] == 200


def test_all_datatypes_round_trip_json_and_binary(tmp_path: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    s = server_factory(python_model(tmp_path, "types", "AllTypes"))
    client = th.InferenceServerClient(f"127.0.0.1:{s.http_port}")
    values = {
        "BOOL": np.array([[True, False]]),
        "UINT8": np.array([[0, 255]], np.uint8),
        "UINT16": np.array([[0, 65535]], np.uint16),
        "UINT32": np.array([[0, 2**32 - 1]], np.uint32),
        "UINT64": np.array([[0, 2**63]], np.uint64),
        "INT8": np.array([[-128, 127]], np.int8),
        "INT16": np.array([[-3, 3]], np.int16),
        "INT32": np.array([[-(2**31), 7]], np.int32),
        "INT64": np.array([[-(2**62), 2**62]], np.int64),
        "FP16": np.array([[0.5, -2.0]], np.float16),
        "FP32": np.array([[1.25, -3.5]], np.float32),
        "FP64": np.array([[1e300, -1e-300]], np.float64),
        "BYTES": np.array([[b"hello", "wörld".encode()]], dtype=object),
    }
    for binary in (True, False):
        for dt, arr in values.items():
            inp = th.InferInput(dt.lower(), [1, 2], dt)
            inp.set_data_from_numpy(arr, binary_data=binary)
            res = client.infer(
                "types", [inp], outputs=[th.InferRequestedOutput(dt.lower() + "_out", binary_data=binary)]
            )
            got = res.as_numpy(dt.lower() + "_out")
            if dt == "BYTES":
                assert [bytes(x) if not isinstance(x, str) else x.encode() for x in got.reshape(-1)] == list(
                    arr.reshape(-1)
                ), (dt, binary)
            else:
                np.testing.assert_array_equal(got, arr, err_msg=f"{dt} binary={binary}")
    client.close()


def test_batching_merges_concurrent_requests_and_splits_results_in_order(
    tmp_path: Path,
    server_factory,  # type: ignore[no-untyped-def]
) -> None:
    s = server_factory(
        python_model(tmp_path, "slow", "SlowDouble", "{delay: 0.05}", "  batching: {maxBatchSize: 64, maxDelayMs: 5}\n")
    )

    def one(i: int) -> tuple[int, np.ndarray]:
        rows = np.full((1 + i % 3, 3), i, dtype=np.float32)
        status, _, body = s.post("/v2/models/slow/infer", infer_body(rows, name="x"))
        assert status == 200, body
        out = json.loads(body)["outputs"][0]
        return i, np.array(out["data"], np.float32).reshape(out["shape"])

    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(one, range(48)))
    for i, got in results:
        np.testing.assert_array_equal(got, np.full((1 + i % 3, 3), 2 * i, dtype=np.float32))
    fams = {f.name: f for f in text_string_to_metric_families(s.get("/metrics")[1].decode())}
    execs = next(x.value for x in fams["kubeinfer_model_executions"].samples if x.labels.get("model") == "slow")
    rows = next(x.value for x in fams["kubeinfer_inference_rows"].samples if x.labels.get("model") == "slow")
    assert rows == sum(1 + i % 3 for i in range(48))
    assert execs < 48 / 2, f"{execs} model calls for 48 concurrent requests: batching did not merge them"


def test_batching_on_and_off_give_identical_results(examples: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    rows = [rng.normal(size=(1 + i % 4, 64)).astype(np.float32) for i in range(40)]

    def run(s: ServerProcess) -> list[list[float]]:
        def one(r: np.ndarray) -> list[float]:
            status, _, body = s.post("/v2/models/tabular64/infer", infer_body(r, outputs=[{"name": "predict_proba"}]))
            assert status == 200
            return json.loads(body)["outputs"][0]["data"]

        with ThreadPoolExecutor(16) as pool:
            return list(pool.map(one, rows))

    on = run(server_factory(examples / "tabular64" / "service.yaml"))
    off = run(server_factory(examples / "tabular64" / "service.yaml", "--no-batching"))
    np.testing.assert_allclose(
        np.concatenate([np.array(x) for x in on]), np.concatenate([np.array(x) for x in off]), rtol=1e-6
    )


def test_a_bad_request_never_fails_its_batch_neighbours(tmp_path: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    s = server_factory(
        python_model(
            tmp_path, "picky", "FailsOnNegative", "{delay: 0.05}", "  batching: {maxBatchSize: 64, maxDelayMs: 5}\n"
        )
    )

    def one(i: int) -> tuple[int, int, bytes]:
        rows = np.full((1, 4), -1.0 if i % 5 == 0 else float(i), dtype=np.float32)
        status, _, body = s.post("/v2/models/picky/infer", infer_body(rows, name="x"))
        return i, status, body

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(one, range(40)))
    for i, status, body in results:
        if i % 5 == 0:
            assert status == 500 and "negative values" in error_of(body)
        else:
            assert status == 200, body
            assert json.loads(body)["outputs"][0]["data"] == [float(i) + 1] * 4


def test_full_queue_answers_503_with_retry_after_and_nothing_hangs(tmp_path: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    s = server_factory(
        python_model(
            tmp_path,
            "slow",
            "SlowDouble",
            "{delay: 0.3}",
            "  batching: {enabled: false}\n  server: {limits: {maxQueueSize: 2}}\n",
        )
    )
    with ThreadPoolExecutor(12) as pool:
        results = list(
            pool.map(
                lambda i: s.post(
                    "/v2/models/slow/infer", infer_body(np.ones((1, 2), np.float32), name="x"), timeout=20
                ),
                range(12),
            )
        )
    statuses = [r[0] for r in results]
    assert statuses.count(200) >= 3 and statuses.count(503) >= 1, statuses
    rejected = next(r for r in results if r[0] == 503)
    assert rejected[1].get("retry-after") == "1" or rejected[1].get("Retry-After") == "1"
    assert "queue is full" in error_of(rejected[2])


def test_concurrency_limit_answers_429(tmp_path: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    s = server_factory(
        python_model(
            tmp_path,
            "slow",
            "SlowDouble",
            "{delay: 0.3}",
            "  batching: {enabled: false}\n  server: {limits: {maxConcurrency: 2}}\n",
        )
    )
    with ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(
                lambda i: s.post(
                    "/v2/models/slow/infer", infer_body(np.ones((1, 2), np.float32), name="x"), timeout=20
                ),
                range(8),
            )
        )
    statuses = sorted(r[0] for r in results)
    assert 429 in statuses and 200 in statuses, statuses
    assert "concurrency limit" in error_of(next(r[2] for r in results if r[0] == 429))


def test_request_timeout_answers_504_and_the_server_recovers(tmp_path: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    s = server_factory(
        python_model(tmp_path, "hang", "Hangs", "{}", "  server: {workers: 2, limits: {requestTimeoutMs: 300}}\n")
    )
    status, _, body = s.post("/v2/models/hang/infer", infer_body(np.full((1, 1), 13, np.float32), name="x"))
    assert status == 504 and "timed out" in error_of(body)
    assert s.post("/v2/models/hang/infer", infer_body(np.ones((1, 1), np.float32), name="x"))[0] == 200


def test_metrics_are_prometheus_text_with_the_documented_names(iris_server: ServerProcess) -> None:
    iris_server.post("/v2/models/iris/infer", infer_body(IRIS_ROWS))
    iris_server.post("/v1/models/iris:predict", b'{"instances": [[1, 2, 3, 4]]}')
    iris_server.post("/v2/models/iris/infer", b"{bad")
    status, text = iris_server.get("/metrics")
    assert status == 200
    names = {f.name for f in text_string_to_metric_families(text.decode())}
    for n in (
        "kubeinfer_requests",
        "kubeinfer_request_duration_seconds",
        "kubeinfer_queue_duration_seconds",
        "kubeinfer_compute_duration_seconds",
        "kubeinfer_batch_size",
        "kubeinfer_queue_depth",
        "kubeinfer_requests_in_flight",
        "kubeinfer_model_ready",
        "process_cpu_seconds",
        "process_resident_memory_bytes",
    ):
        assert n in names, n
    samples = [
        s for f in text_string_to_metric_families(text.decode()) if f.name == "kubeinfer_requests" for s in f.samples
    ]
    codes = {(s.labels["protocol"], s.labels["code"]) for s in samples}
    assert ("v2", "200") in codes and ("v1", "200") in codes and ("v2", "400") in codes


def test_embeddings_route_openai_style(tmp_path: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    s = server_factory(python_model(tmp_path, "emb", "Embedder"))
    status, _, body = s.post("/v1/embeddings", json.dumps({"model": "emb", "input": ["hello", "world"]}).encode())
    assert status == 200, body
    doc = json.loads(body)
    assert doc["object"] == "list" and doc["model"] == "emb" and len(doc["data"]) == 2
    assert [d["index"] for d in doc["data"]] == [0, 1] and len(doc["data"][0]["embedding"]) == 8
    assert abs(np.linalg.norm(doc["data"][0]["embedding"]) - 1) < 1e-5
    one = json.loads(s.post("/v1/embeddings", b'{"input": "hello"}')[2])
    np.testing.assert_allclose(one["data"][0]["embedding"], doc["data"][0]["embedding"], rtol=1e-6)
    status, _, body = s.post("/v1/embeddings", b'{"input": [1, 2]}')
    assert status == 400 and "list of strings" in error_of(body)
    status, _, body = s.post("/v1/embeddings", b'{"input": "x", "model": "nope"}')
    assert status == 404


def test_a_model_that_fails_to_load_reports_why_and_stays_up(tmp_path: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    spec = python_model(tmp_path, "broken", "DoesNotExist")
    s = ServerProcess(spec, grpc=False, wait_ready=False).start()
    try:
        status, body = s.get("/v2/health/ready")
        for _ in range(100):
            if s.get("/v2/models/broken/ready")[0] == 503 and b"broken" in s.get("/v2/repository/index")[1]:
                break
        assert s.get("/v2/health/live")[0] == 200
        assert s.get("/v2/health/ready")[0] == 503
        status, _, body = s.post("/v2/models/broken/infer", b"{}")
        assert status == 503 and "DoesNotExist" in error_of(body)
    finally:
        s.kill()


def test_sigterm_drains_in_flight_requests_and_exits_zero(tmp_path: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    s = server_factory(python_model(tmp_path, "slow", "SlowDouble", "{delay: 0.2}", "  batching: {maxBatchSize: 4}\n"))
    with ThreadPoolExecutor(16) as pool:
        futures = [
            pool.submit(s.post, "/v2/models/slow/infer", infer_body(np.full((1, 2), i, np.float32), name="x"), None, 30)
            for i in range(16)
        ]
        import http.client
        import time

        probe = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=10)
        probe.request("GET", "/v2/health/ready")
        assert probe.getresponse().read() == b'{"ready":true}'
        time.sleep(0.15)  # all sent and accepted, most still queued behind the slow model
        s.terminate()
        time.sleep(0.05)
        # Readiness false at once, still answering (on a connection already open: new ones are refused, so that
        # none is left in the listen backlog when the listener closes).
        probe.request("GET", "/v2/health/ready")
        answer = probe.getresponse()
        assert answer.status == 503 and b"draining" in answer.read()
        probe.close()
        results = [f.result() for f in futures]
    assert [r[0] for r in results] == [200] * 16
    for i, r in enumerate(results):
        assert json.loads(r[2])["outputs"][0]["data"] == [2.0 * i, 2.0 * i]
    assert s.wait(30) == 0


def _raw_exchange(port: int, payload: bytes, responses: int) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    """Send raw bytes on one connection and read ``responses`` HTTP/1.1 answers (status line, headers, body)."""
    import socket

    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(payload)
        buf = b""
        while len(out) < responses:
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                assert chunk, f"connection closed after {len(out)} responses"
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(b":") for ln in lines[1:])}
            size = int(headers[b"content-length"])
            while len(buf) < size:
                chunk = s.recv(65536)
                assert chunk
                buf += chunk
            out.append((lines[0], headers, buf[:size]))
            buf = buf[size:]
    return out


def _post(path: bytes, body: bytes, *extra: bytes, version: bytes = b"HTTP/1.1") -> bytes:
    head = [b"POST " + path + b" " + version, b"host: 127.0.0.1", b"content-type: application/json"]
    head += [b"content-length: " + str(len(body)).encode(), *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def test_direct_and_asgi_infer_routes_answer_alike(iris_server: ServerProcess) -> None:
    # OIP v2 infer is served straight from the HTTP parser (server/http.py); a query string, a percent-encoded
    # path or a chunked body take the ASGI route. The answers must not differ, good or bad.
    body = infer_body(IRIS_ROWS, id="same")
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    for good in (True, False):
        payload = (
            body
            if good
            else b'{"inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}'
        )
        requests = [
            _post(b"/v2/models/iris/infer", payload),
            _post(b"/v2/models/iris/infer?trace=1", payload),
            _post(b"/v2/models/%69ris/infer", payload),
        ]
        answers = _raw_exchange(iris_server.http_port, b"".join(requests), len(requests))
        if good:
            chunk_req = (
                b"POST /v2/models/iris/infer HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n" + chunked
            )
            answers += _raw_exchange(iris_server.http_port, chunk_req, 1)
        statuses = {a[0] for a in answers}
        assert statuses == ({b"HTTP/1.1 200 OK"} if good else {b"HTTP/1.1 400 Bad Request"}), statuses
        bodies = {a[2] for a in answers}
        assert len(bodies) == 1, bodies
        assert {a[1][b"content-type"] for a in answers} == {b"application/json"}
        if not good:
            assert "shape" in error_of(bodies.pop())


def test_keep_alive_pipelining_and_http10_on_the_direct_route(iris_server: ServerProcess) -> None:
    good = infer_body(IRIS_ROWS[:1])
    # Five requests pipelined in one write, direct and ASGI routes mixed: five answers, in order.
    reqs = [
        _post(b"/v2/models/iris/infer", good),
        _post(b"/v2/models/iris/infer", b"{bad"),
        b"GET /v2/models/iris/ready HTTP/1.1\r\nhost: x\r\n\r\n",
        _post(b"/v2/models/nope/infer", good),
        _post(b"/v2/models/iris/versions/1/infer", good),
    ]
    answers = _raw_exchange(iris_server.http_port, b"".join(reqs), len(reqs))
    assert [a[0].split(b" ")[1] for a in answers] == [b"200", b"400", b"200", b"404", b"200"]
    assert json.loads(answers[2][2]) == {"name": "iris", "ready": True}
    assert "nope" in error_of(answers[3][2])
    assert all(b"connection" not in a[1] for a in answers)
    # HTTP/1.0 and Connection: close get their answer, then the server closes the connection.
    for req in (
        _post(b"/v2/models/iris/infer", good, version=b"HTTP/1.0"),
        _post(b"/v2/models/iris/infer", good, b"connection: close"),
    ):
        import socket

        with socket.create_connection(("127.0.0.1", iris_server.http_port), timeout=10) as s:
            s.sendall(req)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200 OK") and b"connection: close" in data.lower()
    # An oversized declared body is refused by the ASGI route's 413, not read.
    huge = b"POST /v2/models/iris/infer HTTP/1.1\r\nhost: x\r\ncontent-length: 999999999999\r\n\r\n"
    assert _raw_exchange(iris_server.http_port, huge, 1)[0][0].split(b" ")[1] == b"413"


def test_pipelined_infer_requests_share_a_batch_and_are_answered_in_order(tmp_path: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    s = server_factory(python_model(tmp_path, "slow", "SlowDouble", "{delay: 0.2}", "  batching: {maxBatchSize: 16}\n"))
    # The first request occupies the model; the nine behind it on the same connection must then run as one batch
    # (served one after the other, as uvicorn does, they would make nine more model calls).
    reqs = [_post(b"/v2/models/slow/infer", infer_body(np.full((1, 1), i, np.float32), name="x")) for i in range(10)]
    answers = _raw_exchange(s.http_port, b"".join(reqs), len(reqs))
    assert [json.loads(a[2])["outputs"][0]["data"] for a in answers] == [[2.0 * i] for i in range(10)]
    fams = {f.name: f for f in text_string_to_metric_families(s.get("/metrics")[1].decode())}
    count = next(x.value for x in fams["kubeinfer_batch_size"].samples if x.name == "kubeinfer_batch_size_count")
    assert count <= 3, f"{count} model calls for 10 pipelined requests"


def test_pipelined_requests_read_before_sigterm_are_all_answered_the_last_closing(
    tmp_path: Path, server_factory
) -> None:  # type: ignore[no-untyped-def]
    import socket
    import time

    s = server_factory(python_model(tmp_path, "slow", "SlowDouble", "{delay: 0.3}", "  batching: {maxBatchSize: 2}\n"))
    reqs = [_post(b"/v2/models/slow/infer", infer_body(np.full((1, 1), i, np.float32), name="x")) for i in range(5)]
    with socket.create_connection(("127.0.0.1", s.http_port), timeout=10) as conn:
        conn.sendall(b"".join(reqs))
        time.sleep(0.1)  # read and queued; the model is busy with the first
        s.terminate()
        data = b""
        while chunk := conn.recv(65536):  # the server closes the connection after the last answer
            data += chunk
    heads = []
    while data:
        head, _, data = data.partition(b"\r\n\r\n")
        heads.append(head.lower())
        data = data[int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]) :]
    assert [h.split(b" ")[1] for h in heads] == [b"200"] * 5, heads
    assert [b"connection: close" in h for h in heads] == [False] * 4 + [True]
    assert s.wait(30) == 0
