"""Bad specs and bad commands of the local platform fail with messages that name the field or the fix."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kubeinfer.cli.app import app


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("KUBEINFER_HOME", str(tmp_path / "home"))
    runner = CliRunner()

    def go(*args: str) -> tuple[int, str]:
        r = runner.invoke(app, list(args))
        return r.exit_code, r.output

    return go


def test_commands_without_a_running_service_say_how_to_start_one(run) -> None:  # type: ignore[no-untyped-def]
    # As `kubectl get` with nothing there: an empty list is an answer, not an error.
    code, text = run("get")
    assert code == 0 and "No services are running" in text and "kubeinfer up SPEC.yaml" in text
    code, text = run("get", "-o", "json")
    assert code == 0 and json.loads(text) == {
        "apiVersion": "v1",
        "kind": "List",
        "items": [],
        "metadata": {"resourceVersion": ""},
    }
    code, text = run("get", "-o", "name")
    assert code == 0 and text == ""
    code, text = run("describe", "iris")
    assert code == 1 and "kubeinfer up SPEC.yaml" in text
    code, text = run("scale", "iris", "--replicas", "2")
    assert code == 1 and "is not running" in text


def test_up_with_a_bad_spec_names_the_field(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: bad}\n"
        "spec:\n  model: {format: python, className: 'm:M'}\n  rollout: {maxSurge: 0, maxUnavailable: 0}\n"
    )
    code, text = run("up", str(spec))
    assert code == 2 and "spec.rollout" in text and "cannot both be 0" in text


def test_bad_output_format_names_the_choices(run) -> None:  # type: ignore[no-untyped-def]
    code, text = run("get", "x", "-o", "xml")
    assert code == 2 and "use table, wide, json, yaml or name" in text
    code, text = run("describe", "x", "-o", "wide")
    assert code == 2 and "use table, json or yaml" in text


def test_bad_settings_name_the_variable(run, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("KUBEINFER_BACKOFF_BASE", "soon")
    code, text = run("get")
    assert code == 2 and "KUBEINFER_BACKOFF_BASE" in text and "not a number" in text


def test_logs_of_an_unknown_replica_lists_the_known_ones(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    logs = tmp_path / "home" / "iris" / "logs"
    logs.mkdir(parents=True)
    (logs / "iris-r1-1.log").write_text("hello\n")
    code, text = run("logs", "iris", "--replica", "iris-r1-9")
    assert code == 2 and "iris-r1-1" in text
    code, text = run("logs", "iris", "--replica", "iris-r1-1")
    assert code == 0 and "hello" in text


def test_scale_needs_a_count_or_bounds(run) -> None:  # type: ignore[no-untyped-def]
    code, text = run("scale", "iris")
    assert code == 2 and "give --replicas N, or --min and/or --max" in text
    code, text = run("scale", "iris", "--replicas", "2", "--min", "1")
    assert code == 2 and "give --replicas N, or --min and/or --max" in text


def test_logs_without_a_name_uses_the_one_service_with_logs(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    logs = tmp_path / "home" / "iris" / "logs"
    logs.mkdir(parents=True)
    (logs / "iris-r1-1.log").write_text("".join(f"line {i}\n" for i in range(10)))
    code, text = run("logs", "--tail", "3")
    assert code == 0 and text.splitlines() == ["line 7", "line 8", "line 9"]
    code, text = run("logs", "--tail", "0")
    assert code == 0 and text == ""
    (tmp_path / "home" / "other" / "logs").mkdir(parents=True)
    code, text = run("logs")
    assert code == 2 and "give the service NAME (with logs: iris, other)" in text


def test_logs_since_keeps_untimed_lines_with_their_timed_line(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    logs = tmp_path / "home" / "iris" / "logs"
    logs.mkdir(parents=True)
    stamp = lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + ",000"  # noqa: E731
    now = time.time()
    (logs / "iris-r1-1.log").write_text(
        f"--- header\n{stamp(now - 3600)} ERROR old: boom\nTraceback (old)\n"
        f"{stamp(now - 5)} ERROR new: boom\nTraceback (new)\n  File x\n"
    )
    code, text = run("logs", "iris", "--since", "1m")
    assert code == 0 and text.splitlines() == [f"{stamp(now - 5)} ERROR new: boom", "Traceback (new)", "  File x"]
    code, text = run("logs", "iris", "--since", "2h")
    assert code == 0 and len(text.splitlines()) == 6
    code, text = run("logs", "iris", "--since", "soon")
    assert code == 2 and "--since 'soon'" in text


def test_log_options_are_checked_and_become_the_environment(run, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import os

    code, text = run("up", "missing.yaml", "--log-level", "loud")
    assert code == 2 and "--log-level 'loud': use debug, info, warning or error" in text
    code, text = run("serve", "missing.yaml", "--log-format", "xml")
    assert code == 2 and "--log-format 'xml': use text or json" in text
    # set through monkeypatch first, so that what the command writes is undone after the test
    monkeypatch.setenv("KUBEINFER_LOG_FORMAT", "text")
    monkeypatch.setenv("KUBEINFER_LOG_LEVEL", "info")
    code, _ = run("up", "missing.yaml", "--log-level", "DEBUG", "--log-format", "json")
    assert code == 2  # the spec is missing; the options were taken first
    assert os.environ["KUBEINFER_LOG_LEVEL"] == "debug" and os.environ["KUBEINFER_LOG_FORMAT"] == "json"
