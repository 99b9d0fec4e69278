"""One real replica as a child process, for measuring it (``kubeinfer bench SPEC``, ``kubeinfer profile``) and for
tests (``kubeinfer.testing`` re-exports it).

``ServerProcess`` starts ``python -m kubeinfer serve`` on free 127.0.0.1 ports, waits until it is ready and stops it
with SIGTERM, so callers talk to the real server with real clients.
"""

from __future__ import annotations

import contextlib
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
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from kubeinfer.server.announce import parse_announce

__all__ = ["ServerProcess"]


class ServerProcess:
    """A ``kubeinfer serve`` child process. Use as a context manager, or call ``start()`` / ``stop()``."""

    def __init__(
        self,
        spec: str | Path | None = None,
        args: Sequence[str] = (),
        *,
        grpc: bool = True,
        env: dict[str, str] | None = None,
        start_timeout: float = 30.0,
        wait_ready: bool = True,
    ) -> None:
        self.spec = spec
        self.args = list(args)
        self.grpc = grpc
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.start_timeout = start_timeout
        self.wait_ready = wait_ready
        self.proc: subprocess.Popen[str] | None = None
        self.http_port = 0
        self.grpc_port: int | None = None
        self.announced: dict[str, Any] = {}
        """The server's ``KUBEINFER_LISTENING`` line (with ``--no-tcp``: ``http`` null, ``uds``, ``grpc_uds``)."""
        self.output: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "kubeinfer", "serve"]
        if self.spec is not None:
            cmd.append(str(self.spec))
        cmd += ["--port", "0", "--host", "127.0.0.1"]
        cmd += ["--grpc-port", "0"] if self.grpc else ["--no-grpc"]
        return cmd + self.args

    def start(self) -> ServerProcess:
        self.proc = subprocess.Popen(
            self.command(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, daemon=True, name="server-output").start()
        deadline = time.monotonic() + self.start_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise TimeoutError(f"server did not start in {self.start_timeout} s:\n{self.log()}")
            try:
                line = self._lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                if self.proc.poll() is not None:
                    time.sleep(0.2)
                    raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}") from None
                continue
            where = parse_announce(line)
            if where is not None:
                self.announced = where.to_json()
                self.http_port, self.grpc_port = where.http or 0, where.grpc
                break
        if self.wait_ready:
            self.wait_until_ready(deadline - time.monotonic())
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self.output.append(line)
                self._lines.put(line.rstrip("\n"))

    def log(self) -> str:
        return "".join(self.output)

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as r:  # noqa: S310 - loopback URL
                return int(r.status), r.read()
        except urllib.error.HTTPError as e:
            return int(e.code), e.read()

    def post(
        self, path: str, body: bytes, headers: dict[str, str] | None = None, timeout: float = 10.0
    ) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(  # noqa: S310 - loopback URL
            self.url + path, data=body, headers={"Content-Type": "application/json", **(headers or {})}, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310
                return int(r.status), dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return int(e.code), dict(e.headers), e.read()

    def wait_until_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if self.get("/v2/health/ready", timeout=1)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"server not ready in {timeout} s:\n{self.log()}")

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the server's process group (it runs in its own session): the server and any processes it forked."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(5)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        self.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.stop()

    def json(self, path: str) -> Any:
        status, body = self.get(path)
        return status, json.loads(body) if body else None
