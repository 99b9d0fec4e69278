"""Observing replicas: probe GETs and ``/metrics`` scrapes over HTTP, behind :class:`MetricsSource`.

A replica is reached at its address: a TCP port on 127.0.0.1 (an ``int``), or the Unix socket it serves HTTP on (a
``str``, the path) when it has no port -- how ``kubeinfer up`` runs replicas unless ``KUBEINFER_REPLICA_TCP=1``.

A deliberately tiny HTTP/1.1 client (one GET per connection, ``Connection: close``): probes and scrapes are a few
per second, and a client library's pools and retries would only hide a hung replica from its liveness probe.
Process CPU time and resident memory are read from ``/proc`` through psutil, so they are known even for a replica
that no longer answers.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Protocol, TypeAlias

import orjson
import psutil

__all__ = ["Address", "HttpMetricsSource", "MetricsSource", "ReplicaMetrics", "http_get", "parse_prometheus"]


@dataclass(frozen=True, slots=True)
class ReplicaMetrics:
    in_flight: float | None = None
    queue_depth: float | None = None
    cpu_seconds: float | None = None
    rss: float | None = None
    # Seconds the model has been busy (sum of kubeinfer_compute_duration_seconds): its rate is the replica's
    # work in busy slot-seconds per second, which the predictive policy can size on.
    busy_seconds: float | None = None
    # A generative model's engine (kubeinfer_generation_*, summed over the replica's models as the Prometheus
    # adapter's rules sum a pod's series): sequences queued for the running batch, and generated tokens per second
    # over the last 10 s. None: the replica exports no such family (not format llm, or its model not loaded yet).
    sequences_waiting: float | None = None
    tokens_per_second: float | None = None
    # Requests that missed the SLO (kubeinfer_requests_late_total, exported while KUBEINFER_SLO_SECONDS is set): its
    # rate is the predictive policy's feedback. None: not exported.
    late_total: float | None = None


Address: TypeAlias = int | str
"""A replica's TCP port on 127.0.0.1, or the path of its Unix socket."""


class MetricsSource(Protocol):
    async def probe(self, address: Address, path: str, timeout: float) -> tuple[bool, str]:
        """(ok, detail) of an HTTP GET: ok is a 2xx/3xx answer within ``timeout``."""
        ...

    async def scrape(self, address: Address | None, pid: int | None, timeout: float) -> ReplicaMetrics: ...


async def http_get(address: Address, path: str, timeout: float, host: str = "127.0.0.1") -> tuple[int, bytes]:
    """GET ``path`` from ``host:address`` (a port) or from the Unix socket at ``address`` (a path)."""

    async def go() -> tuple[int, bytes]:
        if isinstance(address, str):
            reader, writer = await asyncio.open_unix_connection(address)
        else:
            reader, writer = await asyncio.open_connection(host, address)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = await reader.read(-1)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        return status, body

    return await asyncio.wait_for(go(), timeout)


def parse_prometheus(text: str) -> dict[str, float]:
    """Sum each metric's samples over their labels (``name -> value``); comments and bad lines are skipped."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_part, _, value = line.rpartition(" ")
        name = name_part.split("{", 1)[0].strip()
        try:
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return out


class HttpMetricsSource:
    async def probe(self, address: Address, path: str, timeout: float) -> tuple[bool, str]:
        try:
            status, body = await http_get(address, path, timeout)
        except TimeoutError:
            return False, f"GET {path}: no answer within {timeout:g} s"
        except (OSError, ValueError, IndexError) as e:
            return False, f"GET {path}: {e.__class__.__name__}: {e}"
        ok = 200 <= status < 400
        detail = f"GET {path}: HTTP {status}"
        if not ok:
            try:
                reason = orjson.loads(body).get("reason") if body else None
            except (orjson.JSONDecodeError, AttributeError):
                reason = None
            if isinstance(reason, str) and reason:
                detail += f" ({reason[:300]})"
        return ok, detail

    async def scrape(self, address: Address | None, pid: int | None, timeout: float) -> ReplicaMetrics:
        in_flight = queue = busy = waiting = tokens = late = None
        if address is not None:
            try:
                status, body = await http_get(address, "/metrics", timeout)
                if status == 200:
                    m = parse_prometheus(body.decode(errors="replace"))
                    in_flight = m.get("kubeinfer_requests_in_flight")
                    queue = m.get("kubeinfer_queue_depth")
                    busy = m.get("kubeinfer_compute_duration_seconds_sum")
                    waiting = m.get("kubeinfer_generation_sequences_waiting")
                    tokens = m.get("kubeinfer_generation_tokens_per_second")
                    late = m.get("kubeinfer_requests_late_total")
            except (OSError, TimeoutError, ValueError, IndexError):
                pass
        cpu = rss = None
        if pid is not None:
            try:
                p = psutil.Process(pid)
                cpu = rss = 0.0
                # A replica of several server processes (server.processes) counts them all.
                for q in (p, *p.children(recursive=True)):
                    with contextlib.suppress(psutil.NoSuchProcess):
                        t = q.cpu_times()
                        cpu += float(t.user + t.system)
                        rss += float(q.memory_info().rss)
            except (psutil.Error, OSError):
                pass
        return ReplicaMetrics(in_flight, queue, cpu, rss, busy, waiting, tokens, late)
