"""A model seen through the inputs and outputs its spec declares (``model.inputs`` / ``model.outputs``).

Triton reads a model's inputs and outputs from its configuration and checks them against the model; MLServer's
model settings do the same. Here the declaration is checked when the model loads, and from then on the metadata,
request validation, responses and error messages all follow it, in its order:

- Outputs: the declared ones are served, in the declared order; an undeclared output of the model is not computed
  or sent. Each declared name must be an output of the model (when the model reports its outputs).
- Inputs: each declared name must be an input of the model, except that the one input of a single-input model may be
  declared under another name (requests then use that name). Every input the model needs must be declared.
- A declared datatype must be the model's own, unless the model converts numbers itself (``cast_numeric``, e.g.
  scikit-learn) and both are numeric. A declared shape must have the model's rank and agree with its fixed dimensions;
  it may fix a dimension the model leaves open (``-1``).
- A model that reports no inputs (or outputs), such as a Python class without ``inputs``, takes the declaration as
  it is; a declared tensor then needs both datatype and shape.

Anything that does not fit is a ``ModelError`` at load naming the field, the model's value and the declared one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from kubeinfer.runtimes.base import DATATYPES, Model, ModelError, ModelInfo, TensorSpec
from kubeinfer.spec.service import TensorDecl

__all__ = ["DeclaredModel", "declare"]

_NUMERIC = {name for name, dt in DATATYPES.items() if dt.kind in "iuf"}


def _merge(decl: TensorDecl, own: TensorSpec | None, where: str, cast_numeric: bool) -> TensorSpec:
    if own is None:
        if decl.datatype is None or decl.shape is None:
            raise ModelError(f"{where}: the model does not report it, so declare both datatype and shape")
        return TensorSpec(decl.name, decl.datatype, tuple(decl.shape))
    datatype = own.datatype
    if decl.datatype is not None and decl.datatype != own.datatype:
        if not (cast_numeric and decl.datatype in _NUMERIC and own.datatype in _NUMERIC):
            raise ModelError(f"{where}.datatype is {decl.datatype} but the model's is {own.datatype}")
        datatype = decl.datatype
    shape = own.shape
    if decl.shape is not None:
        if len(decl.shape) != len(own.shape):
            raise ModelError(f"{where}.shape {decl.shape} has rank {len(decl.shape)}; the model's {list(own.shape)}")
        for d, o in zip(decl.shape, own.shape, strict=True):
            if o >= 0 and d != o:
                raise ModelError(f"{where}.shape {decl.shape} does not fit the model's {list(own.shape)}")
        shape = tuple(decl.shape)
    return TensorSpec(decl.name, datatype, shape, own.optional)


def _inputs(decls: Sequence[TensorDecl], info: ModelInfo) -> tuple[list[TensorSpec], dict[str, str]]:
    """The declared inputs and, for a renamed input, declared name -> the model's name."""
    own = info.input_index
    specs: list[TensorSpec] = []
    renames: dict[str, str] = {}
    for i, d in enumerate(decls):
        where = f"model.inputs[{i}] ({d.name!r})"
        match = own.get(d.name)
        if match is None and own:
            if len(info.inputs) == 1 and len(decls) == 1:
                match = info.inputs[0]
                renames[d.name] = match.name
            else:
                raise ModelError(f"{where}: the model has no such input; it takes {', '.join(map(repr, own))}")
        specs.append(_merge(d, match, where, info.cast_numeric))
    declared = {renames.get(s.name, s.name) for s in specs}
    missing = [s.name for s in info.inputs if not s.optional and s.name not in declared]
    if missing:
        raise ModelError(f"model.inputs leaves out {', '.join(map(repr, missing))}, which the model needs")
    return specs, renames


def _outputs(decls: Sequence[TensorDecl], info: ModelInfo) -> list[TensorSpec]:
    own = {s.name: s for s in info.outputs}
    specs = []
    for i, d in enumerate(decls):
        where = f"model.outputs[{i}] ({d.name!r})"
        if own and d.name not in own:
            raise ModelError(f"{where}: the model has no such output; it has {', '.join(map(repr, own))}")
        specs.append(_merge(d, own.get(d.name), where, info.cast_numeric))
    return specs


class DeclaredModel:
    """Wraps a model: loads it, checks the declaration, renames inputs on the way in and keeps declared outputs."""

    def __init__(self, inner: Model, inputs: Sequence[TensorDecl] | None, outputs: Sequence[TensorDecl] | None):
        self.inner = inner
        self.name = inner.name
        self.version = inner.version
        self._decl_inputs = inputs
        self._decl_outputs = outputs
        self._renames: dict[str, str] = {}
        self._served: frozenset[str] | None = None

    def load(self) -> ModelInfo:
        info = self.inner.load()
        inputs, outputs = info.inputs, info.outputs
        if self._decl_inputs is not None:
            inputs, self._renames = _inputs(self._decl_inputs, info)
        if self._decl_outputs is not None:
            outputs = _outputs(self._decl_outputs, info)
            self._served = frozenset(s.name for s in outputs)
        return replace(info, inputs=inputs, outputs=outputs)

    def predict(
        self, inputs: Mapping[str, np.ndarray[Any, Any]], outputs: frozenset[str] | None = None
    ) -> dict[str, np.ndarray[Any, Any]]:
        if self._renames:
            inputs = {self._renames.get(k, k): v for k, v in inputs.items()}
        want = self._served if outputs is None else outputs
        result = self.inner.predict(inputs, want)
        if want is not None and len(result) != len(want):
            result = {k: v for k, v in result.items() if k in want}
        return result

    def __getattr__(self, name: str) -> Any:
        # Optional capabilities of the runtime (embed, count_tokens ...) stay reachable through the wrapper.
        return getattr(self.inner, name)


def declare(model: Model, inputs: Sequence[TensorDecl] | None, outputs: Sequence[TensorDecl] | None) -> Model:
    """``model`` itself when nothing is declared, else the model seen through the declaration."""
    if inputs is None and outputs is None:
        return model
    return DeclaredModel(model, inputs, outputs)
