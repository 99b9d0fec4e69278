"""Without the storage extra, a remote uri fails with a message naming the extra to install."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kubeinfer.storage import StorageError, fetch


def test_a_missing_client_library_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "obstore", None)  # import obstore now raises ImportError
    monkeypatch.setitem(sys.modules, "obstore.store", None)
    with pytest.raises(StorageError, match=r"pip install 'kubeinfer\[storage\]'"):
        fetch("s3://bucket/model.onnx", tmp_path, env={})
    assert not any((tmp_path / "tmp").iterdir())
