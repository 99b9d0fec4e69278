"""Open Inference Protocol v2 tensors: JSON and binary decoding, validation against the model, encoding.

References: the KServe Open Inference Protocol (REST and gRPC) and Triton's binary tensor data extension
(``Inference-Header-Content-Length``; an input's ``parameters.binary_data_size`` says how many bytes of the body
after the JSON header are its data, in input order; an output is returned as binary when the request asks with
``parameters.binary_data`` on the output or ``parameters.binary_data_output`` on the request). ``BYTES`` elements
in binary form are a 4-byte little-endian length followed by the bytes, as Triton lays them out.

The request path validates tensors directly with numpy rather than through a generic model layer: it is the hot path
of every inference, and its cost is most of what separates a fast Python server from a slow one.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import orjson

from kubeinfer.runtimes.base import DATATYPES, ModelInfo, TensorSpec, datatype_of
from kubeinfer.server.errors import InvalidInput, OutOfMemory

__all__ = [
    "InferRequest",
    "RequestedOutput",
    "decode_raw",
    "encode_raw",
    "from_json_data",
    "output_json",
    "parse_infer_json",
    "validate_inputs",
    "wire_outputs",
]

_LEN = struct.Struct("<I")
_ABSENT = object()


class RequestedOutput(NamedTuple):
    # A NamedTuple rather than a frozen dataclass: it is built per requested output of every request, and a
    # frozen dataclass's __init__ costs several times more.
    name: str
    binary: bool = False


class InferRequest:
    """One decoded inference request: inputs as arrays whose first axis is its rows."""

    __slots__ = ("binary_output", "id", "inputs", "output_names", "outputs", "parameters", "rows")

    def __init__(
        self,
        inputs: dict[str, np.ndarray[Any, Any]],
        rows: int,
        id: str | None = None,
        outputs: tuple[RequestedOutput, ...] | None = None,
        binary_output: bool = False,
        parameters: dict[str, Any] | None = None,
    ) -> None:
        self.inputs = inputs
        self.rows = rows
        self.id = id
        self.outputs = outputs
        self.binary_output = binary_output
        self.parameters = parameters if parameters is not None else {}
        self.output_names: frozenset[str] | None = None if outputs is None else frozenset(o.name for o in outputs)


def _shape(raw: Any, where: str) -> tuple[int, ...]:
    # Plain loops and exact type checks: this runs for every tensor of every request.
    if type(raw) is list:
        for d in raw:
            if type(d) is not int or d < 0:
                break
        else:
            return tuple(raw)
    raise InvalidInput(f"input {where!r}: shape must be a list of non-negative integers, got {raw!r}")


def decode_raw(datatype: str, shape: tuple[int, ...], buf: bytes | memoryview, where: str) -> np.ndarray[Any, Any]:
    """Decode a tensor's raw little-endian bytes (binary extension or gRPC raw contents)."""
    count = math.prod(shape)
    if datatype == "BYTES":
        items: list[bytes] = []
        mv = memoryview(buf)
        pos = 0
        while pos < len(mv):
            if pos + 4 > len(mv):
                raise InvalidInput(f"{where}: BYTES data is truncated (an element length needs 4 bytes)")
            (n,) = _LEN.unpack_from(mv, pos)
            pos += 4
            if pos + n > len(mv):
                raise InvalidInput(f"{where}: BYTES element of {n} bytes runs past the end of the data")
            items.append(bytes(mv[pos : pos + n]))
            pos += n
        if len(items) != count:
            raise InvalidInput(f"{where}: shape {list(shape)} needs {count} BYTES elements, got {len(items)}")
        arr = np.empty(count, dtype=object)
        arr[:] = items
        return arr.reshape(shape)
    dtype = DATATYPES[datatype]
    expected = count * dtype.itemsize
    if len(buf) != expected:
        raise InvalidInput(f"{where}: shape {list(shape)} of {datatype} needs {expected} bytes of data, got {len(buf)}")
    return np.frombuffer(buf, dtype=dtype.newbyteorder("<")).reshape(shape)


def encode_raw(arr: np.ndarray[Any, Any]) -> bytes:
    if arr.dtype.kind in ("O", "U", "S"):
        parts = []
        for item in arr.reshape(-1):
            b = item if isinstance(item, bytes) else str(item).encode()
            parts.append(_LEN.pack(len(b)))
            parts.append(b)
        return b"".join(parts)
    a = arr if arr.dtype.byteorder != ">" else arr.astype(arr.dtype.newbyteorder("<"))
    return np.ascontiguousarray(a).tobytes()


