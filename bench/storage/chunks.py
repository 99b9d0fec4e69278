"""The client's CPU cost of a download by the size of the chunks obstore hands to Python.

One object of ``--size`` bytes on the local S3-compatible server (moto, as ``run.py``); for each chunk size, in turn
and ``--repeats`` times, a stream only (bytes received and dropped) and the fetch's own pipeline
(:func:`kubeinfer.storage.transfer.download` into a file with writeback, SHA-256 on its thread, fsync). The figure is
this process's CPU-seconds per GB (every thread, kernel time included), which other work on the machine hardly moves,
unlike MB/s; the median and the lowest of the repeats are printed.

    flock /tmp/kubeinfer-bench.lock .venv/bin/python bench/storage/chunks.py --size 512Mi --repeats 3
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from kubeinfer.spec.quantity import parse_quantity  # noqa: E402
from kubeinfer.storage import transfer  # noqa: E402
from kubeinfer.storage.stores import open_store  # noqa: E402
from storage_servers import s3_server  # noqa: E402

SIZES = {"8Mi": 8 << 20, "1Mi": 1 << 20, "256Ki": 256 << 10}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="512Mi")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    size = int(parse_quantity(args.size).value)
    results: dict[str, list[float]] = {}
    with s3_server() as s3, tempfile.TemporaryDirectory(prefix="kubeinfer-bench-chunks-") as work:
        uri = s3.put("bench/chunks.bin", os.urandom(size))
        opened = open_store(uri, s3.env())
        src = transfer.Source(uri, opened.store, opened.path, size, None, False, True)
        for _ in range(args.repeats):
            for name, chunk in SIZES.items():
                import obstore

                c0 = cpu_seconds()
                for _piece in obstore.get(opened.store, opened.path).stream(min_chunk_size=chunk):
                    pass
                results.setdefault(f"stream {name}", []).append((cpu_seconds() - c0) / (size / 1e9))
                transfer.CHUNK = chunk
                target = Path(work) / "out.bin"
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                c0 = cpu_seconds()
                sha = transfer.Digest("sha256")
                transfer.download(src, fd, [sha], lambda _: None, retries=0, backoff=0.1, concurrency=1)
                sha.hexdigest()
                os.fsync(fd)
                os.close(fd)
                target.unlink()
                results.setdefault(f"fetch pipeline {name}", []).append((cpu_seconds() - c0) / (size / 1e9))
    print(f"{'':24s} CPU-s/GB: median  lowest   ({args.repeats} repeats, {size} bytes, load {os.getloadavg()[0]:.1f})")
    for key, values in results.items():
        print(f"{key:24s} {statistics.median(values):15.2f} {min(values):7.2f}")


if __name__ == "__main__":
    main()
