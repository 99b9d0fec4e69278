"""ONNX models run by ONNX Runtime (CPU, or CUDA when a GPU is assigned and the GPU build is installed).

Inputs and outputs come from the graph; symbolic dimensions are reported as ``-1``. The model is batchable when
every input's first dimension is symbolic. ``args.intraOpThreads`` sets ONNX Runtime's thread pool; by default it
follows the CPU the replica is given (``OMP_NUM_THREADS``), so replicas on one machine do not fight for cores.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kubeinfer.runtimes.base import ModelError, ModelInfo, TensorSpec

__all__ = ["ONNX_TYPES", "OnnxModel", "intra_op_threads", "session"]

ONNX_TYPES = {
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(float16)": "FP16",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(bool)": "BOOL",
    "tensor(string)": "BYTES",
}


def intra_op_threads(args: Mapping[str, Any]) -> int | None:
    """``args.intraOpThreads``, else ``OMP_NUM_THREADS`` (the CPU the replica is given), else None (the runtime's
    default); anything but an integer >= 1 is a ``ModelError`` that names the field."""
    raw = args["intraOpThreads"] if "intraOpThreads" in args else os.environ.get("OMP_NUM_THREADS")
    if raw in (None, ""):
        return None
    try:
        n = int(raw) if not isinstance(raw, bool | float) else 0
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise ModelError(f"args.intraOpThreads (or OMP_NUM_THREADS) must be an integer >= 1, got {raw!r}")
    return n


def session(model: str | bytes, threads: int | None) -> Any:
    """An ONNX Runtime session with kubeinfer's settings (``threads`` intra-op threads, from
    :func:`intra_op_threads`; one inter-op thread; all graph optimizations; CUDA first when a GPU is assigned)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = ["CPUExecutionProvider"]
    if os.environ.get("CUDA_VISIBLE_DEVICES") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(model, sess_options=opts, providers=providers)


def _dims(shape: list[Any]) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in shape)


class OnnxModel:
    def __init__(self, name: str, version: str, path: Path, args: Mapping[str, Any]) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.args = dict(args)
        self._sess: Any = None
        self._out_names: list[str] = []

    def load(self) -> ModelInfo:
        try:
            import onnxruntime  # noqa: F401  (fail early, with the extra to install)
        except ImportError as e:  # pragma: no cover - depends on extras
            raise ModelError("ONNX models need the [onnx] extra: pip install 'kubeinfer[onnx]'") from e
        if not self.path.exists():
            raise ModelError(f"model file {self.path} does not exist")
        threads = intra_op_threads(self.args)
        try:
            self._sess = session(str(self.path), threads)
        except Exception as e:
            raise ModelError(f"ONNX Runtime cannot load {self.path}: {e}") from e
        inputs, outputs = [], []
        for i in self._sess.get_inputs():
            if i.type not in ONNX_TYPES:
                raise ModelError(f"input {i.name!r} has type {i.type}, which is not supported")
            inputs.append(TensorSpec(i.name, ONNX_TYPES[i.type], _dims(i.shape)))
        for o in self._sess.get_outputs():
            dt = ONNX_TYPES.get(o.type)
            if dt is None:
                continue  # e.g. sequence/map outputs of converted classifiers: not tensors, not served
            outputs.append(TensorSpec(o.name, dt, _dims(o.shape)))
        self._out_names = [o.name for o in outputs]
        batchable = all(s.shape and s.shape[0] == -1 for s in inputs)
        return ModelInfo(
            platform="onnxruntime_onnx",
            inputs=inputs,
            outputs=outputs,
            batchable=batchable,
            extra={"providers": self._sess.get_providers()},
        )

    def predict(
        self, inputs: Mapping[str, np.ndarray[Any, Any]], outputs: frozenset[str] | None = None
    ) -> dict[str, np.ndarray[Any, Any]]:
        names = [n for n in self._out_names if outputs is None or n in outputs]
        feed = {k: (_text(v) if v.dtype == object else v) for k, v in inputs.items()}
        result = self._sess.run(names, feed)
        return {n: np.asarray(r) for n, r in zip(names, result, strict=True)}


def _text(arr: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """A BYTES tensor (an object array of bytes, as the protocols decode it) as the str array onnxruntime takes for a
    string input, decoded as UTF-8 (``astype(str)`` would decode as ASCII and fail on any other character)."""
    flat = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in arr.reshape(-1)]
    return np.array(flat, dtype=np.str_).reshape(arr.shape) if flat else np.zeros(arr.shape, dtype=np.str_)