def from_json_data(data: Any, datatype: str, shape: tuple[int, ...], where: str) -> np.ndarray[Any, Any]:
    count = math.prod(shape)
    if not isinstance(data, list) and (shape != () or data is None):
        raise InvalidInput(
            f"{where}: data must be a list of {count} values (flat or nested), got {type(data).__name__}"
        )
    flat = _flatten(data)
    if datatype == "BYTES":
        if len(flat) != count:
            raise InvalidInput(f"{where}: shape {list(shape)} needs {count} elements, got {len(flat)}")
        arr = np.empty(count, dtype=object)
        try:
            # Strings only: bytes(n) of a number would allocate n bytes (a client-chosen size).
            arr[:] = [x.encode() for x in flat]
        except (AttributeError, UnicodeEncodeError):
            bad = next(x for x in flat if type(x) is not str)
            raise InvalidInput(f"{where}: BYTES data must be strings, got {_json_kind(bad)}") from None
        return arr.reshape(shape)
    dtype = DATATYPES[datatype]
    # Strict JSON numbers (as Triton's parser is): numpy would take null as NaN, "5.1" and true as numbers and 1e39 as
    # inf for FP32, and predict on them. One pass over the element types, at C speed.
    kinds = set(map(type, flat))
    allowed = _JSON_KINDS[dtype.kind]
    if not kinds <= allowed:
        bad = next(x for x in flat if type(x) not in allowed)
        need = {"b": "true or false", "f": "numbers", "i": "whole numbers", "u": "whole numbers >= 0"}[dtype.kind]
        raise InvalidInput(f"{where}: {datatype} data must be {need}, got {_json_kind(bad)}")
    try:
        if dtype.kind == "f":
            with np.errstate(over="ignore"):  # too large for the datatype: inf, refused below with its reason
                arr = np.asarray(data, dtype=dtype)
        else:
            arr = np.asarray(data, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as e:
        raise InvalidInput(f"{where}: data does not fit datatype {datatype}: {e}") from None
    if arr.size != count:
        raise InvalidInput(f"{where}: shape {list(shape)} needs {count} elements, got {arr.size}")
    if dtype.kind == "f" and not np.isfinite(arr).all():
        # JSON has no NaN or infinity: a non-finite value here is a number too large for the datatype.
        raise InvalidInput(
            f"{where}: a value is out of range for {datatype} (largest {float(np.finfo(dtype).max):.6g}); "
            "send FP64 or binary tensors"
        )
    return arr.reshape(shape)


_JSON_KINDS: dict[str, frozenset[type]] = {
    "b": frozenset((bool,)),
    "f": frozenset((float, int)),
    "i": frozenset((int,)),
    "u": frozenset((int,)),
}


def _json_kind(x: Any) -> str:
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, str):
        return f"the string {x[:20]!r}"
    if isinstance(x, float):
        return f"the number {x!r}"
    return {"dict": "an object", "list": "a list"}.get(type(x).__name__, repr(x)[:20])


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if not data or not isinstance(data[0], list):
        return data
    out: list[Any] = []
    for x in data:
        out.extend(_flatten(x))
    return out


