"""Model download throughput against the disk's write speed, and a second replica starting from the cache.

A real S3-compatible server (moto, ``tests/s3server.py``, run from ``.venv-s3``) on 127.0.0.1 holds a random object
of ``--size`` bytes (1 GiB by default). Each of ``--repeats`` rounds measures, side by side on the file system of the
cache, each of them from ``sync`` to its data flushed (``fsync``):

- ``dd``: ``dd if=/dev/zero bs=8M conv=fsync`` of the same size (the disk's write speed, flushed as the cache is);
- ``fetch``: :func:`kubeinfer.storage.fetch` of the object into an empty cache, as a replica does without
  ``model.sha256``: download, size, MD5 (the ETag) and SHA-256 checks, fsync, rename;
- ``fetch_sha256``: the same with ``model.sha256`` given: one hash (SHA-256), no MD5;
- ``fetch_no_writeback``: ``fetch_sha256`` with the writeback hint off (all the flushing left to the final fsync),
  to show what the hint is worth.

Beside MB/s each fetch reports the client's CPU-seconds per GB (all its threads), which other work on the machine
hardly moves.

Every fetch here is one stream (``concurrency=1``): moto reads the whole object for each GET, ranged or not, so
ranged GETs in parallel would measure moto, not the client. Then a replica (``kubeinfer serve``, a format-python
model whose uri is the object) starts with an empty cache, and a second one with the cache the first filled. Prints
a table, the per-round ratios to ``dd`` with their median, worst and best; ``-o json`` writes them to a file.

    flock /tmp/kubeinfer-bench.lock .venv/bin/python bench/storage/run.py --size 1Gi --repeats 5 \
        -o bench/storage/results.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))


from kubeinfer.spec.quantity import parse_quantity  # noqa: E402
from kubeinfer.storage import fetch, transfer  # noqa: E402
from kubeinfer.testing import ServerProcess  # noqa: E402
from storage_servers import S3Server, s3_server  # noqa: E402

MODEL = "class Model:\n    def predict(self, inputs):\n        return {'y': inputs['x']}\n"


def dd_mb_s(where: Path, size: int) -> float:
    target = where / "dd.bin"
    subprocess.run(["sync"], check=True)
    t0 = time.perf_counter()
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={target}", "bs=8M", f"count={size // (8 << 20)}", "conv=fsync"],
        check=True,
        capture_output=True,
    )
    seconds = time.perf_counter() - t0
    target.unlink()
    return size / seconds / 1e6


def fetch_mb_s(
    s3: S3Server, uri: str, cache: Path, size: int, sha256: str | None, writeback: bool
) -> tuple[float, float]:
    """MB/s, and the client's CPU-seconds per GB."""
    shutil.rmtree(cache, ignore_errors=True)
    subprocess.run(["sync"], check=True)
    hint = transfer._SFR
    if not writeback:
        transfer._SFR = None  # the ablation: no writeback hint, the final fsync flushes everything
    try:
        cpu0, t0 = _cpu_seconds(), time.perf_counter()
        fetch(uri, cache, env=s3.env(), sha256=sha256, concurrency=1)
        seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    finally:
        transfer._SFR = hint
    shutil.rmtree(cache, ignore_errors=True)
    return size / seconds / 1e6, cpu / (size / 1e9)


