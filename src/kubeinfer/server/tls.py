"""TLS on the replica's TCP ports: ``spec.server.tls`` (``certFile``, ``keyFile``; PEM).

REST is served by uvicorn over one :class:`ssl.SSLContext`; gRPC with ``grpc.dynamic_ssl_server_credentials``. Both
read the files again when they change (modification time, size or inode; looked at no more than once a second), so a
certificate renewed by cert-manager or a Secret update is served to new connections without a restart; connections
already open keep the certificate they shook hands with. A pair that does not load (a half-written file, a key that
does not match the certificate) is tried first on a scratch context and, failing, leaves the served pair in place and
is logged.

Replicas of ``kubeinfer up`` listen on private Unix sockets only (``--no-tcp``): there the router speaks plain HTTP and
TLS is not applied.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import threading
import time
from pathlib import Path

import grpc

__all__ = ["CertFiles", "TlsError"]

log = logging.getLogger("kubeinfer.server")

RECHECK_SECONDS = 1.0


class TlsError(ValueError):
    """The certificate or key cannot be read or do not go together; the message names the files."""


class CertFiles:
    """A certificate and key pair on disk, the REST context that serves it and the gRPC credentials."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.cert = cert
        self.key = key
        self._lock = threading.Lock()  # gRPC asks for the pair from its own threads
        self._stamp = self._stat()
        self._grpc_stamp: tuple[tuple[int, int, int], ...] | None = None
        self._checked = time.monotonic()
        self.context = self._load(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2

    def _stat(self) -> tuple[tuple[int, int, int], ...]:
        try:
            stats = [os.stat(p) for p in (self.cert, self.key)]
        except OSError as e:
            raise TlsError(f"cannot read the TLS files (server.tls.certFile, keyFile): {e}") from None
        return tuple((st.st_mtime_ns, st.st_size, st.st_ino) for st in stats)

    def _load(self, context: ssl.SSLContext) -> ssl.SSLContext:
        try:
            context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as e:
            raise TlsError(
                f"cannot load the certificate {self.cert} with the key {self.key} (server.tls.certFile, keyFile): {e}"
            ) from None
        return context

    def changed(self) -> bool:
        """Whether the files changed since they were last loaded (looked at no more than once a second)."""
        now = time.monotonic()
        if now - self._checked < RECHECK_SECONDS:
            return False
        self._checked = now
        try:
            return self._stat() != self._stamp
        except TlsError:
            return False  # the files are being replaced: served as before, looked at again later

    def reload(self) -> bool:
        """Load the files into the served context if they changed and load; ``True`` when they did."""
        with self._lock:
            if not self.changed():
                return False
            try:
                stamp = self._stat()
                self._load(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))  # a bad pair must not touch the served context
                self._load(self.context)
            except TlsError as e:
                log.error("TLS certificate not reloaded, the one loaded before is served: %s", e)
                return False
            self._stamp = stamp
            log.info("TLS certificate reloaded from %s", self.cert)
            return True

    async def watch(self) -> None:
        """Reload the REST context whenever the files change (a task of the serving loop)."""
        while True:
            await asyncio.sleep(RECHECK_SECONDS)
            await asyncio.to_thread(self.reload)

    def _grpc_pair(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration([(self.key.read_bytes(), self.cert.read_bytes())])

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """Credentials that serve the pair and ask for it again on each handshake, cheaply: a new pair is read only
        when the files changed (and the REST context loaded it, which checks it)."""
        with self._lock:
            self._grpc_stamp = self._stamp
            first = self._grpc_pair()

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            self.reload()
            with self._lock:
                if self._grpc_stamp == self._stamp:
                    return None
                try:
                    pair = self._grpc_pair()
                except OSError as e:
                    log.error("TLS certificate not reloaded for gRPC: %s", e)
                    return None
                self._grpc_stamp = self._stamp
                return pair

        return grpc.dynamic_ssl_server_credentials(first, fetch)
