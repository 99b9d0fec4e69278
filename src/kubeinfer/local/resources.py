"""CPU and memory for replica processes: affinity and thread counts from CPU requests/limits, memory limits.

Kubernetes gives a container CPU time (CFS quota) and, with the static CPU manager, whole cores. Locally a replica
gets ``ceil(cpu)`` cores of the machine as its affinity (replicas spread over different cores while there are
enough) and the thread pools of numpy/BLAS/OpenMP/ONNX Runtime are sized to match (``OMP_NUM_THREADS`` and
friends), so a replica does not oversubscribe the cores it may use. The limit wins over the request when both are
given (that is what the container may use).

Memory limits are enforced with a cgroup v2 child group (``memory.max``; its ``memory.events`` ``oom_kill`` counter
then tells an out-of-memory kill apart) where this process may create one; otherwise with ``RLIMIT_DATA`` (heap and
anonymous mappings: allocations beyond it fail with MemoryError) plus a watchdog in the controller that SIGKILLs a
replica whose resident memory exceeds the limit, as the kernel's OOM killer would. Either way the exit is reported
as ``OOMKilled`` (see :func:`kubeinfer.local.replica.classify_exit`).

The planning functions are pure; :class:`CgroupV2` touches ``/sys/fs/cgroup``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kubeinfer.spec.service import ResourcesSpec

__all__ = ["THREAD_VARS", "CgroupV2", "LaunchPlan", "cpu_cores", "cpu_set", "memory_limit", "plan_launch"]

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

    def to_json(self) -> dict[str, object]:
        return {"cpus": list(self.cpus) if self.cpus else None, "rlimit_data": self.rlimit_data, "cgroup": self.cgroup}


def plan_launch(res: ResourcesSpec, available_cpus: Sequence[int], slot: int, cgroup: str | None = None) -> LaunchPlan:
    """Affinity, thread counts and memory enforcement of the replica in ``slot``."""
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
    )


class CgroupV2:
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

    @property
    def available(self) -> bool:
        return self.base is not None

    def create(self, name: str, memory_max: int) -> str | None:
        """Make ``kubeinfer-NAME`` with ``memory.max``; its path, or None if that failed."""
        if self.base is None:
            return None
        path = self.base / f"kubeinfer-{name}"
        try:
            path.mkdir(exist_ok=True)
            (path / "memory.max").write_text(str(memory_max))
            (path / "memory.swap.max").write_text("0") if (path / "memory.swap.max").exists() else None
        except OSError as e:
            self.why_not = f"cannot create {path}: {e}"
            return None
        return str(path)

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

    @staticmethod
    def remove(path: str) -> None:
        try:
            Path(path).rmdir()
        except OSError:
            pass
