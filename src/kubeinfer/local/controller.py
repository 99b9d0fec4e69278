"""The controller of one service on this machine: replicas, probes, router membership, autoscaling, rollouts.

This is the asyncio shell around the pure parts. Every ``tick`` it steps each replica's state machine
(:mod:`~kubeinfer.lifecycle.replica`: back-off, probes, kill deadlines) and executes the actions; it reconciles the
replica set toward ``desired`` replicas of the target revision with the rollout planner
(:mod:`~kubeinfer.lifecycle.rollout`); every second it takes a load sample from the router, and every sync period it
scrapes the replicas, asks the autoscaling policy (:func:`kubeinfer.autoscale.policy_from_spec`) for a count and
feeds the VPA recommender. Every action becomes an event with its reason.

Replicas listen on Unix sockets in the service's private ``run`` folder only (HTTP, and gRPC on its own socket):
the router, the probes and the scrapes all go through them, and no other local user can reach a replica around the
router. ``KUBEINFER_REPLICA_TCP=1`` (:class:`~kubeinfer.local.settings.LocalSettings`) gives them 127.0.0.1 TCP
ports as well (probes, scrapes and gRPC then use the ports, HTTP from the router still the socket), and so does a
socket path too long for ``sun_path``.

Order on the way out: a replica leaves the router first, then gets SIGTERM (the server drains), then SIGKILL after
``drainTimeoutSeconds`` + margin. On the way in: it joins the router only once its readiness probe passed.

I/O goes through small protocols (:class:`~kubeinfer.local.process.ProcessRunner`,
:class:`~kubeinfer.local.metrics.MetricsSource`, :class:`~kubeinfer.local.gpu.GpuInventory`,
:class:`~kubeinfer.local.process.Clock`, and a router with ``set_backends``/``stats``), so tests run it against
fakes (:mod:`kubeinfer.local.testing`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from kubeinfer.autoscale import (
    VPA,
    Decision,
    LoadSample,
    Observation,
    PodSample,
    Resources,
    VpaDecision,
    VpaObservation,
    bounded,
    policy_from_spec,
    sync_period,
)
from kubeinfer.autoscale.factory import FixedReplicas
from kubeinfer.autoscale.vpa import vpa_config_from_spec
from kubeinfer.lifecycle import probes, replica
from kubeinfer.local.events import EventLog
from kubeinfer.local.files import private_dir, write_private
from kubeinfer.local.gpu import GpuAllocator, GpuError, GpuInventory
from kubeinfer.local.metrics import Address, MetricsSource, ReplicaMetrics
from kubeinfer.local.process import Clock, Process, ProcessRunner, read_tail, serve_command
from kubeinfer.local.resources import CgroupV2, CpuQuota, LaunchPlan, cpu_cores, cpu_limit, memory_limit, plan_launch
from kubeinfer.lifecycle.rollout import ReplicaView, RolloutProgress, plan
from kubeinfer.local.settings import LocalSettings
from kubeinfer.server.listen import grpc_socket_path
from kubeinfer.server.logs import copytruncate
from kubeinfer.spec import InferenceService, SpecError, resolve_uri, validate_spec
from kubeinfer.spec.service import ServiceSpec

__all__ = ["ControllerError", "RouterLike", "ServiceController", "template_of"]

log = logging.getLogger("kubeinfer.local")

UDS_MAX_BYTES = 104
"""A Unix socket path must fit ``sun_path`` (108 bytes on Linux, 104 on macOS); longer: the replica keeps TCP."""


class ControllerError(RuntimeError):
    """A request the controller refuses; the message says why and what to do."""


class RouterLike(Protocol):
    def set_backends(self, ready: Sequence[Any]) -> None: ...

    def stats(self) -> Any: ...


def template_of(spec: ServiceSpec) -> dict[str, Any]:
    """The parts of a spec that need new processes when they change (a Deployment's pod template)."""
    doc = spec.model_dump(mode="json")
    for key in ("replicas", "autoscaling", "rollout"):
        doc.pop(key, None)
    return doc


def router_load(stats: Any) -> tuple[dict[str, float], float, float]:
    """(outstanding per backend id, buffered now, requests/s) from the router's stats."""
    per: dict[str, float] = {}
    backends = getattr(stats, "backends", None) or {}
    items = backends.items() if hasattr(backends, "items") else ((getattr(b, "id", ""), b) for b in backends)
    for bid, b in items:
        out = b.get("outstanding", 0) if isinstance(b, dict) else getattr(b, "outstanding", 0)
        per[str(bid)] = float(out or 0)
    buffered = getattr(stats, "buffered", None)
    if buffered is None:
        buffered = getattr(stats, "buffered_now", 0)
    return per, float(buffered or 0), float(getattr(stats, "rps", 0.0) or 0.0)


@dataclass(eq=False)
class Revision:
    number: int
    svc: InferenceService
    base_dir: Path
    spec_path: Path

    @property
    def version(self) -> str:
        return self.svc.spec.model.version


@dataclass(eq=False)
class Replica:
    machine: replica.ReplicaMachine
    revision: Revision
    slot: int
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
    oom_base: int = 0
    pending_signals: list[int] = field(default_factory=list)
    cpu_seconds: float | None = None
    cpu_at: float | None = None
    cpu_cores: float | None = None
    busy_seconds: float | None = None
    busy_at: float | None = None
    busy_rate: float | None = None
    rss: float | None = None
    metrics: ReplicaMetrics = field(default_factory=ReplicaMetrics)

    @property
    def id(self) -> str:
        return self.machine.id


class ServiceController:
    def __init__(
        self,
        svc: InferenceService,
        base_dir: Path,
        *,
        settings: LocalSettings,
        runner: ProcessRunner,
        router: RouterLike,
        metrics: MetricsSource,
        gpus: GpuInventory,
        clock: Clock,
        backend_factory: Callable[..., Any],
        cpus: Sequence[int] | None = None,
        cgroups: CgroupV2 | None = None,
        cpu_quota: CpuQuota | None = None,
    ) -> None:
        self.settings = settings
        self.runner = runner
        self.router = router
        self.metrics = metrics
        self.clock = clock
        self.backend_factory = backend_factory
        self.gpus = GpuAllocator(gpus)
        self.cpus = list(cpus if cpus is not None else sorted(os.sched_getaffinity(0)))
        self.cgroups = cgroups
        self.cpu_quota = cpu_quota
        self.name = svc.name
        self.dir = settings.service_dir(self.name)
        self.events = EventLog()
        self.replicas: list[Replica] = []
        self.revisions: dict[int, Revision] = {}
        self.target = 0
        self.rollout: RolloutProgress | None = None
        self.desired = 0
        self.decision: Decision | None = None
        self.vpa_decision: VpaDecision | None = None
        self.cold_starts: list[float] = []
        self._cold_since: float | None = None
        self._counter = 0
        self._loads: list[LoadSample] = []
        self._ooms: list[float] = []
        self._router_ids: tuple[tuple[Any, ...], ...] = ()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._last_loop_error: dict[str, str] = {}
        self.gpus.check(svc.spec.resources.gpu)
        self._set_spec(svc, base_dir)
        self.desired = self._initial_replicas(svc)
        self._policy_state = self.policy.initial_state()
        self.vpa = VPA(vpa_config_from_spec(svc.spec.autoscaling.vertical, capacity=self._capacity()))
        self._vpa_state = self.vpa.initial_state()

    # -- spec and revisions ---------------------------------------------------------------------------------

    @property
    def svc(self) -> InferenceService:
        return self.revisions[self.target].svc

    def _capacity(self) -> Resources:
        """This machine, as the VPA's cap: the CPUs replicas may use and the physical memory."""
        return Resources(float(len(self.cpus)), float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")))

    def _initial_replicas(self, svc: InferenceService) -> int:
        a = svc.spec.autoscaling
        # Knative starts a revision at its initial scale; a Deployment starts at spec.replicas (default 1) and the HPA
        # moves it from there; policy none holds its one count (its bounds), whatever this says.
        if a.policy == "kpa":
            n = a.kpa.initialScale
        else:
            n = svc.spec.replicas if svc.spec.replicas is not None else max(a.minReplicas, 1)
        return bounded(n, self.policy)

    def _write_spec(self, svc: InferenceService, base_dir: Path, number: int) -> Path:
        doc = svc.model_dump(mode="json")
        uri = svc.spec.model.uri
        if uri:
            doc["spec"]["model"]["uri"] = str(resolve_uri(uri, base_dir).resolve())
        path = self.dir / "specs" / f"revision-{number}.yaml"
        private_dir(path.parent)
        write_private(path, yaml.safe_dump(doc, sort_keys=False))
        return path

    def _set_spec(self, svc: InferenceService, base_dir: Path) -> Revision:
        number = max(self.revisions, default=0) + 1
        rev = Revision(number, svc, base_dir, self._write_spec(svc, base_dir, number))
        self.revisions[number] = rev
        self.target = number
        self.policy = policy_from_spec(svc.spec.autoscaling, fixed_replicas=svc.spec.replicas)
        return rev

    def apply(self, svc: InferenceService, base_dir: Path) -> str:
        """Take a new spec: a changed template starts a rolling update; other changes apply in place."""
        if svc.name != self.name:
            raise ControllerError(f"metadata.name {svc.name!r} does not match the running service {self.name!r}")
        try:
            self.gpus.check(svc.spec.resources.gpu)
        except GpuError as e:
            raise ControllerError(str(e)) from None
        now = self.clock.monotonic()
        current = self.revisions[self.target]
        same_template = template_of(svc.spec) == template_of(current.svc.spec) and base_dir == current.base_dir
        old_auto = current.svc.spec.autoscaling
        if same_template:
            current.svc = svc
            current.spec_path = self._write_spec(svc, base_dir, current.number)
            self.policy = policy_from_spec(svc.spec.autoscaling, fixed_replicas=svc.spec.replicas)
            msg = "spec updated in place (no new processes needed)"
        else:
            previous = self.rollout.previous if self.rollout is not None else self.target
            rev = self._set_spec(svc, base_dir)
            self.rollout = RolloutProgress(rev.number, previous, now, now)
            msg = f"rolling out revision {rev.number} (model version {rev.version}) over revision {previous}"
        if svc.spec.autoscaling != old_auto:
            self._policy_state = self.policy.initial_state()
            self.vpa = VPA(vpa_config_from_spec(svc.spec.autoscaling.vertical, capacity=self._capacity()))
            self.desired = bounded(self.desired, self.policy)  # policy none: its count
        self._event("Normal", "Applied", self.name, msg)
        self._wake.set()
        return msg

    def scale(self, replicas: int) -> str:
        if replicas < 0:
            raise ControllerError(f"--replicas {replicas}: must be 0 or more")
        if isinstance(self.policy, FixedReplicas):
            self.policy = FixedReplicas(replicas)
        elif bounded(replicas, self.policy) != replicas:
            lo, hi = self.policy.min_replicas, self.policy.max_replicas
            raise ControllerError(
                f"--replicas {replicas} is outside the autoscaling bounds [{lo}, {hi}]: change "
                "spec.autoscaling.minReplicas/maxReplicas with `kubeinfer apply`, or use policy: none"
            )
        msg = f"scaled from {self.desired} to {replicas} replicas by request"
        self.desired = replicas
        self._event("Normal", "ScalingReplicaSet", self.name, msg)
        if not isinstance(self.policy, FixedReplicas):
            # As with an HPA over a Deployment: the autoscaler owns the count and moves it at its next decision.
            lo, hi = self.policy.min_replicas, self.policy.max_replicas
            msg += (
                f"; note: autoscaling (policy {self.svc.spec.autoscaling.policy}, [{lo}, {hi}]) owns the replica count "
                f"and will change it at its next decision: to keep at least {replicas}, set the bounds with "
                f"`kubeinfer scale {self.name} --min {replicas}`"
            )
        return msg

    def scale_bounds(self, lo: int | None, hi: int | None) -> str:
        """Change the autoscaler's bounds in place (``spec.autoscaling.minReplicas``/``maxReplicas``), as
        ``kubectl patch hpa`` would: no new revision, the policy keeps deciding within the new bounds."""
        current = self.revisions[self.target]
        a = current.svc.spec.autoscaling
        if a.policy == "none":
            raise ControllerError("policy none has no autoscaling bounds: set the count with --replicas")
        doc = current.svc.model_dump(mode="json")
        auto = doc["spec"]["autoscaling"]
        auto["minReplicas"] = a.minReplicas if lo is None else lo
        auto["maxReplicas"] = a.maxReplicas if hi is None else hi
        try:
            svc = validate_spec(doc, "--min/--max")
        except SpecError as e:
            raise ControllerError(str(e)) from None
        self.apply(svc, current.base_dir)
        was, now_ = f"[{a.minReplicas}, {a.maxReplicas}]", f"[{auto['minReplicas']}, {auto['maxReplicas']}]"
        return f"autoscaling bounds {now_} (were {was}); {self.desired} replica(s) now"

    # -- events ---------------------------------------------------------------------------------------------

    def _event(self, type_: Any, reason: str, obj: str, message: str) -> None:
        self.events.record(self.clock.wall(), type_, reason, obj, message)
        log.info("%s %s %s: %s", type_, obj, reason, message)

    # -- running --------------------------------------------------------------------------------------------

    def _spawn_task(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    async def run(self) -> None:
        """Run until :meth:`shutdown`; the caller owns the router's sockets."""
        private_dir(self.dir)
        for groups in (self.cgroups, self.cpu_quota):
            if groups is not None:
                for path in groups.sweep_stale():
                    log.info("removed %s, left behind by a platform that was killed", path)
        self._event("Normal", "Starting", self.name, f"revision {self.target}, {self.desired} replica(s)")
        loops = [
            asyncio.create_task(self._tick_loop(), name="kubeinfer-tick"),
            asyncio.create_task(self._autoscale_loop(), name="kubeinfer-autoscale"),
        ]
        try:
            await asyncio.gather(*loops)
        finally:
            for t in loops:
                t.cancel()

    def on_buffered(self) -> None:
        """The router holds a request because no replica is ready: scale from zero now, not at the next sync."""
        if self._cold_since is None and not self._router_ids:
            self._cold_since = self.clock.monotonic()
        self._wake.set()

    async def _tick_loop(self) -> None:
        next_rotation = 0.0
        while not self._closing:
            try:
                self.tick()
                now = self.clock.monotonic()
                if now >= next_rotation:
                    next_rotation = now + 10.0
                    self._rotate_logs()
            except Exception as e:
                self._loop_failed("tick", e)
            await asyncio.sleep(self.settings.tick)

    def _rotate_logs(self) -> None:
        """Cap every log this service writes (each replica's output and the platform's own), so a flood of errors
        cannot fill the disk: past the cap a file is cut and its latest half kept as ``NAME.1``."""
        paths = {rep.log_path for rep in self.replicas}
        paths.add(self.dir / "platform.log")
        for path in paths:
            if copytruncate(path, self.settings.log_max_bytes):
                log.warning(
                    "%s outgrew %d MB: cut, its latest half kept in %s.1",
                    path,
                    self.settings.log_max_bytes >> 20,
                    path.name,
                )

    def _loop_failed(self, loop: str, e: Exception) -> None:
        """A controller loop's iteration raised: log it (with the traceback once per distinct message), record a
        Warning event (repeats fold into its count), keep the last decision and go on."""
        message = f"{type(e).__name__}: {e}"[:500]
        if message != self._last_loop_error.get(loop):
            log.warning("the %s loop failed; it goes on with the last decision", loop, exc_info=e)
            self._last_loop_error[loop] = message
        with contextlib.suppress(Exception):
            self._event("Warning", "ControllerError", self.name, f"{loop}: {message}")

    def tick(self) -> None:
        now = self.clock.monotonic()
        for rep in list(self.replicas):
            self._step(rep, probes.Tick(), now)
        self._reconcile(now)
        self.replicas = [r for r in self.replicas if r.machine.phase != "Terminated"]

    def _step(self, rep: Replica, event: replica.ReplicaEvent, now: float) -> None:
        for action in rep.machine.step(event, now):
            self._execute(rep, action, now)
        if rep.machine.phase == "Terminated":
            self._release(rep)
        self._sync_router(now)

    def _execute(self, rep: Replica, action: replica.ReplicaAction, now: float) -> None:
        if isinstance(action, replica.Emit):
            self._event(action.type, action.reason, rep.id, action.message)
        elif isinstance(action, replica.Spawn):
            rep.http_port = rep.grpc_port = rep.address = None
            rep.grpc_uds = ()
            rep.we_killed = rep.watchdog_oom = False
            self._spawn_task(self._supervise(rep), f"replica-{rep.id}")
        elif isinstance(action, replica.Signal):
            if action.signal == signal.SIGKILL:
                rep.we_killed = True
            if rep.proc is None:
                rep.pending_signals.append(action.signal)
            else:
                rep.proc.signal(action.signal)
        elif isinstance(action, replica.SetReady):
            pass  # _sync_router reads machine.ready after every step
        elif isinstance(action, probes.RunProbe):
            self._spawn_task(self._probe(rep, action), f"probe-{rep.id}-{action.kind}")

    async def _probe(self, rep: Replica, action: probes.RunProbe) -> None:
        if rep.address is None:
            ok, detail = False, "the server has not opened its port yet"
        else:
            try:
                ok, detail = await self.metrics.probe(rep.address, probes.PROBE_PATHS[action.kind], action.timeout)
            except Exception as e:
                ok, detail = False, f"the probe could not run: {type(e).__name__}: {e}"
        self._step(rep, probes.ProbeResult(action.kind, ok, detail), self.clock.monotonic())

    async def _supervise(self, rep: Replica) -> None:
        """Run the replica's process; whatever goes wrong in doing so (no file descriptor left for its log, a full
        disk, a cgroup that cannot be made) ends as an exit of the replica, which the state machine restarts with
        back-off, and a Warning event -- never as a task that dies and leaves the replica in Starting for good."""
        try:
            await self._run_process(rep)
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
                self.gpus.release(rep.id)
            message = f"supervising the process failed: {type(e).__name__}: {e}"[:500]
            self._event("Warning", "SupervisorError", rep.id, message)
            if rep.machine.phase != "Terminated":
                self._step(rep, replica.Exited(-1, "Error", message), self.clock.monotonic())

    def _env(self, rep: Replica, gpu_env: dict[str, str]) -> dict[str, str]:
        spec = rep.revision.svc.spec
        env = dict(os.environ)
        env.update(spec.env)
        env.update(rep.launch.env)
        env.update(gpu_env)
        paths = [str(rep.revision.base_dir), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(paths)
        env["PYTHONUNBUFFERED"] = "1"
        env["KUBEINFER_REPLICA"] = rep.id
        return env

    async def _run_process(self, rep: Replica) -> None:
        spec = rep.revision.svc.spec
        try:
            gpu_env = self.gpus.allocate(rep.id, spec.resources.gpu)
        except GpuError as e:
            self._step(rep, replica.Exited(-1, "StartError", str(e)), self.clock.monotonic())
            return
        mem = memory_limit(spec.resources)
        if mem is not None and self.cgroups is not None and self.cgroups.available:
            rep.cgroup = self.cgroups.create(self._group_name(rep), mem)
            rep.oom_base = CgroupV2.oom_kills(rep.cgroup) if rep.cgroup else 0
        limit = cpu_limit(spec.resources)
        if limit is not None and self.cpu_quota is not None and self.cpu_quota.available:
            rep.cpu_cgroup = self.cpu_quota.create(self._group_name(rep), limit)
        rep.launch = plan_launch(spec.resources, self.cpus, rep.slot, rep.cgroup, rep.cpu_cgroup)
        # Always through the launcher: besides affinity and limits it ties the replica's life to this process.
        # Absolute: the replica runs in the revision's folder, the router in the platform's.
        sock = Path(os.path.abspath(self.dir / "run" / f"{rep.id}.sock"))
        paths = [sock]
        if not self.settings.replica_tcp and spec.server.grpcPort is not None:
            n = spec.server.processes
            paths += [grpc_socket_path(sock, i) for i in range(n)] if n > 1 else [grpc_socket_path(sock)]
        rep.uds = str(sock) if all(len(os.fsencode(p)) < UDS_MAX_BYTES for p in paths) else None
        if rep.uds is None and not self.settings.replica_tcp:
            log.warning(
                "%s: the socket path %s is too long for a Unix socket: the replica listens on TCP", rep.id, sock
            )
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
            proc = await self.runner.spawn(argv, self._env(rep, gpu_env), rep.log_path, rep.revision.base_dir)
        except OSError as e:
            self._step(rep, replica.Exited(-1, "StartError", f"cannot start: {e}"), self.clock.monotonic())
            return
        rep.proc = proc
        self._step(rep, replica.Spawned(proc.pid), self.clock.monotonic())
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
        for path in (rep.uds, *rep.grpc_uds):
            if path is not None:
                with contextlib.suppress(OSError):  # left behind by a killed server; a clean exit removed it
                    os.unlink(path)
        oom_kills = (CgroupV2.oom_kills(rep.cgroup) - rep.oom_base) if rep.cgroup else 0
        reason = replica.classify_exit(
            code,
            we_killed=rep.we_killed and not rep.watchdog_oom,
            oom_kills=oom_kills + (1 if rep.watchdog_oom else 0),
            rss=rep.rss or 0.0,
            memory_limit=rep.launch.memory_limit,
            log_tail=read_tail(rep.log_path, 2048),
        )
        now = self.clock.monotonic()
        if reason == "OOMKilled":
            self._ooms.append(now)
        for group in (rep.cgroup, rep.cpu_cgroup):
            if group:
                CgroupV2.remove(group)
        rep.cgroup = rep.cpu_cgroup = None
        self.gpus.release(rep.id)
        self._step(rep, replica.Exited(code, reason), now)

    @staticmethod
    def _group_name(rep: Replica) -> str:
        """The replica's cgroup name: its id, and this platform's pid (two platforms may run same-named services)."""
        return f"{rep.id}-{os.getpid()}"

    def _release(self, rep: Replica) -> None:
        self.gpus.release(rep.id)

    def _sync_router(self, now: float) -> None:
        ready = [
            r
            for r in self.replicas
            if r.machine.ready and r.machine.phase == "Running" and not r.machine.stopping and r.address is not None
        ]
        ids = tuple((r.id, r.http_port, r.grpc_port, r.uds, r.grpc_uds) for r in ready)
        if ids == self._router_ids:
            return
        was_empty = not self._router_ids
        self._router_ids = ids
        self.router.set_backends(
            [
                self.backend_factory(
                    id=r.id,
                    host="127.0.0.1",
                    port=r.http_port,
                    grpc_port=r.grpc_port,
                    version=r.revision.version,
                    uds=r.uds,
                    grpc_uds=r.grpc_uds,
                )
                for r in ready
            ]
        )
        if was_empty and ready and self._cold_since is not None:
            waited = now - self._cold_since
            self._cold_since = None
            self.cold_starts.append(waited)
            self._event(
                "Normal",
                "ColdStart",
                self.name,
                f"first request after scale-from-zero waited {waited:.2f} s for a ready replica",
            )

    # -- reconcile ------------------------------------------------------------------------------------------

    def _views(self) -> list[ReplicaView]:
        return [
            ReplicaView(
                r.id,
                r.revision.number,
                r.machine.ready,
                r.machine.phase in ("Starting", "Running"),
                r.machine.restarts,
                r.machine.created_at,
            )
            for r in self.replicas
            if not r.machine.stopping
        ]

    def _reconcile(self, now: float) -> None:
        if self._closing:
            return
        views = self._views()
        if self.rollout is not None:
            new_ready = sum(1 for v in views if v.revision == self.target and v.ready)
            self.rollout = self.rollout.observe(new_ready, now)
            deadline = self.svc.spec.rollout.progressDeadlineSeconds
            if RolloutProgress.complete(views, self.target, self.desired):
                self._event("Normal", "RolloutComplete", self.name, f"revision {self.target} serves all traffic")
                self.rollout = None
            elif self.rollout.previous in self.revisions and (
                (failed := self._load_failure(self.target)) is not None or self.rollout.deadline_exceeded(deadline, now)
            ):
                bad, prev = self.target, self.rollout.previous
                if failed is not None:
                    # A model that failed to load will not load on the next try either: no need to wait out the
                    # progress deadline.
                    self._event(
                        "Warning",
                        "ModelLoadFailed",
                        self.name,
                        f"revision {bad}: {failed}: rolling back to revision {prev}",
                    )
                else:
                    self._event(
                        "Warning",
                        "ProgressDeadlineExceeded",
                        self.name,
                        f"revision {bad} made no progress within {deadline:g} s: rolling back to revision {prev}",
                    )
                self.target = prev
                self.policy = policy_from_spec(self.svc.spec.autoscaling, fixed_replicas=self.svc.spec.replicas)
                self.rollout = RolloutProgress(prev, bad, now, now, 0)
                self.rollout = None if RolloutProgress.complete(views, prev, self.desired) else self.rollout
        r = self.svc.spec.rollout
        p = plan(views, self.target, self.desired, r.maxSurge, r.maxUnavailable)
        for rid in p.remove:
            rep = next(x for x in self.replicas if x.id == rid)
            why = "scaled down" if p.reason == "scale down" else f"replaced by revision {self.target}"
            self._step(rep, replica.Stop(why), now)
        for _ in range(p.create):
            self._create(now)

    def _load_failure(self, revision: int) -> str | None:
        """The reason a replica of ``revision`` gave for failing to load its model (its probe answer), if one did."""
        for r in self.replicas:
            if r.revision.number == revision and "failed to load" in r.machine.message:
                return r.machine.message.partition("(")[2].rstrip(")") or r.machine.message
        return None

    def _create(self, now: float) -> Replica:
        rev = self.revisions[self.target]
        self._counter += 1
        rid = f"{self.name}-r{rev.number}-{self._counter}"
        used = {r.slot for r in self.replicas}
        slot = next(i for i in range(len(used) + 1) if i not in used)
        s = rev.svc.spec
        grace = s.server.limits.drainTimeoutSeconds + self.settings.grace_margin
        m = replica.ReplicaMachine(rid, rev.number, s.probes, self.settings.backoff, grace, now)
        rep = Replica(m, rev, slot, self.dir / "logs" / f"{rid}.log")
        self.replicas.append(rep)
        self._event("Normal", "Created", rid, f"revision {rev.number} (model version {rev.version})")
        self._step(rep, probes.Tick(), now)
        return rep

    # -- autoscaling ----------------------------------------------------------------------------------------

    def _sample_load(self, now: float) -> LoadSample:
        per, buffered, rps = router_load(self.router.stats())
        rates = [r.busy_rate for r in self.replicas if r.machine.ready and r.busy_rate is not None]
        work = sum(rates) if rates else None  # from the last scrape of each replica's busy time
        sample = LoadSample(now, concurrency=sum(per.values()) + buffered, rps=rps, work=work)
        self._loads.append(sample)
        self._loads = self._loads[-600:]
        self._last_per = per
        self._last_buffered = buffered
        return sample

    async def _autoscale_loop(self) -> None:
        # The first decision one period after start, then a period after each (sync_period's docstring); a wake
        # (a spec change, a request buffered at zero) decides at once, as Knative's activator pokes the decider.
        next_sync = self.clock.monotonic() + sync_period(self.svc.spec.autoscaling)
        pending: list[LoadSample] = []
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            woken = self._wake.is_set()
            self._wake.clear()
            now = self.clock.monotonic()
            try:
                pending.append(self._sample_load(now))
                if woken or now >= next_sync:
                    try:
                        await self.sync(now, tuple(pending))
                    finally:
                        pending = []
                        next_sync = now + sync_period(self.svc.spec.autoscaling)
            except Exception as e:
                self._loop_failed("autoscale", e)

    async def sync(self, now: float, loads: tuple[LoadSample, ...]) -> Decision:
        """One controller sync: scrape, decide, act (the count is reconciled at the next tick)."""
        live = [r for r in self.replicas if not r.machine.stopping]
        scraped = await asyncio.gather(
            *(self.metrics.scrape(r.address, r.proc.pid if r.proc else None, 1.0) for r in live)
        )
        for rep, m in zip(live, scraped, strict=True):
            self._record_usage(rep, m, now)
        obs = self._observation(live, loads, now)
        decision, self._policy_state = self.policy.decide(obs, self._policy_state, now)
        wanted = decision.replicas
        if wanted == 0 and obs.external.get("concurrency", 0) > 0 and not self._router_ids:
            # The router is the activator: requests wait for a replica that no pod metric can ask for. Within the
            # bounds: policy none held at zero (`kubeinfer scale --replicas 0`) stays off.
            wanted = bounded(1, self.policy)
            if wanted:
                decision = Decision(wanted, "ScaleFromZero", "requests are waiting in the router")
        self.decision = decision
        if wanted != self.desired:
            direction = "up" if wanted > self.desired else "down"
            self._event(
                "Normal",
                "ScalingReplicaSet",
                self.name,
                f"scaled {direction} from {self.desired} to {wanted}: {decision.reason}"
                + (f" ({decision.message})" if decision.message else ""),
            )
            self.desired = wanted
        self._vpa(live, now)
        return decision

    def _record_usage(self, rep: Replica, m: ReplicaMetrics, now: float) -> None:
        rep.metrics = m
        if m.cpu_seconds is not None:
            if rep.cpu_seconds is not None and rep.cpu_at is not None and now > rep.cpu_at:
                rep.cpu_cores = max(0.0, (m.cpu_seconds - rep.cpu_seconds) / (now - rep.cpu_at))
            rep.cpu_seconds, rep.cpu_at = m.cpu_seconds, now
        if m.busy_seconds is not None:
            if rep.busy_seconds is not None and rep.busy_at is not None and now > rep.busy_at:
                rep.busy_rate = max(0.0, (m.busy_seconds - rep.busy_seconds) / (now - rep.busy_at))
            rep.busy_seconds, rep.busy_at = m.busy_seconds, now
        if m.rss is not None:
            rep.rss = m.rss
            limit = rep.launch.memory_limit
            if limit and not rep.cgroup and m.rss > limit and rep.proc is not None and not rep.watchdog_oom:
                rep.watchdog_oom = True
                self._event(
                    "Warning",
                    "OOMKilling",
                    rep.id,
                    f"resident memory {m.rss / 2**20:.0f}Mi exceeds limits.memory {limit / 2**20:.0f}Mi",
                )
                rep.proc.signal(signal.SIGKILL)

    def _observation(self, live: list[Replica], loads: tuple[LoadSample, ...], now: float) -> Observation:
        per = getattr(self, "_last_per", {})
        buffered = getattr(self, "_last_buffered", 0.0)
        ready = [r for r in live if r.machine.ready]
        share = buffered / len(ready) if ready else 0.0
        spec = self.svc.spec
        cores = (
            cpu_cores(spec.resources)
            if spec.resources.requests.cpu is None
            else float(
                spec.resources.requests.quantity("cpu").value  # type: ignore[union-attr]
            )
        )
        mem_q = spec.resources.requests.quantity("memory")
        requests: dict[str, float] = {}
        if cores is not None:
            requests["cpu"] = cores
        if mem_q is not None:
            requests["memory"] = float(mem_q.value)
        total_rps = loads[-1].rps if loads else 0.0
        pods = []
        for r in live:
            metrics: dict[str, float] = {}
            if r.machine.ready:
                metrics["concurrency"] = per.get(r.id, 0.0) + share
                metrics["rps"] = total_rps / max(1, len(ready))
                if r.metrics.queue_depth is not None:
                    metrics["queue-depth"] = r.metrics.queue_depth
            if r.cpu_cores is not None:
                metrics["cpu"] = r.cpu_cores
            if r.rss is not None:
                metrics["memory"] = r.rss
            phase: Any = "Running" if r.machine.phase in ("Running", "Starting") else "Pending"
            pods.append(
                PodSample(
                    r.id,
                    metrics,
                    requests,
                    phase=phase,
                    ready=r.machine.ready,
                    started_at=r.machine.process_started_at,
                    metrics_at=now,
                )
            )
        concurrency = loads[-1].concurrency if loads else 0.0
        return Observation(
            current_replicas=self.desired,
            pods=tuple(pods),
            ready_replicas=len(ready),
            status_replicas=len(live),
            external={
                "concurrency": concurrency,
                "rps": total_rps,
                "queue-depth": sum(r.metrics.queue_depth or 0 for r in live),
            },
            load=loads,
        )

    def _vpa(self, live: list[Replica], now: float) -> None:
        spec = self.svc.spec
        cpu = tuple((now, r.cpu_cores) for r in live if r.cpu_cores is not None)
        mem = tuple((now, r.rss) for r in live if r.rss is not None)
        req_cpu = spec.resources.requests.quantity("cpu")
        req_mem = spec.resources.requests.quantity("memory")
        requests = Resources(float(req_cpu.value) if req_cpu else 0.0, float(req_mem.value) if req_mem else 0.0)
        obs = VpaObservation(cpu=cpu, memory=mem, ooms=tuple(self._ooms), requests=requests)
        self._ooms = []
        self.vpa_decision, self._vpa_state = self.vpa.decide(obs, self._vpa_state, now)

    # -- shutdown -------------------------------------------------------------------------------------------

    async def shutdown(self, timeout: float | None = None) -> None:
        """Take every replica out of the router, drain and stop them (SIGKILL after the grace period)."""
        self._closing = True
        now = self.clock.monotonic()
        self._event("Normal", "Stopping", self.name, "shutting down: draining all replicas")
        for rep in list(self.replicas):
            self._step(rep, replica.Stop("service shut down"), now)
        grace = max((r.machine.grace for r in self.replicas), default=0.0)
        deadline = now + (timeout if timeout is not None else grace + 2)
        while self.clock.monotonic() < deadline:
            now = self.clock.monotonic()
            for rep in list(self.replicas):
                self._step(rep, probes.Tick(), now)
            self.replicas = [r for r in self.replicas if r.machine.phase != "Terminated"]
            if not self.replicas:
                break
            await asyncio.sleep(self.settings.tick)
        for rep in self.replicas:
            if rep.proc is not None:
                rep.proc.signal(signal.SIGKILL)
        for t in list(self._tasks):
            t.cancel()

    # -- status ---------------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        now = self.clock.monotonic()
        reps = []
        for r in self.replicas:
            m = r.machine
            last = m.last_exit
            reps.append(
                {
                    "id": r.id,
                    "pid": m.pid,
                    "port": r.http_port,
                    "grpc_port": r.grpc_port,
                    # the Unix sockets it serves on, once it listens (without a port: its only way in, the router's)
                    "uds": r.uds if r.address is not None else None,
                    "grpc_uds": list(r.grpc_uds),
                    "state": m.phase,
                    "reason": m.reason,
                    "ready": m.ready,
                    "version": r.revision.version,
                    "revision": r.revision.number,
                    "restarts": m.restarts,
                    "age": round(now - m.created_at, 1),
                    "message": m.message,
                    "last_exit": None
                    if last is None
                    else {"code": last.code, "reason": last.reason, "message": last.message},
                    "cpu": None if r.cpu_cores is None else round(r.cpu_cores, 3),
                    "memory": r.rss,
                    "cpus": list(r.launch.cpus) if r.launch.cpus else None,
                    # CFS quota (limits.cpu) and the time it held the replica back, as cAdvisor's
                    # container_cpu_cfs_throttled_* report it; None without a quota
                    "cpu_throttled_seconds": round(CpuQuota.throttled(r.cpu_cgroup)[1], 3) if r.cpu_cgroup else None,
                    "log": str(r.log_path),
                }
            )
        ready = sum(1 for r in self.replicas if r.machine.ready and not r.machine.stopping)
        d, v = self.decision, self.vpa_decision
        return {
            "name": self.name,
            "revision": self.target,
            "version": self.svc.spec.model.version,
            "desired": self.desired,
            "ready_replicas": ready,
            "ready": ready >= self.desired and self.rollout is None,
            "replicas": reps,
            "autoscaling": {
                "policy": self.svc.spec.autoscaling.policy,
                "min": self.policy.min_replicas,
                "max": self.policy.max_replicas,
                "reason": d.reason if d else "",
                "message": d.message if d else "",
                "buffering": bool(d and d.buffer_requests),
            },
            "rollout": None
            if self.rollout is None
            else {
                "revision": self.rollout.revision,
                "previous": self.rollout.previous,
                "elapsed": round(now - self.rollout.started_at, 1),
            },
            "cold_starts": [round(c, 3) for c in self.cold_starts],
            "vpa": None
            if v is None
            else {
                "target": {"cpu": v.target.cpu, "memory": v.target.memory},
                "lower": {"cpu": v.lower_bound.cpu, "memory": v.lower_bound.memory},
                "upper": {"cpu": v.upper_bound.cpu, "memory": v.upper_bound.memory},
                "mode": self.svc.spec.autoscaling.vertical.updateMode,
                "reason": v.reason,
            },
            "events": [e.to_json() for e in self.events.list()][-100:],
        }
