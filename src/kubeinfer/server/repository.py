"""A replica's model repository: the models one service serves behind the same ports (``spec.model``, or several in
``spec.models``), each name with the versions its policy selects, and the Open Inference Protocol's repository
extension over them: index, load and unload, as Triton defines them
(https://github.com/triton-inference-server/server/blob/main/docs/protocol/extension_model_repository.md).

Versions come from Triton's folder layout, ``uri/<version>/`` (numbered sub-folders of the model's folder; a
version folder holding one entry is that entry, a model file, otherwise the folder itself is the model), or from
several ``spec.models`` entries of one name with different ``version``. ``versionPolicy`` (latest N, specific, all;
``VersionPolicy.select`` in the spec) picks the versions served; without one, the latest folder version (Triton's
default) or every listed entry. Each version is its own runtime instance with its own batcher.

The semantics follow Triton's EXPLICIT model control mode, with every model of the spec loaded at start:

- load names a model of the spec; it (re)reads the model's folder, so a new version folder is picked up, loads every
  selected version and then swaps them in at once. It answers when that is done: 200, or 400 with the error (the
  versions served before, if any, keep serving). An unknown name is a 400 too (Triton: "failed to poll from model
  repository"), as are Triton's load parameters kubeinfer cannot honour (``config``, ``file:...`` overrides).
- unload stops serving every version of a name at once (new requests get 404, "has no available versions"), lets the
  requests already queued finish, and keeps the name in the index as ``UNAVAILABLE`` with reason ``unloaded``.
  ``unload_dependents`` is accepted; there are no ensembles to unload with it.
- the index lists one entry per version: ``{name, version, state, reason}`` with Triton's states READY, LOADING and
  UNAVAILABLE.

A replica's repository is its own: on a service of several replicas, load and unload act on the replica that answers
(as with Triton behind a load balancer), and with ``server.processes`` > 1 they are refused, since the processes of
one replica share its port and each holds its own models.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubeinfer.runtimes import create_model
from kubeinfer.server.batcher import Batcher
from kubeinfer.server.dataplane import DataPlane, ModelSlot, load_slot
from kubeinfer.server.errors import InvalidInput
from kubeinfer.spec import InferenceService, resolve_uri
from kubeinfer.spec.service import BatchingSpec, ModelSpec, VersionPolicy, version_key
from kubeinfer.storage import StorageError, localize

__all__ = ["Repository", "RepositoryError", "VersionSource", "model_names", "plan", "single_model", "version_folders"]

log = logging.getLogger("kubeinfer.server")

MakeBatcher = Callable[[ModelSlot, BatchingSpec], Batcher]
_DEFAULT_VERSION = ModelSpec.model_fields["version"].default


class RepositoryError(ValueError):
    """A model's versions cannot be worked out (a missing specific version, a version folder beside ``version``)."""


@dataclass(frozen=True, slots=True)
class VersionSource:
    """One version to serve: the model entry with ``uri`` pointing at this version's artifact."""

    name: str
    version: str
    model: ModelSpec
    batching: BatchingSpec


def _entries(svc: InferenceService) -> dict[str, list[tuple[str, ModelSpec]]]:
    """Each served name with its spec entries and where each is in the spec file."""
    spec = svc.spec
    if spec.models is None:
        return {svc.model_name: [("spec.model", spec.model)]}
    out: dict[str, list[tuple[str, ModelSpec]]] = {}
    for i, m in enumerate(spec.models):
        out.setdefault(m.name or svc.model_name, []).append((f"spec.models[{i}]", m))
    return out


def model_names(svc: InferenceService) -> list[str]:
    """The names the service serves, in spec order (several ``spec.models`` entries may share one)."""
    return list(_entries(svc))


def single_model(svc: InferenceService, source: VersionSource) -> InferenceService:
    """``svc`` serving just ``source`` (as ``spec.model``): what one version's runtime is built from."""
    spec = svc.spec.model_copy(update={"model": source.model, "models": None})
    return svc.model_copy(update={"spec": spec})


