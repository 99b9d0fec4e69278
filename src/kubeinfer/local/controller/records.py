"""What the controller knows of one replica besides its state machine: its process, where it listens, its cgroups
and its measured usage.

The state machine (:class:`kubeinfer.lifecycle.replica.ReplicaMachine`) decides; this record holds what the I/O
around it found out. The launcher fills in the process, addresses and cgroups, the load observer the usage, the
router membership reads the addresses, the status shows all of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kubeinfer.lifecycle import replica
from kubeinfer.local.controller.revisions import Revision
from kubeinfer.local.metrics import Address, ReplicaMetrics
from kubeinfer.local.process import Process
from kubeinfer.local.resources import LaunchPlan

__all__ = ["Replica"]


@dataclass(eq=False)
class Replica:
    machine: replica.ReplicaMachine
    revision: Revision
    slot: int
    """Its index among the live replicas (the launch plan picks its CPUs by it)."""
    log_path: Path
    proc: Process | None = None
    http_port: int | None = None
    grpc_port: int | None = None
    uds: str | None = None
    """The Unix socket the replica serves HTTP on; the router uses it (None: the path would be too long)."""
    grpc_uds: tuple[str, ...] = ()
    """The Unix sockets it serves gRPC on (one per server process) when it has no TCP port."""
    address: Address | None = None
    """Where probes and scrapes reach it (its HTTP port, else its Unix socket); None until it announced it."""
    launch: LaunchPlan = field(default_factory=LaunchPlan)
    cgroup: str | None = None
    cpu_cgroup: str | None = None
    we_killed: bool = False
    watchdog_oom: bool = False
    """The controller killed it for resident memory over ``limits.memory`` (no memory cgroup to do it)."""
    oom_base: int = 0
    """The cgroup's OOM kill count when the process started."""
    pending_signals: list[int] = field(default_factory=list)
    """Signals asked for before the process existed, sent once it does."""
    cpu_seconds: float | None = None
    cpu_at: float | None = None
    cpu_cores: float | None = None
    busy_seconds: float | None = None
    busy_at: float | None = None
    busy_rate: float | None = None
    late_total: float | None = None
    late_at: float | None = None
    late_rate: float | None = None
    """Requests per second that missed the SLO, between the last two scrapes (``kubeinfer_requests_late_total``)."""
    rss: float | None = None
    metrics: ReplicaMetrics = field(default_factory=ReplicaMetrics)

    @property
    def id(self) -> str:
        return self.machine.id
