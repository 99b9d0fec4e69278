"""A replica of several server processes (``server.processes`` > 1): the parent that forks them and watches them.

The parent binds the listeners first. Each child listens on the HTTP and gRPC ports with a socket of its own
(``SO_REUSEPORT``; the parent holds each port, bound and never listening), so the kernel spreads connections among
them by their addresses. A shared listening socket does not spread them: the first process to wake accepts all that
are pending, and the one whose loop waits on its model thread for the interpreter lock wakes last (measured with
two MiniLM processes and 64 clients: 48/16 and 61/3 splits, the small side running 3-row batches; with a socket each,
32±4). The Unix socket is shared (``SO_REUSEPORT`` does not apply to it).
Without TCP (``--no-tcp``) each child serves gRPC on a Unix socket of its own (``NAME.grpc-INDEX.sock``: grpc cannot
share a listener between processes, and ``SO_REUSEPORT`` does not apply to Unix sockets); all of them are announced,
and the local router spreads calls among them.
Each child runs what the runner hands :func:`run_processes` (:data:`ServeChild`: an ordinary
:func:`kubeinfer.server.runner.serve`) with a :class:`Worker` that says which one it is; it
loads its own copy of the model with an equal share of the replica's CPU threads -- for runtimes that hold the GIL
around the model call (tokenizers, pooling) this runs more of the request path in parallel than threads can. A
process beyond the first joins the listeners (HTTP and gRPC) only once its model is loaded; the first listens from
the start, to answer probes while it loads. Each process reports ready only once every process of the replica serves
(each says so in its snapshot, :attr:`Metrics.state`): a probe reaches one process, and a sibling that loaded first
must not call ready a replica whose first process still refuses requests (nor one serving at part of its width). ``/metrics`` counts the whole replica
(each process publishes a snapshot every half second, see :mod:`kubeinfer.server.metrics`). The parent forwards
SIGTERM and SIGINT, exits with the children, and if a child dies or hangs while nobody asked the replica to stop,
stops the others and exits 1, so that whatever supervises the replica (the local controller, the kubelet) restarts
it whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from kubeinfer.runtimes.cpus import replica_cpus
from kubeinfer.server.announce import announce
from kubeinfer.server.listen import bind, grpc_socket_path, listen_tcp, listen_unix, no_tcp_needs_uds
from kubeinfer.server.metrics import Metrics
from kubeinfer.spec import InferenceService

__all__ = ["ServeChild", "Worker", "hang_seconds", "run_processes", "threads_per_process"]

log = logging.getLogger("kubeinfer.server")


@dataclass(frozen=True)
class Worker:
    """One of a replica's server processes: its index, the listeners its parent bound, the gRPC port its parent
    reserved (or, without TCP, the Unix socket it serves gRPC on), and the directory where the processes leave their
    metrics snapshots for each other."""

    index: int
    count: int
    sockets: list[socket.socket]
    grpc_port: int | None
    state_dir: Path
    grpc_uds: Path | None = None
    http_port: int | None = None  # the child listens on it itself (SO_REUSEPORT), once it serves

    SNAPSHOT_SECONDS = 0.5

    def _sibling_snapshots(self) -> dict[int, dict[str, Any] | None]:
        return {i: read_snapshot(self.state_dir / f"{i}.json") for i in range(self.count) if i != self.index}

    def sibling_states(self) -> dict[int, str]:
        """What each other process of the replica last said it is doing (``Metrics.state``: loading, serving,
        failed); ``loading`` before its first snapshot."""
        return {i: str((snap or {}).get("state", "loading")) for i, snap in self._sibling_snapshots().items()}

    def siblings(self) -> list[dict[str, Any]]:
        return [snap for snap in self._sibling_snapshots().values() if snap is not None]

    def write(self, metrics: Metrics) -> None:
        """Leave this process's snapshot for its siblings now (also every half second from :meth:`publish`)."""
        path, tmp = self.state_dir / f"{self.index}.json", self.state_dir / f".{self.index}.json"
        with contextlib.suppress(OSError):
            tmp.write_bytes(orjson.dumps(metrics.snapshot()))
            os.replace(tmp, path)

    async def publish(self, metrics: Metrics) -> None:
        while True:
            self.write(metrics)
            await asyncio.sleep(self.SNAPSHOT_SECONDS)


