"""TLS cost on a replica: the same server over plain HTTP and over HTTPS (``server.tls``), keep-alive connections.

    .venv/bin/python bench/tls/run.py [--rounds 3] [--duration 5] [--conns 16] [--out bench/tls/RESULTS.md]

Load: ``wrk`` (C, one thread) POSTing one iris row (OIP v2 JSON, ``examples/iris``) over ``--conns`` keep-alive
connections; wrk speaks TLS itself (OpenSSL) and does not verify the self-signed certificate made here. Two replicas
run side by side, one plain and one with TLS (a P-256 certificate, what cert-manager issues by default for ECDSA);
each round loads one then the other (the order alternates), after a short warm-up. Figures are medians over the
rounds; the machine is shared, so the ratio taken in one sitting is the figure that means something.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from kubeinfer.testing import ServerProcess  # noqa: E402

BODY = json.dumps({"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]})
LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{body}'
"""


def self_signed(folder: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (folder / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "tls.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def spec(folder: Path, name: str, tls: bool) -> Path:
    path = folder / f"{name}.yaml"
    server = "  server: {tls: {certFile: tls.crt, keyFile: tls.key}}\n" if tls else ""
    path.write_text(
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: iris}\nspec:\n"
        f"  model: {{format: sklearn, uri: {ROOT / 'examples' / 'iris' / 'model.joblib'}}}\n"
        "  batching: {maxBatchSize: 64, maxDelayMs: 1}\n" + server
    )
    return path


def wait_ready(url: str) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", verify=ctx).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not become ready")


def wrk(url: str, conns: int, duration: float, script: Path) -> tuple[float, float]:
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{max(1, round(duration))}s", "--latency", "-s", str(script)]
    out = subprocess.run([*cmd, f"{url}/v2/models/iris/infer"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m is None or "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk run not clean:\n{out}")
    p50 = re.search(r"\s50%\s+([\d.]+)(us|ms|s)", out)
    assert p50 is not None
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p50.group(2)]
    return float(m.group(1)), float(p50.group(1)) * scale


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench/tls/run.py needs wrk on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        self_signed(folder)
        script = folder / "post.lua"
        script.write_text(LUA.format(body=BODY))
        plain = ServerProcess(spec(folder, "plain", False), grpc=False).start()
        secure = ServerProcess(spec(folder, "tls", True), grpc=False, wait_ready=False).start()
        urls = {"http": plain.url, "https": f"https://127.0.0.1:{secure.http_port}"}
        wait_ready(urls["https"])
        runs: dict[str, list[tuple[float, float]]] = {"http": [], "https": []}
        try:
            for r in range(args.rounds):
                order = ["http", "https"] if r % 2 == 0 else ["https", "http"]
                for kind in order:
                    wrk(urls[kind], args.conns, 1.0, script)  # warm-up
                    runs[kind].append(wrk(urls[kind], args.conns, args.duration, script))
                    print(f"round {r + 1} {kind:5}: {runs[kind][-1][0]:9.0f} req/s  p50 {runs[kind][-1][1]:.2f} ms")
        finally:
            plain.kill()
            secure.kill()
    med = {k: (statistics.median(x for x, _ in v), statistics.median(p for _, p in v)) for k, v in runs.items()}
    ratio = med["https"][0] / med["http"][0]
    lines = [
        f"| | req/s (median of {args.rounds}) | p50 ms | runs (req/s) |",
        "|---|---|---|---|",
        *(
            f"| {k} | {med[k][0]:,.0f} | {med[k][1]:.2f} | {', '.join(f'{x:,.0f}' for x, _ in runs[k])} |"
            for k in ("http", "https")
        ),
        "",
        f"TLS / plain throughput: **{ratio:.2f}** (wrk -t1 -c{args.conns} -d{args.duration:g}s, keep-alive; "
        f"{platform.machine()}, {ssl.OPENSSL_VERSION})",
    ]
    print("\n".join(lines))
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
