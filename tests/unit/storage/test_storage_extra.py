"""Without the storage extra, a remote uri fails with a message naming the extra to install."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kubeinfer.storage import StorageError, fetch


def test_a_missing_client_library_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "obstore", None)  # import obstore now raises ImportError
    monkeypatch.setitem(sys.modules, "obstore.store", None)
    with pytest.raises(StorageError, match=r"^s3://bucket/model.onnx: .*pip install 'kubeinfer\[storage\]'"):
        fetch("s3://bucket/model.onnx", tmp_path, env={})
    assert not any((tmp_path / "tmp").iterdir())


def test_what_a_killed_download_left_in_tmp_is_swept_once_stale(tmp_path: Path) -> None:
    import os
    import time

    from kubeinfer.storage.cache import STALE_SECONDS, Cache

    cache = Cache(tmp_path)
    old, fresh = cache.temp_file(), cache.temp_file()
    past = time.time() - STALE_SECONDS - 60
    os.utime(old, (past, past))
    Cache(tmp_path)  # the next process to open the cache
    assert not old.exists() and fresh.exists()


def test_a_blob_is_read_only_once_in_the_cache(tmp_path: Path) -> None:
    import stat

    from kubeinfer.storage.cache import Cache

    cache = Cache(tmp_path)
    tmp = cache.temp_file()
    tmp.write_bytes(b"x")
    blob = cache.add_blob(tmp, "ab" * 32)
    assert stat.S_IMODE(blob.stat().st_mode) == 0o444 and not tmp.exists()
