"""Open Inference Protocol tensor decoding and validation: every bad input is an InvalidInput that says why."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kubeinfer.runtimes.base import ModelInfo, TensorSpec
from kubeinfer.server.errors import InvalidInput
from kubeinfer.server.tensors import decode_raw, encode_raw, parse_infer_json, validate_inputs

INFO = ModelInfo("test", [TensorSpec("x", "FP32", (-1, 3))], [TensorSpec("y", "FP32", (-1,))])


def req(**tensor: object) -> bytes:
    base = {"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}
    return json.dumps({"inputs": [{**base, **tensor}]}).encode()


def test_flat_and_nested_data_decode_to_the_same_array() -> None:
    a = parse_infer_json(req()).inputs["x"]
    b = parse_infer_json(req(data=[[1, 2, 3], [4, 5, 6]])).inputs["x"]
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32
    assert a.shape == (2, 3)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[1, 2]", "must be a JSON object"),
        (b'{"inputs": {}}', "non-empty list"),
        (req(shape=[2, -3]), "non-negative integers"),
        (req(datatype="FLOAT"), "datatype 'FLOAT'"),
        (req(data=[1, 2]), "needs 6 elements, got 2"),
        (req(data=None), "data must be a list"),
        (req(data=[1, 2, "x", 4, 5, 6]), "FP32 data must be numbers, got the string 'x'"),
        (req(name=""), "non-empty string"),
        (req(datatype="BOOL", data=[1, 0, 1, 0, 1, 0]), "BOOL data must be true or false, got 1"),
        # Strict numbers: numpy alone would take each of these and predict on NaN, inf or a coerced value.
        (req(data=[1, None, 3, 4, 5, 6]), "FP32 data must be numbers, got null"),
        (req(data=[1, "5.1", 3, 4, 5, 6]), "got the string '5.1'"),
        (req(data=[[1, True, 3], [4, 5, 6]]), "FP32 data must be numbers, got true"),
        (req(data=[1, 1e39, 3, 4, 5, 6]), "out of range for FP32"),
        (req(datatype="INT64", data=[1, 2.5, 3, 4, 5, 6]), "INT64 data must be whole numbers, got the number 2.5"),
        (req(datatype="INT8", data=[1, 300, 3, 4, 5, 6]), "does not fit datatype INT8"),
        (req(datatype="UINT8", data=[1, {"a": 1}, 3, 4, 5, 6]), "got an object"),
        (
            req(datatype="BYTES", data=["a", 2000000000, "c", "d", "e", "f"]),
            "BYTES data must be strings, got 2000000000",
        ),
        (req(datatype="BYTES", data=["a", None, "c", "d", "e", "f"]), "BYTES data must be strings, got null"),
        (json.dumps({"id": {"x": 1}, "inputs": json.loads(req())["inputs"]}).encode(), "'id' must be a string"),
        (req(parameters={"binary_data_size": 24}), "no binary part"),
        (json.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}).encode(), "has no 'data'"),
    ],
)
def test_malformed_tensors_are_rejected_with_a_reason(body: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_infer_json(body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (req(datatype="FP64"), "has datatype FP64 but model 'm' expects FP32"),
        (req(shape=[3, 2]), "has shape [3, 2] but model 'm' expects [-1, 3]"),
    ],
)
def test_inputs_that_do_not_fit_the_model_are_rejected(body: bytes, message: str) -> None:
    r = parse_infer_json(body)
    with pytest.raises(InvalidInput, match=message.replace("[", r"\[").replace("]", r"\]")):
        validate_inputs(r, INFO, "m")


TWO = ModelInfo(
    "test", [TensorSpec("a", "FP32", (-1,)), TensorSpec("b", "BYTES", (-1,))], [TensorSpec("y", "FP32", (-1,))]
)
TABLE = ModelInfo(
    "test", [TensorSpec("input-0", "FP32", (-1, 3))], [TensorSpec("y", "FP32", (-1,))], columns=("u", "v", "w")
)


def _tensor(name: str, datatype: str, shape: list[int], data: list[object]) -> dict[str, object]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def test_the_one_input_of_a_single_input_model_is_taken_under_any_name() -> None:
    r = parse_infer_json(req(name="input_0"))
    validate_inputs(r, INFO, "m")
    assert list(r.inputs) == ["x"] and r.rows == 2


def test_an_unknown_name_is_refused_where_the_model_has_several_inputs() -> None:
    body = json.dumps({"inputs": [_tensor("z", "FP32", [1], [1.0]), _tensor("b", "BYTES", [1], ["q"])]}).encode()
    with pytest.raises(InvalidInput, match="unknown input 'z': model 'm' takes 'a', 'b'"):
        validate_inputs(parse_infer_json(body), TWO, "m")


def test_columns_sent_as_inputs_fill_the_table_in_the_model_order() -> None:
    body = json.dumps(
        {
            "inputs": [
                _tensor("w", "INT64", [2, 1], [5, 6]),
                _tensor("u", "FP64", [2], [1.0, 2.0]),
                _tensor("v", "FP32", [2], [3.0, 4.0]),
            ]
        }
    ).encode()
    r = parse_infer_json(body)
    validate_inputs(r, TABLE, "m")
    assert list(r.inputs) == ["input-0"] and r.inputs["input-0"].dtype == np.float32 and r.rows == 2
    np.testing.assert_array_equal(r.inputs["input-0"], [[1, 3, 5], [2, 4, 6]])


def test_a_missing_column_is_named() -> None:
    body = json.dumps({"inputs": [_tensor("u", "FP32", [1], [1.0]), _tensor("w", "FP32", [1], [1.0])]}).encode()
    with pytest.raises(InvalidInput, match="missing 'v'"):
        validate_inputs(parse_infer_json(body), TABLE, "m")


def test_a_column_as_n_by_1_and_a_castable_number_are_taken_only_where_the_model_casts() -> None:
    body = json.dumps({"inputs": [_tensor("a", "INT64", [2, 1], [1, 2]), _tensor("b", "BYTES", [2, 1], ["p", "q"])]})
    strict = parse_infer_json(body.encode())
    with pytest.raises(InvalidInput, match="has datatype INT64 but model 'm' expects FP32"):
        validate_inputs(strict, TWO, "m")
    casting = ModelInfo("test", TWO.inputs, TWO.outputs, cast_numeric=True)
    r = parse_infer_json(body.encode())
    validate_inputs(r, casting, "m")
    assert r.inputs["a"].dtype == np.float32 and r.inputs["a"].shape == (2,) and r.inputs["b"].shape == (2,)
    bytes_as_number = json.dumps({"inputs": [_tensor("a", "BYTES", [1], ["1"]), _tensor("b", "BYTES", [1], ["q"])]})
    with pytest.raises(InvalidInput, match="has datatype BYTES but model 'm' expects FP32"):
        validate_inputs(parse_infer_json(bytes_as_number.encode()), casting, "m")


def test_rows_come_from_the_first_dimension() -> None:
    r = parse_infer_json(req())
    validate_inputs(r, INFO, "m")
    assert r.rows == 2


@pytest.mark.parametrize(
    "arr",
    [
        np.arange(6, dtype=np.float32).reshape(2, 3),
        np.array([True, False]),
        np.array([-5, 7], dtype=np.int64),
        np.array([b"ab", b"", "ü".encode()], dtype=object),
        np.array([1.5, -2], dtype=np.float16),
    ],
)
def test_raw_encoding_round_trips(arr: np.ndarray) -> None:
    from kubeinfer.runtimes.base import datatype_of

    back = decode_raw(datatype_of(arr), arr.shape, encode_raw(arr), "t")
    assert list(back.reshape(-1)) == list(arr.reshape(-1))


def test_raw_bytes_of_the_wrong_length_are_rejected() -> None:
    with pytest.raises(InvalidInput, match="needs 12 bytes"):
        decode_raw("FP32", (3,), b"\0" * 8, "t")
    with pytest.raises(InvalidInput, match="truncated"):
        decode_raw("BYTES", (1,), b"\x01\x00", "t")


def test_strict_numbers_still_take_ints_for_floats_and_big_fp64() -> None:
    a = parse_infer_json(req(data=[1, 2, 3, 4.5, 5, 6])).inputs["x"]
    assert a.dtype == np.float32 and a[0, 0] == 1.0
    b = parse_infer_json(req(datatype="FP64", data=[1e39, 2, 3, 4, 5, 6])).inputs["x"]
    assert b[0, 0] == 1e39
    c = parse_infer_json(req(datatype="BOOL", data=[True, False, True, False, True, False])).inputs["x"]
    assert c.dtype == np.bool_
    d = parse_infer_json(json.dumps({"id": "r1", "inputs": json.loads(req())["inputs"]}).encode())
    assert d.id == "r1"
