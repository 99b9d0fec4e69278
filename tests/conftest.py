"""Opt-in markers: tests marked ``slow`` (soak, peer benchmarks) run only when ``-m`` names them."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    chosen = config.getoption("-m") or ""
    if "slow" in chosen:
        return
    skip = pytest.mark.skip(reason="slow: opt-in with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
