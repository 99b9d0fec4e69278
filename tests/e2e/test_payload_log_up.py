"""Payload logging under ``kubeinfer up``: each replica writes its own file next to the spec (a relative
``spec.logger.file`` is relative to the spec's folder, not the platform's state folder), and the events of a request
sent through the router name the replica that served it."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import Platform, spec_text

pytestmark = pytest.mark.e2e

Up = Callable[..., Platform]


def test_each_replica_of_kubeinfer_up_logs_to_its_own_file(platform: Up, tmp_path: Path) -> None:
    extra = "  autoscaling: {policy: none}\n  replicas: 2\n  logger: {file: events/payloads.jsonl}\n"
    p = platform("plog", spec_text("plog", extra=extra))
    replicas = {r["id"] for r in p.status()["replicas"]}
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [1]}]}).encode()
    for i in range(20):
        req = urllib.request.Request(
            f"{p.url}/v2/models/plog/infer", body, {"Content-Type": "application/json", "Ce-Id": f"up-{i}"}
        )
        with urllib.request.urlopen(req, timeout=20) as r:
            assert r.status == 200

    def events() -> list[dict[str, Any]]:
        return [
            json.loads(ln)
            for f in (tmp_path / "events").glob("payloads.*.jsonl")
            for ln in f.read_text().splitlines()
            if ln.strip()
        ]

    deadline = time.monotonic() + 20
    while len(events()) < 40 and time.monotonic() < deadline:
        time.sleep(0.1)
    got = events()
    assert len(got) == 40
    files = {f.name for f in (tmp_path / "events").iterdir()}
    assert files <= {f"payloads.{rid}.jsonl" for rid in replicas}
    for f in (tmp_path / "events").iterdir():
        rid = f.name.split(".")[1]
        assert {json.loads(ln)["replica"] for ln in f.read_text().splitlines()} == {rid}
    pairs: dict[str, set[str]] = {}
    for e in got:
        pairs.setdefault(e["id"], set()).add(e["type"].rsplit(".", 1)[1])
    assert pairs == {f"up-{i}": {"request", "response"} for i in range(20)}
