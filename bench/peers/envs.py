"""The virtualenvs of the peers: one per peer under bench/peers/.envs/NAME, none of them in kubeinfer's dependencies.

Every env takes the CPU wheel ``torch==2.13.0`` first (an unpinned torch resolves to a multi-GB CUDA build), then
the peer's own packages plus the same scikit-learn and sentence-transformers versions as the project's venv, so the
joblib-pickled model and the PyTorch embedding code are the same in every server.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENVS = HERE / ".envs"
TORCH = "torch==2.13.0"

# env name -> the peer's packages (pip requirement strings)
PACKAGES: dict[str, list[str]] = {
    # uvloop 0.22+ raises in asyncio.get_event_loop() without a running loop, which MLServer 1.7.1's inference
    # workers call at start (they die and the model never loads): the uvloop of MLServer's release time.
    "mlserver": ["mlserver", "mlserver-sklearn", "uvloop<0.22"],
    "kserve": ["kserve"],
    "ray": ["ray[serve]"],
    "bentoml": ["bentoml"],
    "litserve": ["litserve"],
    "pytriton": ["nvidia-pytriton"],
}

# distributions whose versions RESULTS.md records, per env
VERSIONS: dict[str, list[str]] = {
    "mlserver": ["mlserver", "mlserver-sklearn", "uvicorn", "fastapi"],
    "kserve": ["kserve", "uvicorn", "fastapi"],
    "ray": ["ray", "uvicorn", "fastapi"],
    "bentoml": ["bentoml", "uvicorn", "starlette"],
    "litserve": ["litserve", "uvicorn", "fastapi"],
    "pytriton": ["nvidia-pytriton", "tritonclient"],
}
COMMON_VERSIONS = ["torch", "scikit-learn", "sentence-transformers", "transformers", "numpy"]


def python(env: str) -> Path:
    return ENVS / env / "bin" / "python"


def _main_version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def common_requirements() -> list[str]:
    """scikit-learn and sentence-transformers pinned to the project's venv (the model was pickled with that
    scikit-learn)."""
    out = []
    for dist in ("scikit-learn", "sentence-transformers"):
        v = _main_version(dist)
        out.append(f"{dist}=={v}" if v else dist)
    return out


def install(env: str, log: Path, base_python: str = sys.executable) -> tuple[bool, str]:
    """Create (or reuse) the env and install into it; returns (ok, message). The output goes to ``log``."""
    d = ENVS / env
    ENVS.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with log.open("a") as f:

        def run(cmd: list[str]) -> int:
            f.write(f"$ {' '.join(cmd)}\n")
            f.flush()
            return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False).returncode

        if not python(env).exists():
            # the interpreter of the project's venv (its base, not the venv itself)
            base = Path(sys.base_prefix) / "bin" / "python3"
            if run([str(base if base.exists() else base_python), "-m", "venv", str(d)]) != 0:
                return False, "venv creation failed"
        pip = [str(python(env)), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        run([*pip, "--upgrade", "pip"])
        if run([*pip, TORCH]) != 0:
            return False, f"{TORCH} failed to install"
        if run([*pip, *PACKAGES[env], *common_requirements()]) != 0:
            # a peer may pin its own scikit-learn/sentence-transformers: retry unpinned and record it
            f.write("pinned install failed; retrying without the scikit-learn/sentence-transformers pins\n")
            if run([*pip, *PACKAGES[env], "scikit-learn", "sentence-transformers"]) != 0:
                return False, f"pip install {' '.join(PACKAGES[env])} failed (see {log})"
    return True, f"installed in {time.monotonic() - t0:.0f}s"


def versions(env: str) -> dict[str, str]:
    dists = [*VERSIONS.get(env, []), *COMMON_VERSIONS]
    code = (
        "import json,sys\nfrom importlib.metadata import version\nout={}\n"
        "for d in sys.argv[1:]:\n"
        "    try: out[d]=version(d)\n"
        "    except Exception: pass\n"
        "print(json.dumps(out))"
    )
    if not python(env).exists():
        return {}
    done = subprocess.run([str(python(env)), "-c", code, *dists], capture_output=True, text=True, check=False)
    try:
        import json

        return dict(json.loads(done.stdout))
    except ValueError:
        return {}


if __name__ == "__main__":
    names = sys.argv[1:] or list(PACKAGES)
    for name in names:
        ok, msg = install(name, HERE / "out" / "install" / f"{name}.log")
        print(name, "ok" if ok else "FAILED", msg, flush=True)
