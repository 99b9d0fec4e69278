"""Fakes of the local platform's I/O protocols, shipped for tests (as httpx ships ``MockTransport``).

:class:`FakeClock` (a :class:`~kubeinfer.local.process.Clock`); :class:`FakeRunner` (a
:class:`~kubeinfer.local.process.ProcessRunner`) of :class:`FakeProcess` objects that never run: tests decide when
they listen and exit; they announce a TCP port, or with ``unix_only`` only the Unix socket of their command line;
:class:`FakeMetrics` (a :class:`~kubeinfer.local.metrics.MetricsSource`: probe answers and metrics per address, port
or socket path); :class:`FakeRouter` (the controller's router: records ``set_backends`` and answers ``stats`` with
the router's own :class:`~kubeinfer.local.router.RouterStats`, from the load a test sets in :class:`FakeLoad`); and
:class:`FakeGpuInventory` (a :class:`~kubeinfer.local.gpu.GpuInventory`). The ``if TYPE_CHECKING`` block at the end
has mypy check that each satisfies its protocol.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubeinfer.lifecycle.canary import Counters
from kubeinfer.local.gpu import GpuDevice, GpuError
from kubeinfer.local.metrics import Address, ReplicaMetrics
from kubeinfer.local.process import Listening
from kubeinfer.local.router import BackendStats, RouterStats

__all__ = [
    "FakeBackend",
    "FakeClock",
    "FakeGpuInventory",
    "FakeLoad",
    "FakeMetrics",
    "FakeProcess",
    "FakeRouter",
    "FakeRunner",
]


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1.7e9 + self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


_pids = itertools.count(40_000)
_ports = itertools.count(20_000)


class FakeProcess:
    def __init__(self, argv: Sequence[str], env: Mapping[str, str], unix_only: bool = False) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.pid = next(_pids)
        self.uds = self.argv[self.argv.index("--uds") + 1] if "--uds" in self.argv else None
        self.port: int | None = None if unix_only and self.uds is not None else next(_ports)
        self.signals: list[int] = []
        self.exit_on_term = True
        self._exit: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def signal(self, sig: int) -> None:
        self.signals.append(sig)
        if sig == signal.SIGKILL or (sig == signal.SIGTERM and self.exit_on_term):
            self.exit(-sig if sig == signal.SIGKILL else 0)

    def exit(self, code: int) -> None:
        if not self._exit.done():
            self._exit.set_result(code)

    @property
    def exited(self) -> bool:
        return self._exit.done()

    async def wait(self) -> int:
        return await self._exit

    @property
    def address(self) -> Address:
        """Where the controller probes it: its port, else its Unix socket."""
        address = self.port if self.port is not None else self.uds
        assert address is not None
        return address

    async def listening(self, timeout: float) -> Listening | None:
        return Listening(self.port, None, self.uds)


class FakeRunner:
    def __init__(self, unix_only: bool = False) -> None:
        self.processes: list[FakeProcess] = []
        self.fail_with: OSError | None = None
        self.unix_only = unix_only

    async def spawn(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path, cwd: Path) -> FakeProcess:
        if self.fail_with is not None:
            raise self.fail_with
        p = FakeProcess(argv, env, self.unix_only)
        self.processes.append(p)
        return p

    def alive(self) -> list[FakeProcess]:
        return [p for p in self.processes if not p.exited]


class FakeMetrics:
    """Probes succeed unless an address (port or socket path) is listed in ``failing`` (path -> addresses); scrapes
    return ``values``; ``probed`` records the addresses probed."""

    def __init__(self) -> None:
        self.failing: dict[str, set[Address]] = {"/startupz": set(), "/readyz": set(), "/healthz": set()}
        self.values: dict[Address, ReplicaMetrics] = {}
        self.reason = ""  # what a failing probe's answer says (as the server's {"reason": ...})
        self.probed: set[Address] = set()

    async def probe(self, address: Address, path: str, timeout: float) -> tuple[bool, str]:
        self.probed.add(address)
        if address in self.failing.get(path, set()):
            return False, f"GET {path}: HTTP 503" + (f" ({self.reason})" if self.reason else "")
        return True, f"GET {path}: HTTP 200"

    async def scrape(self, address: Address | None, pid: int | None, timeout: float) -> ReplicaMetrics:
        return self.values.get(address if address is not None else -1, ReplicaMetrics())


@dataclass(frozen=True)
class FakeBackend:
    id: str
    host: str
    port: int | None
    grpc_port: int | None
    version: str = ""
    uds: str | None = None
    grpc_uds: tuple[str, ...] = ()
    revision: int = 0


@dataclass
class FakeLoad:
    """The load a :class:`FakeRouter` reports, set by the test: requests outstanding per backend id, waiting in the
    buffer, accepted in the last second."""

    outstanding: dict[str, int] = field(default_factory=dict)
    buffered: int = 0
    rps: float = 0.0
    revisions: dict[int, Counters] = field(default_factory=dict)
    """Each revision's response counters (what a canary's analysis reads)."""
    peak: int = 0
    peak_window: float = 0.0
    """The most requests within any ``peak_window`` seconds of the last second (0: not counted)."""
    rejected: int = 0
    """Requests the router answered 503 itself (buffer full or timed out), since it started."""


class FakeRouter:
    def __init__(self) -> None:
        self.history: list[list[Any]] = []
        self.load = FakeLoad()
        self.splits: list[tuple[tuple[int, int], ...] | None] = []
        """Every traffic split set, in order."""

    def set_split(self, split: Sequence[tuple[int, int]] | None) -> None:
        self.splits.append(None if split is None else tuple(split))

    def set_backends(self, ready: Sequence[Any]) -> None:
        self.history.append(list(ready))

    @property
    def backends(self) -> list[Any]:
        return self.history[-1] if self.history else []

    def stats(self) -> RouterStats:
        """``load`` as the router's snapshot (the backends named in ``load.outstanding``, all ready)."""
        backends = {i: BackendStats(i, n, n, True) for i, n in self.load.outstanding.items()}
        return RouterStats(
            backends=backends,
            requests=0,
            retries=0,
            buffered=self.load.buffered,
            buffered_total=self.load.buffered,
            rejected=self.load.rejected,
            rps=self.load.rps,
            revisions=dict(self.load.revisions),
            split=self.splits[-1] if self.splits else None,
            peak=self.load.peak,
            peak_window=self.load.peak_window,
        )


class FakeGpuInventory:
    def __init__(self, devices: Sequence[GpuDevice] = (), error: str | None = None) -> None:
        self._devices = list(devices)
        self.error = error

    def devices(self) -> list[GpuDevice]:
        if self.error is not None:
            raise GpuError(self.error)
        return list(self._devices)


if TYPE_CHECKING:
    from kubeinfer.local.controller import RouterLike
    from kubeinfer.local.gpu import GpuInventory
    from kubeinfer.local.metrics import MetricsSource
    from kubeinfer.local.process import Clock, Process, ProcessRunner

    def _implements(
        clock: FakeClock,
        process: FakeProcess,
        runner: FakeRunner,
        metrics: FakeMetrics,
        router: FakeRouter,
        gpus: FakeGpuInventory,
    ) -> tuple[Clock, Process, ProcessRunner, MetricsSource, RouterLike, GpuInventory]:
        """Each fake where the controller takes its protocol: mypy fails here when a fake falls behind one."""
        return clock, process, runner, metrics, router, gpus
