"""The served OpenAPI document matches behaviour: schemathesis (its CLI, as a user would run it) finds no 5xx,
no undocumented status, content type, header or response schema, and no accepted invalid request."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kubeinfer.testing import ServerProcess

pytestmark = pytest.mark.integration

# Schema-valid tensors can still be wrong for a model (shape, datatype, rows): those 400s are correct answers that
# an OpenAPI schema cannot express, so the "positive data acceptance" check does not apply to inference routes.
CHECKS_EXCLUDED = "positive_data_acceptance"


def _st() -> str:
    exe = Path(sys.executable).with_name("st")
    if exe.exists():
        return str(exe)
    found = shutil.which("st")
    if found is None:
        pytest.skip("schemathesis is not installed (pip install 'kubeinfer[dev]')")
    return found


@pytest.mark.parametrize("example", ["iris"])
def test_schemathesis_finds_no_server_errors_or_undocumented_behaviour(
    examples: Path, example: str, tmp_path: Path
) -> None:
    with ServerProcess(examples / example / "service.yaml", grpc=False) as server:
        run = subprocess.run(
            [
                _st(),
                "run",
                f"{server.url}/openapi.json",
                "--checks",
                "all",
                "--exclude-checks",
                CHECKS_EXCLUDED,
                "--max-examples",
                "15",
                "--seed",
                "7",
                "--generation-database",
                "none",
                "--request-timeout",
                "10",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
            cwd=tmp_path,
        )
        assert server.get("/v2/health/ready")[0] == 200, "the server must survive the fuzzing"
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