def version_folders(path: Path) -> list[str]:
    """The version sub-folders (names of digits) of a model folder, oldest first; ``[]`` when it has none."""
    if not path.is_dir():
        return []
    return sorted((p.name for p in path.iterdir() if p.is_dir() and p.name.isdigit()), key=version_key)


def _artifact(folder: Path) -> Path:
    """What the runtime loads from a version folder: its one entry, or the folder itself."""
    inside = [p for p in folder.iterdir() if not p.name.startswith(".")]
    return inside[0] if len(inside) == 1 else folder


def plan(svc: InferenceService, name: str, base_dir: Path | None) -> list[VersionSource]:
    """The versions of ``name`` to serve now, oldest first (reads the model folders). Raises ``RepositoryError``."""
    entries = _entries(svc)[name]
    candidates: dict[str, VersionSource] = {}
    folders = False
    for where, m in entries:
        batching = m.batching or svc.spec.batching
        local = m.uri and ("://" not in m.uri or m.uri.startswith("file://"))
        found = version_folders(resolve_uri(m.uri, base_dir)) if local else []
        if found and m.version != _DEFAULT_VERSION:
            raise RepositoryError(
                f"{where}: version {m.version!r} and the version folders of uri {m.uri!r} ({', '.join(found)}) do "
                "not go together: remove version, or point uri at one artifact"
            )
        pairs = [(v, str(_artifact(resolve_uri(m.uri, base_dir) / v))) for v in found] or [(m.version, m.uri)]
        folders = folders or bool(found)
        for version, uri in pairs:
            if version in candidates:
                raise RepositoryError(f"{where}: model {name!r} has version {version!r} twice")
            vm = m.model_copy(update={"uri": uri, "version": version, "name": name})
            candidates[version] = VersionSource(name, version, vm, batching)
    policy = next((m.versionPolicy for _, m in entries if m.versionPolicy is not None), None)
    if policy is None:
        policy = VersionPolicy(latest=1) if folders else VersionPolicy(all=True)
    try:
        chosen = policy.select(list(candidates))
    except ValueError as e:
        raise RepositoryError(f"{entries[0][0]} (model {name!r}): {e}") from None
    return [candidates[v] for v in chosen]


def _unsupported(parameters: Mapping[str, Any]) -> str | None:
    for key in parameters:
        if key == "config" or key.startswith("file:"):
            return key
    return None


