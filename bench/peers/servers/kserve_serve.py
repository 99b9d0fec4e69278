"""KServe's Python model server (the ``kserve`` package): a custom ``kserve.Model`` for each model, as KServe's docs
show for custom Python models (the SKLearnModel of the sklearnserver image is not published on PyPI). One worker,
gRPC off (as kubeinfer runs here). KServe's Python server has no dynamic batching: KServe batches in a separate
agent container on Kubernetes, which a single process on one machine does not have.

OIP v2 REST: POST /v2/models/{tabular64|hgb64|rf64|mixed|minilm}/infer; mixed takes one 1-D input per column
(``age``/``income`` FP64, ``city``/``plan`` BYTES), turned into a pandas DataFrame.
"""

from __future__ import annotations

import uuid

import common
import numpy as np

try:
    import kserve
    from kserve import InferOutput, InferRequest, InferResponse
except ImportError:  # imported by the linter outside the env
    kserve = None


class Sklearn(kserve.Model if kserve else object):  # type: ignore[misc]
    """Any scikit-learn model: on a [N, 64] FP32 tensor (tabular64, hgb64, rf64) or on one input per column
    (mixed)."""

    def __init__(self) -> None:
        super().__init__(common.MODEL)
        self.load()

    def load(self) -> bool:
        self._model = common.load_sklearn()
        self.ready = True
        return True

    def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:  # type: ignore[no-untyped-def]
        if common.KIND == "table":
            x = common.frame({i.name: i.as_numpy() for i in payload.inputs})
        else:
            x = payload.inputs[0].as_numpy().astype(np.float32, copy=False)
        out = self._model.predict_proba(x).astype(np.float32)
        return InferResponse(
            model_name=self.name,
            infer_outputs=[InferOutput(name="predict_proba", shape=list(out.shape), datatype="FP32", data=out)],
            response_id=payload.id or str(uuid.uuid4()),
        )


class MiniLM(kserve.Model if kserve else object):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__("minilm")
        self.load()

    def load(self) -> bool:
        self._model = common.load_minilm()
        self.ready = True
        return True

    def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:  # type: ignore[no-untyped-def]
        sentences = common.texts(payload.inputs[0].data)
        out = self._model.encode(sentences, convert_to_numpy=True).astype(np.float32)
        return InferResponse(
            model_name=self.name,
            infer_outputs=[InferOutput(name="embedding", shape=list(out.shape), datatype="FP32", data=out)],
            response_id=payload.id or str(uuid.uuid4()),
        )


def main() -> None:
    model = MiniLM() if common.KIND == "text" else Sklearn()
    kserve.ModelServer(http_port=common.PORT, grpc_port=common.PORT2, workers=1, enable_grpc=False).start([model])


if __name__ == "__main__":
    main()
