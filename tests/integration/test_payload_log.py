"""Payload logging (``spec.logger``) of a real replica: CloudEvents written to a file and POSTed to a real HTTP receiver
on 127.0.0.1, for REST v2 (JSON and binary), KServe v1 and gRPC requests; request and response share an id; sampling,
mode and redaction; a dead sink drops and counts events while every request still succeeds."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest

from helpers import MODELS, python_model
from kubeinfer.server._proto import grpc_predict_v2_pb2 as pb
from kubeinfer.testing import ServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

ROW = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1.5, 2.5]}]}


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, body, {"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=20) as r:
        return int(r.status), r.read()


def infer(server: ServerProcess, headers: dict[str, str] | None = None) -> None:
    status, _ = post(f"{server.url}/v2/models/dbl/infer", json.dumps(ROW).encode(), headers)
    assert status == 200


def metric(server: ServerProcess, outcome: str) -> float:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=20) as r:
        text = r.read().decode()
    prefix = f'kubeinfer_payload_log_events_total{{outcome="{outcome}"}} '
    return float(next(ln for ln in text.splitlines() if ln.startswith(prefix)).split()[-1])


def wait_for(check: Any, what: str, seconds: float = 20.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def by_id(events: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for e in events:
        out.setdefault(e["id"], {})[e["type"].rsplit(".", 1)[1]] = e
    return out


# -- a file sink ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def file_replica(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    tmp = tmp_path_factory.mktemp("file-sink")
    logger = (
        "  logger: {file: events/payloads.jsonl, redact: [secret, x-api-user], metadataHeaders: [x-api-user, x-team]}\n"
    )
    spec = tmp / "dbl.yaml"
    spec.write_text(
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: dbl}\nspec:\n  models:\n"
        f"    - {{name: dbl, format: python, className: 'testmodels:SlowDouble', uri: '{MODELS}', args: {{delay: 0}}}}\n"
        f"    - {{name: emb, format: python, className: 'testmodels:Embedder', uri: '{MODELS}'}}\n" + logger
    )
    with ServerProcess(spec, grpc=True) as s:
        yield s, tmp / "events" / "payloads.jsonl"


def test_a_rest_request_and_its_response_are_cloudevents_sharing_an_id(
    file_replica: tuple[ServerProcess, Path],
) -> None:
    server, path = file_replica
    infer(server, {"Ce-Id": "req-42", "X-Team": "fraud"})

    def pair() -> dict[str, dict[str, Any]] | None:
        found = by_id(read_events(path)).get("req-42", {})
        return found if len(found) == 2 else None

    got = wait_for(pair, "both events of req-42")
    req, resp = got["request"], got["response"]
    assert req["type"] == "org.kubeflow.serving.inference.request"
    assert resp["type"] == "org.kubeflow.serving.inference.response"
    for e in (req, resp):
        assert e["specversion"] == "1.0"
        assert e["source"] == "/namespaces/default/inferenceservices/dbl"
        assert e["inferenceservicename"] == "dbl" and e["namespace"] == "default"
        assert e["component"] == "predictor" and e["endpoint"] == "default"
        assert e["modelname"] == "dbl" and e["modelversion"] == "1" and e["protocol"] == "v2"
        assert e["datacontenttype"] == "application/json"
        assert json.loads(e["metadata"]) == {"x-team": ["fraud"]}
        assert e["time"].endswith("Z")
    assert req["data"]["inputs"][0]["data"] == [1.5, 2.5]
    assert resp["data"]["outputs"][0]["name"] == "y" and resp["data"]["outputs"][0]["data"] == [3.0, 5.0]


def test_named_inputs_keys_and_headers_are_redacted(file_replica: tuple[ServerProcess, Path]) -> None:
    server, path = file_replica
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [7, 8]}], "parameters": {"secret": 1}}
    status, _ = post(
        f"{server.url}/v2/models/dbl/infer", json.dumps(body).encode(), {"Ce-Id": "red-1", "X-Api-User": "bob"}
    )
    assert status == 200
    req = wait_for(lambda: by_id(read_events(path)).get("red-1", {}).get("request"), "the request event")
    assert req["data"]["parameters"] == {"secret": "[redacted]"}
    assert req["data"]["inputs"][0]["data"] == [7, 8]  # x is not named
    assert json.loads(req["metadata"]) == {"x-api-user": ["[redacted]"]}


def test_binary_v1_and_grpc_payloads_are_logged_as_json(file_replica: tuple[ServerProcess, Path]) -> None:
    server, path = file_replica
    header = json.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "parameters": {"binary_data_size": 8}}]}
    ).encode()
    status, _ = post(
        f"{server.url}/v2/models/dbl/infer",
        header + struct.pack("<2f", 0.5, 4.0),
        {
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(header)),
            "Ce-Id": "bin-1",
        },
    )
    assert status == 200
    status, _ = post(
        f"{server.url}/v1/models/dbl:predict", json.dumps({"instances": [[1, 2]]}).encode(), {"Ce-Id": "v1-1"}
    )
    assert status == 200
    with grpc.insecure_channel(server.grpc_url) as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        tensor = pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, 2])
        call(
            pb.ModelInferRequest(
                model_name="dbl", id="g-1", inputs=[tensor], raw_input_contents=[struct.pack("<2f", 3, 4)]
            )
        )

    def found() -> dict[str, Any] | None:
        events = read_events(path)
        grpc_ids = [e["id"] for e in events if e["protocol"] == "grpc"]
        ids = by_id(events)
        if not grpc_ids or any(len(ids.get(i, {})) < 2 for i in ["bin-1", "v1-1", grpc_ids[0]]):
            return None
        return {"bin": ids["bin-1"], "v1": ids["v1-1"], "grpc": ids[grpc_ids[0]]}

    got = wait_for(found, "the binary, v1 and gRPC events")
    assert got["bin"]["request"]["data"]["inputs"][0]["data"] == [0.5, 4.0]
    assert "parameters" not in got["bin"]["request"]["data"]["inputs"][0]
    assert got["v1"]["request"]["data"] == {"instances": [[1, 2]]} and got["v1"]["request"]["protocol"] == "v1"
    assert got["v1"]["response"]["data"] == {"predictions": [[2.0, 4.0]]}
    g = got["grpc"]
    assert g["request"]["data"]["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [3.0, 4.0]}]
    assert g["request"]["data"]["id"] == "g-1" and g["request"]["modelname"] == "dbl"
    assert g["response"]["data"]["outputs"][0]["data"] == [6.0, 8.0]
    assert metric(server, "logged") >= 8 and metric(server, "dropped") == 0


def test_openai_embeddings_are_logged_under_their_model(file_replica: tuple[ServerProcess, Path]) -> None:
    server, path = file_replica
    body = json.dumps({"model": "emb", "input": ["abc", "de"]}).encode()
    status, _ = post(f"{server.url}/v1/embeddings", body, {"Ce-Id": "emb-1"})
    assert status == 200

    def pair() -> dict[str, dict[str, Any]] | None:
        found = by_id(read_events(path)).get("emb-1", {})
        return found if len(found) == 2 else None

    got = wait_for(pair, "both events of emb-1")
    assert got["request"]["protocol"] == "openai" and got["request"]["modelname"] == "emb"
    assert got["request"]["data"] == {"model": "emb", "input": ["abc", "de"]}
    data = got["response"]["data"]["data"]
    assert [d["index"] for d in data] == [0, 1] and len(data[0]["embedding"]) == 8


def test_an_unanswered_request_is_logged_without_a_response(file_replica: tuple[ServerProcess, Path]) -> None:
    """As KServe: the request is logged whatever the answer, the response only when it succeeded."""
    server, path = file_replica
    req = urllib.request.Request(
        f"{server.url}/v2/models/dbl/infer",
        b'{"inputs": "nonsense"}',
        {"Content-Type": "application/json", "Ce-Id": "bad-1"},
    )
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=20)
    assert e.value.code == 400
    e.value.close()
    infer(server, {"Ce-Id": "after-bad"})  # events are written in order: once this one is there, bad-1's would be
    wait_for(lambda: "response" in by_id(read_events(path)).get("after-bad", {}), "a later event")
    assert set(by_id(read_events(path))["bad-1"]) == {"request"}


# -- an HTTP sink --------------------------------------------------------------------------------------------------
class Receiver:
    """A real HTTP server on 127.0.0.1 that keeps what it receives."""

    def __init__(self) -> None:
        received: list[tuple[dict[str, str], bytes]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        threading.Thread(target=self.server.serve_forever, daemon=True, name="receiver").start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_binary_mode_posts_each_event_with_ce_headers_and_samples_requests(tmp_path: Path, receiver: Receiver) -> None:
    spec = python_model(
        tmp_path, "dbl", "SlowDouble", "{delay: 0}", f"  logger: {{url: '{receiver.url}', sampleRate: 0.5}}\n"
    )
    n = 60
    with ServerProcess(spec, grpc=False) as server:
        for _ in range(n):
            infer(server)
        sent = wait_for(lambda: metric(server, "logged") == len(receiver.received) and len(receiver.received), "posts")
    assert sent % 2 == 0
    ids: dict[str, set[str]] = {}
    for headers, body in receiver.received:
        assert headers["ce-specversion"] == "1.0" and headers["content-type"] == "application/json"
        assert headers["ce-source"] == "/namespaces/default/inferenceservices/dbl"
        assert headers["ce-inferenceservicename"] == "dbl" and headers["ce-modelname"] == "dbl"
        ids.setdefault(headers["ce-id"], set()).add(headers["ce-type"])
        doc = json.loads(body)
        assert "inputs" in doc or "outputs" in doc
    assert all(
        types == {"org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response"}
        for types in ids.values()
    )
    assert 0 < len(ids) < n  # about half of the requests: neither none nor all (p < 1e-15 either way)


def test_batch_mode_and_response_only(tmp_path: Path, receiver: Receiver) -> None:
    logger = f"  logger: {{url: '{receiver.url}', encoding: batch, mode: response}}\n"
    spec = python_model(tmp_path, "dbl", "SlowDouble", "{delay: 0}", logger)
    with ServerProcess(spec, grpc=False) as server:
        for _ in range(5):
            infer(server)
        wait_for(lambda: metric(server, "logged") == 5, "5 events")
    events = [e for headers, body in receiver.received for e in json.loads(body)]
    assert all(h["content-type"] == "application/cloudevents-batch+json" for h, _ in receiver.received)
    assert len(events) == 5 and {e["type"] for e in events} == {"org.kubeflow.serving.inference.response"}
    assert all(e["data"]["outputs"][0]["data"] == [3.0, 5.0] for e in events)


def test_a_dead_sink_drops_and_counts_without_failing_requests(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    logger = f"  logger: {{url: 'http://127.0.0.1:{port}/', timeoutSeconds: 1}}\n"
    spec = python_model(tmp_path, "dbl", "SlowDouble", "{delay: 0}", logger)
    with ServerProcess(spec, grpc=False) as server:
        for _ in range(10):
            infer(server)  # each one 200 (asserted)
        wait_for(lambda: metric(server, "dropped") == 20, "20 dropped events")
        assert metric(server, "logged") == 0
        assert "payload log's sink failed" in server.log()


def test_each_process_of_a_replica_writes_its_own_file_and_the_counts_are_summed(tmp_path: Path) -> None:
    logger = "  server: {processes: 2}\n  logger: {file: p.jsonl}\n"
    spec = python_model(tmp_path, "dbl", "SlowDouble", "{delay: 0}", logger)
    n = 12
    with ServerProcess(spec, grpc=False) as server:
        for _ in range(n):
            infer(server)  # a new connection each: the kernel spreads them over the processes
        wait_for(lambda: metric(server, "logged") == 2 * n, "the replica's count of both processes' events")
    files = sorted(tmp_path.glob("p*.jsonl"))
    assert {f.name for f in files} <= {"p.jsonl", "p.p1.jsonl"}
    events = {f.name: read_events(f) for f in files}
    assert sum(len(e) for e in events.values()) == 2 * n
    assert all(e["replica"].endswith("/p1") for e in events.get("p.p1.jsonl", []))
    assert not any(e["replica"].endswith("/p1") for e in events.get("p.jsonl", []))
