"""LitServe: a ``LitAPI`` with server-side batching (max_batch_size, batch_timeout), one worker on the CPU.

Native JSON: POST /predict with {"input": [64 floats]} (tabular64, hgb64, rf64), {"input": {"age": 42.0, "income":
52000.0, "city": "lyon", "plan": "pro"}} (mixed: the batch becomes a pandas DataFrame) or {"input": "a sentence"}.
"""

from __future__ import annotations

import common
import numpy as np

try:
    import litserve as ls
except ImportError:  # imported by the linter outside the env
    ls = None


class Rows(ls.LitAPI if ls else object):  # type: ignore[misc]
    def setup(self, device: str) -> None:
        self._model = common.load_sklearn()

    def decode_request(self, request: dict) -> list[float]:
        return request["input"]

    def batch(self, inputs: list[list[float]]) -> np.ndarray:
        return np.asarray(inputs, dtype=np.float32)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self._model.predict_proba(x)

    def unbatch(self, output: np.ndarray) -> list[np.ndarray]:
        return list(output)

    def encode_response(self, output: np.ndarray) -> dict:
        return {"predict_proba": output.tolist()}


class Table(ls.LitAPI if ls else object):  # type: ignore[misc]
    def setup(self, device: str) -> None:
        self._model = common.load_sklearn()

    def decode_request(self, request: dict) -> dict:
        return request["input"]

    def batch(self, inputs: list[dict]):  # type: ignore[no-untyped-def]
        return common.frame({name: [r[name] for r in inputs] for name, _ in common.COLUMNS})

    def predict(self, x) -> np.ndarray:  # type: ignore[no-untyped-def]
        return self._model.predict_proba(x)

    def unbatch(self, output: np.ndarray) -> list[np.ndarray]:
        return list(output)

    def encode_response(self, output: np.ndarray) -> dict:
        return {"predict_proba": output.tolist()}


class MiniLM(ls.LitAPI if ls else object):  # type: ignore[misc]
    def setup(self, device: str) -> None:
        self._model = common.load_minilm()

    def decode_request(self, request: dict) -> str:
        return request["input"]

    def batch(self, inputs: list[str]) -> list[str]:
        return inputs

    def predict(self, sentences: list[str]) -> np.ndarray:
        return self._model.encode(sentences, convert_to_numpy=True)

    def unbatch(self, output: np.ndarray) -> list[np.ndarray]:
        return list(output)

    def encode_response(self, output: np.ndarray) -> dict:
        return {"embedding": output.tolist()}


def main() -> None:
    cls = {"rows": Rows, "table": Table, "text": MiniLM}[common.KIND]
    api = cls(max_batch_size=common.MAX_BATCH, batch_timeout=common.MAX_DELAY_MS / 1000)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1)
    server.run(host=common.HOST, port=common.PORT, generate_client_file=False)


if __name__ == "__main__":
    main()
