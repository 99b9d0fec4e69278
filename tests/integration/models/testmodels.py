"""Python models used by the integration tests (loaded by the server through ``className``)."""

from __future__ import annotations

import os
import threading
import time

import numpy as np


class SlowDouble:
    """Doubles its input after sleeping ``delay`` seconds per call (not per row), recording batch sizes."""

    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, -1]}]
    outputs = [{"name": "y", "datatype": "FP32", "shape": [-1, -1]}]

    def __init__(self, delay: float = 0.05) -> None:
        self.delay = delay

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        time.sleep(self.delay)
        return {"y": inputs["x"] * 2}


class Pid:
    """Answers each row with the id of the process that ran it, after ``delay`` seconds per call. With
    ``first_load_delay`` the first process of a multi-process replica (its parent's first child) takes that long to
    load; with ``fail_after_first`` the others fail to load."""

    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 1]}]
    outputs = [{"name": "pid", "datatype": "INT64", "shape": [-1, 1]}]

    def __init__(self, delay: float = 0.0, first_load_delay: float = 0.0, fail_after_first: bool = False) -> None:
        self.delay = delay
        if first_load_delay or fail_after_first:
            import psutil

            siblings = psutil.Process(os.getppid()).children()
            first = os.getpid() == min(siblings, key=lambda p: (p.create_time(), p.pid)).pid
            if first:
                time.sleep(first_load_delay)
            elif fail_after_first:
                raise RuntimeError("this process cannot load the model")

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        time.sleep(self.delay)
        return {"pid": np.full((len(inputs["x"]), 1), os.getpid(), np.int64)}


class FailsOnNegative:
    """Fails the whole call when any row holds a negative number; otherwise adds one."""

    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    outputs = [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]

    def __init__(self, delay: float = 0.02) -> None:
        self.delay = delay

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        time.sleep(self.delay)
        x = inputs["x"]
        if (x < 0).any():
            raise ValueError("negative values are not allowed")
        return {"y": x + 1}


class Hangs:
    """Hangs (until released) when it sees the value 13; used for request timeouts."""

    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 1]}]
    outputs = [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}]
    release = threading.Event()

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if (inputs["x"] == 13).any():
            self.release.wait(5)
        return {"y": inputs["x"]}


class AllTypes:
    """Echoes one input of every Open Inference Protocol datatype."""

    DTYPES = [
        "BOOL",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "FP16",
        "FP32",
        "FP64",
        "BYTES",
    ]
    inputs = [{"name": d.lower(), "datatype": d, "shape": [-1, 2], "optional": True} for d in DTYPES]
    outputs = [{"name": d.lower() + "_out", "datatype": d, "shape": [-1, 2]} for d in DTYPES]
    batchable = False

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k + "_out": v for k, v in inputs.items()}


class Embedder:
    """A tiny deterministic text embedder (BYTES in, FP32 vectors out) for the embeddings route."""

    inputs = [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    outputs = [{"name": "embedding", "datatype": "FP32", "shape": [-1, 8]}]

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = np.zeros((len(inputs["text"]), 8), dtype=np.float32)
        for i, t in enumerate(inputs["text"]):
            for j, b in enumerate(bytes(t)):
                out[i, j % 8] += b / 255.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return {"embedding": out / np.maximum(norms, 1e-9)}


class DiesOnNegative:
    """Doubles its input; a negative first value kills the whole process at once (a poison request, as a body
    that exhausts the replica's memory is)."""

    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, -1]}]
    outputs = [{"name": "y", "datatype": "FP32", "shape": [-1, -1]}]

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if inputs["x"].size and inputs["x"].flat[0] < 0:
            os._exit(13)
        return {"y": inputs["x"] * 2}


class GatedLoad:
    """Loads only once the file ``gate`` exists (at most 60 s): a model that is still loading for as long as a test
    needs. Then doubles its input."""

    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, -1]}]
    outputs = [{"name": "y", "datatype": "FP32", "shape": [-1, -1]}]

    def __init__(self, gate: str) -> None:
        deadline = time.monotonic() + 60
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.02)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": inputs["x"] * 2}
