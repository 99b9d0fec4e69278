"""The SIGTERM drain check: clients that open a new connection per request, a SIGTERM in the middle, and a count
of the requests lost.

A request is *lost* when it was sent and got no answer: the connection was reset or closed after the request went
out (a connection in the listen backlog when the listener closes, or one closed mid-request). A connection refused,
or reset before the request could be written, is not lost: the client knows nothing was sent and can go elsewhere
(that is what a router or a Service does while endpoints change). Every answer must be a 200, or a 503 that says the
server is draining.

    python -m kubeinfer.bench.drain SPEC --runs 20 --clients 32
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubeinfer.server.announce import parse_announce

__all__ = ["DrainResult", "drain_run"]


@dataclass
class DrainResult:
    answered: int = 0
    refused: int = 0
    lost: int = 0
    bad: int = 0
    lost_examples: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"answered": self.answered, "refused": self.refused, "lost": self.lost, "bad": self.bad}


def _one(port: int, path: str, body: bytes, result: DrainResult, lock: threading.Lock) -> bool:
    """One request on a new connection; False once the server is gone (refused)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        try:
            conn.connect()
        except OSError:
            with lock:
                result.refused += 1
            return False
        try:
            conn.request("POST", path, body, {"Content-Type": "application/json"})
        except OSError:  # reset before the request was written whole: not sent
            with lock:
                result.refused += 1
            return False
        try:
            r = conn.getresponse()
            data = r.read()
        except (OSError, http.client.HTTPException) as e:
            with lock:
                result.lost += 1
                if len(result.lost_examples) < 5:
                    result.lost_examples.append(f"{type(e).__name__}: {e}")
            return False
        with lock:
            if r.status == 200 or (r.status == 503 and b"drain" in data):
                result.answered += 1
            else:
                result.bad += 1
        return True
    finally:
        conn.close()


def drain_run(
    start: Any, path: str, body: bytes, clients: int = 32, before: float = 1.0, after: float = 60.0
) -> DrainResult:
    """Start a server with ``start()`` (returns ``(pid, port)``), load it with ``clients`` threads for ``before``
    seconds, SIGTERM it, and keep each client going until it is refused (the server is gone) or ``after`` seconds
    pass."""
    pid, port = start()
    result = DrainResult()
    lock = threading.Lock()
    stop_at = [float("inf")]

    def client() -> None:
        # Until the server refuses (it is gone) or ``after`` seconds past the SIGTERM.
        while time.monotonic() < stop_at[0]:
            if not _one(port, path, body, result, lock) and stop_at[0] != float("inf"):
                return

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    time.sleep(before)
    os.kill(pid, signal.SIGTERM)
    stop_at[0] = time.monotonic() + after
    for t in threads:
        t.join(after + 15)
    return result


def main() -> None:  # pragma: no cover - a command-line tool
    import subprocess
    import sys

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("spec", type=Path)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--model", default=None, help="model name (default: the spec's metadata.name)")
    ap.add_argument(
        "--body", default='{"inputs":[{"name":"input-0","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}'
    )
    args = ap.parse_args()
    from kubeinfer.spec import load_spec

    svc = load_spec(args.spec)
    model = args.model or svc.model_name
    totals = DrainResult()
    lossy = 0
    for i in range(args.runs):
        proc: subprocess.Popen[str] | None = None

        def start() -> tuple[int, int]:
            nonlocal proc
            cmd = [sys.executable, "-m", "kubeinfer", "serve", str(args.spec), "--port", "0", "--no-grpc"]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            assert proc.stdout is not None
            for line in proc.stdout:
                where = parse_announce(line)
                if where is not None:
                    if where.http is None:
                        raise SystemExit(f"the server announced no HTTP port: {line.strip()}")
                    port = where.http
                    break
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                        s.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        if b" 200 " in s.recv(100):
                            break
                except OSError:
                    pass
                time.sleep(0.1)
            return proc.pid, port

        r = drain_run(start, f"/v2/models/{model}/infer", args.body.encode(), clients=args.clients)
        assert proc is not None
        code = proc.wait(60)
        print(json.dumps({"run": i + 1, **r.to_json(), "exit": code, "lost_examples": r.lost_examples}), flush=True)
        totals.answered += r.answered
        totals.refused += r.refused
        totals.lost += r.lost
        totals.bad += r.bad
        lossy += r.lost > 0
    print(json.dumps({"runs": args.runs, **totals.to_json(), "lossy_runs": lossy}))


if __name__ == "__main__":  # pragma: no cover
    main()