def parse_infer_json(header: bytes | memoryview, binary: memoryview | None = None) -> InferRequest:
    """Decode an OIP v2 JSON infer request; ``binary`` is the body after the JSON header, if any."""
    try:
        doc = orjson.loads(header)
    except orjson.JSONDecodeError as e:
        if "memory" in str(e).lower():  # orjson reports an allocation failure as a decode error
            raise OutOfMemory.of("decoding this request's JSON") from None
        raise InvalidInput(f"request body is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise InvalidInput("request body must be a JSON object with an 'inputs' list")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput("'inputs' must be a non-empty list of tensors ({name, shape, datatype, data})")
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInput("'parameters' must be an object")
    inputs: dict[str, np.ndarray[Any, Any]] = {}
    offset = 0
    for i, t in enumerate(raw_inputs):
        # Messages are built only on the error path: this loop runs for every tensor of every request.
        if type(t) is not dict:
            raise InvalidInput(f"inputs[{i}] must be an object with name, shape, datatype and data")
        name = t.get("name")
        if type(name) is not str or not name:
            raise InvalidInput(f"inputs[{i}].name must be a non-empty string")
        if name in inputs:
            raise InvalidInput(f"input {name!r} is given twice")
        datatype = t.get("datatype")
        if datatype not in DATATYPES:
            raise InvalidInput(f"input {name!r}: datatype {datatype!r} is not one of {', '.join(DATATYPES)}")
        shape = _shape(t.get("shape"), name)
        tparams = t.get("parameters")
        size = tparams.get("binary_data_size") if type(tparams) is dict else None
        if size is not None:
            where = f"input {name!r}"
            if binary is None:
                raise InvalidInput(
                    f"{where} has parameters.binary_data_size but the request has no binary part: "
                    "send the Inference-Header-Content-Length header"
                )
            if type(size) is not int or size < 0 or offset + size > len(binary):
                raise InvalidInput(f"{where}: binary_data_size {size!r} runs past the end of the body")
            inputs[name] = decode_raw(datatype, shape, binary[offset : offset + size], where)
            offset += size
        else:
            data = t.get("data", _ABSENT)
            if data is _ABSENT:
                raise InvalidInput(f"input {name!r} has no 'data' (or parameters.binary_data_size)")
            inputs[name] = from_json_data(data, datatype, shape, f"input {name!r}")
    if binary is not None and offset != len(binary):
        raise InvalidInput(f"the binary part has {len(binary) - offset} bytes that no input claims")
    outputs = None
    raw_out = doc.get("outputs")
    if raw_out is not None:
        if not isinstance(raw_out, list):
            raise InvalidInput("'outputs' must be a list of {name, parameters}")
        outs = []
        for j, o in enumerate(raw_out):
            if not isinstance(o, dict) or not isinstance(o.get("name"), str):
                raise InvalidInput(f"outputs[{j}] must be an object with a name")
            op = o.get("parameters") or {}
            outs.append(
                RequestedOutput(o["name"], bool(op.get("binary_data", False)) if isinstance(op, dict) else False)
            )
        outputs = tuple(outs)
    rid = doc.get("id")
    if rid is not None and type(rid) is not str:
        raise InvalidInput(f"'id' must be a string, got {_json_kind(rid)}")
    return InferRequest(
        inputs=inputs,
        rows=0,
        id=rid,
        outputs=outputs,
        binary_output=bool(params.get("binary_data_output", False)),
        parameters=params,
    )


def validate_inputs(req: InferRequest, info: ModelInfo, model: str) -> None:
    """Check inputs against the model's metadata and set ``req.rows`` (the shared first dimension).

    Requests as users send them are taken where the meaning is unambiguous (each adaptation runs only once the strict
    check has failed, so a request that matches the metadata pays nothing for them): the one input of a single-input
    model under any name (as MLServer's and KServe's scikit-learn servers do); one input per column for a model whose
    first input is a table with named columns (``ModelInfo.columns``); a column sent as ``[N, 1]`` where ``[N]`` is
    declared; and, for a model with ``cast_numeric``, a numeric datatype other than the declared one."""
    specs: Sequence[TensorSpec] = info.inputs
    if specs:
        by_name = info.input_index
        for name, arr in list(req.inputs.items()):
            spec = by_name.get(name)
            if spec is None:
                _adapt_names(req, info, model)
                return validate_inputs(req, info, model)
            dt = datatype_of(arr)
            if dt != spec.datatype:
                arr = _cast(arr, dt, spec, info, model)
                req.inputs[name] = arr
            shape = arr.shape
            expected = spec.shape
            bad = len(shape) != len(expected)
            if bad and len(expected) == 1 and len(shape) == 2 and shape[1] == 1:
                arr = req.inputs[name] = arr.reshape(-1)  # a column sent as [N, 1]
                shape, bad = arr.shape, False
            if not bad:
                for d, e in zip(shape, expected, strict=True):
                    if e >= 0 and d != e:
                        bad = True
                        break
            if bad:
                raise InvalidInput(
                    f"input {name!r} has shape {list(shape)} but model {model!r} expects {list(spec.shape)} "
                    "(-1 is any size)"
                )
        if len(req.inputs) != len(specs):
            for s in specs:
                if not s.optional and s.name not in req.inputs:
                    raise InvalidInput(f"missing input {s.name!r} (model {model!r} needs it)")
    rows = -1
    for name, arr in req.inputs.items():
        n = arr.shape[0] if arr.ndim else 1
        if rows == -1:
            rows = n
        elif info.batchable and n != rows:
            raise InvalidInput(
                f"input {name!r} has {n} rows but other inputs have {rows}: the first dimensions must match"
            )
    req.rows = max(rows, 0)
    if req.outputs is not None and info.outputs:
        known = info.output_names
        for o in req.outputs:
            if o.name not in known:
                raise InvalidInput(
                    f"unknown output {o.name!r}: model {model!r} has {', '.join(repr(n) for n in info.output_order)}"
                )
    return None


_NUMERIC = frozenset("biuf")


def _cast(arr: np.ndarray[Any, Any], dt: str, spec: TensorSpec, info: ModelInfo, model: str) -> np.ndarray[Any, Any]:
    if info.cast_numeric and arr.dtype.kind in _NUMERIC and spec.datatype != "BYTES" and spec.datatype != "BOOL":
        return arr.astype(DATATYPES[spec.datatype])
    raise InvalidInput(f"input {spec.name!r} has datatype {dt} but model {model!r} expects {spec.datatype}")


def _adapt_names(req: InferRequest, info: ModelInfo, model: str) -> None:
    """Map a request whose input names are not the model's onto the model's inputs, or raise the error."""
    specs = info.inputs
    names = list(req.inputs)
    if info.columns and len(specs) == 1 and all(n in info.columns for n in names):
        missing = [c for c in info.columns if c not in req.inputs]
        if missing:
            raise InvalidInput(
                f"model {model!r} takes a table of {len(info.columns)} columns: missing "
                f"{', '.join(repr(c) for c in missing[:10])}{' ...' if len(missing) > 10 else ''}"
            )
        spec = specs[0]
        dtype = DATATYPES[spec.datatype]
        cols = []
        for c in info.columns:
            col = req.inputs[c]
            if col.ndim == 2 and col.shape[1] == 1:
                col = col.reshape(-1)
            if col.ndim != 1:
                raise InvalidInput(f"column {c!r} has shape {list(col.shape)}: send a column as [N] or [N, 1]")
            if col.dtype != dtype:
                # A column has no datatype of its own: any number is cast to the table's, nothing else is.
                if col.dtype.kind not in _NUMERIC or spec.datatype in ("BYTES", "BOOL"):
                    raise InvalidInput(
                        f"column {c!r} has datatype {datatype_of(col)} but model {model!r} takes {spec.datatype}"
                    )
                col = col.astype(dtype)
            cols.append(col)
        if len({len(c) for c in cols}) != 1:
            raise InvalidInput(f"the columns of model {model!r} have different numbers of rows")
        req.inputs = {spec.name: np.stack(cols, axis=1)}
        return
    if len(specs) == 1 and len(names) == 1:
        req.inputs = {specs[0].name: req.inputs[names[0]]}
        return
    unknown = next(n for n in names if n not in info.input_index)
    raise InvalidInput(f"unknown input {unknown!r}: model {model!r} takes {', '.join(repr(s.name) for s in specs)}")


def wire_outputs(result: Mapping[str, Any], order: tuple[str, ...] = ()) -> dict[str, np.ndarray[Any, Any]]:
    """A model's outputs made safe to slice per request and to encode: each an ndarray in native byte order and
    C order (views, Fortran-ordered, big-endian arrays and scalars are what numpy and user code give), in the
    declared ``order`` first and any undeclared outputs after, as the model returned them.

    ``np.ascontiguousarray`` returns a C-contiguous array of native order unchanged, so the common case copies
    nothing; every encoder (JSON, binary, gRPC raw contents, KServe v1) reads the result without further checks."""
    out: dict[str, np.ndarray[Any, Any]] = {}
    for name in order:
        if name in result:
            out[name] = _wire_array(result[name])
    if len(out) != len(result):
        for name, value in result.items():
            if name not in out:
                out[name] = _wire_array(value)
    return out


def _wire_array(value: Any) -> np.ndarray[Any, Any]:
    arr = value if type(value) is np.ndarray else np.asarray(value)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    return arr


def _json_data(arr: np.ndarray[Any, Any]) -> Any:
    if arr.dtype.kind in ("O", "S"):
        return [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in arr.reshape(-1)]
    if arr.dtype.kind == "U":
        return arr.reshape(-1).tolist()
    # orjson serializes C-contiguous numeric numpy arrays of native byte order natively (OPT_SERIALIZE_NUMPY): no
    # Python list built. Outputs arrive so from ``wire_outputs``; an array from elsewhere is made so here.
    return _wire_array(arr).reshape(-1)


def output_json(
    name: str,
    arr: np.ndarray[Any, Any],
    binary: bool,
    chunks: list[bytes],
) -> dict[str, Any]:
    """One output tensor as OIP JSON; binary outputs append their bytes to ``chunks``."""
    out: dict[str, Any] = {"name": name, "datatype": datatype_of(arr), "shape": list(arr.shape)}
    if binary:
        raw = encode_raw(arr)
        chunks.append(raw)
        out["parameters"] = {"binary_data_size": len(raw)}
    else:
        out["data"] = _json_data(arr)
    return out


def select_outputs(
    result: Mapping[str, np.ndarray[Any, Any]], req: InferRequest
) -> list[tuple[str, np.ndarray[Any, Any], bool]]:
    if req.outputs is None:
        return [(n, a, req.binary_output) for n, a in result.items()]
    out = []
    for o in req.outputs:
        if o.name in result:
            out.append((o.name, result[o.name], o.binary or req.binary_output))
    return out
