"""Request-path cost of the payload log and of the ``version`` label: the same replica before and after, and with
``spec.logger`` on, keep-alive connections.

    .venv/bin/python bench/payload_log/run.py --before SRC [--after SRC] [--rounds 3] [--duration 5] [--conns 16]
        [--out bench/payload_log/RESULTS.md]

``--before`` and ``--after`` are ``src`` folders of two trees of this repository (``git archive REV src | tar -x``);
each replica runs ``python -m kubeinfer serve`` with that folder first on ``PYTHONPATH``. ``--after`` defaults to this
checkout's ``src``. Load: ``wrk`` (C, one thread) POSTing one ``examples/tabular64`` row (64 FP32 features, OIP v2
JSON) over ``--conns`` connections. Variants: ``before``, ``after`` (no ``spec.logger``: what every replica without
payload logging pays) and ``after+log`` (``spec.logger`` writing every request and response to a file: what logging
costs). The three replicas run side by side and each round loads each once (the order rotates), after a one-second
warm-up; figures are medians over the rounds. The machine is shared, so the ratios taken in one sitting are what the
figures mean; the replica's CPU time per request is the figure other load disturbs least.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from kubeinfer.bench.loadgen import LoadSpec, run_wrk  # noqa: E402
from kubeinfer.testing import ServerProcess  # noqa: E402

BODY = orjson.dumps({"inputs": [{"name": "input-0", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64}]})


def spec(folder: Path, name: str, logger: bool) -> Path:
    path = folder / f"{name}.yaml"
    log = f"  logger: {{file: {folder / 'events.jsonl'}, maxFileSize: 64Mi, maxFiles: 1}}\n" if logger else ""
    path.write_text(
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: tabular64}\nspec:\n"
        f"  model: {{format: sklearn, uri: {ROOT / 'examples' / 'tabular64' / 'model.joblib'}}}\n"
        "  batching: {maxBatchSize: 128, maxDelayMs: 1}\n" + log
    )
    return path


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, conns: int, duration: float) -> tuple[float, float, int]:
    """One closed-loop wrk run (``kubeinfer.bench.loadgen.run_wrk``): req/s, p50 ms, requests answered."""
    res = run_wrk(
        LoadSpec(url=f"{url}/v2/models/tabular64/infer", body=BODY, concurrency=conns, duration=duration, warmup=0)
    )
    if res.errors:
        raise RuntimeError(f"wrk run not clean: {res.errors} errors ({res.statuses})")
    return res.throughput, res.latency_ms["p50"], res.requests


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--after", type=Path, default=ROOT / "src")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench/payload_log/run.py needs wrk on PATH")
    variants = {"before": (args.before, False), "after": (args.after, False), "after+log": (args.after, True)}
    runs: dict[str, list[tuple[float, float, float]]] = {k: [] for k in variants}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # All variants run side by side (an idle replica takes no CPU) and are loaded in turn, so that what else the
        # shared machine does in a sitting weighs on each alike.
        servers: dict[str, ServerProcess] = {}
        try:
            for name, (src, logger) in variants.items():
                env = {"PYTHONPATH": os.pathsep.join([str(src.resolve()), os.environ.get("PYTHONPATH", "")])}
                servers[name] = ServerProcess(spec(folder, name.replace("+", "-"), logger), grpc=False, env=env).start()
            for r in range(args.rounds):
                names = list(variants)
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    server = servers[name]
                    wrk(server.url, args.conns, 1.0)  # warm-up
                    cpu = cpu_seconds(server.pid)
                    rps, p50, total = wrk(server.url, args.conns, args.duration)
                    runs[name].append((rps, p50, (cpu_seconds(server.pid) - cpu) / total * 1e6))
                    print(
                        f"round {r + 1} {name:9}: {rps:9.0f} req/s  p50 {p50:.2f} ms  "
                        f"{runs[name][-1][2]:.1f} CPU us/req",
                        flush=True,
                    )
        finally:
            for server in servers.values():
                server.kill()
    med = {k: tuple(statistics.median(run[i] for run in v) for i in range(3)) for k, v in runs.items()}
    lines = [
        f"| | req/s (median of {args.rounds}) | p50 ms | server CPU us/request | req/s vs before | "
        "CPU vs before | runs (req/s) |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {k} | {med[k][0]:,.0f} | {med[k][1]:.2f} | {med[k][2]:.1f} | {med[k][0] / med['before'][0]:.3f} | "
            f"{med[k][2] / med['before'][2]:.3f} | {', '.join(f'{run[0]:,.0f}' for run in runs[k])} |"
            for k in variants
        ),
        "",
        f"wrk -t1 -c{args.conns} -d{args.duration:g}s, keep-alive, examples/tabular64 one row per request; "
        f"{platform.machine()}, {os.cpu_count()} CPUs (shared). Server CPU: user + system time of the replica "
        "process (all its threads) over the measured run, per request answered: the figure the load of other "
        "processes on the machine disturbs least.",
    ]
    print("\n".join(lines))
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
