"""Where the client's pipeline waits: variants of the fetch's download loop side by side, from a server that costs
almost nothing (``run.py``'s nginx), against ``dd``.

Each round runs ``dd`` and then, into a file with ``fsync`` at the end, :func:`kubeinfer.storage.transfer.download`
as it is (``current``: chunks written with writeback started, SHA-256 on its own thread) and these variants of it:
``nohash`` (no hash at all), ``nowrite`` (received and hashed, not written), ``inline`` (SHA-256 on the loop's own
thread), ``switch`` (``current`` with the GIL's switch interval at 0.5 ms instead of 5), ``writer_thread`` (the writes
on a thread of their own, the loop only receiving), ``chunk4m`` (4 MiB chunks instead of 1). MB/s, the ratio to
``dd`` and CPU-seconds per GB by thread as ``run.py`` measures them; medians over ``--repeats``.

    flock /tmp/kubeinfer-bench.lock .venv/bin/python bench/storage/variants.py --size 1Gi --repeats 3
"""

from __future__ import annotations

import argparse
import hashlib
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import dd_mb_s, measured, nginx

from kubeinfer.spec.quantity import parse_quantity
from kubeinfer.storage import transfer
from kubeinfer.storage.stores import open_store


def _chunks(src: transfer.Source) -> Any:
    import obstore

    return obstore.get(src.store, src.path).stream(min_chunk_size=transfer.CHUNK)


def current(src: transfer.Source, fd: int) -> None:
    sha = transfer.Digest("sha256")
    transfer.download(src, fd, [sha], lambda _: None, retries=0, backoff=0.1, concurrency=1)
    sha.hexdigest()


def nohash(src: transfer.Source, fd: int) -> None:
    transfer.download(src, fd, [], lambda _: None, retries=0, backoff=0.1, concurrency=1)


def nowrite(src: transfer.Source, fd: int) -> None:
    sha = transfer.Digest("sha256")
    for chunk in _chunks(src):
        sha.update(chunk)
    sha.hexdigest()


def inline(src: transfer.Source, fd: int) -> None:
    h, pos = hashlib.sha256(), 0
    for chunk in _chunks(src):
        transfer._write_at(fd, chunk, pos)
        pos += len(chunk)
        h.update(chunk)
    h.hexdigest()


def switch(src: transfer.Source, fd: int) -> None:
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    try:
        current(src, fd)
    finally:
        sys.setswitchinterval(old)


def writer_thread(src: transfer.Source, fd: int) -> None:
    sha = transfer.Digest("sha256")
    todo: queue.Queue[tuple[Any, int] | None] = queue.Queue(maxsize=16)

    def writer() -> None:
        while (item := todo.get()) is not None:
            transfer._write_at(fd, item[0], item[1])

    thread = threading.Thread(target=writer, name="fetch-writer")
    thread.start()
    pos = 0
    for chunk in _chunks(src):
        todo.put((chunk, pos))
        sha.update(chunk)
        pos += len(chunk)
    todo.put(None)
    thread.join()
    sha.hexdigest()


def chunk4m(src: transfer.Source, fd: int) -> None:
    old = transfer.CHUNK
    transfer.CHUNK = 4 << 20
    try:
        current(src, fd)
    finally:
        transfer.CHUNK = old


VARIANTS: dict[str, Callable[[transfer.Source, int], None]] = {
    f.__name__: f for f in (current, nohash, nowrite, inline, switch, writer_thread, chunk4m)
}
KEYS = ("mb_s", "ratio", "cpu_s_per_gb", "receive_cpu_s_per_gb", "loop_cpu_s_per_gb", "sha256_cpu_s_per_gb")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1Gi", help="object size (a quantity: 1Gi, 256Mi)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    size = int(parse_quantity(args.size).value)
    size -= size % (8 << 20)
    results: dict[str, dict[str, list[float]]] = {}
    with nginx() as server, tempfile.TemporaryDirectory(prefix="kubeinfer-bench-variants-") as tmp:
        work = Path(tmp)
        uri = server.put("bench/weights.bin", os.urandom(size))
        opened = open_store(uri, server.env())
        src = transfer.Source(uri, opened.store, opened.path, size, None, False, True)
        for i in range(args.repeats):
            dd = dd_mb_s(work, size)
            print(f"round {i + 1}: dd {dd:.0f} MB/s, load {os.getloadavg()[0]:.1f}", flush=True)
            for name, variant in VARIANTS.items():
                subprocess.run(["sync"], check=True)
                target = work / "out.bin"
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC)
                out: dict[str, float] = {}
                try:
                    with measured(size, server.pid, out):
                        variant(src, fd)
                        os.fsync(fd)
                finally:
                    os.close(fd)
                    target.unlink()
                out["ratio"] = out["mb_s"] / dd
                for key in KEYS:
                    results.setdefault(name, {}).setdefault(key, []).append(out[key])
                print(f"  {name:14s} " + "  ".join(f"{k} {out[k]:.2f}" for k in KEYS), flush=True)
    print("medians (ratio: worst, best):")
    for name, values in results.items():
        r = values["ratio"]
        print(
            f"  {name:14s} {statistics.median(values['mb_s']):7.1f} MB/s  /dd {statistics.median(r):.2f} "
            f"({min(r):.2f}, {max(r):.2f})  "
            + "  ".join(f"{k.removesuffix('_cpu_s_per_gb')} {statistics.median(values[k]):.2f}" for k in KEYS[2:])
        )


if __name__ == "__main__":
    main()
