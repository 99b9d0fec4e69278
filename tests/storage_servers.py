"""The servers the storage tests download from, both real and on 127.0.0.1: moto's S3 server (a process, see
``s3server.py``) and a small HTTP file server (a thread) that can also cut a response short."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
S3_PYTHON = Path(os.environ.get("KUBEINFER_TEST_S3_PYTHON", ROOT / ".venv-s3" / "bin" / "python"))


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    key: str
    secret: str
    bucket: str

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
        yield S3Server(**json.loads(line))
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
