"""Router overhead benchmark: replicas driven directly vs through ``kubeinfer.local.router.Router``, side by side.

    .venv/bin/python bench/router/run.py [--rounds 3] [--duration 8] [--out bench/router/RESULTS.md] [--haproxy]

Load: ``wrk`` (C, one thread per process) POSTing one row of 64 FP32 to ``examples/tabular64`` (OIP v2 JSON).
Each round runs, in this order, with a short wrk warm-up before each:

1. latency, c=1: wrk -c1 straight to replica A;
2. latency, c=1: wrk -c1 to a router whose only backend is replica A (the added p50 is 2 minus 1);
3. throughput, direct: two wrk processes at once, -c32 to replica A and -c32 to replica B, requests/s summed;
4. throughput, router: one wrk -c64 to a router with backends A and B.

With ``--replica-cpu X`` each round also runs 3 and 4 with every replica held to X CPUs by a CFS quota in its own
cgroup (``kubeinfer.local.resources.CpuQuota``, what ``kubeinfer up`` does for ``limits.cpu``, as the kubelet does):
the replicas then have a CPU budget of their own, as in a deployment, instead of sharing every core with the router
and the load generator.

The routers run in their own processes (``bench/router/serve_router.py``, uvloop) as they would inside
``kubeinfer up``. Figures are medians over the rounds; the machine is shared, so only ratios taken in one sitting
mean much.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from kubeinfer.local.resources import CgroupV2  # noqa: E402
from kubeinfer.testing import ServerProcess  # noqa: E402

HERE = Path(__file__).resolve().parent
BODY = json.dumps({"inputs": [{"name": "input-0", "shape": [1, 64], "datatype": "FP32", "data": [0.25] * 64}]})
LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[{body}]]
"""
PATH = "/v2/models/tabular64/infer"


