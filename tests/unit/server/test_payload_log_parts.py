"""The payload log's parts without a server: redaction, the binary extension decoded, the file sink's rotation, one
file per writer, the queue that drops rather than waits, the binary content mode's headers; and ``spec.logger`` as
``render`` (Kubernetes) and the local platform's revision files pass it on."""

from __future__ import annotations

import json
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeinfer.kube.render import container_spec_doc
from kubeinfer.local.controller.revisions import RevisionStore
from kubeinfer.server.metrics import Metrics
from kubeinfer.server.payload_log import (
    REDACTED,
    REQUEST_TYPE,
    RESPONSE_TYPE,
    FileSink,
    HttpSink,
    Identity,
    PayloadLog,
    SinkError,
    _binary,
    _binary_doc,
    _redact,
    file_path,
)
from kubeinfer.spec import SpecError, loads_spec

SPEC = "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: iris, namespace: ml}\nspec:\n"
MODEL = "  model: {format: sklearn, uri: ./iris.joblib}\n"


def service(logger: str) -> Any:
    return loads_spec(SPEC + MODEL + f"  logger: {logger}\n")


def test_redaction_replaces_named_tensors_keys_and_leaves_the_rest() -> None:
    doc = {
        "inputs": [{"name": "ssn", "datatype": "BYTES", "shape": [1], "data": ["123"]}, {"name": "x", "data": [1]}],
        "parameters": {"token": "abc", "keep": 1},
        "instances": [{"ssn": "1", "age": 3}],
    }
    out = _redact(doc, frozenset({"ssn", "token"}))
    assert out["inputs"][0] == {"name": "ssn", "datatype": "BYTES", "shape": [1], "data": REDACTED}
    assert out["inputs"][1] == {"name": "x", "data": [1]}
    assert out["parameters"] == {"token": REDACTED, "keep": 1}
    assert out["instances"] == [{"ssn": REDACTED, "age": 3}]
    assert doc["parameters"]["token"] == "abc"  # the original is not changed


def test_binary_tensor_bytes_become_json_data() -> None:
    header = {
        "outputs": [
            {"name": "a", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}},
            {"name": "b", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 6}},
        ]
    }
    rest = struct.pack("<2f", 1.0, 2.5) + struct.pack("<I", 2) + b"hi"
    out = _binary_doc(header, memoryview(rest), "outputs")
    assert out["outputs"] == [
        {"name": "a", "datatype": "FP32", "shape": [2], "data": [1.0, 2.5]},
        {"name": "b", "datatype": "BYTES", "shape": [1], "data": ["hi"]},
    ]


