"""Starting one replica's process and seeing it exit: GPUs, cgroups, the launch plan, sockets, environment, argv.

A replica always starts through :mod:`kubeinfer.local.launch`, which applies the launch plan (CPU affinity, thread
counts, memory rlimit, cgroups) in the child before it execs the server and ties the replica's life to the
platform's. The launcher reports back only through the replica's state machine (``Spawned``, ``Exited`` with the
classified reason): whatever goes wrong in starting or watching the process ends as an exit, which the machine
restarts with back-off, and a Warning event -- never as a task that dies and leaves the replica in Starting.

Replicas listen on Unix sockets in the service's private ``run`` folder; a socket path too long for ``sun_path``
(or ``KUBEINFER_REPLICA_TCP=1``) gives the replica 127.0.0.1 TCP ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

from kubeinfer.lifecycle import replica
from kubeinfer.local.controller.interfaces import EmitEvent
from kubeinfer.local.controller.records import Replica
from kubeinfer.local.gpu import GpuAllocator, GpuError
from kubeinfer.local.process import Clock, ProcessRunner, read_tail, serve_command
from kubeinfer.local.resources import CgroupV2, CpuQuota, cpu_limit, memory_limit, plan_launch
from kubeinfer.local.settings import LocalSettings
from kubeinfer.server.listen import grpc_socket_path
from kubeinfer.server.metrics import SLO_ENV
from kubeinfer.spec.service import ServiceSpec

__all__ = ["UDS_MAX_BYTES", "ReplicaLauncher", "StepReplica"]

log = logging.getLogger("kubeinfer.local")

UDS_MAX_BYTES = 104
"""A Unix socket path must fit ``sun_path`` (108 bytes on Linux, 104 on macOS); longer: the replica keeps TCP."""

StepReplica = Callable[[Replica, replica.ReplicaEvent, float], None]
"""Feed an event to a replica's state machine and execute what it asks (the supervisor's ``step``)."""


class ReplicaLauncher:
    def __init__(
        self,
        folder: Path,
        *,
        settings: LocalSettings,
        runner: ProcessRunner,
        gpus: GpuAllocator,
        cpus: list[int],
        cgroups: CgroupV2 | None,
        cpu_quota: CpuQuota | None,
        clock: Clock,
        emit: EmitEvent,
        on_oom: Callable[[float], None],
    ) -> None:
        self.folder = folder
        self.settings = settings
        self.runner = runner
        self.gpus = gpus
        self.cpus = cpus
        """The CPUs replicas may run on (the launch plan pins each replica to its share)."""
        self.cgroups = cgroups
        """Memory cgroups (``limits.memory``), when the machine lets this process make them."""
        self.cpu_quota = cpu_quota
        """CPU quota groups (``limits.cpu``), likewise."""
        self.clock = clock
        self.emit = emit
        self.on_oom = on_oom
        """Told when a replica ended OOMKilled (the VPA counts it)."""

    def sweep_stale(self) -> Iterator[str]:
        """Remove the cgroups a killed platform left behind; yields each path removed."""
        for groups in (self.cgroups, self.cpu_quota):
            if groups is not None:
                yield from groups.sweep_stale()

    async def supervise(self, rep: Replica, step: StepReplica) -> None:
        """Run the replica's process until it exits; a failure of the launch itself becomes an exit as well."""
        try:
            await self._run(rep, step)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("supervising %s failed", rep.id, exc_info=True)
            proc, rep.proc = rep.proc, None
            if proc is not None:
                with contextlib.suppress(Exception):
                    proc.signal(signal.SIGKILL)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(proc.wait(), timeout=10.0)
            for group in (rep.cgroup, rep.cpu_cgroup):
                if group:
                    with contextlib.suppress(Exception):
                        CgroupV2.remove(group)
            rep.cgroup = rep.cpu_cgroup = None
            with contextlib.suppress(Exception):
                self.release(rep)
            message = f"supervising the process failed: {type(e).__name__}: {e}"[:500]
            self.emit("Warning", "SupervisorError", rep.id, message)
            if rep.machine.phase != "Terminated":
                step(rep, replica.Exited(-1, "Error", message), self.clock.monotonic())

    def release(self, rep: Replica) -> None:
        """Give back the replica's GPU share."""
        self.gpus.release(rep.id)

    async def _run(self, rep: Replica, step: StepReplica) -> None:
        spec = rep.revision.svc.spec
        try:
            gpu_env = self.gpus.allocate(rep.id, spec.resources.gpu)
        except GpuError as e:
            step(rep, replica.Exited(-1, "StartError", str(e)), self.clock.monotonic())
            return
        self._make_groups(rep, spec)
        rep.launch = plan_launch(spec.resources, self.cpus, rep.slot, rep.cgroup, rep.cpu_cgroup)
        self._choose_socket(rep, spec)
        # Always through the launcher: besides affinity and limits it ties the replica's life to this process.
        argv = serve_command(
            rep.revision.spec_path,
            grpc=spec.server.grpcPort is not None,
            launch_plan=json.dumps(rep.launch.to_json()),
            uds=rep.uds,
            tcp=self.settings.replica_tcp,
        )
        rep.log_path.parent.mkdir(parents=True, exist_ok=True)
        with rep.log_path.open("a") as f:
            f.write(
                f"--- kubeinfer: starting {rep.id} (revision {rep.revision.number}, restart {rep.machine.restarts})\n"
            )
        try:
            proc = await self.runner.spawn(argv, self.env(rep, gpu_env), rep.log_path, rep.revision.base_dir)
        except OSError as e:
            step(rep, replica.Exited(-1, "StartError", f"cannot start: {e}"), self.clock.monotonic())
            return
        rep.proc = proc
        step(rep, replica.Spawned(proc.pid), self.clock.monotonic())
        for sig in rep.pending_signals:
            proc.signal(sig)
        rep.pending_signals.clear()
        waiter = asyncio.ensure_future(proc.wait())
        where = await proc.listening(
            timeout=max(60.0, spec.probes.startup.periodSeconds * spec.probes.startup.failureThreshold)
        )
        if where is not None:
            rep.http_port, rep.grpc_port, rep.grpc_uds = where.http, where.grpc, where.grpc_uds
            if where.uds is not None:
                rep.uds = where.uds
            rep.address = where.address
        code = await waiter
        rep.proc = None
        reason = self._exit_reason(rep, code)
        now = self.clock.monotonic()
        if reason == "OOMKilled":
            self.on_oom(now)
        self._remove_groups(rep)
        rep.cgroup = rep.cpu_cgroup = None
        self.release(rep)
        step(rep, replica.Exited(code, reason), now)

    def _make_groups(self, rep: Replica, spec: ServiceSpec) -> None:
        mem = memory_limit(spec.resources)
        if mem is not None and self.cgroups is not None and self.cgroups.available:
            rep.cgroup = self.cgroups.create(self._group_name(rep), mem)
            rep.oom_base = CgroupV2.oom_kills(rep.cgroup) if rep.cgroup else 0
        limit = cpu_limit(spec.resources)
        if limit is not None and self.cpu_quota is not None and self.cpu_quota.available:
            rep.cpu_cgroup = self.cpu_quota.create(self._group_name(rep), limit)

    @staticmethod
    def _remove_groups(rep: Replica) -> None:
        for group in (rep.cgroup, rep.cpu_cgroup):
            if group:
                CgroupV2.remove(group)

    def _choose_socket(self, rep: Replica, spec: ServiceSpec) -> None:
        """The replica's Unix socket (absolute: the replica runs in the revision's folder, the router in the
        platform's), or None when it or one of its gRPC sockets would not fit ``sun_path``."""
        sock = Path(os.path.abspath(self.folder / "run" / f"{rep.id}.sock"))
        paths = [sock]
        if not self.settings.replica_tcp and spec.server.grpcPort is not None:
            n = spec.server.processes
            paths += [grpc_socket_path(sock, i) for i in range(n)] if n > 1 else [grpc_socket_path(sock)]
        rep.uds = str(sock) if all(len(os.fsencode(p)) < UDS_MAX_BYTES for p in paths) else None
        if rep.uds is None and not self.settings.replica_tcp:
            log.warning(
                "%s: the socket path %s is too long for a Unix socket: the replica listens on TCP", rep.id, sock
            )

    def _exit_reason(self, rep: Replica, code: int) -> replica.ExitReason:
        """Why the process ended (OOMKilled, Killed, Error, ...), after removing the sockets it left behind."""
        for path in (rep.uds, *rep.grpc_uds):
            if path is not None:
                with contextlib.suppress(OSError):  # left behind by a killed server; a clean exit removed it
                    os.unlink(path)
        oom_kills = (CgroupV2.oom_kills(rep.cgroup) - rep.oom_base) if rep.cgroup else 0
        return replica.classify_exit(
            code,
            we_killed=rep.we_killed and not rep.watchdog_oom,
            oom_kills=oom_kills + (1 if rep.watchdog_oom else 0),
            rss=rep.rss or 0.0,
            memory_limit=rep.launch.memory_limit,
            log_tail=read_tail(rep.log_path, 2048),
        )

    @staticmethod
    def env(rep: Replica, gpu_env: dict[str, str]) -> dict[str, str]:
        """The replica's environment: the platform's, the spec's ``env``, the launch plan's, the GPU's."""
        spec = rep.revision.svc.spec
        env = dict(os.environ)
        env.update(spec.env)
        env.update(rep.launch.env)
        env.update(gpu_env)
        paths = [str(rep.revision.base_dir), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(paths)
        env["PYTHONUNBUFFERED"] = "1"
        env["KUBEINFER_REPLICA"] = rep.id
        if spec.autoscaling.policy == "predictive":
            # the replica's kubeinfer_requests_late_total: the predictive policy's SLO feedback (LoadSample.late)
            env[SLO_ENV] = f"{spec.autoscaling.predictive.sloLatencyMs / 1000.0:g}"
        return env

    @staticmethod
    def _group_name(rep: Replica) -> str:
        """The replica's cgroup name: its id, and this platform's pid (two platforms may run same-named services)."""
        return f"{rep.id}-{os.getpid()}"
