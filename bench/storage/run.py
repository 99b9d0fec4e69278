"""Model download throughput against the disk's write speed, and a second replica starting from the cache.

A real S3-compatible server on 127.0.0.1 (``--server``: ``moto``, Python, ``tests/s3server.py`` run from
``.venv-s3``; ``s3rver``, Node.js, from ``.s3rver``; or ``seaweedfs``, Go, ``weed mini`` from ``.venv-s3``; see
``tests/storage_servers.py``) holds a random object of
``--size`` bytes (1 GiB by default), put in one PUT so that its ETag is its MD5. ``--server nginx`` is the reference
of a server that costs almost nothing: Debian's nginx (``apt-get install nginx``), one process, ``sendfile``, serving
the object's file at its S3 path to kubeinfer's S3 client (GET and HEAD only, which is all a fetch asks for; the
signature is not checked and the ETag is not an MD5, so ``fetch``, which checks an MD5, is left out). Each of
``--repeats`` rounds measures, side by side on the file system of the cache, each of them from ``sync`` to its data
flushed (``fsync``):

- ``dd``: ``dd if=/dev/zero bs=8M conv=fsync`` of the same size (the disk's write speed, flushed as the cache is);
- ``stream``: the object's bytes received with obstore (1 MiB chunks, as the fetch takes them) and dropped: what the
  server and the network part of the client cost, with no file and no hash;
- ``fetch``: :func:`kubeinfer.storage.fetch` of the object into an empty cache, as a replica does without
  ``model.sha256``: download, size, MD5 (the ETag) and SHA-256 checks, fsync, rename;
- ``fetch_sha256``: the same with ``model.sha256`` given: one hash (SHA-256), no MD5;
- ``fetch_no_writeback``: ``fetch_sha256`` with the writeback hint off (all the flushing left to the final fsync),
  to show what the hint is worth.

Beside MB/s each transfer reports CPU-seconds per GB, which other work on the machine hardly moves: the client's (this
process, all its threads, kernel time included), split by thread (``receive``: obstore's tokio threads, the HTTP
response read from the socket; ``loop``: the Python thread that takes each chunk, writes it and starts its writeback;
``sha256``/``md5``: the hash threads; ``other``: what the sampling, every 20 ms, did not see, as the last moments of a
thread that ended), and the server's (its process, from ``/proc``).

Every fetch here is one stream (``concurrency=1``): moto reads the whole object for each GET, ranged or not, so
ranged GETs in parallel would measure moto, not the client. Then a replica (``kubeinfer serve``, a format-python
model whose uri is the object) starts with an empty cache, and a second one with the cache the first filled. Prints
a table, the per-round ratios to ``dd`` with their median, worst and best; ``-o json`` writes them to a file.

    flock /tmp/kubeinfer-bench.lock .venv/bin/python bench/storage/run.py --size 1Gi --repeats 5 \
        --server s3rver -o bench/storage/results-s3rver.json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))


from kubeinfer.spec.quantity import parse_quantity  # noqa: E402
from kubeinfer.storage import fetch, transfer  # noqa: E402
from kubeinfer.testing import ServerProcess  # noqa: E402
from storage_servers import S3Server, s3_server, s3rver, seaweedfs  # noqa: E402


@dataclasses.dataclass(frozen=True)
class StaticObjects(S3Server):
    """nginx serving files at their S3 paths (``root/bucket/key``)."""

    root: Path = Path()

    def put(self, key: str, data: bytes) -> str:
        target = self.root / self.bucket / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return f"s3://{self.bucket}/{key}"


@contextlib.contextmanager
def nginx() -> Iterator[S3Server]:
    """Debian's nginx on a free port of 127.0.0.1: one process (its CPU time is the server's), ``sendfile``."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        raise SystemExit("nginx is not installed: apt-get install nginx (the reference server of --server nginx)")
    with tempfile.TemporaryDirectory(prefix="kubeinfer-bench-nginx-") as tmp:
        root = Path(tmp)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        (root / "nginx.conf").write_text(
            f"daemon off; master_process off; worker_processes 1; error_log stderr error; pid {root}/nginx.pid;\n"
            "events { worker_connections 64; }\n"
            f"http {{ access_log off; sendfile on; tcp_nopush on; client_body_temp_path {root}/body;\n"
            f"  proxy_temp_path {root}/p; fastcgi_temp_path {root}/f; uwsgi_temp_path {root}/u; scgi_temp_path {root}/s;\n"
            f"  server {{ listen 127.0.0.1:{port}; root {root}/objects; }} }}\n"
        )
        proc = subprocess.Popen([binary, "-p", str(root), "-c", str(root / "nginx.conf")], stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"nginx did not listen on 127.0.0.1:{port}")
                time.sleep(0.05)
            yield StaticObjects(f"http://127.0.0.1:{port}", "x", "x", "models", pid=proc.pid, root=root / "objects")
        finally:
            proc.terminate()
            proc.wait(timeout=10)


