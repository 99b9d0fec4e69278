"""What the CLI prints is the text it means: help keeps ``[default: ...]``, errors keep ``'kubeinfer[gpu]'``,
and a table piped at 80 columns keeps every number whole (rich markup and rich's ellipsis ate all three)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from kubeinfer.cli.app import app
from kubeinfer.cli.base import print_table

runner = CliRunner()
PIPED_80 = {"COLUMNS": "80", "TTY_COMPATIBLE": "0"}


def test_help_shows_the_defaults_written_in_brackets() -> None:
    r = runner.invoke(app, ["serve", "--help"], env=PIPED_80)
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "[default: 8080]" in text and "[default: 127.0.0.1]" in text and "[default: 64Mi]" in text
    r = runner.invoke(app, ["up", "--help"], env=PIPED_80)
    assert "[default: spec.server.port]" in " ".join(r.output.split())


def test_an_install_hint_keeps_its_extra(tmp_path: Path) -> None:
    """A model whose load needs an extra: the error names ``'kubeinfer[gpu]'`` whole."""
    (tmp_path / "needs_gpu.py").write_text(
        "class C:\n"
        "    def load(self):\n"
        "        raise ImportError(\"reads GPU memory through NVML: pip install 'kubeinfer[gpu]'\")\n"
        "    def predict(self, inputs):\n"
        "        return inputs\n"
    )
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: hint}\n"
        "spec:\n  model: {format: python, className: 'needs_gpu:C'}\n"
    )
    r = runner.invoke(app, ["prepare", str(spec)], env=PIPED_80)
    assert r.exit_code == 1
    text = " ".join(r.output.split())
    assert "pip install 'kubeinfer[gpu]'" in text and "error:" in text


def _numbers(doc: object) -> list[float]:
    if isinstance(doc, dict):
        return [n for v in doc.values() for n in _numbers(v)]
    if isinstance(doc, list):
        return [n for v in doc for n in _numbers(v)]
    if isinstance(doc, (int, float)) and not isinstance(doc, bool):
        return [float(doc)]
    return []


def test_simulate_table_piped_at_80_columns_keeps_its_numbers_whole(tmp_path: Path) -> None:
    """The simulate table has more numeric columns than 80 columns hold: each number is printed whole, on one line,
    the same number as the JSON report gives."""
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: iris-with-a-long-name}\n"
        "spec:\n  model: {format: python, className: 'm:C'}\n"
        "  autoscaling: {policy: hpa, metric: concurrency, target: 1, maxReplicas: 40}\n"
    )
    (tmp_path / "m.py").write_text("class C:\n    def predict(self, inputs):\n        return inputs\n")
    args = ["simulate", str(spec), "--trace", "gen:step,base=20,high=150,at=60,duration=240"]
    args += ["--policy", "hpa,kpa,predictive,none", "--service-ms", "45", "--slo-ms", "100", "--no-references"]
    r = runner.invoke(app, args, env=PIPED_80)
    assert r.exit_code == 0, r.output
    doc = json.loads(runner.invoke(app, [*args, "-o", "json"], env=PIPED_80).stdout)
    table = r.stdout
    cells = {c.strip() for line in table.splitlines() for c in re.split(r"[│┃]", line)}
    assert "…" not in table
    for p in doc["policies"]:
        expected = [
            f"{p['slo_attainment']:.2%}",
            f"{p['p50_ms']:,.1f}",
            f"{p['p99_ms']:,.1f}",
            f"{p['dropped']:,}",
            f"{p['replica_seconds'] / 3600:,.2f}",
            f"{p['cost']:,.2f}",
            f"{p['vs_oracle']:.2f}x",
        ]
        missing = [e for e in expected if e not in cells]
        assert not missing, (p["policy"], missing, table)
    assert {"hpa", "kpa", "predictive", "none"} <= cells  # names folded only past 16 characters


@pytest.mark.parametrize("width", [40, 80, 200])
def test_print_table_never_cuts_a_number_and_folds_text(width: int) -> None:
    console = Console(width=width, markup=False, file=io.StringIO())
    t = Table(title="t")
    for col in ("name", "p99 ms", "share", "message"):
        t.add_column(col, justify="left" if col in ("name", "message") else "right")
    t.add_row("predictive[gpu]", "123,456.7", "99.12%", "a message with [brackets] " * 4)
    print_table(t, console)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "…" not in text
    assert "123,456.7" in text and "99.12%" in text
    assert "[brackets]" in text  # plain text, not markup


def test_a_long_unbroken_word_folds_so_that_the_table_fits_80_columns() -> None:
    """A socket path longer than its share folds inside its column; the numbers beside it stay whole and the
    table stays within 80 columns (it is widened only when the numbers alone do not fit)."""
    console = Console(width=80, markup=False, file=io.StringIO())
    t = Table(box=None, pad_edge=False)
    for col in ("REPLICA", "RESTARTS", "ADDRESS", "CPU", "MEMORY"):
        t.add_column(col)
    t.add_row("iris-r1-1", "12", "/tmp/a-rather-long-home/iris/run/iris-r1-1-and-more-of-it.sock" * 2, "0.25", "120Mi")
    print_table(t, console)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
    assert "0.25" in text and "120Mi" in text and "iris-r1-1" in text
