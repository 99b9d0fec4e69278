"""The one ``Model`` protocol every runtime implements, and the tensor metadata the protocols report.

A model receives a batch: a mapping of input name to a numpy array whose first axis is the batch (rows from one
or several requests, concatenated by the server's batcher) and returns a mapping of output name to an array with the
same first axis. ``BYTES`` tensors are numpy object arrays of ``bytes``. Datatype names are the Open Inference
Protocol's (``FP32``, ``INT64``, ``BYTES`` ...), so metadata goes on the wire unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["DATATYPES", "Model", "ModelError", "ModelInfo", "TensorSpec", "datatype_of", "dtype_of", "sample_batch"]

# OIP datatype name -> numpy dtype. BF16 has no numpy dtype and is not offered.
DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
_BY_DTYPE = {v: k for k, v in DATATYPES.items()}


def dtype_of(datatype: str) -> np.dtype[Any]:
    return DATATYPES[datatype]


# Keyed by dtype.num (a small int): hashing an int is cheaper than hashing a dtype, and this runs per tensor.
_BY_NUM = {dt.num: name for name, dt in DATATYPES.items() if name != "BYTES"}
_BY_NUM.update({np.dtype(np.longlong).num: "INT64", np.dtype(np.ulonglong).num: "UINT64"})


def datatype_of(arr: np.ndarray[Any, Any]) -> str:
    """The OIP datatype of an array; unicode and bytes arrays are BYTES."""
    dt = arr.dtype
    name = _BY_NUM.get(dt.num)
    if name is not None and dt.isnative:
        return name
    if dt.kind in ("U", "S", "O"):
        return "BYTES"
    name = _BY_DTYPE.get(dt.newbyteorder("="))
    if name is None:
        raise ModelError(f"output dtype {dt} has no Open Inference Protocol datatype")
    return name


class ModelError(Exception):
    """The model failed on a batch, or could not be loaded."""


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """Name, OIP datatype and shape of one input or output; ``-1`` marks a variable dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    optional: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(slots=True)
class ModelInfo:
    """What a loaded model reports about itself."""

    platform: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    # Rows of different requests may be concatenated on axis 0 and split back (true for nearly every model).
    batchable: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    # Names of the first input's columns (a 2-D table fitted on a DataFrame): a request may send one input per
    # column instead, as MLServer's pandas codec and KServe v2 do for DataFrames.
    columns: tuple[str, ...] = ()
    # A numeric input of another numeric datatype is cast to the declared one (the model converts anyway, as
    # scikit-learn does) instead of being refused.
    cast_numeric: bool = False
    input_index: dict[str, TensorSpec] = field(default_factory=dict, repr=False, compare=False)
    output_names: frozenset[str] = field(default_factory=frozenset, repr=False, compare=False)
    output_order: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        # Derived once at load: the request path looks inputs and outputs up on every request.
        self.input_index = {s.name: s for s in self.inputs}
        self.output_names = frozenset(s.name for s in self.outputs)
        # Responses list outputs in the order the metadata declares them, whatever order the model returns.
        self.output_order = tuple(s.name for s in self.outputs)


@runtime_checkable
class Model(Protocol):
    """A loaded model. ``predict`` is called once at a time per instance, in a worker thread, or on the event loop
    for a model faster than the hand-over to a thread (``server/batcher.py``)."""

    name: str
    version: str

    def load(self) -> ModelInfo: ...

    def predict(
        self, inputs: Mapping[str, np.ndarray[Any, Any]], outputs: frozenset[str] | None = None
    ) -> dict[str, np.ndarray[Any, Any]]:
        """Run one batch. ``outputs`` names the outputs wanted (None: all); others may be skipped."""
        ...


def sample_batch(specs: Sequence[TensorSpec], rows: int = 1) -> dict[str, np.ndarray[Any, Any]]:
    """A small valid batch built from input metadata, used to warm a model up before it reports ready."""
    out: dict[str, np.ndarray[Any, Any]] = {}
    for spec in specs:
        if spec.optional:
            continue
        shape = tuple(rows if i == 0 and d < 0 else (d if d >= 0 else 1) for i, d in enumerate(spec.shape))
        if spec.datatype == "BYTES":
            out[spec.name] = np.full(shape, b"warm up", dtype=object)
        else:
            out[spec.name] = np.zeros(shape, dtype=dtype_of(spec.datatype))
    return out
