"""What the writeback hint is worth when bytes arrive faster than the disk takes them: ``--size`` bytes written from
memory in 1 MiB chunks into the model cache's file system, then ``fsync``, with and without
:func:`kubeinfer.storage.transfer.start_writeback` after each chunk, alternated ``--repeats`` times. Prints the time
spent writing and in the final ``fsync`` (medians, worst and best of the total).

    flock /tmp/kubeinfer-bench.lock .venv/bin/python bench/storage/writeback.py --size 1Gi --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from kubeinfer.spec.quantity import parse_quantity
from kubeinfer.storage.transfer import start_writeback


def write(path: Path, size: int, hint: bool) -> tuple[float, float]:
    chunk = os.urandom(1 << 20)
    subprocess.run(["sync"], check=True)
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    for offset in range(0, size, len(chunk)):
        os.pwrite(fd, chunk, offset)
        if hint:
            start_writeback(fd, offset, len(chunk))
    t1 = time.perf_counter()
    os.fsync(fd)
    t2 = time.perf_counter()
    os.close(fd)
    path.unlink()
    return t1 - t0, t2 - t1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1Gi")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    size = int(parse_quantity(args.size).value)
    got: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="kubeinfer-bench-writeback-", dir=args.dir) as work:
        for _ in range(args.repeats):
            for hint in (False, True):
                got[hint].append(write(Path(work) / "out.bin", size, hint))
    print(f"{size} bytes, load {os.getloadavg()[0]:.1f}")
    for hint, runs in got.items():
        total = [w + f for w, f in runs]
        print(
            f"{'with' if hint else 'without'} the hint: write {statistics.median(w for w, _ in runs):.2f} s, "
            f"fsync {statistics.median(f for _, f in runs):.2f} s (medians); "
            f"MB/s median {size / statistics.median(total) / 1e6:.0f}, worst {size / max(total) / 1e6:.0f}, "
            f"best {size / min(total) / 1e6:.0f}"
        )


if __name__ == "__main__":
    main()
