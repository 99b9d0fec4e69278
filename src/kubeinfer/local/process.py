"""Starting replica processes: the :class:`ProcessRunner` protocol and the real one (subprocesses).

Each replica is ``python -m kubeinfer serve SPEC --uds PATH --no-tcp`` (with ``KUBEINFER_REPLICA_TCP=1``, or a path
too long for a Unix socket: ``--port 0 --grpc-port 0`` instead of ``--no-tcp``) in its own session (process group),
started through :mod:`kubeinfer.local.launch`, with stdout and stderr appended to its log file. The server prints
``KUBEINFER_LISTENING {"http": .., "grpc": .., "uds": .., "grpc_uds": [..], "pid": ..}`` once its sockets are bound
(:mod:`kubeinfer.server.announce`); :meth:`Process.listening` reads it from the log. Signals go to the whole process
group.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kubeinfer.server.announce import Announcement, parse_announce

__all__ = [
    "Clock",
    "Listening",
    "MonotonicClock",
    "Process",
    "ProcessRunner",
    "SubprocessRunner",
    "read_tail",
    "serve_command",
]


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> float: ...


class MonotonicClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


@dataclass(frozen=True, slots=True)
class Listening:
    """Where a replica said it listens: TCP ports (None without TCP) and Unix sockets (HTTP; gRPC, one per server
    process)."""

    http: int | None
    grpc: int | None = None
    uds: str | None = None
    grpc_uds: tuple[str, ...] = ()

    @property
    def address(self) -> int | str | None:
        """Where probes and scrapes reach it: its HTTP port, else its Unix socket."""
        return self.http if self.http is not None else self.uds

    @classmethod
    def of(cls, where: Announcement) -> Listening:
        """What the controller keeps of an announcement (gRPC port 0: no gRPC)."""
        return cls(where.http, where.grpc or None, where.uds, where.grpc_uds)

    @classmethod
    def from_json(cls, info: Mapping[str, object]) -> Listening:
        """From the announcement's JSON object (:class:`~kubeinfer.server.announce.AnnounceError` if malformed)."""
        return cls.of(Announcement.from_json(info))


class Process(Protocol):
    @property
    def pid(self) -> int: ...

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the process group; no error if it is gone."""
        ...

    async def wait(self) -> int:
        """The exit status (negative: killed by that signal)."""
        ...

    async def listening(self, timeout: float) -> Listening | None:
        """Where the server listens once it announced it; None if it exited or timed out first."""
        ...


class ProcessRunner(Protocol):
    async def spawn(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path, cwd: Path) -> Process: ...


def serve_command(
    spec_path: Path, grpc: bool, launch_plan: str | None = None, uds: str | None = None, tcp: bool = True
) -> list[str]:
    """The replica's command line; ``tcp`` False (with a ``uds``): no TCP port, HTTP and gRPC on Unix sockets."""
    tcp = tcp or uds is None
    cmd = [sys.executable, "-m", "kubeinfer", "serve", str(spec_path), "--host", "127.0.0.1"]
    if tcp:
        cmd += ["--port", "0"]
    cmd += ["--grpc-port", "0"] if grpc else ["--no-grpc"]
    if uds is not None:
        cmd += ["--uds", uds]
    if not tcp:
        cmd.append("--no-tcp")
    if launch_plan is not None:
        cmd = [sys.executable, "-m", "kubeinfer.local.launch", launch_plan, "--", *cmd]
    return cmd


def read_tail(path: Path, max_bytes: int = 4096) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


class _Subprocess:
    def __init__(self, proc: asyncio.subprocess.Process, log_path: Path, offset: int) -> None:
        self._proc = proc
        self._log = log_path
        self._offset = offset
        self._listening: Listening | None = None

    @property
    def pid(self) -> int:
        return self._proc.pid

    def signal(self, sig: int) -> None:
        if self._proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)
            if sig == signal.SIGTERM:
                # A stopped (SIGSTOP) process would hold the signal until the SIGKILL: let it handle it now.
                os.killpg(self._proc.pid, signal.SIGCONT)

    async def wait(self) -> int:
        code = await self._proc.wait()
        # The group may hold children of the server (none today); they go with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        return code

    async def listening(self, timeout: float) -> Listening | None:
        deadline = time.monotonic() + timeout
        buf = b""
        with self._log.open("rb") as f:
            f.seek(self._offset)
            while time.monotonic() < deadline:
                chunk = f.read()
                if chunk:
                    buf += chunk
                    for line in buf.split(b"\n")[:-1]:
                        where = parse_announce(line.decode(errors="replace"))
                        if where is not None:
                            self._listening = Listening.of(where)
                            return self._listening
                    buf = buf.rsplit(b"\n", 1)[-1]
                elif self._proc.returncode is not None:
                    return None
                await asyncio.sleep(0.02)
        return None


class SubprocessRunner:
    async def spawn(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path, cwd: Path) -> Process:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            offset = os.lseek(fd, 0, os.SEEK_END)
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=fd,
                stderr=fd,
                env=dict(env),
                cwd=str(cwd),
                start_new_session=True,
            )
        finally:
            os.close(fd)
        return _Subprocess(proc, log_path, offset)
