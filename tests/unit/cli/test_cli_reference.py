"""docs/cli.md is generated from the typer app: it must be current and name every flag of every command."""

from __future__ import annotations

import re
from pathlib import Path

from kubeinfer.cli import reference

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "cli.md"
REGENERATE = f"regenerate it from the repository root with `.venv/bin/{reference.COMMAND}`"


def _sections(page: str) -> dict[str, str]:
    """Each command's section of the page, by command name (``plan solve``)."""
    parts = re.split(r"(?m)^### kubeinfer (.+)$", page)
    return {name.strip(): body for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def test_docs_cli_md_is_current() -> None:
    assert DOC.read_text() == reference.reference(), (
        f"docs/cli.md is stale (a command, flag or help changed): {REGENERATE}"
    )


def test_every_flag_of_every_command_is_in_docs_cli_md() -> None:
    sections = _sections(DOC.read_text())
    missing = {
        name: [flag for flag in flags if f"`{flag}`" not in sections.get(name, "")]
        for name, flags in reference.all_flags().items()
    }
    missing = {name: flags for name, flags in missing.items() if flags}
    assert missing == {}, f"docs/cli.md lacks these flags: {missing}; {REGENERATE}"


def test_the_generated_page_names_every_command_and_flag() -> None:
    """The generator itself leaves nothing out (the check above is only as good as the page it reads)."""
    sections = _sections(reference.reference())
    assert set(sections) == {name for name, _ in reference.commands()}
    assert {"plan solve", "plan replay", "bench", "up", "render"} <= set(sections)
    for name, flags in reference.all_flags().items():
        for flag in flags:
            assert f"`{flag}`" in sections[name], (name, flag)
    assert "| `--max-error-rate` | float range | `0.01` |" in sections["bench"]


def test_every_command_belongs_to_a_group() -> None:
    grouped = {n for _, _, names in reference.GROUPS for n in names}
    ungrouped = sorted({name.split()[0] for name, _ in reference.commands()} - grouped)
    assert ungrouped == [], f"add {ungrouped} to GROUPS in src/kubeinfer/cli/reference.py, then {REGENERATE}"
