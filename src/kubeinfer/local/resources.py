"""CPU and memory for replica processes: affinity and thread counts from CPU requests/limits, memory limits.

Kubernetes gives a container CPU time (CFS quota) and, with the static CPU manager, whole cores. Locally a replica
gets ``ceil(cpu)`` cores of the machine as its affinity (replicas spread over different cores while there are
enough) and the thread pools of numpy/BLAS/OpenMP/ONNX Runtime are sized to match (``OMP_NUM_THREADS`` and
friends), so a replica does not oversubscribe the cores it may use. The limit wins over the request when both are
given (that is what the container may use).

A CPU *limit* is also enforced as Kubernetes does, with CFS bandwidth control (:class:`CpuQuota`): the replica's
own cgroup gets ``limit x 100 ms`` of CPU time per 100 ms period (``cpu.max`` in cgroup v2, ``cpu.cfs_quota_us`` in
v1), where this process may create one. A request alone sets no quota (a request is a share, not a cap).

Memory limits are enforced with a cgroup v2 child group (``memory.max``; its ``memory.events`` ``oom_kill`` counter
then tells an out-of-memory kill apart) where this process may create one; otherwise with ``RLIMIT_DATA`` (heap and
anonymous mappings: allocations beyond it fail with MemoryError) plus a watchdog in the controller that SIGKILLs a
replica whose resident memory exceeds the limit, as the kernel's OOM killer would. Either way the exit is reported
as ``OOMKilled`` (see :func:`kubeinfer.lifecycle.replica.classify_exit`).

The planning functions are pure; :class:`CgroupV2` and :class:`CpuQuota` touch ``/sys/fs/cgroup``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kubeinfer.local.files import pid_alive
from kubeinfer.spec.service import ResourcesSpec

__all__ = [
    "THREAD_VARS",
    "CgroupV2",
    "CpuQuota",
    "LaunchPlan",
    "cpu_cores",
    "cpu_limit",
    "cpu_set",
    "memory_limit",
    "plan_launch",
]

THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "KUBEINFER_CPU_THREADS",
)


def cpu_cores(res: ResourcesSpec) -> float | None:
    """Cores a replica may use: the limit, else the request, else no constraint."""
    q = res.limits.quantity("cpu") or res.requests.quantity("cpu")
    return None if q is None else float(q.value)


def cpu_limit(res: ResourcesSpec) -> float | None:
    """The CPU limit alone (cores), which becomes a CFS quota."""
    q = res.limits.quantity("cpu")
    return None if q is None else float(q.value)


def memory_limit(res: ResourcesSpec) -> int | None:
    q = res.limits.quantity("memory")
    return None if q is None else q.int_value


def cpu_set(available: Sequence[int], slot: int, cores: float) -> tuple[int, ...]:
    """``ceil(cores)`` of ``available`` for the replica in ``slot``: consecutive blocks, wrapping around."""
    cpus = sorted(available)
    n = max(1, math.ceil(cores))
    if n >= len(cpus):
        return tuple(cpus)
    start = (slot * n) % len(cpus)
    return tuple(sorted(cpus[(start + i) % len(cpus)] for i in range(n)))


@dataclass(frozen=True, slots=True)
class LaunchPlan:
    """What the launcher applies to the child before it execs the server."""

    cpus: tuple[int, ...] | None = None
    threads: int | None = None
    memory_limit: int | None = None
    rlimit_data: int | None = None
    cgroup: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    cpu_cgroup: str | None = None  # the group with the CPU quota (in cgroup v2, the same as ``cgroup`` when both)

    def to_json(self) -> dict[str, object]:
        groups = [g for g in (self.cgroup, self.cpu_cgroup) if g]
        return {
            "cpus": list(self.cpus) if self.cpus else None,
            "rlimit_data": self.rlimit_data,
            "cgroups": list(dict.fromkeys(groups)),
        }


def plan_launch(
    res: ResourcesSpec,
    available_cpus: Sequence[int],
    slot: int,
    cgroup: str | None = None,
    cpu_cgroup: str | None = None,
) -> LaunchPlan:
    """Affinity, thread counts, CPU quota and memory enforcement of the replica in ``slot``."""
    cores = cpu_cores(res)
    cpus = cpu_set(available_cpus, slot, cores) if cores is not None else None
    threads = len(cpus) if cpus is not None else None
    env = {v: str(threads) for v in THREAD_VARS} if threads is not None else {}
    mem = memory_limit(res)
    return LaunchPlan(
        cpus=cpus,
        threads=threads,
        memory_limit=mem,
        rlimit_data=mem if mem is not None and cgroup is None else None,
        cgroup=cgroup if mem is not None else None,
        env=env,
        cpu_cgroup=cpu_cgroup if cpu_limit(res) is not None else None,
    )


class _ChildGroups:
    """Child cgroups ``kubeinfer-NAME`` under ``base`` (None: none can be made, ``why_not`` says why)."""

    base: Path | None
    why_not: str

    @property
    def available(self) -> bool:
        return self.base is not None

    def _make(self, name: str, configure: Callable[[Path], None]) -> str | None:
        """Make (or reuse) the group and configure it; its path, or None if that failed."""
        if self.base is None:
            return None
        path = self.base / f"kubeinfer-{name}"
        try:
            path.mkdir(exist_ok=True)
            configure(path)
        except OSError as e:
            self.why_not = f"cannot create {path}: {e}"
            return None
        return str(path)

    @staticmethod
    def remove(path: str) -> None:
        try:
            Path(path).rmdir()
        except OSError:
            pass

    def sweep_stale(self) -> list[str]:
        """Remove the groups a platform left behind when it was killed (``kubeinfer-REPLICA-PID`` whose PID is gone
        and that hold no process): a SIGKILLed ``kubeinfer up`` cannot clean up after itself. The paths removed."""
        if self.base is None:
            return []
        removed = []
        try:
            groups = list(self.base.glob("kubeinfer-*-*"))
        except OSError:
            return []
        for path in groups:
            pid = path.name.rsplit("-", 1)[-1]
            if not pid.isdigit() or pid_alive(int(pid)):
                continue
            try:
                if (path / "cgroup.procs").exists() and (path / "cgroup.procs").read_text().strip():
                    continue
                path.rmdir()
                removed.append(str(path))
            except OSError:
                continue
        return removed


class CgroupV2(_ChildGroups):
    """A child cgroup per replica under this process's own cgroup, when cgroup v2 delegates one to us."""

    def __init__(self, root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")) -> None:
        self.root = root
        self.base: Path | None = None
        self.why_not = ""
        try:
            if not (root / "cgroup.controllers").exists():
                self.why_not = "cgroup v2 is not mounted at /sys/fs/cgroup"
                return
            own = next(
                (line[3:].strip() for line in proc_cgroup.read_text().splitlines() if line.startswith("0::")), None
            )
            if own is None:
                self.why_not = "this process is not in a cgroup v2 group"
                return
            base = root / own.lstrip("/")
            controllers = (base / "cgroup.subtree_control").read_text().split()
            if "memory" not in controllers or not os.access(base, os.W_OK):
                self.why_not = f"{base} does not delegate the memory controller to this user"
                return
            self.base = base
        except OSError as e:
            self.why_not = f"cannot read cgroups: {e}"

    def create(self, name: str, memory_max: int) -> str | None:
        """Make ``kubeinfer-NAME`` with ``memory.max``; its path, or None if that failed."""

        def configure(path: Path) -> None:
            (path / "memory.max").write_text(str(memory_max))
            if (path / "memory.swap.max").exists():
                (path / "memory.swap.max").write_text("0")

        return self._make(name, configure)

    @staticmethod
    def oom_kills(path: str) -> int:
        try:
            for line in (Path(path) / "memory.events").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0


class CpuQuota(_ChildGroups):
    """CFS bandwidth control for a replica's CPU limit, in a child group of this process's own cgroup: ``cpu.max``
    under cgroup v2 when the ``cpu`` controller is delegated, else ``cpu.cfs_quota_us`` in the v1 ``cpu`` hierarchy
    when it is writable. ``why_not`` says why neither could be used (the limit then only sizes affinity and threads).
    """

    PERIOD_US = 100_000  # the kubelet's CFS period

    def __init__(self, root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")) -> None:
        self.base: Path | None = None
        self.v2 = False
        self.why_not = ""
        try:
            lines = proc_cgroup.read_text().splitlines()
        except OSError as e:
            self.why_not = f"cannot read {proc_cgroup}: {e}"
            return
        for line in lines:
            _, controllers, own = line.split(":", 2)
            if controllers == "" and (root / "cgroup.controllers").exists():
                base = root / own.lstrip("/")
                try:
                    delegated = "cpu" in (base / "cgroup.subtree_control").read_text().split()
                except OSError:
                    delegated = False
                if delegated and os.access(base, os.W_OK):
                    self.base, self.v2 = base, True
                    return
            elif "cpu" in controllers.split(","):
                for mount in (root / controllers, root / "cpu", root / "cpu,cpuacct"):
                    base = mount / own.lstrip("/")
                    if (base / "cpu.cfs_quota_us").exists() and os.access(base, os.W_OK):
                        self.base = base
                        return
        self.why_not = "no writable cgroup with the cpu controller (v2 delegation or the v1 cpu hierarchy)"

    def create(self, name: str, cores: float) -> str | None:
        """Make (or reuse) ``kubeinfer-NAME`` with a quota of ``cores``; its path, or None if that failed."""
        return self._make(name, lambda path: self.set(str(path), cores))

    def set(self, path: str, cores: float | None) -> None:
        """Set the quota of a group made by :meth:`create` (None: no quota)."""
        quota = -1 if cores is None else max(1000, round(cores * self.PERIOD_US))
        if self.v2:
            (Path(path) / "cpu.max").write_text(f"{'max' if quota < 0 else quota} {self.PERIOD_US}")
        else:
            (Path(path) / "cpu.cfs_period_us").write_text(str(self.PERIOD_US))
            (Path(path) / "cpu.cfs_quota_us").write_text(str(quota))

    @staticmethod
    def throttled(path: str) -> tuple[int, float]:
        """Periods in which the group was throttled, and the seconds it spent throttled, since it was made."""
        periods, seconds = 0, 0.0
        try:
            for line in (Path(path) / "cpu.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "nr_throttled":
                    periods = int(value)
                elif key == "throttled_usec":  # v2
                    seconds = int(value) / 1e6
                elif key == "throttled_time":  # v1, nanoseconds
                    seconds = int(value) / 1e9
        except (OSError, ValueError):
            pass
        return periods, seconds
