"""A linear scorer written as a plain Python class (``format: python``); docs/custom-models.md walks through it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


class LinearScorer:
    # Optional: what the model takes and returns. Names and Open Inference Protocol datatypes go on the wire as
    # written; -1 is any size, and the first dimension is the batch. Requests are checked against them.
    inputs = [{"name": "features", "datatype": "FP32", "shape": [-1, 3]}]
    outputs = [
        {"name": "score", "datatype": "FP32", "shape": [-1]},
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
    ]

    def __init__(self, weights: str = "weights.json", threshold: float = 0.0) -> None:
        # spec.model.args arrive as keyword arguments. Keep this cheap: the work belongs in load().
        self.path = Path(__file__).parent / weights
        self.threshold = threshold

    def load(self) -> None:
        # Optional: called once, before the replica reports ready (read files, build caches, warm up).
        doc = json.loads(self.path.read_text())
        self.w = np.asarray(doc["weights"], dtype=np.float32)
        self.b = np.float32(doc["bias"])

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # One call per batch: the rows of one or several requests, stacked on the first axis by the batcher.
        score = inputs["features"] @ self.w + self.b
        label = np.where(score > self.threshold, "high", "low")
        return {"score": score, "label": label}
