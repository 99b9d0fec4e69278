"""Where a batch runs: in a worker thread, or on the event loop for a model faster than the hand-over to a thread."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from kubeinfer.runtimes.base import ModelInfo, TensorSpec
from kubeinfer.server import batcher as batcher_module
from kubeinfer.server.batcher import INLINE_AFTER, Batcher
from kubeinfer.server.tensors import InferRequest

pytestmark = pytest.mark.timeout(30)


class Where:
    """Doubles its input; records the thread of each call; ``busy`` seconds of CPU and ``sleep`` seconds per call."""

    name = "m"
    version = "1"

    def __init__(self) -> None:
        self.threads: list[int] = []
        self.busy = 0.0
        self.sleep = 0.0

    def load(self) -> ModelInfo:
        return INFO

    def predict(self, inputs: Any, outputs: frozenset[str] | None = None) -> dict[str, np.ndarray[Any, Any]]:
        self.threads.append(threading.get_ident())
        if self.busy:
            end = time.thread_time() + self.busy
            while time.thread_time() < end:
                pass
        if self.sleep:
            time.sleep(self.sleep)
        return {"y": inputs["x"] * 2}


INFO = ModelInfo("test", [TensorSpec("x", "FP32", (-1, 1))], [TensorSpec("y", "FP32", (-1, 1))])


async def one_by_one(model: Where, n: int, workers: int = 1) -> tuple[Batcher, list[bool]]:
    """Send ``n`` requests one after the other; for each, whether the model ran on the loop's thread."""
    loop_thread = threading.get_ident()
    with ThreadPoolExecutor(max(workers, 1)) as pool:
        b = Batcher(model, INFO, pool, max_batch_size=8, max_delay=0.0, workers=workers, max_queue=100)
        on_loop = []
        for i in range(n):
            out = await b.submit(InferRequest({"x": np.full((1, 1), i, np.float32)}, 1))
            assert out["y"][0, 0] == 2 * i
            on_loop.append(model.threads[-1] == loop_thread)
    return b, on_loop


def test_a_fast_model_runs_on_the_loop_after_a_run_of_fast_batches_in_threads() -> None:
    model = Where()
    _, on_loop = asyncio.run(one_by_one(model, INLINE_AFTER + 5))
    assert on_loop == [False] * INLINE_AFTER + [True] * 5


def test_a_slow_model_and_one_that_waits_stay_in_threads() -> None:
    slow = Where()
    slow.busy = batcher_module.INLINE_MAX_SECONDS * 3
    assert not any(asyncio.run(one_by_one(slow, INLINE_AFTER + 3))[1])
    waits = Where()  # little CPU, but it blocks: on the loop it would stall every connection
    waits.sleep = batcher_module.INLINE_WALL_SECONDS * 1.5
    assert not any(asyncio.run(one_by_one(waits, INLINE_AFTER + 3))[1])


def test_several_instances_always_use_threads() -> None:
    assert not any(asyncio.run(one_by_one(Where(), INLINE_AFTER + 3, workers=2))[1])


@pytest.mark.parametrize(
    ("attr", "seconds"),
    [("busy", batcher_module.INLINE_BACK_SECONDS * 2), ("sleep", batcher_module.INLINE_BACK_WALL_SECONDS * 1.5)],
    ids=["takes-cpu", "blocks"],
)
def test_a_model_that_turns_slow_on_the_loop_goes_back_to_threads_and_needs_twice_the_run_to_return(
    attr: str, seconds: float
) -> None:
    async def main() -> list[bool]:
        model = Where()
        loop_thread = threading.get_ident()
        with ThreadPoolExecutor(1) as pool:
            b = Batcher(model, INFO, pool, max_batch_size=8, max_delay=0.0, workers=1, max_queue=100)
            seen = []
            for i in range(INLINE_AFTER + 1 + 1 + 2 * INLINE_AFTER + 1):
                # Batch INLINE_AFTER (the first on the loop) is slow: the next ones go back to a thread.
                setattr(model, attr, seconds if i == INLINE_AFTER else 0.0)
                await b.submit(InferRequest({"x": np.zeros((1, 1), np.float32)}, 1))
                seen.append(model.threads[-1] == loop_thread)
            return seen

    seen = asyncio.run(main())
    n = INLINE_AFTER
    assert seen[: n + 1] == [False] * n + [True]
    assert seen[n + 1 : n + 1 + 2 * n] == [False] * (2 * n)
    assert seen[-1] is True


def test_results_and_errors_are_the_same_on_the_loop() -> None:
    class FailsOnNegative(Where):
        def predict(self, inputs: Any, outputs: frozenset[str] | None = None) -> dict[str, np.ndarray[Any, Any]]:
            if (inputs["x"] < 0).any():
                raise ValueError("negative input")
            return super().predict(inputs, outputs)

    async def main() -> None:
        model = FailsOnNegative()
        with ThreadPoolExecutor(1) as pool:
            b = Batcher(model, INFO, pool, max_batch_size=8, max_delay=0.0, workers=1, max_queue=100)
            for _ in range(INLINE_AFTER):
                await b.submit(InferRequest({"x": np.ones((1, 1), np.float32)}, 1))
            assert b.inline
            # One batch of three, one of them bad: the bad one fails alone, the others get their answers.
            futures = [b.submit(InferRequest({"x": np.full((1, 1), v, np.float32)}, 1)) for v in (1.0, -1.0, 3.0)]
            results = await asyncio.gather(*futures, return_exceptions=True)
        assert results[0]["y"][0, 0] == 2.0 and results[2]["y"][0, 0] == 6.0  # type: ignore[index]
        assert "negative input" in str(results[1])

    asyncio.run(main())
