"""The controller of one service on this machine (``kubeinfer up``): replicas, probes, router membership,
autoscaling, rollouts.

The asyncio shell around the pure parts (:mod:`kubeinfer.lifecycle`, :mod:`kubeinfer.autoscale`). Its modules,
each with one job, each importing only those below it (the import-linter contract "Local controller package" in
``pyproject.toml`` checks it):

- ``service``    -- :class:`ServiceController`: owns the parts below; ``apply``/``scale``/``scale_bounds``; the tick
  loop (step the replicas, reconcile toward the desired count of the target revision, roll back a rollout that
  cannot finish) and the autoscale loop (sample, scrape, decide, VPA), each iteration guarded so that a failure is
  a Warning event and the loop goes on; shutdown; the typed status snapshot.
- ``supervisor`` -- :class:`~.supervisor.ReplicaSupervisor`: the replica set; feeds each replica's state machine
  its events and executes the actions (spawn, signal, probe, event); keeps the router membership current.
- ``launcher``   -- :class:`~.launcher.ReplicaLauncher`: one replica's process -- GPU share, memory and CPU cgroups,
  launch plan, Unix socket or TCP, environment, argv -- and the classified reason it exited.
- ``membership`` -- :class:`~.membership.RouterMembership`: which replicas the router sends to; cold starts.
- ``observer``   -- :class:`~.observer.LoadObserver`: load samples from the router, usage rates from scrapes, the
  ``Observation`` and ``VpaObservation`` the policies decide on.
- ``status``     -- :class:`~.status.ServiceStatus` and its parts: frozen, written to the JSON of ``GET /v1/status``.
  ``launcher``, ``membership``, ``observer`` and ``status`` do not import each other.
- ``records``    -- :class:`~.records.Replica`: what the controller knows of one replica besides its state machine.
- ``revisions``  -- :class:`~.revisions.RevisionStore`: numbered revisions (pod templates), their spec files, the
  target.
- ``interfaces`` -- :class:`ControllerError`, :class:`RouterLike`, ``EmitEvent``.

Replicas listen on Unix sockets in the service's private ``run`` folder only (HTTP, and gRPC on its own socket): the
router, the probes and the scrapes all go through them, and no other local user can reach a replica around the
router. ``KUBEINFER_REPLICA_TCP=1`` (:class:`~kubeinfer.local.settings.LocalSettings`) gives them 127.0.0.1 TCP ports
as well, and so does a socket path too long for ``sun_path``.

I/O goes through small protocols (:class:`~kubeinfer.local.process.ProcessRunner`,
:class:`~kubeinfer.local.metrics.MetricsSource`, :class:`~kubeinfer.local.gpu.GpuInventory`,
:class:`~kubeinfer.local.process.Clock`, and a router with ``set_backends``/``stats``), so tests run it against
fakes (:mod:`kubeinfer.testing.local`).

Import the public names from here: ``from kubeinfer.local.controller import ServiceController, ControllerError``.
"""

# The autoscale loop's cadence and bounds are kubeinfer.autoscale's own functions, re-exported so that the package
# can be checked to hold no copy of them (tests/unit/autoscale/test_cadence.py).
from kubeinfer.autoscale import bounded as bounded
from kubeinfer.autoscale import sync_period as sync_period
from kubeinfer.local.controller.interfaces import ControllerError, RouterLike
from kubeinfer.local.controller.revisions import template_of
from kubeinfer.local.controller.service import ServiceController
from kubeinfer.local.controller.status import ServiceStatus

__all__ = ["ControllerError", "RouterLike", "ServiceController", "ServiceStatus", "template_of"]
