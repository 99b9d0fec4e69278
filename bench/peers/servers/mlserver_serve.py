"""MLServer: the scikit-learn models through mlserver-sklearn, all-MiniLM-L6-v2 through a custom runtime (MLServer's
way for a model it has no runtime for), adaptive batching on (max_batch_size / max_batch_time in model-settings.json),
one inference worker (parallel_workers=1, the default). Writes the model repository into a temporary folder and
execs ``mlserver start`` on it.

OIP v2 REST: POST /v2/models/{tabular64|hgb64|rf64|mixed|minilm}/infer. mixed: one input per column with the
request's ``content_type: pd`` (MLServer's pandas codec hands mlserver-sklearn a DataFrame) and ``content_type: str``
on the BYTES columns.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import common

try:
    from mlserver import MLModel
    from mlserver.codecs import NumpyCodec, StringCodec
    from mlserver.types import InferenceRequest, InferenceResponse
except ImportError:  # imported by the linter outside the env
    MLModel = object  # type: ignore[assignment,misc]


class MiniLM(MLModel):  # type: ignore[misc,valid-type]
    async def load(self) -> bool:
        self._model = common.load_minilm()
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        sentences = common.texts(StringCodec.decode_input(payload.inputs[0]))
        emb = self._model.encode(sentences, convert_to_numpy=True)
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("embedding", emb)])


def main() -> None:
    repo = Path(tempfile.mkdtemp(prefix="peer-mlserver-"))
    settings = {
        "host": common.HOST,
        "http_port": common.PORT,
        "grpc_port": common.PORT2,
        "metrics_port": common.PORT3,
        "parallel_workers": 1,
    }
    (repo / "settings.json").write_text(json.dumps(settings))
    model_dir = repo / common.MODEL
    model_dir.mkdir()
    batching = {"max_batch_size": common.MAX_BATCH, "max_batch_time": common.MAX_DELAY_MS / 1000}
    if common.KIND != "text":
        ms = {
            "name": common.MODEL,
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": common.SKLEARN_MODEL},
            **batching,
        }
    else:
        ms = {"name": "minilm", "implementation": "mlserver_serve.MiniLM", "parameters": {"uri": common.MINILM_PATH}}
        ms.update(batching)
    (model_dir / "model-settings.json").write_text(json.dumps(ms))
    here = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = here + os.pathsep + os.environ.get("PYTHONPATH", "")
    exe = str(Path(sys.executable).parent / "mlserver")
    os.execv(exe, [exe, "start", str(repo)])


if __name__ == "__main__":
    main()
