"""The replicas' metrics on the router's ``/metrics``: one scrape of a local service shows it all.

Prometheus would scrape each replica and add ``instance`` labels; on one machine there is no Prometheus in front of
``kubeinfer up``, and replicas usually listen on Unix sockets nobody else can scrape. So the router scrapes every
ready replica's ``/metrics`` itself, every :data:`SCRAPE_SECONDS` (and at once when the ready set changes), and its
own ``/metrics`` appends each replica's ``kubeinfer_*`` families from the latest scrape, each sample labelled with
``replica`` (the backend id) and ``revision`` (the service revision the replica runs) -- what Prometheus federation
gives, without a Prometheus. Families of one name from several replicas are merged into one family (the exposition
format allows a family once). A replica that does not answer within :data:`SCRAPE_TIMEOUT` is left out until it does;
one that left the ready set is left out at once.

The scrapes run in one named task on the router's loop; ``collect`` runs on the same loop (the HTTP front calls the
router's own routes there), so the latest scrapes are read without a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from kubeinfer.local.metrics import http_get
from kubeinfer.local.router.api import Backend, log_unexpected_end

__all__ = ["SCRAPE_SECONDS", "SCRAPE_TIMEOUT", "ReplicaMetrics"]

log = logging.getLogger("kubeinfer.local.router")

SCRAPE_SECONDS = 5.0
"""Seconds between scrapes of the replicas (the figures on the router's ``/metrics`` are at most this old)."""
SCRAPE_TIMEOUT = 2.0
"""Seconds a replica has to answer a scrape."""
POLL_SECONDS = 0.25
"""How often the task looks for a change of the ready set (a new replica is scraped within this)."""


class ReplicaMetrics(Collector):
    """Scrapes the backends that ``backends`` returns; a ``prometheus_client`` collector of their families."""

    def __init__(self, backends: Callable[[], Sequence[Backend]]) -> None:
        self.backends = backends
        self.latest: dict[Backend, list[Metric]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._task = loop.create_task(self._run(), name="kubeinfer-router-replica-metrics")
        self._task.add_done_callback(log_unexpected_end)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        scraped: tuple[Backend, ...] | None = None
        due = loop.time()
        while True:
            current = tuple(self.backends())
            if current != scraped or loop.time() >= due:
                await self.scrape(current)
                scraped, due = current, loop.time() + SCRAPE_SECONDS
            await asyncio.sleep(POLL_SECONDS)

    async def scrape(self, backends: Sequence[Backend]) -> None:
        """Scrape ``backends`` at once; keep the families of those that answered."""
        results = await asyncio.gather(*(self._scrape_one(b) for b in backends))
        self.latest = {b: fams for b, fams in zip(backends, results, strict=True) if fams is not None}

    async def _scrape_one(self, b: Backend) -> list[Metric] | None:
        address: int | str | None = b.uds if b.uds is not None else b.port
        if address is None:
            return None
        try:
            status, body = await http_get(address, "/metrics", SCRAPE_TIMEOUT, host=b.host)
            if status != 200:
                return None
            return [
                f
                for f in text_string_to_metric_families(body.decode(errors="replace"))
                if f.name.startswith("kubeinfer_") and not f.name.startswith("kubeinfer_router_")
            ]
        except (OSError, TimeoutError, ValueError, IndexError) as e:
            log.debug("scrape of replica %s failed: %s", b.id, e)
            return None

    def collect(self) -> Iterator[Any]:
        ready = set(self.backends())
        merged: dict[str, Metric] = {}
        for b, families in self.latest.items():
            if b not in ready:
                continue
            extra = {"replica": b.id, "revision": str(b.revision)}
            for f in families:
                out = merged.get(f.name)
                if out is None:
                    out = merged[f.name] = Metric(f.name, f.documentation, f.type, f.unit)
                for s in f.samples:
                    out.add_sample(s.name, {**s.labels, **extra}, s.value, s.timestamp)
        yield from merged.values()
