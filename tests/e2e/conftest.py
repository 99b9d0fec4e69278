"""End-to-end fixtures: a real ``kubeinfer up -d`` platform with real replica processes and a real client load."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kubeinfer.local.control import ControlClient, pid_alive

HERE = Path(__file__).resolve().parent

FAST = {
    # Fast settings so the suite runs in seconds; the defaults are Kubernetes' (10 s back-off, 2-10 s probes).
    "KUBEINFER_BACKOFF_BASE": "0.5",
    "KUBEINFER_TRY_TIMEOUT": "1.5",
    "KUBEINFER_GRACE_MARGIN": "1",
}

PROBES = """  probes:
    startup: {periodSeconds: 0.2, failureThreshold: 100}
    readiness: {periodSeconds: 0.25, timeoutSeconds: 1, failureThreshold: 2}
    liveness: {periodSeconds: 0.25, timeoutSeconds: 0.5, failureThreshold: 3}
  server: {grpcPort: null, limits: {drainTimeoutSeconds: 2}}
"""


def spec_text(name: str, cls: str = "Echo", version: str = "1", args: str = "{}", extra: str = "") -> str:
    return (
        f"apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {{name: {name}}}\nspec:\n"
        f"  model: {{format: python, className: 'e2emodels:{cls}', uri: '{HERE}', version: '{version}', "
        f"args: {args}}}\n" + PROBES + extra
    )


@dataclass
class Platform:
    name: str
    home: Path
    env: dict[str, str]
    client: ControlClient = field(init=False)

    def __post_init__(self) -> None:
        self.client = ControlClient(self.name, self.home / self.name)

    def cli(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [sys.executable, "-m", "kubeinfer", *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and r.returncode != 0:
            raise AssertionError(f"kubeinfer {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def status(self) -> dict[str, Any]:
        return dict(self.client.call("GET", "/v1/status"))

    @property
    def url(self) -> str:
        return str(self.status()["endpoint"]["http"])

    def wait(self, what: str, pred: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        st: dict[str, Any] = {}
        while time.monotonic() < deadline:
            st = self.status()
            if pred(st):
                return st
            time.sleep(0.1)
        events = "\n".join(f"{e['object']} {e['reason']}: {e['message']}" for e in st.get("events", []))
        raise AssertionError(f"timed out waiting for {what}; replicas {st.get('replicas')}\nevents:\n{events}")

    def down(self) -> None:
        try:
            pid = int(self.client.info()["pid"])
        except Exception:
            return
        try:
            self.client.call("POST", "/v1/down", {})
        except Exception:
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def cli_env() -> Iterator[dict[str, str]]:
    """The environment of a ``kubeinfer`` command: the fast settings and a state folder of the test's own."""
    # A short state folder, as ~/.kubeinfer is: replica sockets live in it, and a Unix socket path is at most ~100
    # bytes (pytest's own tmp_path, with the test's name in it, can be longer: the replica would fall back to TCP).
    home = Path(tempfile.mkdtemp(prefix="ki-"))
    yield {**os.environ, **FAST, "KUBEINFER_HOME": str(home)}
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def platform(tmp_path: Path, cli_env: dict[str, str]) -> Iterator[Callable[..., Platform]]:
    started: list[Platform] = []
    env = cli_env
    home = Path(env["KUBEINFER_HOME"])

    def up(name: str, text: str, *, grpc: bool = False, extra_env: dict[str, str] | None = None) -> Platform:
        """Start ``kubeinfer up -d`` on a free port; ``grpc``: with the router's gRPC listener (on a free port too,
        the replicas serving gRPC as the spec says); ``extra_env``: settings for this platform only."""
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        p = Platform(name, home, {**env, **(extra_env or {})})
        started.append(p)
        p.cli(
            "up", str(path), "-d", "--port", "0", *(["--grpc-port", "0"] if grpc else ["--no-grpc"]), "--timeout", "60"
        )
        return p

    yield up
    for p in started:
        p.down()


class Load:
    """Closed-loop client threads posting OIP v2 requests; records every outcome."""

    def __init__(self, url: str, model: str, threads: int = 4, pause: float = 0.0) -> None:
        self.url = f"{url}/v2/models/{model}/infer"
        self.threads = threads
        self.pause = pause
        self.stop_event = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.versions: list[tuple[float, str]] = []
        self.latencies: list[float] = []
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        self.body = json.dumps(
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}
        ).encode()

    def one(self) -> tuple[bool, str, float]:
        t0 = time.monotonic()
        req = urllib.request.Request(self.url, data=self.body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                out = json.loads(r.read())
                return True, str(out.get("model_version", "")), time.monotonic() - t0
        except urllib.error.HTTPError as e:
            return False, f"HTTP {e.code}: {e.read()[:200]!r}", time.monotonic() - t0
        except OSError as e:
            return False, f"{e.__class__.__name__}: {e}", time.monotonic() - t0

    def _run(self) -> None:
        while not self.stop_event.is_set():
            ok, info, dt = self.one()
            with self._lock:
                if ok:
                    self.ok += 1
                    self.versions.append((time.monotonic(), info))
                    self.latencies.append(dt)
                else:
                    self.failures.append(info)
            if self.pause:
                time.sleep(self.pause)

    def __enter__(self) -> Load:
        for w in self._workers:
            w.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        for w in self._workers:
            w.join(70)
