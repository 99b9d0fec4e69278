"""The model cache: content-addressed, written atomically, shared by every replica on the machine (or pod volume).

Layout under the cache folder (``$KUBEINFER_MODEL_CACHE``, else ``$KUBEINFER_CACHE_DIR/models``, else
``~/.cache/kubeinfer/models``)::

    blobs/sha256/HEX         each file's content, named by its SHA-256 (two URIs with the same bytes share it)
    snapshots/ID/NAME...     a model as the runtime reads it: hard links to the blobs, under the original names;
                             ID is the SHA-256 of the manifest (names and blob digests)
    refs/KEY.json            URI -> manifest (size, ETag/version, SHA-256 of each file) and snapshot ID; KEY is the
                             SHA-256 of the URI
    locks/KEY.lock           held (``flock``) by the one process that downloads KEY; the others wait, then read the ref
    tmp/                     downloads in progress; a file is moved into blobs/ only once its size and checksums
                             match, and removed when the download fails (or, left by a killed process, an hour
                             after its last write)

Nothing outside ``tmp/`` is ever half-written: a blob, a snapshot folder and a ref each appear by one ``rename``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["STALE_SECONDS", "Cache", "default_cache_dir"]

STALE_SECONDS = 3600


def default_cache_dir(env: Mapping[str, str]) -> Path:
    """``$KUBEINFER_MODEL_CACHE``, else ``$KUBEINFER_CACHE_DIR/models``, else ``~/.cache/kubeinfer/models``."""
    if env.get("KUBEINFER_MODEL_CACHE"):
        return Path(env["KUBEINFER_MODEL_CACHE"]).expanduser()
    if env.get("KUBEINFER_CACHE_DIR"):
        return Path(env["KUBEINFER_CACHE_DIR"]).expanduser() / "models"
    return Path.home() / ".cache" / "kubeinfer" / "models"


class Cache:
    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("blobs/sha256", "snapshots", "refs", "locks", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self._sweep()

    def _sweep(self) -> None:
        """Remove what a process killed mid-download left in tmp/: files untouched for ``STALE_SECONDS`` (a download
        in progress writes every few milliseconds; a PID check would not do, the cache may be shared across pods)."""
        cutoff = time.time() - STALE_SECONDS
        for p in (self.root / "tmp").iterdir():
            try:
                if p.lstat().st_mtime < cutoff:
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
            except OSError:
                pass  # another process swept it first

    @staticmethod
    def key(uri: str) -> str:
        return hashlib.sha256(uri.encode()).hexdigest()

    def blob(self, sha256: str) -> Path:
        return self.root / "blobs" / "sha256" / sha256

    def read_ref(self, key: str) -> dict[str, Any] | None:
        """The ref of a URI whose snapshot is complete, or None."""
        try:
            ref: dict[str, Any] = json.loads((self.root / "refs" / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None
        return ref if (self.root / "snapshots" / ref.get("snapshot", "-")).is_dir() else None

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Exclusive, across processes: the second replica blocks here until the first has written the ref."""
        with open(self.root / "locks" / f"{key}.lock", "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def temp_file(self) -> Path:
        fd, name = tempfile.mkstemp(dir=self.root / "tmp", suffix=".part")
        os.close(fd)
        return Path(name)

    def add_blob(self, tmp: Path, sha256: str) -> Path:
        """Move a verified download into blobs/ (a blob already there is the same content: keep it)."""
        dest = self.blob(sha256)
        if dest.exists():
            tmp.unlink()
        else:
            # read-only: the snapshots and `kubeinfer fetch --to` hard-link it, and a write through one of those
            # links would change every model that shares the content
            os.chmod(tmp, 0o444)
            os.replace(tmp, dest)
        return dest

    def add_snapshot(self, files: Mapping[str, str]) -> str:
        """A folder of hard links (copies across file systems) named as ``files`` (relative name -> blob digest)."""
        manifest = json.dumps(sorted(files.items())).encode()
        sid = hashlib.sha256(manifest).hexdigest()[:32]
        dest = self.root / "snapshots" / sid
        if dest.is_dir():
            return sid
        staging = Path(tempfile.mkdtemp(dir=self.root / "tmp", suffix=".snap"))
        try:
            for name, digest in files.items():
                target = staging / name
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(self.blob(digest), target)
                except OSError:
                    shutil.copyfile(self.blob(digest), target)
            try:
                os.rename(staging, dest)
            except OSError:
                if not dest.is_dir():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return sid

    def write_ref(self, key: str, ref: Mapping[str, Any]) -> None:
        tmp = self.temp_file()
        tmp.write_text(json.dumps(ref, indent=1))
        os.replace(tmp, self.root / "refs" / f"{key}.json")

    def snapshot(self, sid: str) -> Path:
        return self.root / "snapshots" / sid
