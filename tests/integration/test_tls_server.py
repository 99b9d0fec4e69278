"""TLS (``server.tls``) on a real server process: a self-signed certificate made here, real clients that verify it
(httpx over HTTPS, tritonclient.grpc and grpc's health stub over TLS), and the certificate's reload on change."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as tg
from cryptography import x509
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from certs import self_signed
from kubeinfer.testing import ServerProcess

pytestmark = pytest.mark.integration

ROWS = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)
INFER = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": ROWS.reshape(-1).tolist()}]}


def write_spec(tmp_path: Path, examples: Path) -> Path:
    spec = tmp_path / "service.yaml"
    spec.write_text(
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: iris}\nspec:\n"
        f"  model: {{format: sklearn, uri: {examples / 'iris' / 'model.joblib'}}}\n"
        "  server: {tls: {certFile: certs/tls.crt, keyFile: certs/tls.key}}\n"
    )
    return spec


def trusting(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


def served_name(port: int, ca: Path) -> str:
    """The common name of the certificate the server presents to a new connection (verified against ``ca``)."""
    ctx = trusting(ca)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True) or b"")
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def wait_ready(url: str, ctx: ssl.SSLContext) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/readyz", verify=ctx).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server never became ready over HTTPS"
        time.sleep(0.2)


def test_rest_and_grpc_over_tls_with_reload(tmp_path: Path, examples: Path, server_factory: ServerProcess) -> None:
    cert, _ = self_signed(tmp_path / "certs", "first")
    ca_first = tmp_path / "first.pem"
    ca_first.write_bytes(cert.read_bytes())
    server = server_factory(write_spec(tmp_path, examples), grpc=True, wait_ready=False)  # type: ignore[operator]
    url = f"https://127.0.0.1:{server.http_port}"
    ctx = trusting(ca_first)
    wait_ready(url, ctx)
    with httpx.Client(base_url=url, verify=ctx) as client:
        for _ in range(3):  # keep-alive over one TLS connection
            r = client.post("/v2/models/iris/infer", json=INFER)
            assert r.status_code == 200 and r.json()["outputs"]
        assert client.get("/v2/models/iris").json()["name"] == "iris"
    with pytest.raises(httpx.TransportError):  # plain HTTP is not served on the TLS port
        httpx.get(f"http://127.0.0.1:{server.http_port}/readyz", timeout=5).raise_for_status()
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):  # a client that trusts another CA
        httpx.get(f"{url}/readyz", verify=ssl.create_default_context())

    client = tg.InferenceServerClient(server.grpc_url, ssl=True, root_certificates=str(ca_first))
    try:
        inp = tg.InferInput("input-0", [1, 4], "FP32")
        inp.set_data_from_numpy(ROWS)
        assert client.infer("iris", [inp]).get_response().outputs
    finally:
        client.close()

    # A renewed certificate: new connections get it, REST and gRPC, without a restart.
    self_signed(tmp_path / "certs", "second")
    ca_second = tmp_path / "second.pem"
    ca_second.write_bytes(cert.read_bytes())
    deadline = time.monotonic() + 20
    while _still_first(server.http_port, ca_second):
        assert time.monotonic() < deadline, "the renewed certificate was never served over HTTPS"
        time.sleep(0.3)
    assert served_name(server.http_port, ca_second) == "second"
    with httpx.Client(base_url=url, verify=trusting(ca_second)) as https:
        assert https.post("/v2/models/iris/infer", json=INFER).status_code == 200
    creds = grpc.ssl_channel_credentials(root_certificates=ca_second.read_bytes())
    with grpc.secure_channel(server.grpc_url, creds) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def _still_first(port: int, ca_second: Path) -> bool:
    """Whether the server still presents a certificate ``ca_second`` does not trust (the first one)."""
    try:
        served_name(port, ca_second)
    except ssl.SSLCertVerificationError:
        return True
    return False


def test_a_key_that_does_not_match_stops_the_start(tmp_path: Path, examples: Path) -> None:
    self_signed(tmp_path / "certs", "one")
    other = tmp_path / "other"
    _, wrong_key = self_signed(other, "two")
    (tmp_path / "certs" / "tls.key").write_bytes(wrong_key.read_bytes())
    done = subprocess.run(
        [sys.executable, "-m", "kubeinfer", "serve", str(write_spec(tmp_path, examples)), "--port", "0", "--no-grpc"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "cannot load the certificate" in done.stderr and "tls.key" in done.stderr
    assert "Traceback" not in done.stderr