def start_router(backends: list[ServerProcess], socks: list[str | None]) -> tuple[subprocess.Popen[str], int]:
    cmd = [sys.executable, str(HERE / "serve_router.py"), "--port", "0"]
    for b, sock in zip(backends, socks, strict=True):
        cmd += ["--backend", f"127.0.0.1:{b.http_port}" + (f"@{sock}" if sock else "")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("ROUTER_LISTENING "):
        proc.kill()
        raise RuntimeError(f"router did not start: {line!r}")
    return proc, int(json.loads(line.split(" ", 1)[1])["http"])


def _unit(value: str) -> float:
    """wrk latency text (``312.00us``, ``1.20ms``, ``2.00s``) in milliseconds."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", value)
    if not m:
        raise ValueError(value)
    n = float(m.group(1))
    return {"us": n / 1000, "ms": n, "s": n * 1000}[m.group(2)]


def wrk_cmd(port: int, conns: int, duration: float, script: Path) -> list[str]:
    return [
        "wrk",
        "-t1",
        f"-c{conns}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "--timeout=10s",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}{PATH}",
    ]


def parse(out: str) -> dict[str, float]:
    if "Requests/sec:" not in out:
        raise RuntimeError(f"wrk gave no result:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _unit(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _unit(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(g) for g in m.groups())
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "errors": errors}


def run_wrk(ports: list[int], conns: int, duration: float, script: Path, warmup: float) -> list[dict[str, float]]:
    if warmup > 0:
        procs = [subprocess.Popen(wrk_cmd(p, conns, warmup, script), stdout=subprocess.DEVNULL) for p in ports]
        for pr in procs:
            pr.wait()
    procs2 = [
        subprocess.Popen(
            wrk_cmd(p, conns, duration, script), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for p in ports
    ]
    outs = [pr.communicate() for pr in procs2]
    return [parse(o[0] + (o[1] or "")) for o in outs]


HAPROXY_CFG = """global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 1s
  timeout client 60s
  timeout server 30s
  option http-keep-alive
  http-reuse always
  retries 2
  option redispatch
  retry-on conn-failure empty-response response-timeout 503
frontend f
  bind 127.0.0.1:{port}
  default_backend b
backend b
  balance leastconn
{servers}
"""


def start_haproxy(
    tmp: str, backends: list[ServerProcess], socks: list[str | None]
) -> tuple[subprocess.Popen[bytes], int]:
    """HAProxy (one thread, least connections, keep-alive reuse, retries) in front of the same replicas: what a
    native proxy costs on the same machine, for reference."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    servers = "\n".join(
        f"  server r{i} " + (f"unix@{sock}" if sock else f"127.0.0.1:{b.http_port}")
        for i, (b, sock) in enumerate(zip(backends, socks, strict=True))
    )
    cfg = Path(tmp) / "haproxy.cfg"
    cfg.write_text(HAPROXY_CFG.format(port=port, servers=servers))
    proc = subprocess.Popen(["haproxy", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("haproxy did not start")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    ap.add_argument("--profile", action="store_true", help="record the router under load with py-spy (top functions)")
    ap.add_argument(
        "--tcp", action="store_true", help="router to replicas over loopback TCP (default: Unix sockets, as `up` does)"
    )
    ap.add_argument(
        "--haproxy",
        action="store_true",
        help="also HAProxy (if installed, e.g. apt-get install haproxy) in front of the same replicas, for reference",
    )
    ap.add_argument(
        "--replica-cpu",
        type=float,
        default=None,
        help="also run the throughput pair with each replica held to this many CPUs by a CFS quota",
    )
    args = ap.parse_args()
    quota = None
    if args.replica_cpu is not None:
        from kubeinfer.local.resources import CpuQuota

        quota = CpuQuota()
        if not quota.available:
            ap.error(f"--replica-cpu needs a writable cgroup with the cpu controller: {quota.why_not}")
    if args.haproxy and shutil.which("haproxy") is None:
        ap.error("--haproxy needs the haproxy binary on PATH (apt-get install haproxy)")

    spec = ROOT / "examples" / "tabular64" / "service.yaml"
    if not (ROOT / "examples" / "tabular64" / "model.joblib").exists():
        subprocess.run([sys.executable, str(ROOT / "examples" / "build.py"), "tabular64"], check=True)

    rows: dict[str, list[dict[str, float]]] = {"direct_c1": [], "router_c1": [], "direct_2x32": [], "router_c64": []}
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(LUA.format(body=BODY))
        socks: list[str | None] = [None, None] if args.tcp else [f"{tmp}/a.sock", f"{tmp}/b.sock"]
        a = ServerProcess(spec, grpc=False, args=["--uds", socks[0]] if socks[0] else []).start()
        b = ServerProcess(spec, grpc=False, args=["--uds", socks[1]] if socks[1] else []).start()
        r1, r1_port = start_router([a], socks[:1])
        r2, r2_port = start_router([a, b], socks)
        hap = start_haproxy(tmp, [a, b], socks) if args.haproxy else None
        if hap is not None:
            rows["haproxy_c64"] = []
        groups: list[str] = []
        if quota is not None:
            rows["direct_2x32_quota"], rows["router_c64_quota"] = [], []
            for name, replica in (("bench-router-a", a), ("bench-router-b", b)):
                group = quota.create(f"{name}-{replica.pid}", args.replica_cpu)
                if group is None:
                    raise SystemExit(f"cannot make a CPU quota group: {quota.why_not}")
                Path(group, "cgroup.procs").write_text(str(replica.pid))
                quota.set(group, None)  # no quota but in the quota runs
                groups.append(group)
        try:
            replicas = [psutil.Process(a.pid), psutil.Process(b.pid)]
            router2 = psutil.Process(r2.pid)

            def direct_c1() -> None:
                rows["direct_c1"] += run_wrk([a.http_port], 1, args.duration, script, args.warmup)

            def router_c1() -> None:
                rows["router_c1"] += run_wrk([r1_port], 1, args.duration, script, args.warmup)

            def direct_2x32() -> None:
                cpu0 = cpu(replicas)
                both = run_wrk([a.http_port, b.http_port], 32, args.duration, script, args.warmup)
                row = {
                    "rps": sum(x["rps"] for x in both),
                    "p50_ms": max(x["p50_ms"] for x in both),
                    "p99_ms": max(x["p99_ms"] for x in both),
                    "errors": sum(x["errors"] for x in both),
                }
                row["replica_cpu_us"] = 1e6 * (cpu(replicas) - cpu0) / (row["rps"] * (args.duration + args.warmup))
                rows["direct_2x32"].append(row)

            def router_c64() -> None:
                cpu0 = cpu([router2])
                (row,) = run_wrk([r2_port], 64, args.duration, script, args.warmup)
                row["router_cpu_us"] = 1e6 * (cpu([router2]) - cpu0) / (row["rps"] * (args.duration + args.warmup))
                rows["router_c64"].append(row)

            def with_quota(step: Callable[[], None], key: str, into: str) -> Callable[[], None]:
                def run() -> None:
                    assert quota is not None
                    for group in groups:
                        quota.set(group, args.replica_cpu)
                    try:
                        step()
                    finally:
                        for group in groups:
                            quota.set(group, None)
                    rows[into].append(rows[key].pop())

                return run

            def haproxy_c64() -> None:
                assert hap is not None
                rows["haproxy_c64"] += run_wrk([hap[1]], 64, args.duration, script, args.warmup)

            for i in range(args.rounds):
                # Paired runs, in alternating order, so that drift in the machine's load hits both sides alike.
                order: list[Callable[[], None]] = [direct_c1, router_c1, direct_2x32, router_c64]
                if i % 2:
                    order = [router_c1, direct_c1, router_c64, direct_2x32]
                if hap is not None:
                    order.append(haproxy_c64)
                if quota is not None:
                    pair = [
                        with_quota(direct_2x32, "direct_2x32", "direct_2x32_quota"),
                        with_quota(router_c64, "router_c64", "router_c64_quota"),
                    ]
                    order += pair[::-1] if i % 2 else pair
                for step in order:
                    step()
                print(f"round {i + 1}: " + json.dumps({k: v[-1] for k, v in rows.items()}), flush=True)
            profile = ""
            if args.profile:
                profile = py_spy_top(r2.pid, r2_port, script)
        finally:
            if hap is not None:
                hap[0].terminate()
                hap[0].wait(10)
            for r in (r1, r2):
                r.terminate()
                r.wait(10)
            a.stop()
            b.stop()
            for group in groups:
                CgroupV2.remove(group)

    med = {k: {m: statistics.median(x[m] for x in v) for m in v[0]} for k, v in rows.items()}
    # Headline figures: medians of the per-round paired differences and ratios.
    added_p50_ms = statistics.median(
        r["p50_ms"] - d["p50_ms"] for r, d in zip(rows["router_c1"], rows["direct_c1"], strict=True)
    )
    ratio = statistics.median(r["rps"] / d["rps"] for r, d in zip(rows["router_c64"], rows["direct_2x32"], strict=True))
    quota_ratio = None
    if "router_c64_quota" in rows:
        quota_ratio = statistics.median(
            r["rps"] / d["rps"] for r, d in zip(rows["router_c64_quota"], rows["direct_2x32_quota"], strict=True)
        )
    haproxy_ratio = None
    if "haproxy_c64" in rows:
        haproxy_ratio = statistics.median(
            h["rps"] / d["rps"] for h, d in zip(rows["haproxy_c64"], rows["direct_2x32"], strict=True)
        )
    write_results(args, rows, med, added_p50_ms, ratio, profile, haproxy_ratio, quota_ratio)
    print(
        json.dumps(
            {
                "added_p50_ms": round(added_p50_ms, 4),
                "throughput_ratio": round(ratio, 4),
                "throughput_ratio_quota": None if quota_ratio is None else round(quota_ratio, 4),
            }
        )
    )
    return 0


def python_cost_us(n: int = 30000) -> float:
    """Microseconds of Python (and httptools) per proxied request, with the sockets replaced by no-op transports:
    the part of the router's cost that is its own code rather than the kernel's socket work."""
    from kubeinfer.local.router import Backend, Router
    from kubeinfer.local.router.http import ClientProtocol, HttpFront, Pool, UpstreamProtocol

    class Null:
        def write(self, data: bytes) -> None:
            pass

        def pause_reading(self) -> None:
            pass

        def resume_reading(self) -> None:
            pass

        def close(self) -> None:
            pass

    router = Router()
    router.set_backends([Backend("a", "127.0.0.1", 1, None)])
    state = router.begin_try(())  # the backend's state, as a try sees it
    assert state is not None
    router.end_try(state)
    front = HttpFront(router)  # the router's HTTP side, without a listener
    pool = front.pools[state] = Pool()
    up = UpstreamProtocol(front, state, pool)
    up.transport, up.complete = Null(), True
    pool.idle.append(up)
    client = ClientProtocol(front)
    client.transport = Null()
    body = BODY.encode()
    request = (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    out = b'{"model_name":"tabular64","model_version":"1","outputs":[{"name":"predict","datatype":"INT64","shape":[1],"data":[0]}]}'
    response = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(out), out)
    t0 = time.process_time()  # CPU time: other load on the machine must not count
    for _ in range(n):
        client.data_received(request)
        up.data_received(response)
    return 1e6 * (time.process_time() - t0) / n


def cpu(procs: list[psutil.Process]) -> float:
    """CPU seconds (user + system) used so far by ``procs`` and their children."""
    total = 0.0
    for p in procs:
        for q in [p, *p.children(recursive=True)]:
            t = q.cpu_times()
            total += t.user + t.system
    return total


def py_spy_top(pid: int, port: int, script: Path) -> str:
    """Sample the router with py-spy while wrk -c64 drives it; return the hottest functions (own time)."""
    spy = ROOT / ".venv" / "bin" / "py-spy"
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "profile.txt"
        load = subprocess.Popen(wrk_cmd(port, 64, 12, script), stdout=subprocess.DEVNULL)
        time.sleep(1)
        subprocess.run(
            [
                str(spy),
                "record",
                "--pid",
                str(pid),
                "--duration",
                "8",
                "--format",
                "raw",
                "--nonblocking",
                "-o",
                str(raw),
            ],
            check=False,
            capture_output=True,
        )
        load.wait()
        if not raw.exists():
            return "(py-spy could not attach: it needs ptrace permission)"
        own: dict[str, int] = {}
        total = 0
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            n = int(count)
            total += n
            leaf = stack.split(";")[-1]
            own[leaf] = own.get(leaf, 0) + n
        top = sorted(own.items(), key=lambda kv: -kv[1])[:15]
        return "\n".join(f"{100 * n / total:5.1f}%  {name}" for name, n in top)


def write_results(
    args: argparse.Namespace,
    rows: dict[str, list[dict[str, float]]],
    med: dict[str, dict[str, float]],
    added: float,
    ratio: float,
    profile: str,
    haproxy_ratio: float | None = None,
    quota_ratio: float | None = None,
) -> None:
    names = {
        "direct_c1": "direct, 1 replica, c=1",
        "router_c1": "router (1 backend), c=1",
        "direct_2x32": "direct, 2 replicas, 2 x wrk c=32 (summed)",
        "router_c64": "router (2 backends), c=64",
        "haproxy_c64": "HAProxy (2 backends, reference), c=64",
        "direct_2x32_quota": f"direct, 2 replicas held to {args.replica_cpu:g} CPU each, 2 x wrk c=32 (summed)",
        "router_c64_quota": f"router (2 backends held to {args.replica_cpu:g} CPU each), c=64",
    }
    lines = [
        "# Router overhead",
        "",
        f"Command: `.venv/bin/python bench/router/run.py --rounds {args.rounds} --duration {args.duration:g}"
        f"{' --profile' if args.profile else ''}{' --tcp' if args.tcp else ''}{' --haproxy' if args.haproxy else ''}"
        f"{f' --replica-cpu {args.replica_cpu:g}' if args.replica_cpu is not None else ''}`",
        "",
        f"Machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{__import__('os').cpu_count()} CPUs; Python {platform.python_version()}. Other work shared the machine, "
        "so the ratios, measured in one sitting, are what count.",
        "",
        "Load: wrk, one row of 64 FP32 per request to `examples/tabular64` (OIP v2 JSON, "
        f"`POST {PATH}`), {args.duration:g} s per run after a {args.warmup:g} s warm-up; medians of "
        f"{args.rounds} rounds. Router to replicas: "
        + (
            "loopback TCP (`--tcp`)."
            if args.tcp
            else "Unix-domain sockets (`kubeinfer serve --uds`), as `kubeinfer up` runs it."
        )
        + " Direct runs use the replicas' TCP ports, as a client would.",
        "",
        "| setup | requests/s | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|",
    ]
    for k, m in med.items():
        lines.append(f"| {names[k]} | {m['rps']:.0f} | {m['p50_ms']:.3f} | {m['p99_ms']:.3f} | {m['errors']:.0f} |")
    py_us = python_cost_us()
    router_us = med["router_c64"]["router_cpu_us"]
    replica_us = med["direct_2x32"]["replica_cpu_us"]
    lines += [
        "",
        "Headline figures are medians of the per-round paired comparisons (the two sides of a pair run back to back,",
        "in alternating order):",
        "",
        f"- **Added latency at p50, c=1: {added:.3f} ms** (target <= 0.3 ms): {'met' if added <= 0.3 else 'NOT met'}.",
        f"- **Throughput through the router: {100 * ratio:.1f}% of the replicas driven directly** (target >= 90%): "
        f"{'met' if ratio >= 0.9 else 'NOT met'}.",
        f"- CPU per request at c=64 (less sensitive to the machine's other load): the router {router_us:.0f} us, the two "
        f"replicas together {replica_us:.0f} us; on a CPU-bound machine the router takes about "
        f"{100 * router_us / (router_us + replica_us):.0f}% of the CPU spent per proxied request, which bounds the "
        f"throughput through it near {100 * replica_us / (router_us + replica_us):.0f}% of direct when the machine "
        "is CPU-bound.",
        f"- Of the router's CPU per request, its own Python and httptools work is {py_us:.0f} us (measured with the "
        "sockets replaced by no-op transports, CPU time); the rest is the kernel's loopback TCP work and uvloop "
        "(two reads, two writes and the wake-ups per request).",
    ]
    if quota_ratio is not None:
        lines += [
            f"- **With each replica held to {args.replica_cpu:g} CPU** by a CFS quota in its own cgroup (what "
            f"`kubeinfer up` does for `limits.cpu: {args.replica_cpu:g}`, as the kubelet does), so that the replicas "
            "have a CPU budget of their own and the router and the load generator use the rest of the machine, as "
            f"in a deployment: **{100 * quota_ratio:.1f}% of the same replicas driven directly** "
            f"(target >= 90%): {'met' if quota_ratio >= 0.9 else 'NOT met'}. Behind the router a replica reads and "
            "writes a Unix socket instead of the clients' TCP connections, so its budget goes further.",
        ]
    if haproxy_ratio is not None:
        lines += [
            f"- For reference, **HAProxy** ({_haproxy_version()}, one thread, `balance leastconn`, `http-reuse always`, "
            "retries; the same replicas and sockets) in the same sitting: "
            f"**{100 * haproxy_ratio:.1f}% of direct**; the Python router reaches "
            f"{100 * ratio / haproxy_ratio:.0f}% of HAProxy's throughput. On this machine the proxy shares the two "
            "cores with the replicas and the load generator, and its own socket work per request (a native proxy's "
            "too) is what stands between it and the direct figure.",
        ]
    lines += [
        "",
        "Every run:",
        "",
        "| setup | round | requests/s | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for k, v in rows.items():
        for i, m in enumerate(v, 1):
            lines.append(
                f"| {names[k]} | {i} | {m['rps']:.0f} | {m['p50_ms']:.3f} | {m['p99_ms']:.3f} | {m['errors']:.0f} |"
            )
    if profile:
        lines += ["", "## Profile of the router at c=64 (py-spy, own time per function)", "", "```", profile, "```"]
    args.out.write_text("\n".join(lines) + "\n")


def _haproxy_version() -> str:
    out = subprocess.run(["haproxy", "-v"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"version (\S+)", out)
    return f"HAProxy {m.group(1)}" if m else "HAProxy"


if __name__ == "__main__":
    sys.exit(main())
