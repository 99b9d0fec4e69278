"""A new user's first hour, scripted: each wrong turn gives a one-line cause and a non-zero exit where it failed.

Run through the real CLI (``python -m kubeinfer``) against real platforms and replica processes. The time each
answer takes is printed (``-s``) for the record; the assertion is on the words and exit codes.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import HERE, Platform, spec_text

pytestmark = pytest.mark.e2e


def kubeinfer(env: dict[str, str], *args: str) -> tuple[int, str, str, float]:
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "kubeinfer", *args], env=env, capture_output=True, text=True, timeout=120)
    took = time.monotonic() - t0
    print(f"kubeinfer {' '.join(args[:2])}: exit {r.returncode} in {took:.1f} s: {r.stderr.strip()[:200]}")
    return r.returncode, r.stdout, r.stderr, took


def first_error(stderr: str) -> str:
    return next(ln for ln in stderr.splitlines() if ln.startswith("error: "))


@pytest.fixture
def walk(cli_env: dict[str, str], tmp_path: Path) -> tuple[dict[str, str], Path]:
    return cli_env, tmp_path


def test_get_with_nothing_running_is_an_empty_answer(walk: tuple[dict[str, str], Path]) -> None:
    env, _ = walk
    code, out, err, _ = kubeinfer(env, "get")
    assert code == 0 and "No services are running" in err
    code, out, err, _ = kubeinfer(env, "get", "-o", "json")
    assert code == 0 and json.loads(out)["items"] == []


def test_a_bad_model_path_is_refused_before_anything_starts(walk: tuple[dict[str, str], Path]) -> None:
    env, tmp = walk
    spec = tmp / "bad-path.yaml"
    spec.write_text(
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: badpath}\n"
        "spec:\n  model: {format: sklearn, uri: models/iris.joblib}\n"
    )
    for cmd in (["validate"], ["up", "-d", "--port", "0", "--no-grpc"]):
        code, _, err, _ = kubeinfer(env, *cmd, str(spec))
        assert code == 2
        assert f"spec.model.uri 'models/iris.joblib': {tmp}/models/iris.joblib does not exist" in err
    code, _, err, _ = kubeinfer(env, "get", "badpath")
    assert code == 1 and "is not running" in err  # nothing was started


def test_a_bad_class_returns_at_the_first_failed_load_with_the_cause(walk: tuple[dict[str, str], Path]) -> None:
    env, tmp = walk
    spec = tmp / "bad-class.yaml"
    spec.write_text(spec_text("badclass", cls="NoSuchModel"))
    code, _, err, took = kubeinfer(env, "up", "-d", str(spec), "--port", "0", "--no-grpc", "--timeout", "60")
    assert code == 1
    line = first_error(err)
    assert "replica badclass-r1-1 could not load its model" in line and "has no class 'NoSuchModel'" in line
    assert took < 60  # not the --timeout: it returned on the replica's report
    assert "the service was stopped" in err
    code, _, err, _ = kubeinfer(env, "get", "badclass")
    assert code == 1  # stopped, as it said


def test_a_port_in_use_names_the_port_and_the_fix(walk: tuple[dict[str, str], Path]) -> None:
    env, tmp = walk
    spec = tmp / "echo.yaml"
    spec.write_text(spec_text("portclash"))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code, _, err, _ = kubeinfer(env, "up", "-d", str(spec), "--port", str(port), "--no-grpc")
    assert code == 1
    (line,) = [ln for ln in err.splitlines() if ln.strip()]  # one line, not a log dump
    assert f"cannot listen on 127.0.0.1:{port}" in line and "--port 0" in line


@pytest.mark.slow  # ~10-25 s; the default run stays under 15 minutes
def test_scale_on_an_autoscaled_service_says_who_owns_the_count(
    platform: Callable[..., Platform], tmp_path: Path
) -> None:
    auto = "  autoscaling: {policy: hpa, metric: concurrency, target: 8, minReplicas: 1, maxReplicas: 3, syncPeriodSeconds: 1}\n"
    p = platform("auto", spec_text("auto", extra=auto))
    r = p.cli("scale", "auto", "--replicas", "2")
    assert "owns the replica count" in r.stdout and "kubeinfer scale auto --min 2" in r.stdout
    r = p.cli("scale", "auto", "--replicas", "5", check=False)
    assert r.returncode == 1 and "outside the autoscaling bounds [1, 3]" in r.stderr
    r = p.cli("scale", "--min", "2")  # NAME optional: one service runs
    assert "autoscaling bounds [2, 3] (were [1, 3])" in r.stdout
    p.wait("two ready replicas", lambda s: s["ready_replicas"] == 2, 30)
    time.sleep(2.5)  # two of the policy's decisions: idle, it may not go below the new minimum
    st = p.status()
    assert st["desired"] == 2 and st["autoscaling"]["min"] == 2
    obj = json.loads(p.cli("get", "auto", "-o", "json").stdout)
    assert obj["kind"] == "InferenceService" and obj["status"]["readyReplicas"] == 2
    assert obj["spec"]["autoscaling"]["minReplicas"] == 2


def test_a_custom_models_exception_is_a_500_and_a_traceback_in_its_log(platform: Callable[..., Platform]) -> None:
    p = platform("buggy", spec_text("buggy", cls="NeedsText"))
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [101, 2]}]}).encode()
    req = urllib.request.Request(f"{p.url}/v2/models/buggy/infer", data=body)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 500 and "KeyError: 'text'" in json.loads(e.value.read())["error"]
    deadline = time.monotonic() + 10
    log = ""
    while "Traceback" not in log and time.monotonic() < deadline:
        log = p.cli("logs", "--since", "1m").stdout
        time.sleep(0.2)
    assert "model 'buggy' raised on a request: KeyError: 'text'" in log and "Traceback" in log
    assert 'return {"y": inputs["text"]}' in log  # the user's own line, from its own file
    assert str(HERE) in log
