"""Valid request bodies for a model, made from its Open Inference Protocol metadata (for ``kubeinfer bench``)."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import numpy as np

__all__ = ["fetch_metadata", "v2_body"]

_SENTENCE = "A quick brown fox jumps over the lazy dog."


def fetch_metadata(base_url: str, model: str, timeout: float = 10.0) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base_url.rstrip('/')}/v2/models/{model}", timeout=timeout) as r:  # noqa: S310
        doc: dict[str, Any] = json.loads(r.read())
    return doc


def v2_body(meta: dict[str, Any], rows: int = 1, seed: int = 0) -> bytes:
    """An infer request with ``rows`` rows of random data for every input the metadata declares."""
    rng = np.random.default_rng(seed)
    inputs = []
    for spec in meta.get("inputs", []):
        shape = [rows if i == 0 and d < 0 else (d if d >= 0 else 1) for i, d in enumerate(spec["shape"])]
        n = int(np.prod(shape))
        dt = spec["datatype"]
        if dt == "BYTES":
            data: list[Any] = [_SENTENCE] * n
        elif dt == "BOOL":
            data = rng.integers(0, 2, n).astype(bool).tolist()
        elif dt.startswith(("FP", "BF")):
            data = np.round(rng.normal(size=n), 4).tolist()
        else:
            data = rng.integers(0, 100, n).tolist()
        inputs.append({"name": spec["name"], "shape": shape, "datatype": dt, "data": data})
    if not inputs:
        raise ValueError(f"model {meta.get('name')!r} declares no inputs: pass the request body with --body")
    return json.dumps({"inputs": inputs}).encode()
