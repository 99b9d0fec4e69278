"""Ranged GETs in parallel against one stream, from a server that caps each connection's throughput as cloud object
stores do (~100 MB/s a connection on S3, whose guidance is several connections of 8-16 MiB ranges).

moto, the S3 server of ``run.py``, reads the whole object for every GET, ranged or not, so it cannot show what
parallel ranges are worth. This serves one file over HTTP/1.1 with Range from a thread per connection, each capped at
``--per-connection`` MB/s (``socket.sendfile`` in paced slices), and runs :func:`kubeinfer.storage.transfer.download`
(the fetch's transfer: parts written in place with writeback, SHA-256 fed in order, fsync) at each ``--concurrency``,
in turn, ``--repeats`` times; it prints MB/s (median, worst, best) and checks every download's SHA-256.

    flock /tmp/kubeinfer-bench.lock .venv/bin/python bench/storage/parallel.py --size 256Mi --per-connection 50
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from kubeinfer.spec.quantity import parse_quantity
from kubeinfer.storage import transfer

SLICE = 256 << 10


def serve(path: Path, mb_s: float) -> ThreadingHTTPServer:
    size = path.stat().st_size

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()

        def do_GET(self) -> None:
            start, end = 0, size - 1
            rng = self.headers.get("Range")
            if rng:
                first, _, last = rng.removeprefix("bytes=").partition("-")
                start, end = int(first), min(int(last), end) if last else end
            self.send_response(206 if rng else 200)
            if rng:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.send_header("Content-Length", str(end - start + 1))
            self.end_headers()
            t0, sent = time.perf_counter(), 0
            with open(path, "rb") as f:
                while sent < end - start + 1:
                    n = self.connection.sendfile(f, start + sent, min(SLICE, end - start + 1 - sent))
                    sent += n
                    ahead = sent / (mb_s * 1e6) - (time.perf_counter() - t0)
                    if ahead > 0:
                        time.sleep(ahead)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, name="capped-files", daemon=True).start()
    return httpd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="256Mi")
    ap.add_argument("--per-connection", type=float, default=50.0, help="MB/s each connection is capped at")
    ap.add_argument("--concurrency", default="1,4,8")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from obstore.store import HTTPStore

    size = int(parse_quantity(args.size).value)
    levels = [int(c) for c in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory(prefix="kubeinfer-bench-parallel-") as work:
        data = os.urandom(size)
        (Path(work) / "model.bin").write_bytes(data)
        want = hashlib.sha256(data).hexdigest()
        del data
        httpd = serve(Path(work) / "model.bin", args.per_connection)
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        store = HTTPStore.from_url(url, client_options={"allow_http": True})
        src = transfer.Source(f"{url}/model.bin", store, "model.bin", size, None, False, True)
        got: dict[int, list[float]] = {c: [] for c in levels}
        for _ in range(args.repeats):
            for c in levels:
                out = Path(work) / "out.bin"
                fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                sha = transfer.Digest("sha256")
                t0 = time.perf_counter()
                transfer.download(src, fd, [sha], lambda _: None, retries=2, backoff=0.1, concurrency=c)
                digest = sha.hexdigest()
                os.fsync(fd)
                seconds = time.perf_counter() - t0
                os.close(fd)
                out.unlink()
                if digest != want:
                    raise SystemExit(f"concurrency {c}: SHA-256 {digest}, want {want}")
                got[c].append(size / seconds / 1e6)
        httpd.shutdown()
    print(f"{size} bytes, each connection capped at {args.per_connection:g} MB/s, load {os.getloadavg()[0]:.1f}")
    for c, values in got.items():
        print(
            f"concurrency {c}: MB/s median {statistics.median(values):7.1f}  worst {min(values):7.1f}  "
            f"best {max(values):7.1f}  ({statistics.median(values) / statistics.median(got[levels[0]]):.2f}x)"
        )


if __name__ == "__main__":
    main()
