"""Declared inputs and outputs (``model.inputs`` / ``model.outputs``): checked at load, then followed everywhere."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from kubeinfer.runtimes.base import ModelError, ModelInfo, TensorSpec
from kubeinfer.runtimes.declared import declare
from kubeinfer.spec.service import TensorDecl


class _Model:
    """Two outputs in the order (b, a); one input ``x`` FP32 [-1, 3]; numbers cast as scikit-learn does."""

    name, version = "m", "1"

    def __init__(self, inputs: list[TensorSpec] | None = None, cast: bool = True) -> None:
        self.inputs = [TensorSpec("x", "FP32", (-1, 3))] if inputs is None else inputs
        self.cast = cast
        self.calls: list[tuple[list[str], frozenset[str] | None]] = []

    def load(self) -> ModelInfo:
        outs = [TensorSpec("b", "FP32", (-1,)), TensorSpec("a", "INT64", (-1,))]
        return ModelInfo("test", list(self.inputs), outs, cast_numeric=self.cast)

    def predict(self, inputs: Mapping[str, np.ndarray[Any, Any]], outputs: frozenset[str] | None = None) -> Any:
        self.calls.append((sorted(inputs), outputs))
        x = next(iter(inputs.values()))
        out = {"b": x.sum(axis=1).astype(np.float32), "a": np.zeros(len(x), dtype=np.int64)}
        return {k: v for k, v in out.items() if outputs is None or k in outputs}


def _d(name: str, datatype: str | None = None, shape: list[int] | None = None) -> TensorDecl:
    return TensorDecl(name=name, datatype=datatype, shape=shape)  # type: ignore[arg-type]


def test_nothing_declared_is_the_model_itself() -> None:
    m = _Model()
    assert declare(m, None, None) is m  # type: ignore[arg-type]


def test_declared_outputs_are_served_in_the_declared_order_and_others_not_computed() -> None:
    inner = _Model()
    m = declare(inner, None, [_d("a"), _d("b", shape=[-1])])  # type: ignore[arg-type]
    info = m.load()
    assert [o.name for o in info.outputs] == ["a", "b"]
    assert info.output_order == ("a", "b")
    only = declare(_Model(), None, [_d("b")])  # type: ignore[arg-type]
    only.load()
    assert set(only.predict({"x": np.ones((2, 3), np.float32)})) == {"b"}


def test_the_one_input_may_be_renamed_and_requests_reach_the_model_under_its_own_name() -> None:
    inner = _Model()
    m = declare(inner, [_d("features", "FP64", [-1, 3])], None)  # type: ignore[arg-type]
    info = m.load()
    assert [(s.name, s.datatype, s.shape) for s in info.inputs] == [("features", "FP64", (-1, 3))]
    out = m.predict({"features": np.ones((2, 3))})
    assert inner.calls[-1][0] == ["x"] and out["b"].tolist() == [3.0, 3.0]


@pytest.mark.parametrize(
    ("inputs", "outputs", "cast", "message"),
    [
        (None, [_d("c")], True, r"model.outputs\[0\] \('c'\): the model has no such output; it has 'b', 'a'"),
        ([_d("x", "BYTES")], None, True, r"model.inputs\[0\] \('x'\).datatype is BYTES but the model's is FP32"),
        ([_d("x", "FP64")], None, False, r"datatype is FP64 but the model's is FP32"),
        ([_d("x", shape=[-1])], None, True, r"has rank 1; the model's \[-1, 3\]"),
        ([_d("x", shape=[-1, 4])], None, True, r"shape \[-1, 4\] does not fit the model's \[-1, 3\]"),
    ],
)
def test_a_declaration_that_does_not_fit_the_model_fails_the_load_naming_the_field(
    inputs: list[TensorDecl] | None, outputs: list[TensorDecl] | None, cast: bool, message: str
) -> None:
    with pytest.raises(ModelError, match=message):
        declare(_Model(cast=cast), inputs, outputs).load()  # type: ignore[arg-type]


def test_several_inputs_must_keep_their_names_and_all_be_declared() -> None:
    two = [TensorSpec("p", "FP32", (-1, 3)), TensorSpec("q", "FP32", (-1, 3))]
    with pytest.raises(ModelError, match=r"no such input; it takes 'p', 'q'"):
        declare(_Model(two), [_d("p"), _d("z")], None).load()  # type: ignore[arg-type]
    with pytest.raises(ModelError, match=r"leaves out 'q'"):
        declare(_Model(two), [_d("p")], None).load()  # type: ignore[arg-type]


def test_a_model_without_metadata_takes_the_declaration_which_then_needs_datatype_and_shape() -> None:
    m = declare(_Model([]), [_d("t", "FP32", [-1, 3])], None)  # type: ignore[arg-type]
    assert [s.name for s in m.load().inputs] == ["t"]
    with pytest.raises(ModelError, match="declare both datatype and shape"):
        declare(_Model([]), [_d("t", "FP32")], None).load()  # type: ignore[arg-type]
