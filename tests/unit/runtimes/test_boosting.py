"""XGBoost and LightGBM boosters: native answers, ONNX only when the graph reproduces them, cached; clear refusals."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb

from kubeinfer.runtimes import boosting, create_model
from kubeinfer.runtimes.base import Model, ModelError
from kubeinfer.spec import loads_spec

N_FEATURES = 64
RNG = np.random.default_rng(7)
X = RNG.normal(size=(400, N_FEATURES)).astype(np.float32)
HELD_OUT = RNG.normal(0, 1.5, size=(96, N_FEATURES)).astype(np.float32)
HELD_OUT[RNG.random(HELD_OUT.shape) < 0.05] = np.nan  # missing values go the booster's default way
HELD_OUT[:4] = 0.0
Y = {
    "binary": (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int),
    "multiclass": np.digitize(X[:, 0] + 0.5 * X[:, 3], [-1.0, 0.0, 1.0]),
    "regression": 3 * X[:, 0] + np.sin(X[:, 1]) + 0.1 * RNG.normal(size=len(X)),
}
XGB_OBJECTIVES = {"binary": "binary:logistic", "multiclass": "multi:softprob", "regression": "reg:squarederror"}
KINDS = [(lib, kind) for lib in ("xgboost", "lightgbm") for kind in ("binary", "multiclass", "regression")]


def train(lib: str, kind: str, rounds: int = 60) -> Any:
    if lib == "xgboost":
        params: dict[str, Any] = {"objective": XGB_OBJECTIVES[kind], "max_depth": 4, "nthread": 1}
        if kind == "multiclass":
            params["num_class"] = 4
        return xgb.train(params, xgb.DMatrix(X, Y[kind]), rounds)
    params = {"objective": kind, "num_leaves": 15, "num_threads": 1, "verbose": -1}
    if kind == "multiclass":
        params["num_class"] = 4
    return lgb.train(params, lgb.Dataset(X, Y[kind]), rounds)


def native(booster: Any, x: np.ndarray) -> np.ndarray:
    """What the library answers in-process: probabilities (positive class for binary) or values."""
    return np.asarray(booster.inplace_predict(x) if isinstance(booster, xgb.Booster) else booster.predict(x))


@pytest.fixture(scope="module")
def boosters(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], tuple[Path, Any]]:
    d = tmp_path_factory.mktemp("boosters")
    out = {}
    for lib, kind in KINDS:
        booster = train(lib, kind)
        path = d / f"{lib}-{kind}.{'json' if lib == 'xgboost' else 'txt'}"
        booster.save_model(str(path))
        out[lib, kind] = (path, booster)
    return out


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("KUBEINFER_CACHE_DIR", str(d))
    # One thread, as a replica given one CPU: OpenMP teams are slow and erratic on a loaded 2-core runner.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return d


def model_of(fmt: str, path: Path, **args: Any) -> Model:
    doc = {
        "apiVersion": "kubeinfer.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "gbm"},
        "spec": {"model": {"format": fmt, "uri": str(path), "args": args}},
    }
    return create_model(loads_spec(json.dumps(doc)))


def assert_matches(out: dict[str, np.ndarray], booster: Any, kind: str, x: np.ndarray) -> None:
    want = native(booster, x)
    if kind == "regression":
        assert set(out) == {"predict"} and out["predict"].dtype == np.float32
        np.testing.assert_allclose(out["predict"], want, rtol=1e-5, atol=1e-5)
        return
    proba = np.stack([1 - want, want], axis=1) if kind == "binary" else want
    assert set(out) == {"predict", "predict_proba"}
    assert out["predict_proba"].dtype == np.float32 and out["predict"].dtype == np.int64
    np.testing.assert_allclose(out["predict_proba"], proba, atol=1e-5)
    labels = (want > 0.5).astype(np.int64) if kind == "binary" else want.argmax(axis=1)
    np.testing.assert_array_equal(out["predict"], labels)


@pytest.mark.parametrize("mode", ["none", "auto", "onnx"])
@pytest.mark.parametrize(("lib", "kind"), KINDS)
def test_answers_equal_the_native_library_in_every_compile_mode(
    boosters: dict[tuple[str, str], tuple[Path, Any]], cache: Path, lib: str, kind: str, mode: str
) -> None:
    path, booster = boosters[lib, kind]
    m = model_of(lib, path, compile=mode)
    info = m.load()
    assert info.platform == lib
    assert [(s.name, s.datatype, s.shape) for s in info.inputs] == [("input-0", "FP32", (-1, N_FEATURES))]
    expected = [("predict", "FP32", (-1,))]
    if kind != "regression":
        expected = [("predict", "INT64", (-1,)), ("predict_proba", "FP32", (-1, 2 if kind == "binary" else 4))]
    assert [(s.name, s.datatype, s.shape) for s in info.outputs] == expected
    served = info.extra["served_by"]
    if mode == "none":
        assert served == lib and "compiled" not in info.extra
    elif mode == "onnx":
        assert served == "onnx" and info.extra["compiled"] == "onnx" and info.extra["max_error"] <= 1e-4
    else:
        # Either path is right; which one is a timing decision, and the metadata says which and why.
        timing = info.extra["timing_us"]
        assert set(timing) == {"native_1", "native_64", "onnx_1", "onnx_64"}
        if served == "onnx":
            assert info.extra["compiled"] == "onnx" and "faster" in info.extra["why"]
            assert timing["onnx_1"] < timing["native_1"] and timing["onnx_64"] < timing["native_64"]
        else:
            assert served == lib and "not faster" in info.extra["not_compiled"]
    assert_matches(m.predict({"input-0": HELD_OUT}), booster, kind, HELD_OUT)
    assert_matches(m.predict({"input-0": HELD_OUT[5:6]}), booster, kind, HELD_OUT[5:6])
    # FP64 rows are cast, as the server's cast_numeric allows.
    assert_matches(m.predict({"input-0": HELD_OUT.astype(np.float64)}), booster, kind, HELD_OUT)


@pytest.mark.parametrize("lib", ["xgboost", "lightgbm"])
def test_the_verified_graph_and_timings_are_cached(
    boosters: dict[tuple[str, str], tuple[Path, Any]], cache: Path, lib: str
) -> None:
    path, booster = boosters[lib, "multiclass"]
    first = model_of(lib, path).load()
    assert first.extra["cache"] == "written"
    files = sorted(p.suffix for p in (cache / "boosting-onnx").iterdir())
    assert files == [".json", ".onnx"]
    meta = json.loads(next((cache / "boosting-onnx").glob("*.json")).read_text())
    assert set(meta["timings"]) == {"1"} and meta["library"] == lib
    second = model_of(lib, path)
    info = second.load()
    assert info.extra["cache"] == "hit" and info.extra["served_by"] == first.extra["served_by"]
    assert_matches(second.predict({"input-0": HELD_OUT}), booster, "multiclass", HELD_OUT)
    # Another thread count is timed again (and recorded); the graph is not converted again.
    third = model_of(lib, path, intraOpThreads=2).load()
    assert third.extra["cache"] == "hit"
    meta = json.loads(next((cache / "boosting-onnx").glob("*.json")).read_text())
    assert set(meta["timings"]) == {"1", "2"}


def test_a_cached_graph_starts_without_importing_the_library(
    boosters: dict[tuple[str, str], tuple[Path, Any]], cache: Path, tmp_path: Path
) -> None:
    path, booster = boosters["xgboost", "binary"]
    assert model_of("xgboost", path, compile="onnx").load().extra["cache"] == "written"
    np.save(tmp_path / "x.npy", HELD_OUT)
    code = (
        "import sys, json; from pathlib import Path; import numpy as np\n"
        "from kubeinfer.runtimes.boosting import BoostingModel\n"
        f"m = BoostingModel('m', '1', Path({str(path)!r}), {{'compile': 'onnx'}}, 'xgboost'); info = m.load()\n"
        f"p = m.predict({{'input-0': np.load({str(tmp_path / 'x.npy')!r})}})['predict_proba']\n"
        "print(json.dumps([info.extra['cache'], 'xgboost' in sys.modules, 'lightgbm' in sys.modules, p.tolist()]))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    hit, xgb_imported, lgb_imported, proba = json.loads(run.stdout)
    assert hit == "hit" and xgb_imported is False and lgb_imported is False
    np.testing.assert_allclose(np.array(proba)[:, 1], native(booster, HELD_OUT), atol=1e-5)


@pytest.mark.parametrize("mode", ["none", "onnx"])
def test_only_the_outputs_asked_for_are_returned(
    boosters: dict[tuple[str, str], tuple[Path, Any]], cache: Path, mode: str
) -> None:
    for lib in ("xgboost", "lightgbm"):
        path, _ = boosters[lib, "binary"]
        m = model_of(lib, path, compile=mode)
        m.load()
        whole = m.predict({"input-0": HELD_OUT})
        only = m.predict({"input-0": HELD_OUT}, frozenset({"predict"}))
        assert set(only) == {"predict"}
        np.testing.assert_array_equal(only["predict"], whole["predict"])
        assert set(m.predict({"input-0": HELD_OUT}, frozenset({"predict_proba"}))) == {"predict_proba"}


@pytest.mark.parametrize(
    "without",
    [
        ("_zero_tiny_inputs", lambda model, name: None),  # inputs within +-1e-35 are not read as 0
        ("_lightgbm_fixes", contextlib.nullcontext),  # thresholds rounded to the nearest float32
    ],
    ids=["zero-threshold", "rounding"],
)
def test_a_graph_that_differs_is_never_served(
    boosters: dict[tuple[str, str], tuple[Path, Any]],
    cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    without: tuple[str, Any],
) -> None:
    """Without either LightGBM fix the graph answers otherwise at split thresholds: the probes catch it, ``auto``
    serves LightGBM itself and says why, ``onnx`` refuses."""
    monkeypatch.setattr(boosting, *without)
    path, booster = boosters["lightgbm", "binary"]
    m = model_of("lightgbm", path)
    info = m.load()
    assert info.extra["served_by"] == "lightgbm" and "compiled" not in info.extra
    assert "differs" in info.extra["not_compiled"] or "other classes" in info.extra["not_compiled"]
    assert not (cache / "boosting-onnx").exists()
    assert_matches(m.predict({"input-0": HELD_OUT}), booster, "binary", HELD_OUT)
    with pytest.raises(ModelError, match="cannot be compiled"):
        model_of("lightgbm", path, compile="onnx").load()


def test_an_early_stopped_xgboost_model_answers_with_its_best_iteration_and_names_its_columns(
    tmp_path: Path, cache: Path
) -> None:
    names = [f"f{i}" for i in range(N_FEATURES)]
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
        xgb.DMatrix(X, Y["binary"], feature_names=names),
        30,
    )
    booster.set_attr(best_iteration="9")
    path = tmp_path / "early.ubj"
    booster.save_model(str(path))
    for mode in ("none", "onnx"):
        m = model_of("xgboost", path, compile=mode)
        info = m.load()
        assert info.columns == tuple(names)
        got = m.predict({"input-0": HELD_OUT})["predict_proba"][:, 1]
        np.testing.assert_allclose(got, booster.inplace_predict(HELD_OUT, iteration_range=(0, 10)), atol=1e-5)


@pytest.mark.parametrize(("fmt", "content"), [("xgboost", b"not a booster"), ("lightgbm", b"tree\nnonsense=1\n")])
def test_a_file_the_library_cannot_read_names_the_file(tmp_path: Path, cache: Path, fmt: str, content: bytes) -> None:
    path = tmp_path / "broken.model"
    path.write_bytes(content)
    with pytest.raises(ModelError, match=f"cannot load {path} as an? {'XGBoost' if fmt == 'xgboost' else 'LightGBM'}"):
        model_of(fmt, path).load()
    with pytest.raises(ModelError, match="does not exist"):
        model_of(fmt, tmp_path / "missing.json").load()
    with pytest.raises(ModelError, match="is a directory"):
        model_of(fmt, tmp_path).load()


def test_unsupported_objectives_are_refused_by_name(tmp_path: Path, cache: Path) -> None:
    group = np.full(len(X) // 20, 20)
    ranker = xgb.train({"objective": "rank:pairwise", "nthread": 1}, xgb.DMatrix(X, Y["multiclass"], group=group), 3)
    ranker.save_model(str(tmp_path / "rank.json"))
    with pytest.raises(ModelError, match=r"'rank:pairwise' is not served.*binary:logistic"):
        model_of("xgboost", tmp_path / "rank.json").load()
    lambdarank = lgb.train(
        {"objective": "lambdarank", "verbose": -1, "num_threads": 1},
        lgb.Dataset(X, Y["multiclass"], group=group),
        3,
    )
    lambdarank.save_model(str(tmp_path / "rank.txt"))
    with pytest.raises(ModelError, match=r"'lambdarank' is not served.*multiclass"):
        model_of("lightgbm", tmp_path / "rank.txt").load()


def test_bad_args_name_the_field(boosters: dict[tuple[str, str], tuple[Path, Any]], cache: Path) -> None:
    path, _ = boosters["xgboost", "binary"]
    with pytest.raises(ModelError, match=r"args.compile must be one of auto, onnx, none, got 'fast'"):
        model_of("xgboost", path, compile="fast").load()
    with pytest.raises(ModelError, match="unknown args for format xgboost: batch"):
        model_of("xgboost", path, batch=4).load()
    with pytest.raises(ModelError, match="intraOpThreads"):
        model_of("xgboost", path, intraOpThreads=0).load()


def test_thresholds_are_rounded_down_to_float32() -> None:
    for t in (0.1, -0.1, 1e-35, -1.0000000180025095e-35, 3.0, 1e300, -1e300):
        r = boosting.f32_at_most(t)
        assert r <= t
        if abs(t) < 1e38:
            assert float(np.float32(r)) == r and float(np.nextafter(np.float32(r), np.float32(np.inf))) > t
