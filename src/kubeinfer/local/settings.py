"""Settings of the embedded platform that are not part of the spec: where state lives, back-off, grace margins.

Read once from an environment mapping (:meth:`LocalSettings.from_env`), never at import time.

========================== ======================================= =========
variable                   meaning                                 default
========================== ======================================= =========
``KUBEINFER_HOME``         state folder; each service in a subdir  ``~/.kubeinfer``
``KUBEINFER_BACKOFF_BASE`` CrashLoopBackOff first delay, seconds   10
``KUBEINFER_BACKOFF_CAP``  longest back-off delay, seconds         300
``KUBEINFER_BACKOFF_RESET`` run time that resets the back-off, s   600
``KUBEINFER_GRACE_MARGIN`` seconds added to drainTimeoutSeconds    5
``KUBEINFER_TICK``         replica state-machine tick, seconds     0.05
``KUBEINFER_TRY_TIMEOUT``  router per-try timeout, seconds         10
``KUBEINFER_BUFFER_TIMEOUT`` router buffering bound, seconds       30
``KUBEINFER_LOG_MAX_MB``   a log file's cap (then NAME.1 keeps the  50
                           latest half), MB
``KUBEINFER_REPLICA_TCP``  1: replicas also listen on 127.0.0.1    0
                           TCP ports (HTTP, gRPC), reachable by
                           any local user; 0: Unix sockets only
========================== ======================================= =========
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kubeinfer.lifecycle.backoff import BackoffConfig

__all__ = ["LocalSettings", "SettingsError"]


class SettingsError(ValueError):
    pass


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def _bool(env: Mapping[str, str], key: str, default: bool) -> bool:
    raw = env.get(key)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingsError(f"{key} has value {raw!r}: not a boolean (1 or 0)")


def _float(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{key} has value {raw!r}: not a number (seconds, e.g. 0.5)") from None
    if value < 0:
        raise SettingsError(f"{key} has value {raw!r}: must not be negative")
    return value


@dataclass(frozen=True, slots=True)
class LocalSettings:
    home: Path = field(default_factory=lambda: Path.home() / ".kubeinfer")
    """State folder; service ``NAME`` keeps its spec copies, logs, token and control address in ``home/NAME``."""
    backoff: BackoffConfig = field(default_factory=BackoffConfig)
    grace_margin: float = 5.0
    """Seconds added to ``limits.drainTimeoutSeconds`` before a stopping replica is SIGKILLed."""
    tick: float = 0.05
    """How often replica state machines are stepped (probes, back-off and kill deadlines)."""
    try_timeout: float = 10.0
    """The router retries a request on another replica after this long without an answer."""
    buffer_timeout: float = 30.0
    """Longest wait of a request for a ready replica (scale from zero, all restarting) before a 503."""
    log_max_bytes: int = 50 << 20
    """A replica's log and ``platform.log`` are cut past this size, the latest half kept as ``NAME.1``."""
    replica_tcp: bool = False
    """Replicas listen on 127.0.0.1 TCP ports besides their Unix socket, as before there was a choice: any local user
    can then reach them without the router. Off: HTTP and gRPC on Unix sockets in the private state folder only (a
    replica whose socket path would not fit ``sun_path`` keeps TCP)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LocalSettings:
        env = os.environ if env is None else env
        home = Path(env["KUBEINFER_HOME"]).expanduser() if env.get("KUBEINFER_HOME") else Path.home() / ".kubeinfer"
        base = _float(env, "KUBEINFER_BACKOFF_BASE", 10.0)
        cap = _float(env, "KUBEINFER_BACKOFF_CAP", max(300.0, base))
        reset = _float(env, "KUBEINFER_BACKOFF_RESET", 600.0)
        try:
            backoff = BackoffConfig(base, cap, reset)
        except ValueError as e:
            raise SettingsError(f"KUBEINFER_BACKOFF_*: {e}") from None
        return cls(
            home=home,
            backoff=backoff,
            grace_margin=_float(env, "KUBEINFER_GRACE_MARGIN", 5.0),
            tick=_float(env, "KUBEINFER_TICK", 0.05) or 0.05,
            try_timeout=_float(env, "KUBEINFER_TRY_TIMEOUT", 10.0) or 10.0,
            buffer_timeout=_float(env, "KUBEINFER_BUFFER_TIMEOUT", 30.0),
            log_max_bytes=int(_float(env, "KUBEINFER_LOG_MAX_MB", 50.0) * (1 << 20)) or (50 << 20),
            replica_tcp=_bool(env, "KUBEINFER_REPLICA_TCP", False),
        )

    def service_dir(self, name: str) -> Path:
        return self.home / name
