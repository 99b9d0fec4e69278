"""The pieces of a download that need no server: the writeback hint and the concurrency setting."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from kubeinfer.storage import StorageError
from kubeinfer.storage.fetch import DEFAULT_CONCURRENCY, fetch_concurrency
from kubeinfer.storage.transfer import start_writeback


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_writeback_is_started_on_a_file_and_refused_on_a_pipe(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        os.write(fd, b"x" * 65536)
        assert start_writeback(fd, 0, 65536)
    finally:
        os.close(fd)
    r, w = os.pipe()
    try:
        assert not start_writeback(w, 0, 1)  # ESPIPE: best effort, no exception
    finally:
        os.close(r)
        os.close(w)


def test_fetch_concurrency_comes_from_the_environment_and_is_validated() -> None:
    assert fetch_concurrency({}) == DEFAULT_CONCURRENCY
    assert fetch_concurrency({"KUBEINFER_FETCH_CONCURRENCY": "1"}) == 1
    for bad in ("0", "-2", "many"):
        with pytest.raises(StorageError, match=f"KUBEINFER_FETCH_CONCURRENCY must be an integer >= 1, got '{bad}'"):
            fetch_concurrency({"KUBEINFER_FETCH_CONCURRENCY": bad})
