"""The replica supervisor: the service's replicas and the execution of what their state machines ask for.

Each replica's lifecycle is a pure state machine (:mod:`kubeinfer.lifecycle.replica`: back-off, probes, kill
deadlines); this module feeds it events (ticks, probe results, the process's start and exit) and executes its
actions: start the process (through the :class:`~.launcher.ReplicaLauncher`), send signals, run probes, record
events. After every step the router membership is brought up to date, so a replica leaves the router the moment it
is no longer ready or starts stopping, before its SIGTERM. Every task it starts is named and kept; one that fails
is logged.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from kubeinfer.lifecycle import probes, replica
from kubeinfer.lifecycle.rollout import ReplicaView
from kubeinfer.local.controller.interfaces import EmitEvent
from kubeinfer.local.controller.launcher import ReplicaLauncher
from kubeinfer.local.controller.membership import RouterMembership
from kubeinfer.local.controller.records import Replica
from kubeinfer.local.controller.revisions import Revision
from kubeinfer.local.metrics import MetricsSource
from kubeinfer.local.process import Clock
from kubeinfer.local.settings import LocalSettings

__all__ = ["ReplicaSupervisor"]

log = logging.getLogger("kubeinfer.local")


class ReplicaSupervisor:
    def __init__(
        self,
        name: str,
        folder: Path,
        *,
        settings: LocalSettings,
        clock: Clock,
        launcher: ReplicaLauncher,
        metrics: MetricsSource,
        membership: RouterMembership,
        emit: EmitEvent,
    ) -> None:
        self.name = name
        self.folder = folder
        self.settings = settings
        self.clock = clock
        self.launcher = launcher
        self.metrics = metrics
        """Runs the probes."""
        self.membership = membership
        self.emit = emit
        self.replicas: list[Replica] = []
        self._created = 0
        """Replicas created so far (the last part of each replica's id)."""
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- the replica set -------------------------------------------------------------------------------------

    def live(self) -> list[Replica]:
        """The replicas not stopping."""
        return [r for r in self.replicas if not r.machine.stopping]

    def views(self) -> list[ReplicaView]:
        """The live replicas as the rollout planner sees them."""
        return [
            ReplicaView(
                r.id,
                r.revision.number,
                r.machine.ready,
                r.machine.phase in ("Starting", "Running"),
                r.machine.restarts,
                r.machine.created_at,
            )
            for r in self.live()
        ]

    def create(self, rev: Revision, now: float) -> Replica:
        """A new replica of ``rev``; its state machine starts it at once."""
        self._created += 1
        rid = f"{self.name}-r{rev.number}-{self._created}"
        used = {r.slot for r in self.replicas}
        slot = next(i for i in range(len(used) + 1) if i not in used)
        s = rev.svc.spec
        grace = s.server.limits.drainTimeoutSeconds + self.settings.grace_margin
        m = replica.ReplicaMachine(rid, rev.number, s.probes, self.settings.backoff, grace, now)
        rep = Replica(m, rev, slot, self.folder / "logs" / f"{rid}.log")
        self.replicas.append(rep)
        self.emit("Normal", "Created", rid, f"revision {rev.number} (model version {rev.version})")
        self.step(rep, probes.Tick(), now)
        return rep

    def stop(self, rid: str, why: str, now: float) -> None:
        """Stop the replica ``rid``: out of the router, SIGTERM, SIGKILL after its grace period."""
        rep = next(x for x in self.replicas if x.id == rid)
        self.step(rep, replica.Stop(why), now)

    def tick(self, now: float) -> None:
        """Step every replica's clock: probes due, back-off over, kill deadlines passed."""
        for rep in list(self.replicas):
            self.step(rep, probes.Tick(), now)

    def prune(self) -> None:
        """Forget the replicas that terminated."""
        self.replicas = [r for r in self.replicas if r.machine.phase != "Terminated"]

    def load_failure(self, revision: int) -> str | None:
        """The reason a replica of ``revision`` gave for failing to load its model (its probe answer), if one did."""
        for r in self.replicas:
            if r.revision.number == revision and "failed to load" in r.machine.message:
                return r.machine.message.partition("(")[2].rstrip(")") or r.machine.message
        return None

    # -- stepping ---------------------------------------------------------------------------------------------

    def step(self, rep: Replica, event: replica.ReplicaEvent, now: float) -> None:
        """Feed ``event`` to the replica's state machine, execute its actions, update the router."""
        for action in rep.machine.step(event, now):
            self._execute(rep, action, now)
        if rep.machine.phase == "Terminated":
            self.launcher.release(rep)
        self.membership.sync(self.replicas, now)

    def _execute(self, rep: Replica, action: replica.ReplicaAction, now: float) -> None:
        if isinstance(action, replica.Emit):
            self.emit(action.type, action.reason, rep.id, action.message)
        elif isinstance(action, replica.Spawn):
            rep.http_port = rep.grpc_port = rep.address = None
            rep.grpc_uds = ()
            rep.we_killed = rep.watchdog_oom = False
            self._spawn_task(self.launcher.supervise(rep, self.step), f"replica-{rep.id}")
        elif isinstance(action, replica.Signal):
            if action.signal == signal.SIGKILL:
                rep.we_killed = True
            if rep.proc is None:
                rep.pending_signals.append(action.signal)
            else:
                rep.proc.signal(action.signal)
        elif isinstance(action, replica.SetReady):
            pass  # membership.sync reads machine.ready after every step
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
        self.step(rep, probes.ProbeResult(action.kind, ok, detail), self.clock.monotonic())

    def kill_for_memory(self, rep: Replica, message: str) -> None:
        """SIGKILL a replica over its memory limit (no cgroup did it); its exit then reads OOMKilled."""
        if rep.proc is None:
            return
        rep.watchdog_oom = True
        self.emit("Warning", "OOMKilling", rep.id, message)
        rep.proc.signal(signal.SIGKILL)

    # -- shutdown -------------------------------------------------------------------------------------------

    async def stop_all(self, why: str, timeout: float | None) -> None:
        """Stop every replica and wait for them to end (``timeout``: the longest grace period + 2 s when None);
        SIGKILL what is left, then cancel the tasks."""
        now = self.clock.monotonic()
        for rep in list(self.replicas):
            self.step(rep, replica.Stop(why), now)
        grace = max((r.machine.grace for r in self.replicas), default=0.0)
        deadline = now + (timeout if timeout is not None else grace + 2)
        while self.clock.monotonic() < deadline:
            self.tick(self.clock.monotonic())
            self.prune()
            if not self.replicas:
                break
            await asyncio.sleep(self.settings.tick)
        for rep in self.replicas:
            if rep.proc is not None:
                rep.proc.signal(signal.SIGKILL)
        for t in list(self._tasks):
            t.cancel()

    # -- tasks ------------------------------------------------------------------------------------------------

    def _spawn_task(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())
