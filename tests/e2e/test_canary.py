"""A canary under load on a real platform (``kubeinfer up``, replica processes, client threads): promoted with no
failed request; a revision that fails its requests rolled back automatically, with no failed request either (the
router retries the canary's errors on the stable revision while the analysis counts them)."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import Load, Platform, spec_text

pytestmark = pytest.mark.e2e

Up = Callable[..., Platform]

CANARY = (
    "  autoscaling: {policy: none}\n  replicas: 2\n"
    "  rollout:\n    progressDeadlineSeconds: 60\n"
    "    canary: {steps: [25, 50], analysisSeconds: 2, minRequests: 20, maxErrorPercent: 1}\n"
)


def pinned_version(url: str, model: str, revision: str) -> str:
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [1]}]}).encode()
    req = urllib.request.Request(
        f"{url}/v2/models/{model}/infer",
        data=body,
        headers={"Content-Type": "application/json", "x-kubeinfer-revision": revision},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return str(json.loads(r.read())["model_version"])


def events(st: dict[str, Any], reason: str) -> list[str]:
    return [e["message"] for e in st["events"] if e["reason"] == reason]


def test_a_canary_is_promoted_under_load_with_no_failed_request(platform: Up, tmp_path: Path) -> None:
    # 5 s steps: `kubeinfer get`, a process of its own, answers within a step even on a loaded machine
    slow = CANARY.replace("analysisSeconds: 2", "analysisSeconds: 5")
    p = platform("can", spec_text("can", extra=slow))
    v2 = tmp_path / "v2.yaml"
    v2.write_text(spec_text("can", version="2", extra=slow))
    with Load(p.url, "can") as load:
        time.sleep(0.5)
        p.cli("apply", str(v2))
        st = p.wait("the canary's first step", lambda s: (s.get("canary") or {}).get("weight") == 25, 40)
        # An A/B request pins either revision whatever the split.
        assert pinned_version(p.url, "can", "canary") == "2"
        assert pinned_version(p.url, "can", "stable") == "1"
        got = p.cli("get")
        assert "1 75% / 2 25%" in got.stdout, got.stdout
        st = p.wait("the promotion", lambda s: bool(events(s, "CanaryPromoted")), 60)
        st = p.wait("revision 2 everywhere", lambda s: s["rollout"] is None and s["revision"] == 2, 40)
        t_done = time.monotonic()
        time.sleep(1.0)
    print(f"canary promotion: {load.ok} requests answered, {len(load.failures)} failed")
    assert load.failures == []
    steps = events(st, "CanaryStep")
    assert len(steps) == 2 and "step 1/2 passed (error rate 0.00%" in steps[1]
    seen = [v for _, v in load.versions]
    assert "1" in seen and "2" in seen  # the split sent traffic to both while the canary ran
    assert {v for t, v in load.versions if t > t_done + 0.2} == {"2"}


def test_a_failing_canary_is_rolled_back_automatically_with_no_failed_request(platform: Up, tmp_path: Path) -> None:
    p = platform("bad", spec_text("bad", extra=CANARY))
    v2 = tmp_path / "v2.yaml"
    v2.write_text(spec_text("bad", cls="FailAfter", version="2", extra=CANARY))
    with Load(p.url, "bad") as load:
        time.sleep(0.5)
        p.cli("apply", str(v2))
        st = p.wait("the rollback", lambda s: bool(events(s, "CanaryRolledBack")) and "canary" not in s, 60)
        p.wait("the canary's replicas gone", lambda s: {r["revision"] for r in s["replicas"]} == {1}, 30)
        time.sleep(0.5)
    print(f"canary rollback: {load.ok} requests answered, {len(load.failures)} failed")
    assert load.failures == []
    (why,) = events(st, "CanaryRolledBack")
    assert "failed the error gate at step 1/2 (25%)" in why and "error rate 100.00%" in why
    assert not events(st, "CanaryPromoted")
    assert {v for _, v in load.versions} == {"1"}  # every answer came from the stable revision
    assert p.status()["revision"] == 1
