"""When a controller asks its horizontal policy for a decision, and the bounds of every count it sets itself.

The local controller (``kubeinfer up``), the Kubernetes operator (``kubeinfer operator``) and the simulator
(``kubeinfer simulate``) all call these two functions, so a policy decides at the same instants, and a controller
bounds its own counts the same way, wherever the service runs. They used to keep three copies that disagreed:

- **kpa cadence.** The local controller ran kpa every ``min(syncPeriodSeconds, 2)`` s, the operator and the simulator
  every 2 s. Knative's decider ticks on a fixed 2 s ticker that no setting changes, and ``syncPeriodSeconds`` is the
  HPA's period: kpa now runs every 2 s everywhere (:data:`KPA_TICK_SECONDS`).
- **First decision.** The local controller and the simulator decided one period after they started; the operator at
  its first timer call. Knative's ticker fires first one tick after the decider is created, and the HPA controller
  enqueues a new HPA with its resync delay (``horizontal.go``: "requests are always added to queue with resyncPeriod
  delay"): every caller now decides first one period after it starts serving the service, then a period after each
  decision.

Where the copies agreed nothing changed: predictive on its own period, hpa (and ``none``) on ``syncPeriodSeconds``,
and the policy's decision carried out as it is -- each policy already applies its bounds the way its original does
(the HPA's ``TooManyReplicas``/``TooFewReplicas`` and its stand-aside at zero replicas, Knative's scaler clamp), so a
caller must not clamp a decision again: :func:`bounded` is for the counts a controller sets itself (its starting
count, the count after a spec change, a manual scale). The shells poll on a 1 s loop (the local controller's sampling
loop, the operator's kopf timer), so there a period that is not a whole number of seconds is rounded up to the next
whole second; the simulator's virtual clock keeps it exact.
"""

from __future__ import annotations

from typing import Any

from kubeinfer.autoscale.base import Policy
from kubeinfer.spec.service import AutoscalingSpec

__all__ = ["KPA_TICK_SECONDS", "bounded", "sync_period"]

KPA_TICK_SECONDS = 2.0
"""Knative's decider period (``tickInterval`` in ``pkg/autoscaler/scaling/multiscaler.go``, a constant)."""


def sync_period(spec: AutoscalingSpec) -> float:
    """Seconds between two decisions of ``spec.policy``; the first comes one period after the controller starts.

    - ``kpa``: 2 s, whatever ``syncPeriodSeconds`` says. Knative's decider ticks every 2 s so that its 6 s panic window
      sees a burst within seconds; the period is a constant of the autoscaler, not a setting of the revision.
    - ``predictive``: ``predictive.syncPeriodSeconds`` (5 s by default). Its own loop, not the HPA's: a surge no
      forecast saw must be met within seconds, and its lead time (start-up plus this period) is sized on it.
    - ``hpa`` and ``none``: ``syncPeriodSeconds`` (15 s by default, the kube-controller-manager's
      ``--horizontal-pod-autoscaler-sync-period``). On a cluster the HPA itself runs at that flag's value, which is
      cluster-wide; KEDA polls at the ``pollingInterval`` rendered from ``syncPeriodSeconds``.
    """
    if spec.policy == "kpa":
        return KPA_TICK_SECONDS
    if spec.policy == "predictive":
        return spec.predictive.syncPeriodSeconds
    return spec.syncPeriodSeconds


def bounded(replicas: int, policy: Policy[Any]) -> int:
    """``replicas`` brought within the policy's ``[min_replicas, max_replicas]``.

    For the counts a controller sets without asking the policy: where it starts, where a spec change leaves it, and
    whether a manual scale is allowed (``bounded(n, policy) == n``). ``policy: none`` holds one count, its own min and
    max, so every count becomes that count. Not for decisions: a policy's decision is carried out as it is.
    """
    return min(max(replicas, policy.min_replicas), policy.max_replicas)