def test_the_file_sink_rotates_past_its_cap_and_keeps_max_files(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    sink = FileSink(path, max_bytes=200, keep=2)
    for i in range(12):
        sink.write([{"id": str(i), "pad": "x" * 60}])
    sink.close()
    parts = sorted(p.name for p in tmp_path.iterdir())
    assert parts == ["p.jsonl", "p.jsonl.1", "p.jsonl.2"]
    ids = [
        json.loads(ln)["id"]
        for name in ("p.jsonl.2", "p.jsonl.1", "p.jsonl")
        for ln in (tmp_path / name).read_text().splitlines()
    ]
    assert ids == [str(i) for i in range(12 - len(ids), 12)]  # the latest events, in order, nothing duplicated
    assert all((tmp_path / n).stat().st_size <= 200 for n in parts)


def test_each_replica_and_process_writes_its_own_file(tmp_path: Path) -> None:
    assert file_path("logs/p.jsonl", tmp_path, {}, None) == tmp_path / "logs" / "p.jsonl"
    assert file_path("p.jsonl", tmp_path, {"KUBEINFER_REPLICA": "iris-r1-0"}, 0) == tmp_path / "p.iris-r1-0.jsonl"
    assert file_path("/abs/p.jsonl", tmp_path, {"KUBEINFER_REPLICA": "r"}, 2) == Path("/abs/p.r.p2.jsonl")


class _Stuck:
    """A sink that blocks until released: the queue behind it fills."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.events: list[dict[str, Any]] = []

    def write(self, events: list[dict[str, Any]]) -> None:
        self.release.wait(10)
        self.events += events

    def close(self) -> None:
        pass


def test_a_full_queue_drops_and_counts_instead_of_waiting() -> None:
    spec = service("{url: 'http://127.0.0.1:9/', queueSize: 2, batchSize: 1, mode: request}").spec.logger
    sink = _Stuck()
    metrics = Metrics()
    plog = PayloadLog(spec, sink, Identity("iris", "ml", "r0"), metrics)
    for i in range(10):
        tap = plog.tap("v2", {b"ce-id": str(i).encode()}, b'{"inputs": []}')
        assert tap is not None
        tap.close(None, 200, b"{}", [])
    assert metrics.payload_log is not None
    logged, dropped = metrics.payload_log()
    assert dropped >= 7 and logged == 0  # one in the sink's hands, two queued at most
    sink.release.set()
    plog.close()
    assert {e["type"] for e in sink.events} == {REQUEST_TYPE}
    assert plog.counts()[0] == len(sink.events) == 10 - dropped


def test_events_of_one_request_share_the_id_and_the_response_needs_a_200() -> None:
    spec = service("{url: 'http://127.0.0.1:9/'}").spec.logger
    plog = PayloadLog(spec, _Stuck(), Identity("iris", "ml", "r0"))
    tap = plog.tap("v1", [(b"Content-Type", b"application/json")], b'{"instances": [[1]]}')
    assert tap is not None
    ok = plog.events(tap, None, 200, b'{"predictions": [2]}', [(b"content-type", b"application/json")])
    assert [e["type"] for e in ok] == [REQUEST_TYPE, RESPONSE_TYPE] and ok[0]["id"] == ok[1]["id"]
    assert ok[0]["source"] == "/namespaces/ml/inferenceservices/iris" and ok[0]["protocol"] == "v1"
    failed = plog.events(tap, None, 503, b'{"error": "busy"}', None)
    assert [e["type"] for e in failed] == [REQUEST_TYPE]
    plog.close()


def test_binary_mode_puts_attributes_in_percent_encoded_ce_headers() -> None:
    body, headers = _binary(
        {"specversion": "1.0", "id": "1", "type": REQUEST_TYPE, "metadata": '{"a": ["b c"]}', "data": {"x": 1}}
    )
    assert json.loads(body) == {"x": 1}
    assert headers["ce-type"] == REQUEST_TYPE and headers["content-type"] == "application/json"
    assert headers["ce-metadata"] == "{%22a%22:%20[%22b%20c%22]}"
    _, headers = _binary({"id": "caf\u00e9\r\nx-injected: 1", "data": {}})
    assert headers["ce-id"] == "caf%C3%A9%0D%0Ax-injected:%201"


def test_an_http_sink_that_fails_midway_reports_what_it_delivered() -> None:
    """A real server on 127.0.0.1 that takes one event and answers 500 to the next: the rest is not tried."""
    seen: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            seen.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(202 if len(seen) == 1 else 500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sink = HttpSink(f"http://127.0.0.1:{server.server_address[1]}/", "structured", 5.0)
    try:
        with pytest.raises(SinkError) as e:
            sink.write([{"id": str(i), "data": {}} for i in range(4)])
        assert e.value.delivered == 1 and len(seen) == 2
    finally:
        sink.close()
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("logger", "field"),
    [
        ("{mode: all}", "give url"),
        ("{url: a, file: b}", "give url"),
        ("{url: 'ftp://x'}", "http://"),
        ("{file: p, sampleRate: 2}", "sampleRate"),
        ("{file: p, mode: some}", "mode"),
    ],
)
def test_a_bad_logger_is_an_error_naming_the_field(logger: str, field: str) -> None:
    with pytest.raises(SpecError) as e:
        service(logger)
    assert "spec.logger" in str(e.value) and field in str(e.value)


def test_render_passes_the_logger_through_with_a_relative_file_in_tmp() -> None:
    doc = container_spec_doc(service("{file: payloads.jsonl, redact: [ssn], sampleRate: 0.1}"))
    assert doc["spec"]["logger"] == {"file": "/tmp/payloads.jsonl", "redact": ["ssn"], "sampleRate": 0.1}
    doc = container_spec_doc(service("{url: 'http://broker.ml/'}"))
    assert doc["spec"]["logger"] == {"url": "http://broker.ml/"}


def test_the_local_platform_writes_the_file_relative_to_the_specs_folder(tmp_path: Path) -> None:
    rev = RevisionStore(tmp_path / "state").add(service("{file: logs/p.jsonl}"), tmp_path / "project")
    written = yaml.safe_load(rev.spec_path.read_text())
    assert written["spec"]["logger"]["file"] == str((tmp_path / "project" / "logs" / "p.jsonl").resolve())
