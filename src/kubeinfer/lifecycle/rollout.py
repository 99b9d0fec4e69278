"""Rolling updates and replica-count reconciliation, as a Deployment controller does them, over plain values.

Reference: kubernetes ``pkg/controller/deployment/rolling.go`` (``reconcileNewReplicaSet``,
``reconcileOldReplicaSets``, ``cleanupUnhealthyReplicas``), ``util/deployment_util.go`` (``ResolveFenceposts``:
maxSurge rounds up, maxUnavailable rounds down, both zero becomes maxUnavailable 1) and
``pkg/controller/controller_utils.go`` (``ActivePods`` ordering: which replica goes first on scale-down).

One step looks at the replicas that exist and says which to create and which to remove:

- new-revision replicas are created while the total stays within ``desired + maxSurge``;
- old replicas are removed while the ready replicas stay at least ``desired - maxUnavailable`` (unready old ones
  first: they serve nothing), so a new replica must pass readiness before an old one drains;
- a revision that makes no progress (no new replica became ready) for ``progressDeadlineSeconds`` is rolled back:
  the caller makes the previous revision the target again, and the same step removes the broken replicas.

Pure: the caller passes ``now``; nothing here starts or stops processes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Plan", "ReplicaView", "RolloutProgress", "deletion_order", "plan", "resolve_fenceposts"]


@dataclass(frozen=True, slots=True)
class ReplicaView:
    id: str
    revision: int
    ready: bool
    running: bool = True
    """The process is up (not waiting in back-off)."""
    restarts: int = 0
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Plan:
    create: int
    """New replicas of the target revision to start."""
    remove: tuple[str, ...]
    """Replicas to take out of the router, drain and stop, in this order."""
    reason: str = ""


def _resolve(value: int | str, total: int, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    pct = int(value.rstrip("%"))
    raw = pct * total / 100
    return math.ceil(raw) if round_up else math.floor(raw)


def resolve_fenceposts(max_surge: int | str, max_unavailable: int | str, desired: int) -> tuple[int, int]:
    """``(surge, unavailable)`` as ``ResolveFenceposts``: percentages of ``desired``; never both zero."""
    surge = _resolve(max_surge, desired, round_up=True)
    unavailable = _resolve(max_unavailable, desired, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def deletion_order(replicas: Sequence[ReplicaView]) -> list[ReplicaView]:
    """Which replicas go first on scale-down (``ActivePods``): not running, then unready, more restarts, newest."""
    return sorted(replicas, key=lambda r: (r.running, r.ready, -r.restarts, -r.created_at))


def plan(
    replicas: Sequence[ReplicaView], target: int, desired: int, max_surge: int | str, max_unavailable: int | str
) -> Plan:
    """One reconcile step toward ``desired`` replicas, all of revision ``target``."""
    new = [r for r in replicas if r.revision == target]
    old = [r for r in replicas if r.revision != target]
    if not old:
        if len(new) < desired:
            return Plan(desired - len(new), (), "scale up")
        if len(new) > desired:
            gone = deletion_order(new)[: len(new) - desired]
            return Plan(0, tuple(r.id for r in gone), "scale down")
        return Plan(0, ())
    surge, unavailable = resolve_fenceposts(max_surge, max_unavailable, desired)
    remove: list[str] = []
    # A lowered count during a rollout trims new replicas first (they may not even be ready yet).
    if len(new) > desired:
        gone = deletion_order(new)[: len(new) - desired]
        remove += [r.id for r in gone]
        new = [r for r in new if r.id not in remove]
    total = len(new) + len(old)
    create = max(0, min(desired + surge - total, desired - len(new)))
    min_available = desired - unavailable
    new_ready = sum(1 for r in new if r.ready)
    new_unavailable = len(new) - new_ready
    max_scaled_down = total - min_available - new_unavailable
    if max_scaled_down > 0:
        ordered = deletion_order(old)
        # cleanupUnhealthyReplicas: old replicas that serve nothing go first, within the same budget.
        unhealthy = [r for r in ordered if not r.ready][:max_scaled_down]
        remove += [r.id for r in unhealthy]
        healthy = [r for r in ordered if r.ready]
        available = sum(1 for r in healthy) + new_ready
        can_remove = min(len(healthy), max(0, available - min_available))
        remove += [r.id for r in healthy[:can_remove]]
    return Plan(create, tuple(remove), "rolling update")


@dataclass(frozen=True, slots=True)
class RolloutProgress:
    """A rollout toward ``revision``: the deadline counts from its start or its last progress."""

    revision: int
    previous: int
    started_at: float
    last_progress_at: float
    new_ready: int = 0

    def observe(self, new_ready: int, now: float) -> RolloutProgress:
        if new_ready > self.new_ready:
            return RolloutProgress(self.revision, self.previous, self.started_at, now, new_ready)
        return self

    def deadline_exceeded(self, deadline: float, now: float) -> bool:
        return now - self.last_progress_at > deadline

    @staticmethod
    def complete(replicas: Sequence[ReplicaView], target: int, desired: int) -> bool:
        new = [r for r in replicas if r.revision == target]
        return len(new) == desired and len(new) == len(replicas) and all(r.ready for r in new)
