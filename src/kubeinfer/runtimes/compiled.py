"""What the runtimes that compile a model to ONNX share (``sklearn``, ``xgboost``/``lightgbm``): the compile modes,
the reason a model was not compiled, the cache folder, the float32 rounding of split thresholds, and the checks of
the model file and ``args.compile`` at load."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kubeinfer.runtimes.base import ModelError

__all__ = [
    "COMPILE_MODES",
    "F32_MAX",
    "CannotCompile",
    "cache_dir",
    "compile_mode",
    "f32_at_most",
    "model_file",
    "short_error",
]

COMPILE_MODES = ("auto", "onnx", "none")
F32_MAX = float(np.finfo(np.float32).max)


class CannotCompile(Exception):
    """The model is served by its own library: why it was not converted (or the graph not used)."""


def cache_dir() -> Path:
    """Where compiled graphs are cached: ``$KUBEINFER_CACHE_DIR``, else ``~/.cache/kubeinfer``."""
    root = os.environ.get("KUBEINFER_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "kubeinfer"


def compile_mode(args: Mapping[str, Any]) -> str:
    """``args.compile``, checked: ``auto`` (default), ``onnx`` or ``none``."""
    mode = str(args.get("compile", "auto"))
    if mode not in COMPILE_MODES:
        raise ModelError(f"args.compile must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
    return mode


def model_file(path: Path, what: str) -> Path:
    """``path``, checked to be a file (``what`` names the file to point ``uri`` at when it is a folder)."""
    if not path.exists():
        raise ModelError(f"model file {path} does not exist")
    if not path.is_file():
        raise ModelError(f"model uri {path} is a directory: point uri at the {what} inside it")
    return path


def f32_at_most(t: float) -> float:
    """The largest float32 that is <= ``t`` (as a float; -inf below float32's range): for every float32 ``x``,
    ``x <= t`` exactly when ``x <= result``."""
    if not math.isfinite(t):
        return t
    if t >= F32_MAX:
        return F32_MAX
    if t < -F32_MAX:
        return -math.inf
    t32 = np.float32(t)
    if float(t32) > t:
        t32 = np.nextafter(t32, np.float32(-np.inf))
    return float(t32)


def short_error(e: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, cut to ``limit`` characters (converters dump whole nodes into
    theirs, XGBoost appends C++ stack traces)."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text if len(text) <= limit else text[:limit] + " ..."