class Repository:
    """The service's models by name, loaded into ``plane`` and loaded or unloaded there on request (module
    docstring). One load or unload of a name at a time."""

    def __init__(
        self,
        plane: DataPlane,
        svc: InferenceService,
        base_dir: Path | None,
        executor: Executor,
        make_batcher: MakeBatcher,
        source: InferenceService | None = None,
    ) -> None:
        self.plane = plane
        self.svc = svc
        self.source = source  # the spec as written, when ``svc`` has its remote uris replaced by fetched copies
        self.base_dir = base_dir
        self.executor = executor
        self.make_batcher = make_batcher
        self.names = model_names(svc)
        self._locks = {name: asyncio.Lock() for name in self.names}
        plane.repository = self

    def _slot(self, svc: InferenceService, source: VersionSource) -> ModelSlot:
        return ModelSlot(
            model=create_model(single_model(svc, source), self.base_dir), name=source.name, version=source.version
        )

    def slots(self, name: str, svc: InferenceService | None = None) -> list[tuple[ModelSlot, BatchingSpec]]:
        """New, not yet loaded, slots of the versions of ``name`` to serve now. Raises ``RepositoryError``."""
        svc = svc or self.svc
        return [(self._slot(svc, s), s.batching) for s in plan(svc, name, self.base_dir)]

    def _refetched(self, name: str) -> list[tuple[ModelSlot, BatchingSpec]]:
        """The slots of ``name`` for a load: a remote entry is fetched again first, so that a changed object or a new
        version folder in the store is picked up (an unchanged one is found in the cache, nothing downloaded; an
        unreachable store falls back to the cached copy). Raises ``StorageError`` naming the entry's uri."""
        if self.source is None:
            return self.slots(name)
        return self.slots(name, localize(self.source, self.base_dir, names={name}))

    async def _load(self, made: list[tuple[ModelSlot, BatchingSpec]]) -> None:
        await asyncio.gather(
            *(
                load_slot(self.plane, slot, lambda s, b=batching: self.make_batcher(s, b), self.executor)  # type: ignore[misc]
                for slot, batching in made
            )
        )

    async def start(self) -> bool:
        """Load every model of the spec (the server's start); False when one could not be."""
        ok = True
        made: list[tuple[ModelSlot, BatchingSpec]] = []
        for name in self.names:
            try:
                mine = self.slots(name)
            except Exception as e:
                ok = False
                reason = str(e) if isinstance(e, RepositoryError) else f"{type(e).__name__}: {e}"
                log.error("model %s cannot be served: %s", name, reason)
                self.plane.unavailable[name] = ([], reason)
                continue
            self.plane.put(name, [slot for slot, _ in mine])
            made += mine
        await self._load(made)
        return ok and all(slot.ready for slot, _ in made)

    def _check(self, action: str, name: str, parameters: Mapping[str, Any]) -> None:
        if name not in self._locks:
            held = ", ".join(map(repr, self.names))
            raise InvalidInput(
                f"failed to {action} {name!r}: no model of that name in the repository (it holds {held}; models are "
                "added in the spec, spec.models)"
            )
        if self.svc.spec.server.processes > 1:
            raise InvalidInput(
                f"failed to {action} {name!r}: models are loaded and unloaded only with spec.server.processes 1 (each "
                f"of the {self.svc.spec.server.processes} processes of this replica holds its own models)"
            )
        bad = _unsupported(parameters)
        if bad is not None:
            raise InvalidInput(
                f"failed to {action} {name!r}: parameter {bad!r} is not supported: models are loaded as the spec "
                "describes them"
            )

    async def load(self, name: str, parameters: Mapping[str, Any]) -> None:
        """Load, or reload, every version of ``name`` the policy selects now; the old ones serve until then."""
        self._check("load", name, parameters)
        async with self._locks[name]:
            loop = asyncio.get_running_loop()
            try:
                made = await loop.run_in_executor(self.executor, self._refetched, name)
            except Exception as e:
                why = str(e) if isinstance(e, RepositoryError | StorageError) else f"{type(e).__name__}: {e}"
                raise InvalidInput(f"failed to load {name!r}: {why}") from None
            await self._load(made)
            failed = [f"version {s.version!r}: {s.error}" for s, _ in made if not s.ready]
            if failed:
                reason = "; ".join(failed)
                if name in self.plane.unavailable:
                    self.plane.unavailable[name] = ([s.version for s, _ in made], reason)
                raise InvalidInput(f"failed to load {name!r}: {reason}")
            plane = self.plane
            plane.put(name, [s for s, _ in made])
            if not plane.started and not plane.unavailable and all(s.ready for s in plane.slots()):
                plane.started = True  # a model that failed at the start is loaded now: the replica has started
            log.info("model %s loaded: version(s) %s", name, ", ".join(s.version for s, _ in made))

    async def unload(self, name: str, parameters: Mapping[str, Any]) -> None:
        """Stop serving ``name``; returns once the requests queued for it have finished (within the drain timeout)."""
        self._check("unload", name, parameters)
        async with self._locks[name]:
            if name not in self.plane.models:
                return  # already unloaded (or never loaded): nothing to do, as Triton answers
            slots = self.plane.remove(name, "unloaded")
            deadline = time.monotonic() + self.svc.spec.server.limits.drainTimeoutSeconds
            while time.monotonic() < deadline and any(
                s.batcher and (s.batcher.queue_depth or s.batcher.busy) for s in slots
            ):
                await asyncio.sleep(0.01)
            log.info("model %s unloaded", name)
