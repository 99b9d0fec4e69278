"""Fixtures for integration tests: real server processes on 127.0.0.1, real example models."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kubeinfer.testing import ServerProcess

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def examples() -> Path:
    """The example artifacts, built once per session if missing."""
    ex = ROOT / "examples"
    need = [ex / "iris" / "model.joblib", ex / "tabular64" / "model.joblib", ex / "onnx" / "model.onnx"]
    if not all(p.exists() for p in need):
        subprocess.run([sys.executable, str(ex / "build.py"), "iris", "tabular64", "onnx"], check=True)
    return ex


@pytest.fixture
def server_factory() -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def make(spec: Path | None = None, *args: str, grpc: bool = False, **kw: object) -> ServerProcess:
        s = ServerProcess(spec, args, grpc=grpc, **kw)  # type: ignore[arg-type]
        started.append(s)
        return s.start()

    yield make
    for s in started:
        s.kill()


@pytest.fixture(scope="module")
def iris_server(examples: Path) -> Iterator[ServerProcess]:
    with ServerProcess(examples / "iris" / "service.yaml", grpc=False) as s:
        yield s
