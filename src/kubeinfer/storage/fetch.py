"""``fetch(uri) -> Path``: a model in object storage, downloaded once into the shared cache, verified, and read from
there by every replica after the first.

The reference is KServe's storage initializer (``kserve/storage/storage.py``), which downloads into an ``emptyDir``
before the server starts; this adds what it leaves out: the size and the store's checksum are verified (the S3 ETag
is the MD5 of a single-part object; ``model.sha256`` when the spec gives one), a download cut short is resumed from
the byte it reached (a ranged GET pinned to the ETag with ``If-Match``) with exponential back-off, and a URI whose
listing (sizes, ETags) is unchanged since it was cached is not downloaded again. Where the store cannot be reached
at all, a copy already in the cache is used and a warning says so. How the bytes move (ranged GETs in parallel for a
large object, writeback started as they land, hashes on their own threads) is :mod:`kubeinfer.storage.transfer`.

The byte transport is obstore (:mod:`kubeinfer.storage.stores`); ``hf://`` goes through ``huggingface_hub`` and its
own cache (:mod:`kubeinfer.storage.hf`); a local path or ``file://`` is returned as it is (checked against
``sha256`` when given).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from kubeinfer.spec import resolve_uri
from kubeinfer.storage.cache import Cache, default_cache_dir
from kubeinfer.storage.errors import StorageError, explain, is_fatal, is_not_found
from kubeinfer.storage.stores import Opened, open_store
from kubeinfer.storage.transfer import Digest, Source, download
from kubeinfer.storage.uris import OBJECT_SCHEMES, scheme_of, uri_problem

__all__ = ["DEFAULT_CONCURRENCY", "Progress", "fetch", "fetch_concurrency", "sha256_file"]

log = logging.getLogger("kubeinfer.storage")

Progress = Callable[[int, int], None]
"""Called as bytes arrive with (bytes done, bytes in all) over every file of the model."""

DEFAULT_CONCURRENCY = 8
_MD5_ETAG = re.compile(r'^"?([0-9a-fA-F]{32})"?$')


@dataclass(frozen=True, slots=True)
class _Object:
    name: str  # relative name in the snapshot
    path: str  # path in the store
    size: int
    etag: str | None
    version: str | None
    modified: str

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "etag": self.etag, "version": self.version} | (
            {} if self.etag or self.version else {"modified": self.modified}
        )


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def fetch_concurrency(env: Mapping[str, str]) -> int:
    """``KUBEINFER_FETCH_CONCURRENCY``: how many ranged GETs a large object is downloaded with at once (default 8)."""
    raw = env.get("KUBEINFER_FETCH_CONCURRENCY", "").strip()
    if not raw:
        return DEFAULT_CONCURRENCY
    if not raw.isdigit() or int(raw) < 1:
        raise StorageError(f"KUBEINFER_FETCH_CONCURRENCY must be an integer >= 1, got {raw!r}")
    return int(raw)


def fetch(
    uri: str,
    cache_dir: Path | None = None,
    *,
    sha256: str | None = None,
    progress: Progress | None = None,
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    retries: int = 5,
    backoff: float = 0.25,
    concurrency: int | None = None,
) -> Path:
    """The local path of the model at ``uri``: the file or folder itself for a local path, else its copy in the cache
    (downloaded now unless an unchanged copy is there). Raises :class:`StorageError`, naming the URI, on failure;
    nothing half-written is left in the cache. ``concurrency``: ranged GETs at once for a large object (default
    ``$KUBEINFER_FETCH_CONCURRENCY``, else 8; 1 downloads each object as one stream)."""
    env = os.environ if env is None else env
    problem = uri_problem(uri)
    if problem:
        raise StorageError(f"{uri}: {problem}")
    scheme = scheme_of(uri)
    if scheme in ("", "file"):
        path = resolve_uri(uri, base_dir)
        if not path.exists():
            raise StorageError(f"{uri}: {path} does not exist")
        if sha256:
            _check_sha256(uri, path, sha256)
        return path
    if scheme == "hf":
        from kubeinfer.storage.hf import fetch_hf

        path = fetch_hf(uri, env)
        if sha256:
            _check_sha256(uri, path, sha256)
        return path
    assert scheme in OBJECT_SCHEMES  # uri_problem refused the rest
    cache = Cache(cache_dir or default_cache_dir(env))
    parts = concurrency if concurrency is not None else fetch_concurrency(env)
    return _fetch_object(uri, cache, env, sha256, progress, retries, backoff, parts)


def _check_sha256(uri: str, path: Path, expected: str) -> None:
    if path.is_dir():
        raise StorageError(f"{uri}: model.sha256 checks a single file, and {path} is a folder")
    got = sha256_file(path)
    if got != expected.lower():
        raise StorageError(f"{uri}: checksum mismatch: model.sha256 is {expected}, the file's SHA-256 is {got}")


def _list(uri: str, opened: Opened) -> list[_Object]:
    """The object at the URI, or every object under it when it names a folder (prefix)."""
    import obstore

    def obj(name: str, meta: Mapping[str, Any]) -> _Object:
        mod = meta.get("last_modified")
        when = mod.isoformat() if isinstance(mod, datetime) else str(mod)
        return _Object(name, meta["path"], int(meta["size"]), meta.get("e_tag"), meta.get("version"), when)

    path = opened.path
    if path and not path.endswith("/"):
        try:
            meta = obstore.head(opened.store, path)
            return [obj(PurePosixPath(path.split("?")[0]).name or "model", meta)]
        except Exception as e:
            if is_fatal(e) and not is_not_found(e):
                raise explain(uri, e) from e
            if not opened.listable:
                raise explain(uri, e) from e
    prefix = path.rstrip("/")
    found: list[_Object] = []
    try:
        for batch in obstore.list(opened.store, prefix=prefix or None):
            for meta in batch:
                rel = meta["path"][len(prefix) :].lstrip("/") if prefix else meta["path"]
                if rel and not rel.endswith("/"):
                    found.append(obj(rel, meta))
    except Exception as e:
        raise explain(uri, e) from e
    if not found:
        raise StorageError(f"{uri}: not found in the store: no object {path!r} and no objects under {prefix + '/'!r}")
    return sorted(found, key=lambda o: o.name)


def _fetch_object(
    uri: str,
    cache: Cache,
    env: Mapping[str, str],
    sha256: str | None,
    progress: Progress | None,
    retries: int,
    backoff: float,
    concurrency: int,
) -> Path:
    key = cache.key(uri)
    opened = open_store(uri, env)
    try:
        listing = _list(uri, opened)
    except StorageError as e:
        ref = cache.read_ref(key)
        if ref is None or "not found" in str(e) or "access denied" in str(e):
            raise
        if sha256 and [f["sha256"] for f in ref["files"]] != [sha256.lower()]:
            raise StorageError(f"{e}; the cached copy is not the model.sha256 given ({sha256})") from e
        log.warning("%s; using the copy cached on %s", e, ref.get("fetched", "an earlier run"))
        return _snapshot_path(cache, ref)
    if sha256 and (len(listing) != 1 or listing[0].name != PurePosixPath(opened.path.split("?")[0]).name):
        raise StorageError(f"{uri}: model.sha256 checks a single file, and this URI is a folder of {len(listing)}")
    identity = [o.identity() for o in listing]

    def cached() -> dict[str, Any] | None:
        ref = cache.read_ref(key)
        if ref is None or [f["identity"] for f in ref["files"]] != identity:
            return None
        if sha256 and ref["files"][0]["sha256"] != sha256.lower():
            return None
        return ref

    ref = cached()
    if ref is None:
        with cache.lock(key):
            ref = cached()  # another replica may have fetched it while this one waited for the lock
            if ref is None:
                ref = _download_all(uri, opened, listing, cache, sha256, progress, retries, backoff, concurrency)
                cache.write_ref(key, ref)
    else:
        log.info("%s: in the cache (%s), not downloaded", uri, cache.snapshot(ref["snapshot"]))
    return _snapshot_path(cache, ref)


def _snapshot_path(cache: Cache, ref: Mapping[str, Any]) -> Path:
    root = cache.snapshot(ref["snapshot"])
    return root / ref["files"][0]["identity"]["name"] if ref.get("single") else root


def _download_all(
    uri: str,
    opened: Opened,
    listing: list[_Object],
    cache: Cache,
    sha256: str | None,
    progress: Progress | None,
    retries: int,
    backoff: float,
    concurrency: int,
) -> dict[str, Any]:
    total = sum(o.size for o in listing)
    done_before = 0
    files: list[dict[str, Any]] = []
    t0 = time.monotonic()
    for o in listing:
        file_uri = uri if len(listing) == 1 else f"{uri.rstrip('/')}/{o.name}"
        base = done_before

        def report(done: int, base: int = base) -> None:
            if progress is not None:
                progress(base + done, total)

        digest = _download_checked(file_uri, opened, o, cache, sha256, report, retries, backoff, concurrency)
        files.append({"identity": o.identity(), "sha256": digest})
        done_before += o.size
    sid = cache.add_snapshot({f["identity"]["name"]: f["sha256"] for f in files})
    seconds = time.monotonic() - t0
    log.info("%s: %d bytes in %.1f s (%.0f MB/s)", uri, total, seconds, total / max(seconds, 1e-9) / 1e6)
    single = len(listing) == 1 and listing[0].path == opened.path
    return {
        "uri": uri,
        "snapshot": sid,
        "single": single,
        "files": files,
        "fetched": datetime.now().astimezone().isoformat(timespec="seconds"),
    }


class _EtagMismatch(StorageError):
    def __init__(self, message: str, sha256: str) -> None:
        super().__init__(message)
        self.sha256 = sha256


def _download_checked(
    uri: str,
    opened: Opened,
    o: _Object,
    cache: Cache,
    sha256: str | None,
    report: Callable[[int], None],
    retries: int,
    backoff: float,
    concurrency: int = 1,
) -> str:
    """:func:`_download_one`, and once more when the bytes do not match the ETag's MD5: a second download with the
    same SHA-256 means the ETag is not an MD5 of the content (SSE-KMS or SSE-C encryption), not a corrupt transfer;
    it is kept, with a warning (set model.sha256 to check such objects without downloading them twice)."""
    try:
        return _download_one(uri, opened, o, cache, sha256, report, retries, backoff, concurrency)
    except _EtagMismatch as first:
        log.warning("%s; downloading it again to tell a corrupt transfer from an encrypted object's ETag", first)
        try:
            return _download_one(uri, opened, o, cache, sha256, report, retries, backoff, concurrency, first.sha256)
        except _EtagMismatch as second:
            raise StorageError(f"{second} (two downloads differ: the transfer is corrupt)") from None


def _download_one(
    uri: str,
    opened: Opened,
    o: _Object,
    cache: Cache,
    sha256: str | None,
    report: Callable[[int], None],
    retries: int,
    backoff: float,
    concurrency: int,
    agreed: str | None = None,
) -> str:
    """Download one object into tmp/ (resumed after a failure, ranged GETs in parallel when it is large); verify;
    move it into blobs/. Returns its SHA-256."""
    # One hash checks the bytes and one names them in the cache. The ETag of a single-part S3 object is its MD5, the
    # store's own checksum: checked unless model.sha256 (a stronger one, end to end, and the cache's name anyway) is
    # given, which saves MD5 (the slower of the two: 614 MB/s a core against SHA-256's 1,360 on the benchmark's
    # machine). The ETag is not an MD5 under SSE-KMS/SSE-C encryption: see _download_checked.
    md5_match = _MD5_ETAG.match(o.etag or "") if opened.kind == "s3" and not sha256 else None
    h = Digest("sha256")
    md5 = Digest("md5") if md5_match else None
    src = Source(uri, opened.store, o.path, o.size, o.etag, opened.kind != "http", opened.kind != "http")
    tmp = cache.temp_file()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CLOEXEC)
        try:
            done = download(
                src,
                fd,
                [h] if md5 is None else [h, md5],
                report,
                retries=retries,
                backoff=backoff,
                concurrency=concurrency,
            )
            os.fsync(fd)
        finally:
            os.close(fd)
        if done != o.size:
            raise StorageError(f"{uri}: size mismatch: the store lists {o.size} bytes, {done} were received")
        digest = h.hexdigest()
        if md5 is not None and md5_match is not None and md5.hexdigest() != md5_match.group(1).lower():
            if digest == agreed:
                log.warning("%s: its ETag is not the MD5 of its bytes (an encrypted object?); two downloads agree", uri)
            else:
                raise _EtagMismatch(
                    f"{uri}: checksum mismatch: the store's MD5 (ETag) is {md5_match.group(1)}, "
                    f"the bytes received have {md5.hexdigest()}",
                    digest,
                )
        if sha256 and digest != sha256.lower():
            raise StorageError(f"{uri}: checksum mismatch: model.sha256 is {sha256}, the downloaded file has {digest}")
        cache.add_blob(tmp, digest)
        return digest
    finally:
        h.close()
        if md5 is not None:
            md5.close()
        tmp.unlink(missing_ok=True)
