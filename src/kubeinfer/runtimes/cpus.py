"""The CPUs a replica's process is given, for the runtimes and the server that size threads and processes by them.

``OMP_NUM_THREADS`` first: what ``kubeinfer up`` derives from the CPU limit, and a multi-process replica's share of
it. Else the CPUs this process may run on, and where asked, no more than its cgroup v2 CPU quota allows (``cpu.max``:
a container's CPU limit, which does not narrow the affinity).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["CGROUP_CPU_MAX", "cgroup_cpus", "replica_cpus"]

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def replica_cpus(env: Mapping[str, str] | None = None, quota: Path | None = None) -> float:
    """``OMP_NUM_THREADS`` of ``env`` (default ``os.environ``) when it is a positive integer; else the CPUs this
    process may run on, capped by the cgroup quota read from ``quota`` when given (see :func:`cgroup_cpus`)."""
    raw = (os.environ if env is None else env).get("OMP_NUM_THREADS", "")
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    if hasattr(os, "sched_getaffinity"):
        cpus: float = len(os.sched_getaffinity(0))
    else:  # pragma: no cover - macOS has no CPU affinity
        cpus = os.cpu_count() or 1
    allowed = cgroup_cpus(quota) if quota is not None else None
    return cpus if allowed is None else min(cpus, allowed)


def cgroup_cpus(cpu_max: Path) -> float | None:
    """The CPUs a cgroup v2 quota allows (``cpu.max``: ``QUOTA PERIOD``, or ``max PERIOD`` for none); None without
    one."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None