SERVERS: dict[str, Callable[[], contextlib.AbstractContextManager[S3Server]]] = {
    "moto": s3_server,
    "s3rver": s3rver,
    "seaweedfs": seaweedfs,
    "nginx": nginx,
}
_TICK = os.sysconf("SC_CLK_TCK")
THREAD_KINDS = ("receive", "loop", "sha256", "md5")

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


class ThreadCpu:
    """CPU-seconds of this process's threads while it runs, by kind of thread, sampled from ``/proc/self/task`` every
    ``interval`` s (a thread that ends is counted up to its last sample)."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self._base: dict[int, float] = {}  # CPU time at the start (0 for a thread born since)
        self._last: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    @staticmethod
    def _kind(tid: int, names: dict[int, str]) -> str:
        name = names.get(tid)
        if name is None:  # not a Python thread: obstore's tokio runtime, reading the responses
            return "receive" if _comm(tid).startswith("tokio") else "native"
        if name == "MainThread":
            return "loop"
        return name.removeprefix("fetch-")

    def _sample(self) -> None:
        names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
        for entry in os.listdir("/proc/self/task"):
            tid = int(entry)
            cpu = _task_cpu(tid)
            if cpu is not None and tid != self._thread.native_id:
                self._base.setdefault(tid, 0.0)
                # a Python thread that is ending has left threading's list: it keeps the kind it had
                kind = self._last[tid][0] if tid in self._last else "native"
                self._last[tid] = (kind if kind != "native" else self._kind(tid, names), cpu)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> ThreadCpu:
        for entry in os.listdir("/proc/self/task"):  # the threads already there count from now
            cpu = _task_cpu(int(entry))
            if cpu is not None:
                self._base[int(entry)] = cpu
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for tid, (kind, cpu) in self._last.items():
            out[kind] = out.get(kind, 0.0) + cpu - self._base[tid]
        return out


def _task_cpu(tid: int) -> float | None:
    try:
        with open(f"/proc/self/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK


def _comm(tid: int) -> str:
    try:
        with open(f"/proc/self/task/{tid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


@contextlib.contextmanager
def measured(size: int, server_pid: int, out: dict[str, float]) -> Iterator[None]:
    """Fills ``out`` with MB/s, and CPU-seconds per GB: the client's (``cpu_s_per_gb``, and by thread), the server's."""
    server = psutil.Process(server_pid)
    gb = size / 1e9
    s0 = sum(server.cpu_times()[:2])
    with ThreadCpu() as threads:
        cpu0, t0 = _cpu_seconds(), time.perf_counter()
        yield
        seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    out["mb_s"] = size / seconds / 1e6
    out["cpu_s_per_gb"] = cpu / gb
    out["server_cpu_s_per_gb"] = (sum(server.cpu_times()[:2]) - s0) / gb
    kinds = threads.by_kind()
    for kind in THREAD_KINDS:
        out[f"{kind}_cpu_s_per_gb"] = kinds.get(kind, 0.0) / gb
    out["other_cpu_s_per_gb"] = out["cpu_s_per_gb"] - sum(out[f"{k}_cpu_s_per_gb"] for k in THREAD_KINDS)


def stream_mb_s(s3: S3Server, uri: str, size: int) -> dict[str, float]:
    """The object received in 1 MiB chunks and dropped: the server and the client's network part alone."""
    import obstore

    from kubeinfer.storage.stores import open_store

    opened = open_store(uri, s3.env())
    out: dict[str, float] = {}
    with measured(size, s3.pid, out):
        got = sum(len(c) for c in obstore.get(opened.store, opened.path).stream(min_chunk_size=transfer.CHUNK))
    assert got == size, (got, size)
    return out


