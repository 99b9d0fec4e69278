"""BentoML: a ``@bentoml.service`` with one worker and a batchable API (adaptive batching, max_batch_size, and a
max_latency_ms large enough that no request is refused), served with ``bentoml serve``.

    bentoml serve bentoml_serve:Tabular64 --host 127.0.0.1 --port P     POST /predict {"x": [[64 floats]]}
    bentoml serve bentoml_serve:MiniLM --host 127.0.0.1 --port P        POST /encode {"sentences": ["..."]}
"""

from __future__ import annotations

import common
import numpy as np

try:
    import bentoml
except ImportError:  # imported by the linter outside the env
    bentoml = None


def _service(cls):  # type: ignore[no-untyped-def]
    return bentoml.service(workers=1, traffic={"timeout": 60})(cls) if bentoml else cls


def _api(fn):  # type: ignore[no-untyped-def]
    if bentoml is None:
        return fn
    return bentoml.api(batchable=True, max_batch_size=common.MAX_BATCH, max_latency_ms=60_000)(fn)


@_service
class Tabular64:
    def __init__(self) -> None:
        self._model = common.load_tabular()

    @_api
    def predict(self, x: np.ndarray) -> np.ndarray:
        return self._model.predict_proba(x.astype(np.float32, copy=False)).astype(np.float32)


@_service
class MiniLM:
    def __init__(self) -> None:
        self._model = common.load_minilm()

    @_api
    def encode(self, sentences: list[str]) -> np.ndarray:
        return self._model.encode(sentences, convert_to_numpy=True)
