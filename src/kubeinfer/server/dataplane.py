"""The replica's data plane, without a protocol: what REST (``app.py``, ``http.py``) and gRPC (``grpc_service.py``)
adapt to their wires.

It holds the served models by name and version (several versions of one name at once: ``versions``; ``models`` maps
each name to its default version, the highest, which a request without a version gets), the names of the repository
that are not loaded (``unavailable``: unloaded, or a load that failed), the server's liveness, readiness and startup state, the documents that
every protocol answers in its own encoding (server and model metadata, the repository index, statistics), and the one
way to run an inference: look the model up, refuse it when it is not ready or the server is at its concurrency limit,
validate the tensors, queue them to the model's batcher with a deadline. In-flight accounting and the request metric
are kept here too (:meth:`DataPlane.begin` / :meth:`DataPlane.end`), so that the drain on SIGTERM and the
``kubeinfer_requests_in_flight`` gauge count every protocol alike.

Errors are :mod:`~kubeinfer.server.errors` exceptions; each adapter maps them to its wire (an HTTP status and JSON
body, a gRPC status code) in one table there. Readiness changes are announced to watchers (:meth:`DataPlane.watch`),
which the gRPC health service follows.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from kubeinfer import __version__
from kubeinfer.runtimes.base import Model, ModelInfo
from kubeinfer.server.batcher import Batcher
from kubeinfer.server.errors import InvalidInput, ModelNotFound, TooManyRequests, Unavailable
from kubeinfer.server.logs import ACCESS_LOGGER, access_rate_from_env
from kubeinfer.server.metrics import Metrics
from kubeinfer.server.tensors import InferRequest, validate_inputs
from kubeinfer.spec.service import version_key

if TYPE_CHECKING:
    from kubeinfer.server.payload_log import PayloadLog

__all__ = ["EXTENSIONS", "DataPlane", "Limits", "ModelSlot", "RepositoryControl", "load_slot"]

log = logging.getLogger("kubeinfer.server")
_access = logging.getLogger(ACCESS_LOGGER)

EXTENSIONS = [
    "binary_tensor_data",
    "model_repository",
    "model_repository(unload_dependents)",
    "model_repository_health",
    "kserve_v1",
    "openai_embeddings",
    "statistics",
]

Result = dict[str, np.ndarray[Any, Any]]


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int = 64 * 2**20
    max_concurrency: int = 4096
    request_timeout: float | None = 30.0
    # What one connection may hold (server/http.py; the spec's server.limits, the router's ConnLimits alike).
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_connections: int = 10_000
    max_header_bytes: int = 65_536
    max_headers: int = 100


@dataclass(slots=True)
class ModelSlot:
    """One served model: its runtime, metadata and batcher; ``ready`` once loaded and warmed."""

    model: Model
    name: str
    version: str
    info: ModelInfo | None = None
    batcher: Batcher | None = None
    ready: bool = False
    error: str | None = None
    stats: dict[str, int] = field(default_factory=dict)
    # When the model was added, in Unix seconds: the ``created`` field of OpenAI's model list.
    created: int = field(default_factory=lambda: int(time.time()))

    def metadata(self, versions: list[str] | None = None) -> dict[str, Any]:
        """The model metadata document; ``versions``: every version of the name served (default: this one)."""
        info = self.info
        return {
            "name": self.name,
            "versions": versions or [self.version],
            "platform": info.platform if info else "",
            "inputs": [s.to_json() for s in info.inputs] if info else [],
            "outputs": [s.to_json() for s in info.outputs] if info else [],
        }


class RepositoryControl(Protocol):
    """Loads and unloads the repository's models by name (``repository.py``); what the REST and gRPC repository
    extension call."""

    async def load(self, name: str, parameters: Mapping[str, Any]) -> None: ...

    async def unload(self, name: str, parameters: Mapping[str, Any]) -> None: ...


class DataPlane:
    """The served models and the server's state, for every protocol (module docstring)."""

    def __init__(self, limits: Limits | None = None, metrics: Metrics | None = None) -> None:
        self.limits = limits or Limits()
        self.metrics = metrics or Metrics()
        self.models: dict[str, ModelSlot] = {}  # name -> default (highest) version
        self.versions: dict[str, dict[str, ModelSlot]] = {}  # name -> version -> slot, oldest first
        self.unavailable: dict[str, tuple[list[str], str]] = {}  # name -> (versions, reason): known, not loaded
        self.repository: RepositoryControl | None = None
        self._draining = False
        self._started = False  # all models loaded (startup probe)
        self.waiting_for = ""
        """Non-empty while a process of a multi-process replica waits for its sibling processes to serve (what it
        waits for, the not-ready reason): the replica is ready only once every process takes requests."""
        self._watchers: list[Callable[[], None]] = []
        self.access_rate = access_rate_from_env()
        """Share of requests written to the access log (``KUBEINFER_ACCESS_LOG``; 0, the default: none)."""
        self.payload_log: PayloadLog | None = None
        """The payload logger (``spec.logger``, :mod:`~kubeinfer.server.payload_log`); ``None``: off. The protocol
        adapters test it once per request and take a tap on the requests it samples."""

    # -- models ----------------------------------------------------------------------------------------
    def add(self, slot: ModelSlot) -> None:
        """Serve ``slot`` beside the other versions of its name (the highest becomes the default)."""
        self.put(slot.name, [*self.versions.get(slot.name, {}).values(), slot])

    def put(self, name: str, slots: list[ModelSlot]) -> None:
        """Serve exactly ``slots`` (versions of ``name``, oldest first) under ``name``, at once: a request looks up
        either the old set or the new one."""
        by_version = {s.version: s for s in sorted(slots, key=lambda s: version_key(s.version))}
        self.versions[name] = by_version
        self.models[name] = next(reversed(by_version.values()))
        self.unavailable.pop(name, None)
        metrics = self.metrics
        metrics.ready[name] = lambda: all(s.ready for s in by_version.values())
        metrics.queue_depth[name] = lambda: sum(s.batcher.queue_depth for s in by_version.values() if s.batcher)
        self.changed()

    def remove(self, name: str, reason: str) -> list[ModelSlot]:
        """Stop serving ``name`` (every version): it stays in the index as UNAVAILABLE with ``reason``. Returns the
        slots that were served (their in-flight requests still finish)."""
        slots = list(self.versions.pop(name, {}).values())
        self.models.pop(name, None)
        self.unavailable[name] = ([s.version for s in slots] or self.unavailable.get(name, ([], ""))[0], reason)
        self.metrics.ready.pop(name, None)
        self.metrics.queue_depth.pop(name, None)
        for s in slots:
            s.ready = False
        self.changed()
        return slots

    def slots(self) -> Iterator[ModelSlot]:
        """Every served version of every model."""
        for by_version in self.versions.values():
            yield from by_version.values()

    def model(self, name: str, version: str | None = None) -> ModelSlot:
        """The slot serving ``name`` (at ``version``, when given); ``ModelNotFound`` names what is served."""
        slot = self.models.get(name)
        if slot is None:
            gone = self.unavailable.get(name)
            if gone is not None:
                # Triton's words for a model of the repository that is not loaded
                raise ModelNotFound(
                    f"Request for unknown model: {name!r} has no available versions ({gone[1]}); "
                    f"POST /v2/repository/models/{name}/load loads it"
                )
            known = ", ".join(repr(n) for n in self.models) or "none"
            raise ModelNotFound(f"unknown model {name!r}: this server serves {known}")
        if version is None or version == slot.version:
            return slot
        other = self.versions[name].get(version)
        if other is None:
            served = ", ".join(map(repr, self.versions[name]))
            raise ModelNotFound(f"model {name!r} has no version {version!r}: it serves version(s) {served}")
        return other

    def model_metadata(self, slot: ModelSlot) -> dict[str, Any]:
        """Metadata of one version, listing every version of its name that is served."""
        return slot.metadata(list(self.versions.get(slot.name, {slot.version: slot})))

    async def load(self, name: str, parameters: Mapping[str, Any]) -> None:
        """The repository extension's load (or reload) of ``name``; ``InvalidInput`` when it cannot be."""
        if self.repository is None:
            raise InvalidInput("this server has no model repository to load models from")
        await self.repository.load(name, parameters)

    async def unload(self, name: str, parameters: Mapping[str, Any]) -> None:
        """The repository extension's unload of ``name`` (every version)."""
        if self.repository is None:
            raise InvalidInput("this server has no model repository to unload models from")
        await self.repository.unload(name, parameters)

    def live_model(self, slot: ModelSlot) -> tuple[Batcher, ModelInfo]:
        """The batcher and metadata of a model that can take a request now; ``Unavailable`` while it loads (or after
        its load failed), ``TooManyRequests`` past the concurrency limit."""
        # While draining, requests that still arrive (a router or Service that has not yet seen the readiness
        # change) are served, with Connection: close, rather than refused: refusing would drop them.
        if not slot.ready or slot.batcher is None or slot.info is None:
            why = f": {slot.error}" if slot.error else " yet (loading)"
            raise Unavailable(f"model {slot.name!r} is not ready{why}")
        if self.metrics.in_flight > self.limits.max_concurrency:
            raise TooManyRequests(f"server is at its concurrency limit ({self.limits.max_concurrency}); retry later")
        return slot.batcher, slot.info

    def model_ready(self, slot: ModelSlot) -> bool:
        return slot.ready and not self._draining and not self.waiting_for

    # -- inference -------------------------------------------------------------------------------------
    def submit(
        self,
        slot: ModelSlot,
        req: InferRequest,
        time_remaining: float | None = None,
        *,
        validate: bool = True,
        live: tuple[Batcher, ModelInfo] | None = None,
    ) -> asyncio.Future[Result]:
        """Validate ``req`` against the model (unless the caller built it from the model's own metadata) and queue
        it with its deadline: ``limits.request_timeout``, or the client's own ``time_remaining`` (a gRPC deadline)
        where that is sooner. ``live``: what :meth:`live_model` answered for this request already (adapters check
        it before decoding a body that would not be served). Raises ``ServerError``."""
        batcher, info = live if live is not None else self.live_model(slot)
        if validate:
            validate_inputs(req, info, slot.name)
        timeout = self.limits.request_timeout
        if time_remaining is not None:
            timeout = min(timeout, time_remaining) if timeout else time_remaining
        return batcher.submit(req, time.monotonic() + timeout if timeout else None)

    def begin(self, arrival: bool = True) -> float:
        """A request enters the server (any protocol); returns its start time for :meth:`end`. ``arrival``: it is
        an inference request that ``kubeinfer_requests_total`` counts, so ``kubeinfer_arrivals_peak`` counts it too
        (False: not known yet, the caller calls ``metrics.arrival`` with the start time once its route is)."""
        m = self.metrics
        m.in_flight += 1
        t = time.perf_counter()
        if arrival and m.arrival is not None:
            m.arrival(t)
        return t

    def end(self, start: float, slot: ModelSlot | None, protocol: str, status: int) -> None:
        """A request begun at ``start`` leaves; ``status`` is recorded under ``protocol`` when that is not ``""``, with
        the model and version of ``slot`` (``""`` for a request that named no served model)."""
        metrics = self.metrics
        metrics.in_flight -= 1
        model, version = (slot.name, slot.version) if slot is not None else ("", "")
        if protocol:
            metrics.request(model, version, protocol, status, time.perf_counter() - start)
        rate = self.access_rate
        if rate and (rate >= 1.0 or random.random() < rate):
            ms = round((time.perf_counter() - start) * 1000, 3)
            _access.info(
                "%s %s %d %.3f ms",
                model or "-",
                protocol or "-",
                status,
                ms,
                extra={"model": model, "version": version, "protocol": protocol, "status": status, "duration_ms": ms},
            )

    @property
    def in_flight(self) -> int:
        """Requests inside the server (every protocol): the ``kubeinfer_requests_in_flight`` gauge itself."""
        return self.metrics.in_flight

    @property
    def queued(self) -> int:
        return sum(s.batcher.queue_depth + s.batcher.busy for s in self.slots() if s.batcher)

    # -- state -----------------------------------------------------------------------------------------
    def watch(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the event loop) whenever readiness may have changed: a model loaded or failed,
        the server started or began to drain. The gRPC health service follows the server this way."""
        self._watchers.append(callback)

    def changed(self) -> None:
        """Tell the watchers that readiness may have changed."""
        for callback in self._watchers:
            callback()

    @property
    def draining(self) -> bool:
        return self._draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self._draining = value
        self.changed()

    @property
    def started(self) -> bool:
        return self._started

    @started.setter
    def started(self, value: bool) -> None:
        self._started = value
        self.changed()

    @property
    def ready(self) -> bool:
        return self._started and not self._draining and not self.waiting_for and all(s.ready for s in self.slots())

    def not_ready_reason(self) -> str:
        """Why readiness is false, for probes and ``kubeinfer describe`` (a supervisor sees it without the logs)."""
        if self._draining:
            return "draining (SIGTERM)"
        failed = [f"model {s.name!r} version {s.version!r} failed to load: {s.error}" for s in self.slots() if s.error]
        failed += [f"model {name!r} is not served: {reason}" for name, (_, reason) in self.unavailable.items()]
        if failed:
            return "; ".join(failed)[:500]
        if self._started and self.waiting_for:
            return self.waiting_for
        return "loading the model"

    # -- documents every protocol answers --------------------------------------------------------------
    def server_metadata(self) -> dict[str, Any]:
        return {"name": "kubeinfer", "version": __version__, "extensions": EXTENSIONS}

    def repository_index(self, ready_only: bool = False) -> list[dict[str, str]]:
        """The repository extension's index: one entry per version, ``{name, version, state, reason}`` (state READY,
        LOADING or UNAVAILABLE, Triton's names), by name; ``ready_only``: the READY ones."""
        entries: list[dict[str, str]] = []
        for s in self.slots():
            state = "READY" if s.ready else "UNAVAILABLE" if s.error else "LOADING"
            entries.append({"name": s.name, "version": s.version, "state": state, "reason": s.error or ""})
        if not ready_only:
            for name, (versions, reason) in self.unavailable.items():
                for version in versions or [""]:
                    entries.append({"name": name, "version": version, "state": "UNAVAILABLE", "reason": reason})
        return sorted((e for e in entries if e["state"] == "READY" or not ready_only), key=lambda e: e["name"])

    def model_stats(self, slot: ModelSlot) -> dict[str, Any]:
        m = self.metrics
        return {
            "name": slot.name,
            "version": slot.version,
            "inference_count": m.rows.get(slot.name, 0),
            "execution_count": m.executions.get(slot.name, 0),
            "queue_depth": slot.batcher.queue_depth if slot.batcher else 0,
        }


async def load_slot(
    plane: DataPlane,
    slot: ModelSlot,
    make_batcher: Callable[[ModelSlot], Batcher],
    executor: Any,
    warmup: bool = True,
) -> None:
    """Load and warm a model in a worker thread, then mark it ready; a failure is kept as the slot's error."""
    from kubeinfer.runtimes.base import sample_batch

    loop = asyncio.get_running_loop()
    try:
        slot.info = await loop.run_in_executor(executor, slot.model.load)
        if warmup and slot.info.inputs:
            batch = sample_batch(slot.info.inputs, rows=1)
            await loop.run_in_executor(executor, slot.model.predict, batch, None)
        slot.batcher = make_batcher(slot)
        slot.ready = True
        log.info("model %s version %s ready", slot.name, slot.version)
    except Exception as e:
        slot.error = f"{type(e).__name__}: {e}"
        log.error("model %s failed to load: %s", slot.name, slot.error)
    plane.changed()
