"""XGBoost and LightGBM boosters served by a real `kubeinfer serve` process, answering as the library does in-process."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kubeinfer.testing import ServerProcess

lgb = pytest.importorskip("lightgbm")
xgb = pytest.importorskip("xgboost")

pytestmark = pytest.mark.integration

N_FEATURES = 64
RNG = np.random.default_rng(11)
X = RNG.normal(size=(400, N_FEATURES)).astype(np.float32)


def xgboost_multiclass(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    y = np.digitize(X[:, 0] + 0.5 * X[:, 3], [-1.0, 0.0, 1.0])
    params = {"objective": "multi:softprob", "num_class": 4, "max_depth": 4, "nthread": 1}
    booster = xgb.train(params, xgb.DMatrix(X, y), 60)
    booster.save_model(str(path))
    return lambda x: np.asarray(booster.inplace_predict(x))


def lightgbm_binary(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int)
    params = {"objective": "binary", "num_leaves": 15, "num_threads": 1, "verbose": -1}
    booster = lgb.train(params, lgb.Dataset(X, y), 60)
    booster.save_model(str(path))

    def proba(x: np.ndarray) -> np.ndarray:
        p = np.asarray(booster.predict(x))
        return np.stack([1 - p, p], axis=1)

    return proba


def infer(server: ServerProcess, rows: np.ndarray) -> dict[str, Any]:
    body = {
        "inputs": [{"name": "input-0", "shape": list(rows.shape), "datatype": "FP32", "data": rows.ravel().tolist()}]
    }
    status, _, raw = server.post("/v2/models/gbm/infer", json.dumps(body).encode())
    assert status == 200, raw
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in json.loads(raw)["outputs"]}


def check(out: dict[str, Any], proba: np.ndarray) -> None:
    assert set(out) == {"predict", "predict_proba"}
    np.testing.assert_allclose(out["predict_proba"], proba, atol=1e-5)
    np.testing.assert_array_equal(out["predict"], proba.argmax(axis=1))


@pytest.mark.parametrize(
    ("fmt", "build", "filename"),
    [("xgboost", xgboost_multiclass, "model.ubj"), ("lightgbm", lightgbm_binary, "model.txt")],
    ids=["xgboost-multiclass", "lightgbm-binary"],
)
def test_rest_answers_equal_the_library_in_process(
    tmp_path: Path, server_factory: Callable[..., ServerProcess], fmt: str, build: Any, filename: str
) -> None:
    reference = build(tmp_path / filename)
    spec = tmp_path / "service.yaml"
    spec.write_text(
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: gbm}\n"
        f"spec:\n  model: {{format: {fmt}, uri: ./{filename}}}\n"
    )
    server = server_factory(spec, env={"KUBEINFER_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"})
    status, meta = server.json("/v2/models/gbm")
    assert status == 200 and meta["platform"] == fmt
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP32", "shape": [-1, N_FEATURES]}]
    assert [o["name"] for o in meta["outputs"]] == ["predict", "predict_proba"]

    one = RNG.normal(size=(1, N_FEATURES)).astype(np.float32)
    check(infer(server, one), reference(one))

    batches = [RNG.normal(0, 1.5, size=(1 + i % 4, N_FEATURES)).astype(np.float32) for i in range(32)]
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda rows: infer(server, rows), batches))
    for rows, out in zip(batches, answers, strict=True):
        check(out, reference(rows))
