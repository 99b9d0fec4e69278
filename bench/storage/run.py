"""Model download throughput against the disk's write speed, and a second replica starting from the cache.

A real S3-compatible server (moto, ``tests/s3server.py``, run from ``.venv-s3``) on 127.0.0.1 holds a random object
of ``--size`` bytes (1 GiB by default). Each of ``--repeats`` rounds measures, on the file system of the cache:

- ``dd``: ``dd if=/dev/zero bs=8M conv=fsync`` of the same size (the disk's write speed, flushed as the cache is);
- ``fetch``: :func:`kubeinfer.storage.fetch` of the object into an empty cache (download, size/MD5/SHA-256 checks,
  fsync, rename);

then a replica (``kubeinfer serve``, a format-python model whose uri is the object) starts with an empty cache, and a
second one with the cache the first filled. Prints a table and the medians; ``-o json`` writes them to a file.

    .venv/bin/python bench/storage/run.py --size 1Gi --repeats 3 -o bench/storage/results.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
from kubeinfer.storage import fetch  # noqa: E402
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


def fetch_mb_s(s3: S3Server, uri: str, cache: Path, size: int) -> float:
    shutil.rmtree(cache, ignore_errors=True)
    subprocess.run(["sync"], check=True)
    t0 = time.perf_counter()
    fetch(uri, cache, env=s3.env())
    seconds = time.perf_counter() - t0
    return size / seconds / 1e6


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
            uri = s3.put("bench/weights.bin", os.urandom(size))
            rows = []
            for i in range(args.repeats):
                disk = dd_mb_s(work, size)
                got = fetch_mb_s(s3, uri, work / "cache", size)
                load = os.getloadavg()[0]  # other work on the machine disturbs both figures: say how much
                rows.append(
                    {
                        "dd_mb_s": round(disk, 1),
                        "fetch_mb_s": round(got, 1),
                        "ratio": round(got / disk, 3),
                        "load_1m": round(load, 2),
                    }
                )
                print(
                    f"round {i + 1}: dd {disk:7.1f} MB/s  fetch {got:7.1f} MB/s  ratio {got / disk:.2f}  load {load:.1f}"
                )
            shutil.rmtree(work / "cache", ignore_errors=True)
            (work / "svc").mkdir()
            (work / "svc" / "benchmodel.py").write_text(MODEL)
            spec = work / "svc" / "service.yaml"
            spec.write_text(
                "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: weights}\nspec:\n"
                f"  model: {{format: python, className: 'benchmodel:Model', uri: '{uri}'}}\n"
            )
            env = s3.env() | {"KUBEINFER_MODEL_CACHE": str(work / "cache")}
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
    dd_med = statistics.median(r["dd_mb_s"] for r in rows)
    fetch_med = statistics.median(r["fetch_mb_s"] for r in rows)
    result = {
        "size_bytes": size,
        "rounds": rows,
        "median_dd_mb_s": dd_med,
        "median_fetch_mb_s": fetch_med,
        "median_ratio": round(statistics.median(r["ratio"] for r in rows), 3),
        "replica": replica,
        "cpus": os.cpu_count(),
    }
    print(
        f"median: dd {dd_med:.1f} MB/s, fetch {fetch_med:.1f} MB/s ({result['median_ratio']:.0%} of dd); "
        f"replica cold start {replica['cold_start_s']} s, second replica {replica['second_replica_start_s']} s "
        f"(downloaded again: {replica['second_replica_downloaded']})"
    )
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