def _cpu_seconds() -> float:
    """CPU time of this process, every thread (the download, the hashes, the kernel's copies into the page cache):
    unlike MB/s, it hardly moves when other work shares the CPUs."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


VARIANTS = {  # name -> (model.sha256 given, writeback hint)
    "fetch": (False, True),
    "fetch_sha256": (True, True),
    "fetch_no_writeback": (True, False),
}


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "lowest": round(min(values), 3),
        "highest": round(max(values), 3),
    }


def replica_start(spec: Path, env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    server = ServerProcess(spec, ["--port", "0", "--no-grpc"], env=env, start_timeout=600).start()
    seconds = time.perf_counter() - t0
    server.kill()
    return seconds, server.log()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1Gi", help="object size (a quantity: 1Gi, 256Mi)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None, help="where the cache goes (default: a temporary folder)")
    ap.add_argument("-o", "--output", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    size = int(parse_quantity(args.size).value)
    size -= size % (8 << 20)
    work = Path(tempfile.mkdtemp(prefix="kubeinfer-bench-storage-", dir=args.dir))
    try:
        with s3_server() as s3:
            print(f"uploading {size} random bytes to {s3.endpoint} ...", file=sys.stderr)
            data = os.urandom(size)
            uri = s3.put("bench/weights.bin", data)
            digest = hashlib.sha256(data).hexdigest()
            del data
            rows = []
            for i in range(args.repeats):
                row: dict[str, float] = {"dd_mb_s": round(dd_mb_s(work, size), 1)}
                for name, (given, writeback) in VARIANTS.items():
                    got, cpu = fetch_mb_s(s3, uri, work / "cache", size, digest if given else None, writeback)
                    row[f"{name}_mb_s"] = round(got, 1)
                    row[f"{name}_cpu_s_per_gb"] = round(cpu, 2)
                    row[f"{name}_ratio"] = round(got / row["dd_mb_s"], 3)
                row["load_1m"] = round(os.getloadavg()[0], 2)  # other work disturbs both figures: say how much
                rows.append(row)
                print(
                    f"round {i + 1}: dd {row['dd_mb_s']:7.1f} MB/s  "
                    + "  ".join(f"{n} {row[f'{n}_mb_s']:6.1f} ({row[f'{n}_ratio']:.2f})" for n in VARIANTS)
                    + f"  load {row['load_1m']:.1f}"
                )
            shutil.rmtree(work / "cache", ignore_errors=True)
            (work / "svc").mkdir()
            (work / "svc" / "benchmodel.py").write_text(MODEL)
            spec = work / "svc" / "service.yaml"
            spec.write_text(
                "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: weights}\nspec:\n"
                f"  model: {{format: python, className: 'benchmodel:Model', uri: '{uri}'}}\n"
            )
            env = s3.env() | {"KUBEINFER_MODEL_CACHE": str(work / "cache"), "KUBEINFER_FETCH_CONCURRENCY": "1"}
            cold, log = replica_start(spec, env)
            downloaded = re.search(r"bytes in [0-9.]+ s \(([0-9]+) MB/s\)", log)
            warm, warm_log = replica_start(spec, env)
            replica = {
                "cold_start_s": round(cold, 2),
                "cold_download_mb_s": float(downloaded.group(1)) if downloaded else None,
                "second_replica_start_s": round(warm, 2),
                "second_replica_downloaded": " bytes in " in warm_log,
            }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "size_bytes": size,
        "rounds": rows,
        "dd_mb_s": summary([r["dd_mb_s"] for r in rows]),
        **{f"{n}_mb_s": summary([r[f"{n}_mb_s"] for r in rows]) for n in VARIANTS},
        **{f"{n}_ratio": summary([r[f"{n}_ratio"] for r in rows]) for n in VARIANTS},
        **{f"{n}_cpu_s_per_gb": summary([r[f"{n}_cpu_s_per_gb"] for r in rows]) for n in VARIANTS},
        "replica": replica,
        "cpus": os.cpu_count(),
    }
    for n in VARIANTS:
        r = result[f"{n}_ratio"]
        c = result[f"{n}_cpu_s_per_gb"]
        print(
            f"{n}/dd per round: median {r['median']:.2f}, worst {r['lowest']:.2f}, best {r['highest']:.2f}; "
            f"client CPU-s/GB median {c['median']:.2f}"
        )
    print(
        f"replica cold start {replica['cold_start_s']} s, second replica {replica['second_replica_start_s']} s "
        f"(downloaded again: {replica['second_replica_downloaded']})"
    )
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
