"""Session-wide test settings."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_compile_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Compiled sklearn graphs (runtimes/sklearn.py) go to a cache of this session, not the user's, and every server
    # process started by a test inherits it: the first start of a model compiles, later ones hit the cache.
    os.environ["KUBEINFER_CACHE_DIR"] = str(tmp_path_factory.mktemp("kubeinfer-cache"))
