"""``kubeinfer dashboard``'s errors are one line naming the flag, file or variable, never a traceback; an API
server that does not answer is said so (a kubeconfig pointing at a port nothing listens on)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kubeinfer.cli.app import app

runner = CliRunner()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["-A", "-n", "ml"], {}, "--all-namespaces shows every service: leave out --namespace and --service"),
        (["--service", "Not_A_Name"], {}, "--service 'Not_A_Name' is not a service name"),
        (["--interval", "0"], {}, "--interval 0: give a number of seconds > 0"),
        (["--port", "70000"], {}, "--port 70000: give a port from 0 to 65535"),
        (["--kubeconfig", "/nonexistent/kubeconfig"], {}, "--kubeconfig /nonexistent/kubeconfig: no such file"),
        ([], {"KUBEINFER_PRICE_GPU_HOUR": "-1"}, "KUBEINFER_PRICE_GPU_HOUR has value '-1'"),
    ],
)
def test_bad_flags_are_a_usage_error_naming_them(args: list[str], env: dict[str, str], says: str) -> None:
    r = runner.invoke(app, ["dashboard", *args], env=env)
    assert r.exit_code == 2, r.output
    assert says in " ".join(r.output.split()) and "Traceback" not in r.output


def test_an_unusable_kubeconfig_or_a_silent_api_server_is_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_text("clusters: [\n")
    r = runner.invoke(app, ["dashboard", "--kubeconfig", str(junk)])
    assert r.exit_code == 1 and f"kubeconfig {junk} is not usable" in " ".join(r.output.split()), r.output
    silent = tmp_path / "silent"
    silent.write_text(
        f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "https://127.0.0.1:{_closed_port()}", insecure-skip-tls-verify: true}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
current-context: x
"""
    )
    r = runner.invoke(app, ["dashboard", "--kubeconfig", str(silent)])
    assert r.exit_code == 1, r.output
    assert "the API server did not answer" in r.output and "Traceback" not in r.output
