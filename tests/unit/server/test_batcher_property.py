"""Property: whatever the batcher merges and however the model lays out its outputs, each request gets the model's
answer on its own rows alone, as native C-ordered arrays (what every encoder reads without further checks).

A real ``Batcher`` on a real event loop and thread pool, driven by Hypothesis: waves of 1-8 requests submitted in
one loop turn (so they are batched together), 1-5 rows each, random ``maxBatchSize`` and worker counts, and enough
waves now and then that batches move onto the event loop (``InlinePolicy``). The model is row-wise and exact
(integer-valued floats: a batch of any size gives bit-identical rows), and returns a Fortran-ordered 2-D array, a
strided 1-D view, a big-endian array, a transposed copy and a strided integer column -- what numpy and user code
give, and what slicing a batch back per request must survive.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubeinfer.runtimes.base import ModelInfo, TensorSpec
from kubeinfer.server.batcher import Batcher
from kubeinfer.server.tensors import InferRequest

pytestmark = pytest.mark.timeout(60)

N_FEATURES = 4
W = np.array([[1, 0, 2], [-1, 3, 0], [0, 1, 1], [2, -2, 1]], dtype=np.float32)


class Layouts:
    """Row-wise and exact; every output in another memory layout."""

    name = "layouts"
    version = "1"

    def load(self) -> ModelInfo:
        return INFO

    def predict(self, inputs: Any, outputs: frozenset[str] | None = None) -> dict[str, np.ndarray[Any, Any]]:
        x = inputs["x"]
        return {
            "column": np.floor(x * 2).astype(np.int64)[:, 1],  # strided 1-D view of a 2-D array
            "strided": (x * 2)[:, 2],  # strided 1-D view
            "fortran": np.asfortranarray(x @ W),
            "big_endian": (x - 1).astype(">f4"),
            "transposed": (x + 1).T.copy().T,
        }


INFO = ModelInfo(
    "python",
    [TensorSpec("x", "FP32", (-1, N_FEATURES))],
    [
        TensorSpec("fortran", "FP32", (-1, 3)),
        TensorSpec("strided", "FP32", (-1,)),
        TensorSpec("big_endian", "FP32", (-1, N_FEATURES)),
        TensorSpec("transposed", "FP32", (-1, N_FEATURES)),
        TensorSpec("column", "INT64", (-1,)),
    ],
)

rows = st.integers(1, 5).flatmap(
    lambda n: st.lists(st.lists(st.integers(-50, 50), min_size=N_FEATURES, max_size=N_FEATURES), min_size=n, max_size=n)
)
waves = st.lists(st.lists(rows, min_size=1, max_size=8), min_size=1, max_size=12)


@settings(max_examples=50, deadline=None)
@given(waves=waves, max_batch_size=st.integers(1, 16), workers=st.integers(1, 2), delay=st.sampled_from([0.0, 0.001]))
def test_each_request_gets_the_models_answer_on_its_own_rows_in_c_order(
    waves: list[list[list[list[int]]]], max_batch_size: int, workers: int, delay: float
) -> None:
    model = Layouts()

    async def run() -> list[tuple[np.ndarray[Any, Any], dict[str, np.ndarray[Any, Any]]]]:
        done = []
        with ThreadPoolExecutor(workers) as pool:
            b = Batcher(
                model, INFO, pool, max_batch_size=max_batch_size, max_delay=delay, workers=workers, max_queue=1000
            )
            for wave in waves:
                xs = [np.array(r, dtype=np.float32) for r in wave]
                # One loop turn: the batcher merges what arrives together (up to max_batch_size rows).
                futures = [b.submit(InferRequest({"x": x}, len(x))) for x in xs]
                results = await asyncio.gather(*futures)
                done += zip(xs, results, strict=True)
        return done

    for x, got in asyncio.run(run()):
        want = model.predict({"x": x.copy()})
        assert list(got) == [s.name for s in INFO.outputs], "outputs in the declared order"
        for name, expected in want.items():
            arr = got[name]
            assert arr.flags.c_contiguous and arr.dtype.isnative, f"{name}: {arr.flags}, {arr.dtype}"
            assert arr.dtype == expected.dtype.newbyteorder("="), name
            assert arr.shape == expected.shape, name
            np.testing.assert_array_equal(np.ascontiguousarray(arr), expected, err_msg=name)
