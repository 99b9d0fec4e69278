"""Leader election over a ``coordination.k8s.io/v1`` Lease, with client-go's semantics, for the operator.

Several operator replicas may run (a Deployment with 2, so a node failure does not stop reconciling); one leads. The
rules are client-go's ``leaderelection`` package, on the same object kube-controller-manager uses:

- a candidate may take the Lease when nobody holds it, when it holds it already, or when the holder has not renewed
  it for ``leaseDurationSeconds`` (:func:`may_acquire`, pure: ``now`` is a parameter);
- every write is an update at the ``resourceVersion`` that was read, so two candidates racing for an expired Lease
  cannot both win: the API server refuses the second (409) and it tries again later;
- the leader renews every ``retry_period``; if it cannot renew within ``renew_deadline`` it must stop acting at once
  (here: the process exits 1 and is restarted as a candidate), so that two leaders never reconcile at the same time
  for longer than the gap between ``renew_deadline`` and ``lease_duration``;
- on a clean stop the leader releases the Lease (holder cleared), so its successor takes over at once instead of
  after the lease duration.

Defaults are kube-controller-manager's: lease 15 s, renew deadline 10 s, retry 2 s.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Elector", "LeaseRecord", "check_timings", "default_identity", "may_acquire"]

log = logging.getLogger("kubeinfer.operator")


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """What a Lease says about its holder (``renew`` as seconds since the epoch; None when never renewed)."""

    holder: str | None
    renew: float | None
    duration: float
    transitions: int = 0


def may_acquire(lease: LeaseRecord | None, identity: str, now: float) -> bool:
    """Whether ``identity`` may write itself into the Lease at ``now``."""
    if lease is None or not lease.holder or lease.holder == identity:
        return True
    return lease.renew is None or now > lease.renew + lease.duration


def check_timings(lease_duration: float, renew_deadline: float, retry_period: float) -> None:
    """client-go's rule: a leader retries within its renew deadline, and gives up before its lease runs out."""
    if not 0 < retry_period < renew_deadline < lease_duration:
        raise ValueError(
            f"need retry_period < renew_deadline < lease_duration (client-go's rule), got {retry_period:g} s, "
            f"{renew_deadline:g} s, {lease_duration:g} s"
        )


def default_identity() -> str:
    """The pod name (the Deployment's pods have unique host names) and the process id."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{os.getpid()}"


def _micro(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


class Elector:
    """The I/O shell: reads and writes the Lease with the official client's CoordinationV1Api."""

    def __init__(
        self,
        coordination: Any,
        namespace: str,
        name: str = "kubeinfer-operator",
        identity: str | None = None,
        *,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_timings(lease_duration, renew_deadline, retry_period)
        self.api = coordination
        self.namespace = namespace
        self.name = name
        self.identity = identity or default_identity()
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.clock = clock
        self._stop = threading.Event()

    def _read(self) -> tuple[LeaseRecord | None, Any]:
        from kubernetes import client

        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
        except client.ApiException as e:
            if e.status == 404:
                return None, None
            raise
        spec = lease.spec
        record = LeaseRecord(
            spec.holder_identity,
            _seconds(spec.renew_time),
            float(spec.lease_duration_seconds or self.lease_duration),
            int(spec.lease_transitions or 0),
        )
        return record, lease

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True when this candidate holds the Lease afterwards."""
        from kubernetes import client

        now = self.clock()
        record, lease = self._read()
        if not may_acquire(record, self.identity, now):
            return False
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_duration),
            "renewTime": _micro(now),
        }
        if record is None or record.holder != self.identity:
            spec["acquireTime"] = _micro(now)
            spec["leaseTransitions"] = (record.transitions + 1) if record is not None and record.holder else 0
        try:
            if lease is None:
                self.api.create_namespaced_lease(
                    self.namespace, {"metadata": {"name": self.name, "namespace": self.namespace}, "spec": spec}
                )
            else:
                body = {
                    "metadata": {"name": self.name, "resourceVersion": lease.metadata.resource_version},
                    "spec": spec,
                }
                self.api.replace_namespaced_lease(self.name, self.namespace, body)
        except client.ApiException as e:
            if e.status in (409, 422):  # another candidate wrote first: try again later
                return False
            raise
        return True

    def acquire(self) -> None:
        """Block until this candidate leads."""
        log.info("leader election: %s waits for Lease %s/%s", self.identity, self.namespace, self.name)
        while not self._stop.is_set():
            try:
                if self.try_acquire_or_renew():
                    log.info("leader election: %s leads", self.identity)
                    return
            except Exception as e:  # the API server unreachable: keep trying, as client-go does
                log.warning("leader election: %s", e)
            self._stop.wait(self.retry_period)

    def keep(self, on_lost: Callable[[], None]) -> threading.Thread:
        """Renew in a background thread; ``on_lost`` runs when a renewal could not succeed within the deadline."""

        def loop() -> None:
            last = self.clock()
            while not self._stop.wait(self.retry_period):
                try:
                    if self.try_acquire_or_renew():
                        last = self.clock()
                        continue
                except Exception as e:
                    log.warning("leader election: renewal failed: %s", e)
                if self.clock() - last > self.renew_deadline:
                    log.error("leader election: %s lost the Lease (not renewed for %.0f s)", self.identity,
                              self.clock() - last)  # fmt: skip
                    on_lost()
                    return

        thread = threading.Thread(target=loop, name="kubeinfer-lease", daemon=True)
        thread.start()
        return thread

    def release(self) -> None:
        """Stop renewing and clear the holder, so a successor need not wait out the lease."""
        self._stop.set()
        try:
            record, lease = self._read()
            if record is not None and record.holder == self.identity:
                body = {
                    "metadata": {"name": self.name, "resourceVersion": lease.metadata.resource_version},
                    "spec": {"holderIdentity": None, "leaseDurationSeconds": 1, "leaseTransitions": record.transitions},
                }
                self.api.replace_namespaced_lease(self.name, self.namespace, body)
        except Exception as e:
            log.warning("leader election: could not release the Lease: %s", e)
