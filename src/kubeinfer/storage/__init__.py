"""Models where users keep them: ``model.uri`` as a local path, ``file://``, ``s3://``, ``gs://``, ``az://``/``abfs://``,
``https://`` or ``hf://``, fetched into a shared, content-addressed cache before the model loads.

An I/O shell beside :mod:`kubeinfer.runtimes`: replicas (``server/runner.py``), ``kubeinfer prepare``/``up`` and the
Kubernetes init container (``kubeinfer fetch``) call :func:`fetch` or :func:`localize`; docs/storage.md has the
user's side.
"""

from __future__ import annotations

import logging
from pathlib import Path

from kubeinfer.spec import InferenceService
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


def localize(
    svc: InferenceService, base_dir: Path | None, cache_dir: Path | None = None, progress: Progress | None = None
) -> InferenceService:
    """``svc`` with a remote ``model.uri`` replaced by its local copy (fetched now, or found in the cache); a spec
    whose model is local is returned as it is (its ``model.sha256``, when given, is checked)."""
    m = svc.spec.model
    if not m.uri or (not is_remote(m.uri) and not m.sha256):
        return svc
    path = fetch(m.uri, cache_dir, sha256=m.sha256, progress=progress or _log_progress(m.uri), base_dir=base_dir)
    if not is_remote(m.uri):
        return svc
    model = m.model_copy(update={"uri": str(path)})
    return svc.model_copy(update={"spec": svc.spec.model_copy(update={"model": model})})
