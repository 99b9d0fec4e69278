"""Python models for the end-to-end tests (loaded by replicas through ``className``)."""

from __future__ import annotations

import os
import time

import numpy as np


class Echo:
    """Returns its input after ``delay`` seconds per call."""

    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, -1]}]
    outputs = [{"name": "y", "datatype": "FP32", "shape": [-1, -1]}]

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.delay:
            time.sleep(self.delay)
        return {"y": inputs["x"]}


class CrashOnReplica(Echo):
    """Exits with code 3 while loading on the replica whose id ends with ``suffix``; an Echo elsewhere."""

    def __init__(self, suffix: str = "-1", delay: float = 0.0) -> None:
        super().__init__(delay)
        if os.environ.get("KUBEINFER_REPLICA", "").endswith(suffix):
            os._exit(3)


class NeedsText(Echo):
    """A custom model with a bug a new user makes: past 100 it reads a key the request does not have (the warm-up
    request at load, with small values, passes)."""

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if float(inputs["x"].max(initial=0)) > 100:
            return {"y": inputs["text"]}
        return {"y": inputs["x"]}


class FailAfter(Echo):
    """An Echo whose predictions fail (an exception: HTTP 500) after the first ``calls`` (the warm-up request at
    load passes, so the replica becomes ready and only its traffic shows the failure)."""

    def __init__(self, calls: int = 1, delay: float = 0.0) -> None:
        super().__init__(delay)
        self.calls = calls

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.calls <= 0:
            raise RuntimeError("this revision is broken on purpose")
        self.calls -= 1
        return super().predict(inputs)
