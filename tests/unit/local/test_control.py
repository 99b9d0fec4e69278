"""The control endpoint: typed bodies, strict JSON, private state files (a real aiohttp server on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import json
import stat
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from kubeinfer.local.control import BadRequest, ControlServer
from kubeinfer.local.platform import Platform
from kubeinfer.local.settings import LocalSettings
from kubeinfer.spec import validate_spec


def _post(port: int, token: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body, method="POST", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_bodies_are_checked_and_state_files_are_private(tmp_path: Path) -> None:
    folder = tmp_path / "svc"

    async def echo(body: dict[str, Any]) -> dict[str, Any]:
        if body.get("bad"):
            raise BadRequest("bad must be false")
        return {"got": body}

    async def main() -> None:
        server = ControlServer(folder, {("POST", "/v1/echo"): echo})
        port = await server.start({})
        try:
            loop = asyncio.get_running_loop()

            def post(body: bytes) -> tuple[int, dict[str, Any]]:
                return _post(port, server.token, "/v1/echo", body)

            cases = {
                b'{"a": 1}': (200, "got"),
                b"[1, 2]": (400, "must be a JSON object, got list"),
                b'{"a": 1, "a": 2}': (400, "given twice"),
                b"{not json": (400, "not JSON"),
                b'{"bad": true}': (400, "bad must be false"),
            }
            for body, (status, text) in cases.items():
                code, doc = await loop.run_in_executor(None, post, body)
                assert code == status, (body, doc)
                assert text in json.dumps(doc), (body, doc)
            for name in ("token", "control.json"):
                assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        finally:
            await server.stop()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"replicas": True}, "replicas must be a whole number >= 0, got true"),
        ({"replicas": "3"}, 'got "3"'),
        ({"replicas": -1}, "got -1"),
        ({"replicas": 2, "force": 1}, "unknown field 'force'"),
        ({"min": True}, "min must be a whole number >= 0, got true"),
        ({"max": -2}, "max must be a whole number >= 0, got -2"),
        ({}, "give replicas, or min and/or max"),
        ({"replicas": 2, "min": 1}, "give replicas, or min and/or max"),
    ],
)
def test_scale_takes_a_whole_number_only(tmp_path: Path, body: dict[str, Any], message: str) -> None:
    svc = validate_spec(
        {
            "apiVersion": "kubeinfer.io/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": "svc"},
            "spec": {"model": {"format": "python", "className": "m:M"}, "autoscaling": {"policy": "none"}},
        }
    )
    platform = Platform(svc, tmp_path, LocalSettings(home=tmp_path))
    with pytest.raises(BadRequest, match=message):
        asyncio.run(platform._scale(body))


def test_the_router_counts_peaks_in_the_slo_window_of_the_spec_applied(tmp_path: Path) -> None:
    """`kubeinfer up`'s router counts the most requests within the SLO's length, the window `simulate` reports the
    peak in; an apply that changes the SLO changes the window."""

    def doc(slo_ms: float) -> dict[str, Any]:
        return {
            "apiVersion": "kubeinfer.io/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": "svc"},
            "spec": {
                "model": {"format": "python", "className": "m:M"},
                "autoscaling": {"policy": "predictive", "predictive": {"capacityRps": 5, "sloLatencyMs": slo_ms}},
            },
        }

    platform = Platform(validate_spec(doc(250)), tmp_path, LocalSettings(home=tmp_path))
    assert platform.router.stats().peak_window == 0.25
    asyncio.run(platform._apply({"spec": doc(40)}))
    assert platform.router.stats().peak_window == 0.04
