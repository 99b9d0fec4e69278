"""The virtualenvs of the peers: one per peer under bench/peers/.envs/NAME, none of them in kubeinfer's dependencies.

Every env takes the CPU wheel ``torch==2.13.0`` first (an unpinned torch resolves to a multi-GB CUDA build), then
the peer's own packages plus the same scikit-learn, pandas and sentence-transformers versions as the project's venv,
so the joblib-pickled models, the DataFrame the ``mixed`` pipeline is called with and the PyTorch embedding code are
the same in every server.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

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
COMMON_VERSIONS = ["torch", "scikit-learn", "pandas", "sentence-transformers", "transformers", "numpy"]
# what every env needs besides the peer, pinned to the project's venv where it has them
COMMON = ("scikit-learn", "pandas", "sentence-transformers")


def python(env: str) -> Path:
    return ENVS / env / "bin" / "python"


def has(env: str, dist: str) -> bool:
    """Whether ``dist`` is installed in the env (its dist-info folder; no interpreter started)."""
    name = dist.lower().replace("-", "_")
    for info in (ENVS / env).glob("lib/python*/site-packages/*.dist-info"):
        if info.name.lower().split("-", 1)[0] == name:
            return True
    return False


def _main_version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def common_requirements() -> list[str]:
    """scikit-learn, pandas and sentence-transformers pinned to the project's venv (the models were pickled with
    that scikit-learn)."""
    out = []
    for dist in COMMON:
        v = _main_version(dist)
        out.append(f"{dist}=={v}" if v else dist)
    return out


def logged(f: IO[str]) -> Callable[[list[str]], int]:
    """A runner of commands whose output goes to ``f`` (each command line first); returns the exit code."""

    def run(cmd: list[str]) -> int:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False).returncode

    return run


def create_with_torch(env: str, run: Callable[[list[str]], int], base_python: str = sys.executable) -> str | None:
    """Create ``env`` when missing (from the project venv's base interpreter) and install the CPU torch wheel first
    (an unpinned torch pulled in later would be the multi-GB CUDA build); None, or what failed."""
    ENVS.mkdir(parents=True, exist_ok=True)
    if not python(env).exists():
        base = Path(sys.base_prefix) / "bin" / "python3"
        if run([str(base if base.exists() else base_python), "-m", "venv", str(ENVS / env)]) != 0:
            return "venv creation failed"
    run([*pip_install(env), "--upgrade", "pip"])
    if run([*pip_install(env), TORCH]) != 0:
        return f"{TORCH} failed to install"
    return None


def pip_install(env: str) -> list[str]:
    return [str(python(env)), "-m", "pip", "install", "--disable-pip-version-check", "-q"]


def install(env: str, log: Path, base_python: str = sys.executable) -> tuple[bool, str]:
    """Create (or reuse) the env and install into it; returns (ok, message). The output goes to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with log.open("a") as f:
        run = logged(f)
        failed = create_with_torch(env, run, base_python)
        if failed:
            return False, failed
        pip = pip_install(env)
        # the peer with the project's scikit-learn and sentence-transformers (a peer may pin its own: then
        # unpinned, and RESULTS.md records every env's versions)
        pins = [r for r in common_requirements() if not r.startswith("pandas")]
        if run([*pip, *PACKAGES[env], *pins]) != 0:
            f.write("pinned install failed; retrying without the scikit-learn/sentence-transformers pins\n")
            if run([*pip, *PACKAGES[env], "scikit-learn", "sentence-transformers"]) != 0:
                return False, f"pip install {' '.join(PACKAGES[env])} failed (see {log})"
        # then pandas (the mixed model), without changing anything the peer resolved to: in one resolution with
        # the peer, pandas 3 (numpy >= 2) made pip fall back to nvidia-pytriton 0.5.7, whose Triton stub cannot
        # read a BYTES input under numpy 2. The project's pandas where it fits, else the newest that does.
        frozen = subprocess.run([str(python(env)), "-m", "pip", "freeze"], capture_output=True, text=True).stdout
        constraints = log.with_suffix(".constraints.txt")
        constraints.write_text("".join(f"{ln}\n" for ln in frozen.splitlines() if "==" in ln))
        pandas = [r for r in common_requirements() if r.startswith("pandas")]
        if run([*pip, *pandas, "-c", str(constraints)]) != 0:
            f.write("the project's pandas does not fit this env; installing the newest that does\n")
            if run([*pip, "pandas", "-c", str(constraints)]) != 0:
                return True, f"installed in {time.monotonic() - t0:.0f}s, without pandas (mixed is skipped)"
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