def fetch_mb_s(s3: S3Server, uri: str, cache: Path, size: int, sha256: str | None, writeback: bool) -> dict[str, float]:
    """MB/s, and CPU-seconds per GB (see :func:`measured`)."""
    shutil.rmtree(cache, ignore_errors=True)
    subprocess.run(["sync"], check=True)
    hint = transfer._SFR
    if not writeback:
        transfer._SFR = None  # the ablation: no writeback hint, the final fsync flushes everything
    out: dict[str, float] = {}
    try:
        with measured(size, s3.pid, out):
            fetch(uri, cache, env=s3.env(), sha256=sha256, concurrency=1)
    finally:
        transfer._SFR = hint
    shutil.rmtree(cache, ignore_errors=True)
    return out


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
    ap.add_argument("--server", choices=sorted(SERVERS), default="moto", help="the S3-compatible server (default moto)")
    ap.add_argument("--dir", type=Path, default=None, help="where the cache goes (default: a temporary folder)")
    ap.add_argument("-o", "--output", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    size = int(parse_quantity(args.size).value)
    size -= size % (8 << 20)
    work = Path(tempfile.mkdtemp(prefix="kubeinfer-bench-storage-", dir=args.dir))
    # nginx's ETag is no MD5: its fetch would check SHA-256 only, as fetch_sha256 does
    names = ["stream", *(v for v in VARIANTS if not (args.server == "nginx" and v == "fetch"))]
    try:
        with SERVERS[args.server]() as s3:
            print(f"uploading {size} random bytes to {args.server} at {s3.endpoint} ...", file=sys.stderr)
            data = os.urandom(size)
            uri = s3.put("bench/weights.bin", data)
            digest = hashlib.sha256(data).hexdigest()
            del data
            rows = []
            for i in range(args.repeats):
                row: dict[str, float] = {"dd_mb_s": round(dd_mb_s(work, size), 1)}
                for name in names:
                    if name == "stream":
                        got = stream_mb_s(s3, uri, size)
                    else:
                        given, writeback = VARIANTS[name]
                        got = fetch_mb_s(s3, uri, work / "cache", size, digest if given else None, writeback)
                    for key, value in got.items():
                        row[f"{name}_{key}"] = round(value, 1 if key == "mb_s" else 2)
                    row[f"{name}_ratio"] = round(got["mb_s"] / row["dd_mb_s"], 3)
                row["load_1m"] = round(os.getloadavg()[0], 2)  # other work disturbs both figures: say how much
                rows.append(row)
                print(
                    f"round {i + 1}: dd {row['dd_mb_s']:7.1f} MB/s  "
                    + "  ".join(f"{n} {row[f'{n}_mb_s']:6.1f} ({row[f'{n}_ratio']:.2f})" for n in names)
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
    keys = [k.removeprefix("stream_") for k in rows[0] if k.startswith("stream_")]
    result = {
        "server": args.server,
        "size_bytes": size,
        "rounds": rows,
        "dd_mb_s": summary([r["dd_mb_s"] for r in rows]),
        **{f"{n}_{k}": summary([r[f"{n}_{k}"] for r in rows]) for n in names for k in keys},
        "replica": replica,
        "cpus": os.cpu_count(),
        "load_1m": summary([r["load_1m"] for r in rows]),
    }
    for n in names:
        r = result[f"{n}_ratio"]

        def cpu(k: str, n: str = n) -> str:
            return f"{result[f'{n}_{k}cpu_s_per_gb']['median']:.2f}"

        print(
            f"{n}/dd per round: median {r['median']:.2f}, worst {r['lowest']:.2f}, best {r['highest']:.2f}; "
            f"CPU-s/GB medians: client {cpu('')} (receive {cpu('receive_')}, loop {cpu('loop_')}, "
            f"sha256 {cpu('sha256_')}, md5 {cpu('md5_')}, other {cpu('other_')}), server {cpu('server_')}"
        )
    print(
        f"replica cold start {replica['cold_start_s']} s, second replica {replica['second_replica_start_s']} s "
        f"(downloaded again: {replica['second_replica_downloaded']})"
    )
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
