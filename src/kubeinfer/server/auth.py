"""API keys on the replica's data plane: ``spec.server.auth.apiKeysFile``.

The file holds one key per line, optionally followed by the most requests per second that key may make
(``KEY`` or ``KEY 50``); blank lines and lines starting with ``#`` are skipped. When it is set, REST requests need
``Authorization: Bearer KEY`` and gRPC calls the metadata ``authorization: Bearer KEY``, except the health probes
and ``/metrics`` (routes marked ``public`` in ``routes.py``; gRPC ``ServerLive``, ``ServerReady`` and the
``grpc.health.v1.Health`` service), which Kubernetes and Prometheus call without credentials.

- A request without a key, or with one not in the file: 401 (gRPC ``UNAUTHENTICATED``) with ``WWW-Authenticate:
  Bearer``; the message says what was missing or wrong, never which keys exist.
- A key past its rate: 429 (gRPC ``RESOURCE_EXHAUSTED``) with ``Retry-After``; each key has a token bucket holding
  one second of its rate (at least one request), refilled continuously.
- Keys are looked up by their SHA-256 and then compared with :func:`hmac.compare_digest`: the time taken does not
  depend on how much of a guessed key is right.
- The file is read again when it changes (its modification time, size or inode, checked at most once a second);
  a file that became unreadable or invalid keeps the keys in force and logs why.

Cost when no file is set: the dispatchers test ``app.keys is not None``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from kubeinfer.server.errors import TooManyRequests, Unauthorized

__all__ = ["ApiKeys", "KeyFileError", "grpc_interceptor", "parse_keys"]

log = logging.getLogger("kubeinfer.server")

RECHECK_SECONDS = 1.0
_BEARER = "bearer "


class KeyFileError(ValueError):
    """The API keys file cannot be read or a line of it is not ``KEY [RATE]``; the message names the file and line."""


@dataclass(slots=True)
class _Key:
    secret: bytes
    rate: float | None  # requests per second; None: no limit
    tokens: float = 0.0
    at: float = 0.0  # when ``tokens`` was last brought up to date (monotonic seconds)


def parse_keys(text: str, where: str) -> dict[bytes, tuple[bytes, float | None]]:
    """The keys of a file's text, by their SHA-256: ``{digest: (key, rate)}``. Raises :class:`KeyFileError`."""
    keys: dict[bytes, tuple[bytes, float | None]] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) > 2:
            raise KeyFileError(
                f"{where}:{n}: expected 'KEY' or 'KEY RATE' (requests per second), got {len(fields)} fields"
            )
        rate: float | None = None
        if len(fields) == 2:
            try:
                rate = float(fields[1])
            except ValueError:
                rate = math.nan
            if not (rate > 0 and math.isfinite(rate)):
                raise KeyFileError(
                    f"{where}:{n}: the rate {fields[1]!r} is not a positive number of requests per second"
                )
        secret = fields[0].encode()
        digest = hashlib.sha256(secret).digest()
        if digest in keys:
            raise KeyFileError(f"{where}:{n}: a key given twice")
        keys[digest] = (secret, rate)
    if not keys:
        raise KeyFileError(f"{where}: no keys (one per line: 'KEY' or 'KEY RATE')")
    return keys


class ApiKeys:
    """The keys of one file, their rate limits, and the file's reload; ``clock`` is monotonic seconds."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._keys: dict[bytes, _Key] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._checked = clock()
        self._load(self._read())

    def _read(self) -> tuple[tuple[int, int, int], dict[bytes, tuple[bytes, float | None]]]:
        try:
            st = os.stat(self.path)
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise KeyFileError(f"{self.path}: cannot read the API keys file (server.auth.apiKeysFile): {e}") from None
        return (st.st_mtime_ns, st.st_size, st.st_ino), parse_keys(text, str(self.path))

    def _load(self, read: tuple[tuple[int, int, int], dict[bytes, tuple[bytes, float | None]]]) -> None:
        stamp, parsed = read
        now = self._clock()
        keys: dict[bytes, _Key] = {}
        for digest, (secret, rate) in parsed.items():
            old = self._keys.get(digest)
            if old is not None and old.rate == rate:
                keys[digest] = old  # a key kept across a reload keeps its bucket
            else:
                keys[digest] = _Key(secret, rate, _burst(rate), now)
        self._keys = keys
        self._stamp = stamp

    def _maybe_reload(self, now: float) -> None:
        self._checked = now
        try:
            st = os.stat(self.path)
            if (st.st_mtime_ns, st.st_size, st.st_ino) == self._stamp:
                return
            self._load(self._read())
            log.info("API keys reloaded from %s (%d keys)", self.path, len(self._keys))
        except (OSError, KeyFileError) as e:
            log.error("API keys file not reloaded, the keys read before stay in force: %s", e)

    def check(self, authorization: str | bytes | None) -> None:
        """Admit a request with this ``Authorization`` value, or raise :class:`Unauthorized` (401) or
        :class:`TooManyRequests` (429)."""
        now = self._clock()
        if now - self._checked >= RECHECK_SECONDS:
            self._maybe_reload(now)
        if authorization is None:
            raise Unauthorized("an API key is required: send the header 'Authorization: Bearer KEY'")
        if isinstance(authorization, bytes):
            authorization = authorization.decode("latin-1")
        if authorization[: len(_BEARER)].lower() != _BEARER:
            raise Unauthorized("the Authorization header must be 'Bearer KEY'")
        secret = authorization[len(_BEARER) :].strip().encode("latin-1")
        key = self._keys.get(hashlib.sha256(secret).digest())
        if key is None or not hmac.compare_digest(key.secret, secret):
            raise Unauthorized("the API key is not valid")
        rate = key.rate
        if rate is None:
            return
        tokens = min(_burst(rate), key.tokens + (now - key.at) * rate)
        key.at = now
        if tokens < 1.0:
            key.tokens = tokens
            e = TooManyRequests(f"this API key's rate limit of {rate:g} requests per second is reached; retry later")
            e.retry_after = (1.0 - tokens) / rate
            raise e
        key.tokens = tokens - 1.0


def _burst(rate: float | None) -> float:
    return max(1.0, rate) if rate is not None else 0.0


# -- gRPC -----------------------------------------------------------------------------------------------------
_OPEN_METHODS = frozenset(
    {
        "/inference.GRPCInferenceService/ServerLive",
        "/inference.GRPCInferenceService/ServerReady",
    }
)
_OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def grpc_interceptor(keys: ApiKeys) -> grpc.aio.ServerInterceptor:
    """A server interceptor that checks the ``authorization`` metadata of every call but the health ones."""

    class _Interceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
        async def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
            method: str = details.method
            if method in _OPEN_METHODS or method.startswith(_OPEN_PREFIXES):
                return await continuation(details)
            value = None
            for name, v in details.invocation_metadata or ():
                if name == "authorization":
                    value = v
                    break
            try:
                keys.check(value)
            except Unauthorized as e:
                return _refusal(await continuation(details), grpc.StatusCode.UNAUTHENTICATED, str(e))
            except TooManyRequests as e:
                return _refusal(await continuation(details), grpc.StatusCode.RESOURCE_EXHAUSTED, str(e))
            return await continuation(details)

    return _Interceptor()


def _refusal(handler: Any, code: grpc.StatusCode, message: str) -> Any:
    """A handler of the same kind as ``handler`` that ends the call with ``code``."""
    if handler is None:
        return None

    async def abort(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(code, message)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(
            abort, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(
            abort, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(
            abort, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )
    return grpc.unary_unary_rpc_method_handler(
        abort, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
    )
