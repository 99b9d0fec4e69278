"""A user's own model class: scales its FP32 input and reports the row sums."""

from __future__ import annotations

import numpy as np


class ScaleModel:
    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, -1]}]
    outputs = [
        {"name": "scaled", "datatype": "FP32", "shape": [-1, -1]},
        {"name": "sum", "datatype": "FP32", "shape": [-1]},
    ]

    def __init__(self, factor: float = 2.0) -> None:
        self.factor = factor

    def load(self) -> None:
        self.loaded = True

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        return {"scaled": x * np.float32(self.factor), "sum": x.sum(axis=1)}
