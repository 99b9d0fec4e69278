"""Logging that a client cannot turn into a disk-filling or a crash.

- :class:`RateLimit`: at most ``burst`` records per (logger, message template) per ``window`` seconds; the rest are
  counted and summed up in one line when the window ends. An error repeated at the accept loop's speed (20,000 idle
  connections exhausting file descriptors make asyncio log one traceback per ``accept()``) costs a few lines, not
  hundreds of MB.
- :func:`setup`: the format every kubeinfer process logs in, the limit on every handler, and
  ``logging.raiseExceptions = False`` so a full disk or a closed stream makes logging drop records instead of printing
  a traceback per record (serving goes on).
- ``KUBEINFER_LOG_LEVEL`` and ``KUBEINFER_LOG_FORMAT`` (``text`` or ``json``: one object per line) for every
  kubeinfer process (a replica inherits them from ``kubeinfer up``); ``KUBEINFER_ACCESS_LOG``: the share of requests
  written to the access log (logger ``kubeinfer.access``: model, protocol, status, duration), sampled at the source.
- :func:`copytruncate`: a log file written by another process (a replica's stdout) cut when it outgrows its cap,
  keeping the latest part as ``NAME.1`` (``logrotate``'s copytruncate: the writer's ``O_APPEND`` descriptor stays
  valid).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "ACCESS_ENV",
    "ACCESS_LOGGER",
    "FORMAT_ENV",
    "LEVEL_ENV",
    "JsonFormatter",
    "RateLimit",
    "access_rate_from_env",
    "copytruncate",
    "formatter_from_env",
    "level_from_env",
    "setup",
]

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RateLimit(logging.Filter):
    def __init__(self, burst: int = 20, window: float = 10.0, clock: object = time.monotonic) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self._clock = clock
        self._seen: dict[tuple[str, object], list[float]] = {}  # key -> [window start, count, suppressed]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == ACCESS_LOGGER:
            return True  # sampled at the source, and each line is a different request
        now = self._clock()  # type: ignore[operator]
        key = (record.name, record.msg)
        state = self._seen.get(key)
        if state is None or now - state[0] >= self.window:
            suppressed = int(state[2]) if state is not None else 0
            if len(self._seen) > 10_000:  # distinct templates are few; a flood of distinct ones is itself bounded
                self._seen.clear()
            self._seen[key] = [now, 1.0, 0.0]
            if suppressed:
                record.msg = f"{record.msg} (and {suppressed} more like it in the last {self.window:g} s, not logged)"
            return True
        state[1] += 1
        if state[1] <= self.burst:
            return True
        state[2] += 1
        return False


LEVEL_ENV = "KUBEINFER_LOG_LEVEL"
FORMAT_ENV = "KUBEINFER_LOG_FORMAT"
ACCESS_ENV = "KUBEINFER_ACCESS_LOG"
ACCESS_LOGGER = "kubeinfer.access"
"""The access log's logger: sampled (``KUBEINFER_ACCESS_LOG``), so not rate-limited per message like the rest."""


class JsonFormatter(logging.Formatter):
    """One JSON object per line (``KUBEINFER_LOG_FORMAT=json``), as log collectors (Fluent Bit, Vector, Cloud
    Logging) read them: ``time`` (RFC 3339, UTC), ``level``, ``logger``, ``message``, the fields a record carries in
    ``extra`` (the access log's ``model``, ``protocol``, ``status``, ``duration_ms``) and ``exception`` with the
    traceback."""

    _STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        import orjson

        doc: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in self._STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def formatter_from_env(env: Mapping[str, str] | None = None) -> logging.Formatter:
    """``KUBEINFER_LOG_FORMAT``: ``text`` (the default) or ``json``; anything else is reported and ignored."""
    raw = (os.environ if env is None else env).get(FORMAT_ENV, "").strip().lower()
    if raw == "json":
        return JsonFormatter()
    if raw not in ("", "text"):
        sys.stderr.write(f"{FORMAT_ENV}={raw!r} is not a log format (text, json): using text\n")
    return logging.Formatter(FORMAT)


def access_rate_from_env(env: Mapping[str, str] | None = None) -> float:
    """``KUBEINFER_ACCESS_LOG``: the share of requests logged, 0 (off, the default) to 1 (every request)."""
    raw = (os.environ if env is None else env).get(ACCESS_ENV, "").strip()
    if not raw:
        return 0.0
    try:
        rate = float(raw)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        sys.stderr.write(f"{ACCESS_ENV}={raw!r} is not a share of requests between 0 and 1: the access log is off\n")
        return 0.0
    return rate


def level_from_env(default: int, env: Mapping[str, str] | None = None) -> int:
    """``KUBEINFER_LOG_LEVEL`` (debug, info, warning, error; a replica inherits it from ``kubeinfer up``) or
    ``default``. An unknown name is reported on stderr and ignored: a typo must not stop a server from starting."""
    raw = (os.environ if env is None else env).get(LEVEL_ENV, "").strip()
    if not raw:
        return default
    level = logging.getLevelName(raw.upper())
    if isinstance(level, int):
        return level
    sys.stderr.write(f"{LEVEL_ENV}={raw!r} is not a log level (debug, info, warning, error): using the default\n")
    return default


def setup(level: int = logging.INFO, stream: object = None) -> None:
    """Configure the root logger once: one stream handler, rate-limited, never raising. ``level`` is the default,
    ``KUBEINFER_LOG_LEVEL`` overrides it."""
    level = level_from_env(level)
    logging.raiseExceptions = False
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
        handler.setFormatter(formatter_from_env())
        root.addHandler(handler)
    if access_rate_from_env() > 0:
        logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO)  # on when asked, whatever the root's level
    root.setLevel(level)
    for h in root.handlers:
        if not any(isinstance(f, RateLimit) for f in h.filters):
            h.addFilter(RateLimit())


def copytruncate(path: Path, max_bytes: int, keep_bytes: int | None = None) -> bool:
    """If ``path`` is larger than ``max_bytes``: copy its last ``keep_bytes`` (default half the cap) to ``NAME.1``
    and truncate it to 0. Returns whether it did. Errors (a full disk) are swallowed: rotation is best effort."""
    try:
        size = path.stat().st_size
        if size <= max_bytes:
            return False
        keep = max_bytes // 2 if keep_bytes is None else keep_bytes
        with path.open("rb") as src:
            src.seek(max(0, size - keep))
            tail = src.read(keep)
        backup = path.with_name(path.name + ".1")
        fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as dst:
            dst.write(tail)
        os.truncate(path, 0)
        return True
    except OSError:
        with contextlib.suppress(OSError):
            os.truncate(path, 0)  # the disk may be full: free what this log holds rather than keep nothing working
        return False
