"""Moving one object's bytes from a store into a local file: one stream, or ranged GETs in parallel for a large
object, as s3transfer and object_store's ``get_ranges`` do. The file's writeback to disk is started as the bytes land,
and the hashes are fed the bytes in order on their own threads.

Why each part (measured in ``bench/storage/RESULTS.md``):

- **Writeback as the bytes land.** A download that writes into the page cache and calls ``fsync`` at the end pays the
  whole flush after the last byte arrives: on the benchmark's disk (``bench/storage/writeback.py``), 1 GiB took
  0.33 s to write and 0.57 s more to ``fsync``. ``sync_file_range(SYNC_FILE_RANGE_WRITE)`` on each chunk just written
  (RocksDB's ``bytes_per_sync`` does the same) starts its writeback at once without waiting for it, so the disk works
  while the network does and the final ``fsync`` has almost nothing left (0.01 s; 1,800 MB/s against 1,170 in all).
  Linux only; elsewhere the final ``fsync`` does it all.
- **Hashes on their own threads.** hashlib releases the GIL on large buffers, so SHA-256 and MD5 each take a core
  beside the network and the disk instead of following them on the download thread.
- **Ranged GETs in parallel.** One connection to a cloud store moves ~100 MB/s; AWS recommends 8-16 MiB ranges on
  several connections. Each part is written where it belongs (``pwrite``) and kept in memory only until the hashes,
  which must see the bytes in order, have been given it; at most ``concurrency + 2`` parts are in flight, so memory
  stays bounded (``(concurrency + 2) * part_size``, and 16 chunks queued for each hash). A part cut short is resumed from the byte it reached, pinned to
  the ETag with ``If-Match`` like a resumed single stream.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from kubeinfer.storage.errors import StorageError, explain, is_fatal

if TYPE_CHECKING:
    from obstore import GetOptions

__all__ = ["CHUNK", "PART_SIZE", "Digest", "Source", "download", "start_writeback"]

log = logging.getLogger("kubeinfer.storage")

CHUNK = 1 << 20
"""Bytes per chunk handed to Python (obstore gathers the network's small frames into chunks this large): with 8 MiB
chunks the client spent 2.0 CPU-seconds a GB, with 1 MiB 1.8, with 256 KiB no less (``bench/storage/chunks.py``)."""
PART_SIZE = 8 << 20
"""Bytes per ranged GET of a parallel download (s3transfer's default part size)."""

_SYNC_FILE_RANGE_WRITE = 2


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return cast("Callable[[int, int, int, int], int]", fn)


_SFR = _sync_file_range()


def start_writeback(fd: int, offset: int, length: int) -> bool:
    """Start writing ``length`` bytes of ``fd`` from ``offset`` to disk, without waiting for it (Linux's
    ``sync_file_range(SYNC_FILE_RANGE_WRITE)``). Best effort: False where the system cannot (the final ``fsync``
    then writes everything)."""
    return _SFR is not None and _SFR(fd, offset, length, _SYNC_FILE_RANGE_WRITE) == 0


class Digest:
    """A hash fed on its own thread, in order, so that hashing overlaps the network and the disk (hashlib releases
    the GIL on large buffers)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._hash = hashlib.new(name, usedforsecurity=False)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=16)
        self._thread = threading.Thread(target=self._run, name=f"fetch-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._hash.update(chunk)

    def update(self, chunk: Any) -> None:
        self._queue.put(chunk)

    def hexdigest(self) -> str:
        self.close()
        return self._hash.hexdigest()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


@dataclass(frozen=True, slots=True)
class Source:
    """One object to download: the store, its path there, its size and ETag; ``pin``: resume only the same object
    (``If-Match`` on the ETag; plain HTTP servers do not all honour it)."""

    uri: str
    store: Any
    path: str
    size: int
    etag: str | None
    pin: bool
    ranged: bool  # whether parallel ranged GETs may be used (object stores, not arbitrary HTTP servers)


class _Stopped(Exception):
    """Another part failed: this one stops where it is."""


class _Retry:
    """The retry budget of one stream or one part: fatal errors (not found, refused, the object replaced) are raised
    at once, the rest are retried with exponential back-off until ``retries`` have failed."""

    def __init__(self, uri: str, retries: int, backoff: float, wait: Callable[[float], object]) -> None:
        self.uri, self.retries, self.backoff, self.wait = uri, retries, backoff, wait
        self.failures = 0

    def failed(self, e: Exception, where: str) -> None:
        if not isinstance(e, StorageError) and is_fatal(e):
            raise explain(self.uri, e) from e
        self.failures += 1
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if self.failures > self.retries:
            raise StorageError(
                f"{self.uri}: download failed after {self.failures} tries, {where} (truncated or interrupted): {why}"
            ) from e
        log.warning("%s: try %d failed, %s, resuming: %s", self.uri, self.failures, where, why)
        self.wait(min(self.backoff * 2 ** (self.failures - 1), 10.0))


def _write_at(fd: int, chunk: Any, offset: int) -> None:
    view = memoryview(chunk)
    at = offset
    while view:
        n = os.pwrite(fd, view, at)
        view, at = view[n:], at + n
    start_writeback(fd, offset, at - offset)


def _get(src: Source, options: dict[str, Any], min_chunk: int) -> Iterable[Any]:
    """The object's bytes; a ranged GET (a resume, or a part) is pinned to the listed ETag, so that the bytes already
    received and these come from the same object even if it is replaced meanwhile."""
    import obstore

    if src.pin and src.etag and "range" in options:
        options["if_match"] = src.etag
    result = obstore.get(src.store, src.path, options=cast("GetOptions", options) if options else None)
    return cast("Iterable[Any]", result.stream(min_chunk_size=min_chunk))


def download(
    src: Source,
    fd: int,
    digests: Sequence[Digest],
    report: Callable[[int], None],
    *,
    retries: int,
    backoff: float,
    concurrency: int,
    part_size: int | None = None,
) -> int:
    """Write the object into ``fd`` (an empty file open for writing), feed ``digests`` its bytes in order and call
    ``report`` with the bytes done; returns the number of bytes received. Ranged GETs in parallel when the source
    allows them, ``concurrency`` > 1 and the object is larger than one part; else one stream, resumed after a cut.
    Raises :class:`StorageError` naming the URI."""
    part_size = part_size or PART_SIZE
    if src.ranged and concurrency > 1 and src.size > part_size:
        return _parts(src, fd, digests, report, retries, backoff, concurrency, part_size)
    return _stream(src, fd, digests, report, retries, backoff)


def _stream(
    src: Source,
    fd: int,
    digests: Sequence[Digest],
    report: Callable[[int], None],
    retries: int,
    backoff: float,
) -> int:
    def take(chunk: Any, done: int) -> None:
        for d in digests:
            d.update(chunk)
        report(done)

    return _fill(src, fd, _Span(0, src.size, part=False), take, _Retry(src.uri, retries, backoff, time.sleep))


def _parts(
    src: Source,
    fd: int,
    digests: Sequence[Digest],
    report: Callable[[int], None],
    retries: int,
    backoff: float,
    concurrency: int,
    part_size: int,
) -> int:
    bounds = iter([(start, min(start + part_size, src.size)) for start in range(0, src.size, part_size)])
    stop = threading.Event()
    done = 0
    with ThreadPoolExecutor(concurrency, thread_name_prefix="fetch-part") as pool:
        pending: deque[Future[list[Any]]] = deque()

        def submit() -> None:
            nxt = next(bounds, None)
            if nxt is not None:
                pending.append(pool.submit(_part, src, fd, nxt[0], nxt[1], retries, backoff, stop))

        try:
            for _ in range(concurrency + 2):
                submit()
            while pending:
                for chunk in pending.popleft().result():  # the parts in order, for the hashes
                    for d in digests:
                        d.update(chunk)
                    done += len(chunk)
                report(done)
                submit()
        except BaseException:
            stop.set()
            for f in pending:
                f.cancel()
            raise
    return done


def _part(src: Source, fd: int, start: int, end: int, retries: int, backoff: float, stop: threading.Event) -> list[Any]:
    """Bytes ``start`` to ``end`` (exclusive), written in place; returned for the hashes."""
    chunks: list[Any] = []
    retry = _Retry(src.uri, retries, backoff, stop.wait)
    _fill(src, fd, _Span(start, end, part=True), lambda chunk, _pos: chunks.append(chunk), retry, stop)
    return chunks


@dataclass(frozen=True, slots=True)
class _Span:
    """What one GET loop fetches: bytes ``start`` to ``end`` (exclusive), a ``part`` of a parallel download, or else the
    whole object as one stream (``start`` 0, ``end`` its size)."""

    start: int
    end: int
    part: bool

    def options(self, pos: int) -> dict[str, Any]:
        """The GET from ``pos``: a part asks for its own range; the stream's first GET asks for no range (a server
        that ignores ranges serves it all the same) and a resume for the rest of the object."""
        if self.part:
            return {"range": (pos, self.end)}
        return {"range": {"offset": pos}} if pos else {}

    def name(self) -> str:
        return f"the part {self.start}-{self.end - 1}" if self.part else str(self.end)

    def received(self, pos: int) -> str:
        if self.part:
            return f"{pos - self.start} of the {self.end - self.start} bytes at {self.start}-{self.end - 1} received"
        return f"{pos} of {self.end} bytes received"


def _fill(
    src: Source,
    fd: int,
    span: _Span,
    take: Callable[[Any, int], None],
    retry: _Retry,
    stop: threading.Event | None = None,
) -> int:
    """Write ``span``'s bytes into ``fd`` at their offsets, handing each chunk written to ``take`` with the byte
    reached; a GET cut short is retried from that byte. An empty object still takes one GET. A part stops at once
    (``_Stopped``) when ``stop`` is set, and fails without retrying (``_Refused``) when the store sends more than its
    range. Returns the byte reached."""
    pos = span.start
    while pos < span.end or span.end == 0:
        if stop is not None and stop.is_set():
            raise _Stopped
        try:
            for chunk in _get(src, span.options(pos), CHUNK):
                if span.part and pos + len(chunk) > span.end:
                    raise _Refused(
                        f"{src.uri}: the store sent more than the {span.end - span.start} bytes at "
                        f"{span.start}-{span.end - 1} asked for (it does not honour ranged GETs)"
                    )
                _write_at(fd, chunk, pos)
                pos += len(chunk)
                take(chunk, pos)
                if stop is not None and stop.is_set():
                    raise _Stopped
            if pos < span.end:
                raise StorageError(f"the connection ended at byte {pos} of {span.name()}")
            break
        except (_Stopped, _Refused):
            raise
        except Exception as e:
            retry.failed(e, span.received(pos))
    return pos


class _Refused(StorageError):
    """An answer no retry will fix."""
