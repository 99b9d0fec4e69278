"""The tiny language model the generation tests share: built once per test process into a temporary folder."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import pytest


@functools.cache
def tiny_llm_dir() -> Path:
    """A tiny Llama (``kubeinfer.testing.tiny_llm``) in Hugging Face layout; skips without torch and transformers."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from kubeinfer.testing.tiny_llm import build_tiny_llm

    root = Path(tempfile.mkdtemp(prefix="tiny-llm-"))
    atexit.register(shutil.rmtree, root, True)
    return build_tiny_llm(root / "model")


def llm_spec(folder: Path, name: str = "tiny", args: str = "{}") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        f"apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {{name: {name}}}\n"
        f"spec:\n  model: {{format: llm, uri: '{tiny_llm_dir()}', args: {args}}}\n"
    )
    return path
