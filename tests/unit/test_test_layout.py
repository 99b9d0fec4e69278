"""The suite's own layout: pytest (rootdir import mode, no __init__.py) refuses two test modules with one basename
in a run, so a second `test_x.py` anywhere under tests/ breaks the whole default run at collection."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_test_module_basenames_are_unique() -> None:
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [n for n, c in names.items() if c > 1] == []
