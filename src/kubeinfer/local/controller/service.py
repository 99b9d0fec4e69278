"""The controller of one service on this machine: it owns the parts and runs the two loops that drive them.

Every ``tick`` the :class:`~.supervisor.ReplicaSupervisor` steps each replica's state machine, and the controller
reconciles the replica set toward ``desired`` replicas of the target revision with the rollout planner
(:mod:`kubeinfer.lifecycle.rollout`), rolling back a revision that makes no progress. Every second the
:class:`~.observer.LoadObserver` takes a load sample from the router, and every sync period the controller scrapes
the replicas, asks the autoscaling policy (:func:`kubeinfer.autoscale.policy_from_spec`) for a count and feeds the
VPA recommender. ``kubeinfer apply`` and ``kubeinfer scale`` arrive as :meth:`ServiceController.apply` and
:meth:`~ServiceController.scale`; every action becomes an event with its reason.

With ``spec.rollout.canary`` a new revision is rolled out as a canary instead (:mod:`kubeinfer.lifecycle.canary`):
the stable revision keeps its replicas, the canary gets the share of replicas of its step's weight, the router
splits the traffic by weight and counts each revision's responses, and every tick the analysis reads those counters
and sets the next weight, promotes the canary (which then replaces the stable replicas as a rolling update does) or
rolls it back (the canary's replicas leave the router, then stop). Events ``CanaryStep``, ``CanaryPromoted`` and
``CanaryRolledBack`` say why, with the measured values.

Each loop iteration is guarded: one that raises (a policy that divides by zero, a full disk) is logged and
recorded as a Warning event, and the loop goes on with the last decision -- the replicas stay supervised.

Order on the way out: a replica leaves the router first, then gets SIGTERM (the server drains), then SIGKILL after
``drainTimeoutSeconds`` + margin. On the way in: it joins the router only once its readiness probe passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from kubeinfer.autoscale import (
    VPA,
    Decision,
    LoadSample,
    Resources,
    VpaDecision,
    bounded,
    policy_from_spec,
    sync_period,
)
from kubeinfer.autoscale.factory import FixedReplicas
from kubeinfer.autoscale.vpa import vpa_config_from_spec
from kubeinfer.lifecycle import canary as canary_analysis
from kubeinfer.lifecycle.canary import CanaryConfig, CanaryState, Counters
from kubeinfer.lifecycle.rollout import ReplicaView, RolloutProgress, deletion_order, plan
from kubeinfer.local.controller.interfaces import ControllerError, RouterLike
from kubeinfer.local.controller.launcher import ReplicaLauncher
from kubeinfer.local.controller.membership import RouterMembership
from kubeinfer.local.controller.observer import LoadObserver
from kubeinfer.local.controller.records import Replica
from kubeinfer.local.controller.revisions import RevisionStore, template_of
from kubeinfer.local.controller.status import (
    AutoscalingStatus,
    CanaryStatus,
    ReplicaStatus,
    RolloutStatus,
    ServiceStatus,
    VpaStatus,
)
from kubeinfer.local.controller.supervisor import ReplicaSupervisor
from kubeinfer.local.events import EventLog
from kubeinfer.local.files import private_dir
from kubeinfer.local.gpu import GpuAllocator, GpuError, GpuInventory
from kubeinfer.local.metrics import MetricsSource
from kubeinfer.local.process import Clock, ProcessRunner
from kubeinfer.local.resources import CgroupV2, CpuQuota
from kubeinfer.local.settings import LocalSettings
from kubeinfer.server.logs import copytruncate
from kubeinfer.spec import InferenceService, SpecError, validate_spec

__all__ = ["ServiceController"]

log = logging.getLogger("kubeinfer.local")

LOG_ROTATION_SECONDS = 10.0
"""How often the tick loop checks the size of the service's logs."""


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
        self.clock = clock
        self.metrics = metrics
        self.name = svc.name
        self.dir = settings.service_dir(self.name)
        self.events = EventLog()
        self.observer = LoadObserver(router)
        self.launcher = ReplicaLauncher(
            self.dir,
            settings=settings,
            runner=runner,
            gpus=GpuAllocator(gpus),
            cpus=list(cpus if cpus is not None else sorted(os.sched_getaffinity(0))),
            cgroups=cgroups,
            cpu_quota=cpu_quota,
            clock=clock,
            emit=self._event,
            on_oom=self.observer.oom,
        )
        self.membership = RouterMembership(self.name, router, backend_factory, self._event)
        self.supervisor = ReplicaSupervisor(
            self.name,
            self.dir,
            settings=settings,
            clock=clock,
            launcher=self.launcher,
            metrics=metrics,
            membership=self.membership,
            emit=self._event,
        )
        self.launcher.gpus.check(svc.spec.resources.gpu)
        self.revisions = RevisionStore(self.dir)
        self.revisions.add(svc, base_dir)
        self.rollout: RolloutProgress | None = None
        self.router = router
        self.canary: CanaryState | None = None
        """The canary under analysis (None: none is)."""
        self.canary_config: CanaryConfig | None = None
        self._split_until_gone: int | None = None
        """A rolled-back canary's revision: the split (all traffic to the stable revision) stays until its last
        replica ended, so that an error of one of its requests still in flight is retried on the stable revision."""
        self.policy = policy_from_spec(svc.spec.autoscaling, fixed_replicas=svc.spec.replicas)
        self.desired = self._initial_replicas(svc)
        self.decision: Decision | None = None
        self.vpa_decision: VpaDecision | None = None
        self._policy_state = self.policy.initial_state()
        self.vpa = VPA(vpa_config_from_spec(svc.spec.autoscaling.vertical, capacity=self._capacity()))
        self._vpa_state = self.vpa.initial_state()
        self._wake = asyncio.Event()
        """Set to decide at once (a spec change, a request buffered at zero) rather than at the next sync."""
        self._closing = False
        self._last_loop_error: dict[str, str] = {}

    # -- the parts, as they were attributes of the controller --------------------------------------------------

    @property
    def svc(self) -> InferenceService:
        """The target revision's spec."""
        return self.revisions.current.svc

    @property
    def target(self) -> int:
        return self.revisions.target

    @property
    def replicas(self) -> list[Replica]:
        return self.supervisor.replicas

    @property
    def cold_starts(self) -> list[float]:
        return self.membership.cold_starts

    @property
    def cpu_quota(self) -> CpuQuota | None:
        return self.launcher.cpu_quota

    @cpu_quota.setter
    def cpu_quota(self, value: CpuQuota | None) -> None:
        self.launcher.cpu_quota = value

    # -- spec -------------------------------------------------------------------------------------------------

    def _capacity(self) -> Resources:
        """This machine, as the VPA's cap: the CPUs replicas may use and the physical memory."""
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return Resources(float(len(self.launcher.cpus)), float(memory))

    def _initial_replicas(self, svc: InferenceService) -> int:
        a = svc.spec.autoscaling
        # Knative starts a revision at its initial scale; a Deployment starts at spec.replicas (default 1) and the HPA
        # moves it from there; policy none holds its one count (its bounds), whatever this says.
        if a.policy == "kpa":
            n = a.kpa.initialScale
        else:
            n = svc.spec.replicas if svc.spec.replicas is not None else max(a.minReplicas, 1)
        return bounded(n, self.policy)

    def _use_target_policy(self) -> None:
        spec = self.svc.spec
        self.policy = policy_from_spec(spec.autoscaling, fixed_replicas=spec.replicas)

    def apply(self, svc: InferenceService, base_dir: Path) -> str:
        """Take a new spec: a changed template starts a rolling update; other changes apply in place."""
        if svc.name != self.name:
            raise ControllerError(f"metadata.name {svc.name!r} does not match the running service {self.name!r}")
        try:
            self.launcher.gpus.check(svc.spec.resources.gpu)
        except GpuError as e:
            raise ControllerError(str(e)) from None
        now = self.clock.monotonic()
        old_auto = self.svc.spec.autoscaling
        canary = self.canary
        if canary is not None and self._same_as(canary.canary, svc, base_dir):
            self.revisions[canary.canary].svc = svc
            self._event("Normal", "Applied", self.name, "the canary's spec updated in place (its analysis goes on)")
            return "the canary's spec updated in place (its analysis goes on)"
        if canary is not None:
            # Argo Rollouts: a new spec during a canary aborts it; the stable revision takes all the traffic back, and
            # a new template starts a canary of its own over it.
            self._canary_rollback("a new spec was applied during the analysis", None, now)
        if self.revisions.same_template(svc, base_dir):
            self.revisions.update(svc)
            msg = "spec updated in place (no new processes needed)"
        elif svc.spec.rollout.canary is not None and self.rollout is None and self._serving():
            stable = self.target
            rev = self.revisions.add(svc, base_dir)
            self.revisions.target = stable  # the stable revision stays the target until the canary is promoted
            self.canary_config = CanaryConfig.from_spec(
                svc.spec.rollout.canary, svc.spec.rollout.progressDeadlineSeconds
            )
            self.canary = canary_analysis.start(stable, rev.number, now)
            self._split_until_gone = None
            self.router.set_split([(stable, 100), (rev.number, 0)])
            msg = (
                f"canary of revision {rev.number} (model version {rev.version}) over revision {stable}: steps "
                f"{', '.join(f'{w}%' for w in self.canary_config.steps)}, {self.canary_config.gates()}"
            )
        else:
            previous = self.rollout.previous if self.rollout is not None else self.target
            rev = self.revisions.add(svc, base_dir)
            self.rollout = RolloutProgress(rev.number, previous, now, now)
            msg = f"rolling out revision {rev.number} (model version {rev.version}) over revision {previous}"
        self._use_target_policy()
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
        current = self.revisions.current
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

    def _same_as(self, number: int, svc: InferenceService, base_dir: Path) -> bool:
        rev = self.revisions[number]
        return template_of(svc.spec) == template_of(rev.svc.spec) and base_dir == rev.base_dir

    def _serving(self) -> bool:
        """Whether the target revision has a ready replica (a canary needs a stable revision to compare with;
        a service with none is simply updated)."""
        return any(v.ready for v in self.supervisor.views() if v.revision == self.target)

    # -- events ---------------------------------------------------------------------------------------------

    def _event(self, type_: Literal["Normal", "Warning"], reason: str, obj: str, message: str) -> None:
        self.events.record(self.clock.wall(), type_, reason, obj, message)
        log.info("%s %s %s: %s", type_, obj, reason, message)

    # -- running --------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until :meth:`shutdown`; the caller owns the router's sockets."""
        private_dir(self.dir)
        for path in self.launcher.sweep_stale():
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
        self.membership.on_buffered(self.clock.monotonic())
        self._wake.set()

    async def _tick_loop(self) -> None:
        next_rotation = 0.0
        while not self._closing:
            try:
                self.tick()
                now = self.clock.monotonic()
                if now >= next_rotation:
                    next_rotation = now + LOG_ROTATION_SECONDS
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
        self.supervisor.tick(now)
        self._reconcile(now)
        self.supervisor.prune()

    # -- reconcile ------------------------------------------------------------------------------------------

    def _reconcile(self, now: float) -> None:
        """Move the replica set toward ``desired`` replicas of the target revision, within the rollout's surge and
        unavailability bounds; end the rollout when it completed, roll it back when it cannot."""
        if self._closing:
            return
        views = self.supervisor.views()
        if self._split_until_gone is not None and not any(
            r.revision.number == self._split_until_gone for r in self.replicas
        ):
            self._split_until_gone = None
            self.router.set_split(None)
        if self.canary is not None:
            self._reconcile_canary(views, now)
        if self.canary is not None:
            # The canary's replicas are the analysis' to count; the stable ones are reconciled as always.
            views = [v for v in views if v.revision != self.canary.canary]
        if self.rollout is not None:
            new_ready = sum(1 for v in views if v.revision == self.target and v.ready)
            self.rollout = self.rollout.observe(new_ready, now)
            deadline = self.svc.spec.rollout.progressDeadlineSeconds
            if RolloutProgress.complete(views, self.target, self.desired):
                self._event("Normal", "RolloutComplete", self.name, f"revision {self.target} serves all traffic")
                self.rollout = None
            elif self.rollout.previous in self.revisions:
                failed = self.supervisor.load_failure(self.target)
                if failed is not None or self.rollout.deadline_exceeded(deadline, now):
                    self._roll_back(self.rollout, failed, deadline, now)
                    if RolloutProgress.complete(views, self.target, self.desired):
                        self.rollout = None
        r = self.svc.spec.rollout
        p = plan(views, self.target, self.desired, r.maxSurge, r.maxUnavailable)
        for rid in p.remove:
            why = "scaled down" if p.reason == "scale down" else f"replaced by revision {self.target}"
            self.supervisor.stop(rid, why, now)
        for _ in range(p.create):
            self.supervisor.create(self.revisions.current, now)

    # -- canary ---------------------------------------------------------------------------------------------

    def _reconcile_canary(self, views: list[ReplicaView], now: float) -> None:
        """One step of the canary: run the analysis on the router's counters of the canary revision, act on its
        decision, and keep the canary's replica count at its step's share."""
        c, cfg = self.canary, self.canary_config
        if c is None or cfg is None:
            return
        failed = self.supervisor.load_failure(c.canary)
        if failed is not None:
            self._canary_rollback(f"revision {c.canary} could not load its model: {failed}", None, now)
            return
        want = canary_analysis.canary_replicas(self.desired, cfg.steps[c.step])
        mine = [v for v in views if v.revision == c.canary]
        ready = sum(1 for v in mine if v.ready) >= want
        counters = self.router.stats().revisions.get(c.canary, Counters())
        decision, self.canary = canary_analysis.decide(cfg, c, counters, ready, now)
        if isinstance(decision, canary_analysis.SetWeight):
            self.router.set_split([(c.stable, 100 - decision.weight), (c.canary, decision.weight)])
            self._event("Normal", "CanaryStep", self.name, decision.message)
        elif isinstance(decision, canary_analysis.Promote):
            self._canary_promote(decision, mine, now)
            return
        elif isinstance(decision, canary_analysis.Rollback):
            self._canary_rollback(decision.message, decision.measured, now)
            return
        if len(mine) < want:
            for _ in range(want - len(mine)):
                self.supervisor.create(self.revisions[c.canary], now)
        elif len(mine) > want:
            for v in deletion_order(mine)[: len(mine) - want]:
                self.supervisor.stop(v.id, f"canary of revision {c.canary} scaled to {want}", now)

    def _canary_promote(self, decision: canary_analysis.Promote, mine: list[ReplicaView], now: float) -> None:
        """The canary becomes the target; the rolling update replaces the stable replicas with its own (the split
        ends: traffic goes to every ready replica alike, so the canary's few replicas are not flooded)."""
        c = self.canary
        assert c is not None
        self.canary = None
        self.revisions.target = c.canary
        self._use_target_policy()
        self.router.set_split(None)
        self.rollout = RolloutProgress(c.canary, c.stable, now, now, sum(1 for v in mine if v.ready))
        self._event("Normal", "CanaryPromoted", self.name, decision.message)

    def _canary_rollback(self, why: str, measured: canary_analysis.Measured | None, now: float) -> None:
        """All traffic back to the stable revision, then the canary's replicas leave the router and stop."""
        c = self.canary
        if c is None:
            return
        self.canary = None
        self.router.set_split([(c.stable, 100), (c.canary, 0)])
        self._split_until_gone = c.canary
        for r in self.supervisor.live():
            if r.revision.number == c.canary:
                self.supervisor.stop(r.id, f"canary of revision {c.canary} rolled back", now)
        self._event("Warning", "CanaryRolledBack", self.name, f"{why}: all traffic back to revision {c.stable}")

    def _roll_back(self, rollout: RolloutProgress, failed: str | None, deadline: float, now: float) -> None:
        """Make the rollout's previous revision the target again (``failed``: why its model did not load)."""
        bad, prev = self.target, rollout.previous
        if failed is not None:
            # A model that failed to load will not load on the next try either: no need to wait out the deadline.
            self._event(
                "Warning", "ModelLoadFailed", self.name, f"revision {bad}: {failed}: rolling back to revision {prev}"
            )
        else:
            self._event(
                "Warning",
                "ProgressDeadlineExceeded",
                self.name,
                f"revision {bad} made no progress within {deadline:g} s: rolling back to revision {prev}",
            )
        self.revisions.target = prev
        self._use_target_policy()
        self.rollout = RolloutProgress(prev, bad, now, now, 0)

    # -- autoscaling ----------------------------------------------------------------------------------------

    def _sample_load(self, now: float) -> LoadSample:
        return self.observer.sample(self.replicas, now)

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
        live = self.supervisor.live()
        scraped = await asyncio.gather(
            *(self.metrics.scrape(r.address, r.proc.pid if r.proc else None, 1.0) for r in live)
        )
        for rep, m in zip(live, scraped, strict=True):
            overrun = self.observer.memory_overrun(rep, m)
            self.observer.record_usage(rep, m, now)
            if overrun is not None:
                self.supervisor.kill_for_memory(rep, overrun)
        spec = self.svc.spec
        obs = self.observer.observation(live, loads, now, spec, self.desired)
        decision, self._policy_state = self.policy.decide(obs, self._policy_state, now)
        wanted = decision.replicas
        if wanted == 0 and obs.external.get("concurrency", 0) > 0 and self.membership.empty:
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
        vpa_obs = self.observer.vpa_observation(live, now, spec)
        self.vpa_decision, self._vpa_state = self.vpa.decide(vpa_obs, self._vpa_state, now)
        return decision

    # -- shutdown -------------------------------------------------------------------------------------------

    async def shutdown(self, timeout: float | None = None) -> None:
        """Take every replica out of the router, drain and stop them (SIGKILL after the grace period)."""
        self._closing = True
        self._event("Normal", "Stopping", self.name, "shutting down: draining all replicas")
        await self.supervisor.stop_all("service shut down", timeout)

    # -- status ---------------------------------------------------------------------------------------------

    def snapshot(self) -> ServiceStatus:
        """The service's status now, typed (the platform adds its endpoint, spec and router counters)."""
        now = self.clock.monotonic()
        spec = self.svc.spec
        ready = sum(1 for r in self.replicas if r.machine.ready and not r.machine.stopping)
        rollout = self.rollout
        return ServiceStatus(
            name=self.name,
            revision=self.target,
            version=spec.model.version,
            desired=self.desired,
            ready_replicas=ready,
            ready=ready >= self.desired and rollout is None and self.canary is None,
            replicas=tuple(ReplicaStatus.of(r, now) for r in self.replicas),
            autoscaling=AutoscalingStatus.of(
                spec.autoscaling.policy, self.policy.min_replicas, self.policy.max_replicas, self.decision
            ),
            rollout=None
            if rollout is None
            else RolloutStatus(rollout.revision, rollout.previous, round(now - rollout.started_at, 1)),
            canary=None
            if self.canary is None or self.canary_config is None
            else CanaryStatus.of(self.canary, self.canary_config),
            cold_starts=tuple(round(c, 3) for c in self.membership.cold_starts),
            vpa=None
            if self.vpa_decision is None
            else VpaStatus.of(self.vpa_decision, spec.autoscaling.vertical.updateMode),
            events=tuple(self.events.list()[-100:]),
        )

    def status(self) -> dict[str, Any]:
        """:meth:`snapshot` as the JSON document ``GET /v1/status`` answers."""
        return self.snapshot().to_json()
