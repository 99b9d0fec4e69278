"""docs/environment.md stays true: every ``KUBEINFER_*`` name in the code is on the page, every name on the page is
in the code (the test suite's own variables: in the tests), and the local platform's table gives the defaults and
the error that :class:`~kubeinfer.local.settings.LocalSettings` really has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kubeinfer.local.settings import LocalSettings, SettingsError

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "environment.md"

# A whole name: not the prefix of a pattern such as ``KUBEINFER_BACKOFF_*``.
NAME = re.compile(r"KUBEINFER_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_*])")
TESTS_SECTION = "## Read by the test suite"
LOCAL_SECTION = "## The local platform (`kubeinfer up`)"


def _names_in(paths: list[Path]) -> set[str]:
    return {n for p in paths for n in NAME.findall(p.read_text(encoding="utf-8"))}


def _section(page: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same level."""
    start = page.index(heading) + len(heading)
    end = page.find("\n## ", start)
    return page[start : end if end != -1 else len(page)]


def _source_names() -> set[str]:
    return _names_in(sorted((ROOT / "src" / "kubeinfer").rglob("*.py")))


def _test_names() -> set[str]:
    return _names_in([p for p in sorted((ROOT / "tests").rglob("*.py")) if p.resolve() != Path(__file__).resolve()])


def test_every_kubeinfer_name_in_the_code_is_documented() -> None:
    documented = set(NAME.findall(PAGE.read_text(encoding="utf-8")))
    missing = sorted(_source_names() - documented)
    assert missing == [], f"docs/environment.md does not mention {missing}: document each (or say it is no variable)"


def test_every_documented_name_is_in_the_code() -> None:
    page = PAGE.read_text(encoding="utf-8")
    tests_part = _section(page, TESTS_SECTION)
    product = set(NAME.findall(page.replace(tests_part, "")))
    gone = sorted(product - _source_names())
    assert gone == [], f"docs/environment.md documents {gone}, which no code in src/ reads or writes any more"
    test_only = set(NAME.findall(tests_part))
    assert test_only, f"docs/environment.md has no variables under {TESTS_SECTION!r}"
    gone = sorted(test_only - _test_names())
    assert gone == [], f"docs/environment.md lists {gone} under {TESTS_SECTION!r}, but no test reads them"


def _local_rows() -> dict[str, str]:
    """The local platform's table: variable -> documented default (without backticks)."""
    rows = {}
    for line in _section(PAGE.read_text(encoding="utf-8"), LOCAL_SECTION).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`KUBEINFER_"):
            rows[cells[0].strip("`")] = cells[1].strip("`")
    return rows


def test_the_local_table_lists_exactly_the_variables_local_settings_reads() -> None:
    read = set(NAME.findall((ROOT / "src" / "kubeinfer" / "local" / "settings.py").read_text(encoding="utf-8")))
    assert set(_local_rows()) == read


def test_the_local_table_gives_the_defaults_local_settings_has() -> None:
    s = LocalSettings.from_env({})
    actual = {
        "KUBEINFER_HOME": "~/.kubeinfer" if s.home == Path.home() / ".kubeinfer" else str(s.home),
        "KUBEINFER_BACKOFF_BASE": f"{s.backoff.base:g}",
        "KUBEINFER_BACKOFF_CAP": f"{s.backoff.cap:g}",
        "KUBEINFER_BACKOFF_RESET": f"{s.backoff.reset_after:g}",
        "KUBEINFER_GRACE_MARGIN": f"{s.grace_margin:g}",
        "KUBEINFER_TICK": f"{s.tick:g}",
        "KUBEINFER_TRY_TIMEOUT": f"{s.try_timeout:g}",
        "KUBEINFER_BUFFER_TIMEOUT": f"{s.buffer_timeout:g}",
        "KUBEINFER_LOG_MAX_MB": f"{s.log_max_bytes / (1 << 20):g}",
        "KUBEINFER_REPLICA_TCP": "1" if s.replica_tcp else "0",
    }
    assert _local_rows() == actual


@pytest.mark.parametrize("name", sorted(set(_local_rows()) - {"KUBEINFER_HOME"}))
def test_a_bad_local_value_is_an_error_naming_the_variable(name: str) -> None:
    with pytest.raises(SettingsError) as e:
        LocalSettings.from_env({name: "fast"})
    assert str(e.value).startswith(f"{name} has value 'fast': ")


def test_the_error_the_page_quotes_is_the_one_printed() -> None:
    quoted = re.search(r"for example `(KUBEINFER_TICK has value [^`]+)`", PAGE.read_text(encoding="utf-8"))
    assert quoted is not None
    with pytest.raises(SettingsError) as e:
        LocalSettings.from_env({"KUBEINFER_TICK": "fast"})
    assert str(e.value) == quoted.group(1)
