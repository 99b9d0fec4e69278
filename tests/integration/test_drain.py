"""SIGTERM under load loses no request: 32 clients opening a new connection per request, a SIGTERM in the middle.

A request is lost when it was sent and got no answer (a connection in the listen backlog reset when the listener
closed). Refused connections are not lost: the client knows nothing was sent. ``python -m kubeinfer.bench.drain SPEC
--runs 20`` is the long form of this check.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubeinfer.bench.drain import drain_run
from kubeinfer.testing import ServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

RUNS = 3


def test_sigterm_under_new_connection_load_loses_no_request(examples: Path) -> None:
    body = json.dumps(
        {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}
    ).encode()
    results = []
    for _ in range(RUNS):
        server = ServerProcess(examples / "iris" / "service.yaml", grpc=False)

        def start(server: ServerProcess = server) -> tuple[int, int]:
            server.start()
            return server.pid, server.http_port

        try:
            r = drain_run(start, "/v2/models/iris/infer", body, clients=32, before=1.0, after=20.0)
            assert server.wait(30) == 0
        finally:
            server.kill()
        results.append(r)
        assert r.answered > 50, r  # the load was real
        assert r.bad == 0, r
    assert [r.lost for r in results] == [0] * RUNS, [(r.to_json(), r.lost_examples) for r in results]