def read_snapshot(path: Path) -> dict[str, Any] | None:
    """A process's metrics snapshot (:meth:`Worker.write`), or None while it has none or it cannot be read."""
    try:
        snap = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return snap if isinstance(snap, dict) else None


def snapshot_ready(path: Path) -> bool:
    """Whether the metrics snapshot at ``path`` says every model of its process is ready; False when it has none
    yet or cannot be read."""
    snap = read_snapshot(path)
    return snap is not None and all(snap.get("ready", {}).values() or [False])


ServeChild = Callable[[Worker], int]
"""What each forked process runs: serve the replica as ``worker`` until told to stop, and return the exit code. The
runner passes it in (its ``serve`` on an event loop of its own) rather than this module importing the runner, which
imports this one."""


def threads_per_process(processes: int, env: dict[str, str] | None = None) -> int:
    """Each process's share of the replica's CPU threads: ``OMP_NUM_THREADS`` (what the local controller derives
    from the CPU limit) or else the CPUs this process may run on, divided among the processes, at least 1."""
    return max(1, int(replica_cpus(env)) // processes)


def _die_with_parent() -> None:
    """Linux: SIGTERM this process when its parent dies, so a SIGKILLed parent leaves no server behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def run_processes(svc: InferenceService, uds: Path | None, tcp: bool, child: ServeChild) -> int:
    """Bind the replica's listeners, fork ``spec.server.processes`` children that each run ``child``, announce the
    replica and supervise the children until they have all exited; returns the replica's exit code."""
    spec = svc.spec
    n, host = spec.server.processes, spec.server.host
    grpc_paths: list[Path] = []
    if not tcp:
        sockets = [listen_unix(no_tcp_needs_uds(uds))]
        if spec.server.grpcPort is not None:
            grpc_paths = [grpc_socket_path(no_tcp_needs_uds(uds), i) for i in range(n)]
    else:
        sockets = [listen_unix(uds)] if uds is not None else []
    # Bound, never listening: they hold the ports (and settle port 0) for the children's SO_REUSEPORT listeners.
    reserved = [bind(host, spec.server.port, "", "--port", reuse_port=True)] if tcp else []
    http_port = reserved[0].getsockname()[1] if tcp else None
    first = listen_tcp(host, http_port, reuse_port=True) if http_port is not None else None
    grpc_port = None
    if spec.server.grpcPort is not None and tcp:
        reserved.append(bind(host, spec.server.grpcPort, " for gRPC", "--grpc-port", reuse_port=True))
        grpc_port = reserved[-1].getsockname()[1]
    state_dir = Path(tempfile.mkdtemp(prefix="kubeinfer-serve-"))
    threads = str(threads_per_process(n))
    children: dict[int, int] = {}
    for index in range(n):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child; the multi-process tests see its behaviour
            code = 1
            try:
                _die_with_parent()
                os.environ["OMP_NUM_THREADS"] = threads
                for r in reserved:
                    r.close()
                grpc_uds = grpc_paths[index] if grpc_paths else None
                if index == 0 and first is not None:  # listening from the start: it answers probes while loading
                    worker = Worker(index, n, [first, *sockets], grpc_port, state_dir, grpc_uds)
                else:
                    if first is not None:
                        first.close()  # the first process's listener: only it accepts there
                    worker = Worker(index, n, sockets, grpc_port, state_dir, grpc_uds, http_port)
                code = child(worker)
            except SystemExit as e:
                print(e, file=sys.stderr, flush=True)
            except BaseException:
                log.exception("server process %d failed", index)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = index
    for sock in sockets if first is None else [first, *sockets]:
        sock.close()
    announce(svc.model_name, host, http_port, grpc_port, uds, grpc_paths)
    log.info("serving with %d processes of %s thread(s) each", n, threads)
    return _supervise(children, reserved, state_dir, [uds, *grpc_paths] if uds is not None else [])


def hang_seconds() -> float:
    """How long a ready server process may go without running its event loop (no metrics snapshot written) before
    its parent kills it: ``KUBEINFER_PROCESS_HANG_SECONDS``, default 30 (Kubernetes' default liveness probe gives
    up after 3 failures 10 s apart). A probe reaches only one of the processes, so the parent watches them all."""
    raw = os.environ.get("KUBEINFER_PROCESS_HANG_SECONDS", "")
    try:
        value = float(raw) if raw else 30.0
    except ValueError:
        value = 30.0
    return value if value > 0 else 30.0


class _Watchdog:
    """Finds a child that stopped running its event loop: its snapshot (rewritten every half second while the loop
    runs) has not changed for ``limit`` seconds of the parent's own running time, after the child once reported its
    model ready (loading may hold the interpreter for long). Time during which the parent did not run either (the
    whole replica stopped, the machine asleep) does not count."""

    def __init__(self, state_dir: Path, limit: float) -> None:
        self.state_dir = state_dir
        self.limit = limit
        self.ready: set[int] = set()
        self.seen: dict[int, tuple[float, float]] = {}  # index -> (snapshot mtime, monotonic time it was first seen)
        self.last_check = time.monotonic()

    def hung(self, indexes: list[int]) -> dict[int, float]:
        now = time.monotonic()
        if now - self.last_check > 1.0:  # the parent itself was not running: start the clocks again
            self.seen = {i: (m, now) for i, (m, _) in self.seen.items()}
        self.last_check = now
        out: dict[int, float] = {}
        for index in indexes:
            path = self.state_dir / f"{index}.json"
            try:
                mtime = path.stat().st_mtime
            except OSError:
                continue
            if index not in self.ready:
                if snapshot_ready(path):
                    self.ready.add(index)
                    self.seen[index] = (mtime, now)
                continue
            last_mtime, since = self.seen.get(index, (mtime, now))
            if mtime != last_mtime:
                since = now
            self.seen[index] = (mtime, since)
            if now - since > self.limit:
                out[index] = now - since
        return out


def _supervise(children: dict[int, int], reserved: list[socket.socket], state_dir: Path, paths: list[Path]) -> int:
    """Forward SIGTERM/SIGINT to the children and wait for them all; a child that dies, or hangs (see
    :class:`_Watchdog`), while nobody asked the replica to stop takes the others down (SIGTERM: they drain) and the
    parent exits 1."""
    stopping = False
    code = 0
    watchdog = _Watchdog(state_dir, hang_seconds())

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    handled = (signal.SIGTERM, signal.SIGINT)
    for sig in handled:
        signal.signal(sig, forward)
    try:
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                if not stopping:
                    pids = {number: child for child, number in children.items()}
                    for number, age in watchdog.hung(list(pids)).items():
                        log.error(
                            "server process %d (pid %d) has not run its event loop for %.0f s: killing it",
                            number,
                            pids[number],
                            age,
                        )
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pids[number], signal.SIGKILL)
                time.sleep(0.2)
                continue
            index = children.pop(pid, None)
            if index is None:
                continue
            child_code = os.waitstatus_to_exitcode(status)
            if not stopping:
                log.error(
                    "server process %d (pid %d) exited with %d; stopping the replica so that it is restarted whole",
                    index,
                    pid,
                    child_code,
                )
                code = 1
                forward(signal.SIGTERM, None)
            elif child_code != 0:
                code = code or (child_code if child_code > 0 else 1)
    finally:
        # The exit code is decided: a SIGTERM from the supervisor now (it sees the listeners gone) must not turn it
        # into "killed by SIGTERM".
        for sig in handled:
            signal.signal(sig, signal.SIG_IGN)
        for sock in reserved:
            sock.close()
        shutil.rmtree(state_dir, ignore_errors=True)
        for path in paths:  # the Unix sockets (a killed child leaves its gRPC one behind)
            with contextlib.suppress(OSError):
                path.unlink()
    return code
