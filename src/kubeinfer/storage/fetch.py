"""``fetch(uri) -> Path``: a model in object storage, downloaded once into the shared cache, verified, and read from
there by every replica after the first.

The reference is KServe's storage initializer (``kserve/storage/storage.py``), which downloads into an ``emptyDir``
before the server starts; this adds what it leaves out: the size and the store's checksum are verified (the S3 ETag
is the MD5 of a single-part object; ``model.sha256`` when the spec gives one), a download cut short is resumed from
the byte it reached (a ranged GET pinned to the ETag with ``If-Match``) with exponential back-off, and a URI whose
listing (sizes, ETags) is unchanged since it was cached is not downloaded again. Where the store cannot be reached
at all, a copy already in the cache is used and a warning says so.

The byte transport is obstore (:mod:`kubeinfer.storage.stores`); ``hf://`` goes through ``huggingface_hub`` and its
own cache (:mod:`kubeinfer.storage.hf`); a local path or ``file://`` is returned as it is (checked against
``sha256`` when given).
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, cast

from kubeinfer.spec import resolve_uri
from kubeinfer.storage.cache import Cache, default_cache_dir
from kubeinfer.storage.errors import StorageError
from kubeinfer.storage.stores import Opened, open_store
from kubeinfer.storage.uris import OBJECT_SCHEMES, scheme_of, uri_problem

if TYPE_CHECKING:
    from obstore import GetOptions

__all__ = ["Progress", "fetch", "sha256_file"]

log = logging.getLogger("kubeinfer.storage")

Progress = Callable[[int, int], None]
"""Called as bytes arrive with (bytes done, bytes in all) over every file of the model."""

CHUNK = 8 << 20
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


class _Digest:
    """A hash fed on its own thread, in order, so that hashing overlaps the network and the disk (hashlib releases
    the GIL on large buffers): with SHA-256 and MD5 both on the download thread, the CPU rather than the disk set the
    pace of a large download."""

    def __init__(self, name: str) -> None:
        self._hash = hashlib.new(name, usedforsecurity=False)
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self._thread = threading.Thread(target=self._run, name=f"fetch-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._hash.update(chunk)

    def update(self, chunk: bytes) -> None:
        self._queue.put(chunk)

    def hexdigest(self) -> str:
        self.close()
        return self._hash.hexdigest()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


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
) -> Path:
    """The local path of the model at ``uri``: the file or folder itself for a local path, else its copy in the cache
    (downloaded now unless an unchanged copy is there). Raises :class:`StorageError`, naming the URI, on failure;
    nothing half-written is left in the cache."""
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
    return _fetch_object(uri, cache, env, sha256, progress, retries, backoff)


def _check_sha256(uri: str, path: Path, expected: str) -> None:
    if path.is_dir():
        raise StorageError(f"{uri}: model.sha256 checks a single file, and {path} is a folder")
    got = sha256_file(path)
    if got != expected.lower():
        raise StorageError(f"{uri}: checksum mismatch: model.sha256 is {expected}, the file's SHA-256 is {got}")


def _errors() -> Any:
    import obstore.exceptions

    return obstore.exceptions


def _explain(uri: str, e: BaseException) -> StorageError:
    """One line naming the URI and what to do, for the obstore errors that retrying cannot fix."""
    ex = _errors()
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if _not_found(e):
        return StorageError(f"{uri}: not found in the store (check the bucket and path): {first}")
    if isinstance(e, ex.PermissionDeniedError | ex.UnauthenticatedError) or re.search(
        r"InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied|\b40[13]\b", str(e)
    ):
        return StorageError(
            f"{uri}: access denied: the credentials were refused; kubeinfer reads them from the environment "
            f"(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, GOOGLE_APPLICATION_CREDENTIALS, "
            f"AZURE_STORAGE_*) or, on Kubernetes, the Secret named by spec.model.storageSecret: {first}"
        )
    return StorageError(f"{uri}: {first}")


def _not_found(e: BaseException) -> bool:
    # obstore raises FileNotFoundError (with NotFoundError for older releases) for a 404
    return isinstance(e, FileNotFoundError | _errors().NotFoundError)


def _fatal(e: BaseException) -> bool:
    ex = _errors()
    return (
        _not_found(e)
        or isinstance(e, ex.PermissionDeniedError | ex.UnauthenticatedError | ex.PreconditionError)
        or bool(re.search(r"InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied|NoSuchBucket|\b40[0-4]\b", str(e)))
    )


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
            if _fatal(e) and not _not_found(e):
                raise _explain(uri, e) from e
            if not opened.listable:
                raise _explain(uri, e) from e
    prefix = path.rstrip("/")
    found: list[_Object] = []
    try:
        for batch in obstore.list(opened.store, prefix=prefix or None):
            for meta in batch:
                rel = meta["path"][len(prefix) :].lstrip("/") if prefix else meta["path"]
                if rel and not rel.endswith("/"):
                    found.append(obj(rel, meta))
    except Exception as e:
        raise _explain(uri, e) from e
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
                ref = _download_all(uri, opened, listing, cache, sha256, progress, retries, backoff)
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

        digest = _download_checked(file_uri, opened, o, cache, sha256, report, retries, backoff)
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
) -> str:
    """:func:`_download_one`, and once more when the bytes do not match the ETag's MD5: a second download with the
    same SHA-256 means the ETag is not an MD5 of the content (SSE-KMS or SSE-C encryption), not a corrupt transfer;
    it is kept, with a warning (set model.sha256 to check such objects without downloading them twice)."""
    try:
        return _download_one(uri, opened, o, cache, sha256, report, retries, backoff, opened.kind)
    except _EtagMismatch as first:
        log.warning("%s; downloading it again to tell a corrupt transfer from an encrypted object's ETag", first)
        try:
            return _download_one(uri, opened, o, cache, sha256, report, retries, backoff, opened.kind, first.sha256)
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
    kind: str,
    agreed: str | None = None,
) -> str:
    """Stream one object into tmp/, resuming after a failure; verify; move it into blobs/. Returns its SHA-256."""
    import obstore

    # The ETag of a single-part S3 object is its MD5: the store's own checksum, checked unless model.sha256 (a
    # stronger one, end to end) is given. It is not an MD5 under SSE-KMS/SSE-C encryption: see _download_checked.
    md5_match = _MD5_ETAG.match(o.etag or "") if kind == "s3" and not sha256 else None
    h = _Digest("sha256")
    md5 = _Digest("md5") if md5_match else None
    tmp = cache.temp_file()
    done = 0
    failures = 0
    try:
        with open(tmp, "wb") as f:
            while done < o.size or o.size == 0:
                options: dict[str, Any] = {}
                if done:
                    options["range"] = {"offset": done}
                    if o.etag and kind != "http":
                        options["if_match"] = o.etag  # resume the same object, not one replaced meanwhile
                try:
                    result = obstore.get(opened.store, o.path, options=cast("GetOptions", options) if options else None)
                    for chunk in result.stream(min_chunk_size=CHUNK):
                        f.write(chunk)
                        h.update(chunk)
                        if md5 is not None:
                            md5.update(chunk)
                        done += len(chunk)
                        report(done)
                    if done < o.size:
                        raise StorageError(f"the connection ended at byte {done} of {o.size}")
                    break
                except Exception as e:
                    if not isinstance(e, StorageError) and _fatal(e):
                        raise _explain(uri, e) from e
                    failures += 1
                    if failures > retries:
                        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                        raise StorageError(
                            f"{uri}: download failed after {failures} tries, {done} of {o.size} bytes received "
                            f"(truncated or interrupted): {why}"
                        ) from e
                    log.warning("%s: try %d failed at byte %d of %d, resuming: %s", uri, failures, done, o.size, e)
                    time.sleep(min(backoff * 2 ** (failures - 1), 10.0))
            f.flush()
            os.fsync(f.fileno())
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
