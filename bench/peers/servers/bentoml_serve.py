"""BentoML: a ``@bentoml.service`` with one worker and a batchable API (adaptive batching, max_batch_size, and a
max_latency_ms large enough that no request is refused), served with ``bentoml serve``.

    bentoml serve bentoml_serve:Rows --host 127.0.0.1 --port P       POST /predict {"x": [[64 floats]]}
    bentoml serve bentoml_serve:Table --host 127.0.0.1 --port P      POST /predict {"records": [{"age": 42.0, ...}]}
    bentoml serve bentoml_serve:MiniLM --host 127.0.0.1 --port P     POST /encode {"sentences": ["..."]}

Rows serves any scikit-learn model on rows of FP32 features (tabular64, hgb64, rf64); Table a pipeline on a pandas
DataFrame (mixed): a batchable list of JSON records, made a DataFrame per batch. (BentoML's own ``pd.DataFrame`` input
does not batch in 1.4.40: its adaptive batcher's optimizer fails on a DataFrame's batch size, ``unsupported operand
type(s) for +: 'int' and 'tuple'``, and every request then waits until "process is overloaded".)
"""

from __future__ import annotations

from typing import Any

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
class Rows:
    def __init__(self) -> None:
        self._model = common.load_sklearn()

    @_api
    def predict(self, x: np.ndarray) -> np.ndarray:
        return self._model.predict_proba(x.astype(np.float32, copy=False)).astype(np.float32)


@_service
class Table:
    def __init__(self) -> None:
        self._model = common.load_sklearn()

    @_api
    def predict(self, records: list[dict[str, Any]]) -> np.ndarray:
        x = common.frame({name: [r[name] for r in records] for name, _ in common.COLUMNS})
        return self._model.predict_proba(x).astype(np.float32)


@_service
class MiniLM:
    def __init__(self) -> None:
        self._model = common.load_minilm()

    @_api
    def encode(self, sentences: list[str]) -> np.ndarray:
        return self._model.encode(sentences, convert_to_numpy=True)
