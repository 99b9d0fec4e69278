"""Models where users keep them: ``model.uri`` as a local path, ``file://``, ``s3://``, ``gs://``, ``az://``/``abfs://``,
``https://`` or ``hf://``, fetched into a shared, content-addressed cache before the model loads.

An I/O shell beside :mod:`kubeinfer.runtimes`: replicas (``server/runner.py``), ``kubeinfer prepare``/``up`` and the
Kubernetes init container (``kubeinfer fetch``) call :func:`fetch` or :func:`localize`; docs/storage.md has the
user's side.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path

from kubeinfer.spec import InferenceService
from kubeinfer.spec.service import ModelSpec
from kubeinfer.storage.cache import default_cache_dir
from kubeinfer.storage.errors import StorageError
from kubeinfer.storage.fetch import Progress, fetch, sha256_file
from kubeinfer.storage.uris import REMOTE_SCHEMES, is_remote, uri_problem

__all__ = [
    "REMOTE_SCHEMES",
    "Progress",
    "StorageError",
    "default_cache_dir",
    "fetch",
    "is_remote",
    "localize",
    "model_entries",
    "sha256_file",
    "uri_problem",
]


def _log_progress(uri: str) -> Progress:
    """Progress for a replica's log: one line per tenth of the download."""
    log = logging.getLogger("kubeinfer.storage")
    last = [-1]

    def report(done: int, total: int) -> None:
        tenth = done * 10 // total if total else 10
        if tenth > last[0]:
            last[0] = tenth
            log.info("%s: %d%% (%d of %d bytes)", uri, tenth * 10, done, total)

    return report


def model_entries(svc: InferenceService) -> list[tuple[str, ModelSpec]]:
    """Each model of the spec and where it is in the spec file: ``spec.model``, or ``spec.models[i]``."""
    if svc.spec.models is None:
        return [("spec.model", svc.spec.model)]
    return [(f"spec.models[{i}]", m) for i, m in enumerate(svc.spec.models)]


def _localize_one(
    field: str, m: ModelSpec, base_dir: Path | None, cache_dir: Path | None, progress: Progress | None
) -> ModelSpec:
    if not m.uri or (not is_remote(m.uri) and not m.sha256):
        return m
    try:
        path = fetch(m.uri, cache_dir, sha256=m.sha256, progress=progress or _log_progress(m.uri), base_dir=base_dir)
    except StorageError as e:
        raise StorageError(f"{field}.uri: {e}") from e
    return m.model_copy(update={"uri": str(path)}) if is_remote(m.uri) else m


def localize(
    svc: InferenceService,
    base_dir: Path | None,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
    names: Collection[str] | None = None,
) -> InferenceService:
    """``svc`` with every remote ``uri`` (``spec.model``, or each entry of ``spec.models``) replaced by its local copy
    (fetched now, or found in the cache); local models are kept as they are (a ``sha256``, when given, is checked).
    ``names``: only the ``spec.models`` entries of these model names. A :class:`StorageError` starts with the field
    (``spec.models[1].uri: s3://...: not found ...``)."""
    spec = svc.spec
    if spec.models is None:
        model = _localize_one("spec.model", spec.model, base_dir, cache_dir, progress)
        return svc if model is spec.model else svc.model_copy(update={"spec": spec.model_copy(update={"model": model})})
    models = [
        m if names is not None and m.name not in names else _localize_one(field, m, base_dir, cache_dir, progress)
        for field, m in model_entries(svc)
    ]
    if all(a is b for a, b in zip(models, spec.models, strict=True)):
        return svc
    new = spec.model_copy(update={"models": models})
    object.__setattr__(new, "model", models[0])  # the first entry, not a field as written (ServiceSpec)
    return svc.model_copy(update={"spec": new})
