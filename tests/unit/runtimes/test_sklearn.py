"""The scikit-learn runtime: compiled to ONNX only when the graph reproduces the estimator; cached; fallbacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from kubeinfer.runtimes.base import ModelError
from kubeinfer.runtimes.sklearn import SklearnModel

RNG = np.random.default_rng(3)
X = RNG.normal(size=(300, 8)).astype(np.float32)
PROBE = RNG.normal(0, 2, size=(64, 8)).astype(np.float32)


def _save(tmp_path: Path, est: object, name: str = "m.joblib") -> Path:
    path = tmp_path / name
    joblib.dump(est, path)
    return path


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("KUBEINFER_CACHE_DIR", str(d))
    return d


def _classifier() -> object:
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)


def test_compiled_classifier_matches_the_estimator_and_is_cached(tmp_path: Path, cache: Path) -> None:
    est = _classifier()
    path = _save(tmp_path, est)
    first = SklearnModel("m", "1", path, {})
    info = first.load()
    assert info.extra.get("compiled") == "onnx" and info.extra["cache"] == "written"
    assert info.extra["max_error"] <= 1e-4
    assert [o.name for o in info.outputs] == ["predict", "predict_proba"]
    out = first.predict({"input-0": PROBE})
    np.testing.assert_allclose(out["predict_proba"], est.predict_proba(PROBE), atol=1e-5)  # type: ignore[attr-defined]
    assert np.array_equal(out["predict"], est.predict(PROBE))  # type: ignore[attr-defined]
    assert out["predict"].dtype == est.predict(PROBE).dtype  # type: ignore[attr-defined]
    assert set(first.predict({"input-0": PROBE}, frozenset({"predict"}))) == {"predict"}
    assert len(list((cache / "sklearn-onnx").iterdir())) == 2
    # A later start loads the cached graph and never imports scikit-learn.
    code = (
        "import sys, json; from pathlib import Path; import numpy as np\n"
        "from kubeinfer.runtimes.sklearn import SklearnModel\n"
        f"m = SklearnModel('m', '1', Path({str(path)!r}), {{}}); info = m.load()\n"
        f"x = np.array({PROBE.tolist()!r}, dtype=np.float32)\n"
        "out = m.predict({'input-0': x})\n"
        "print(json.dumps([info.extra['cache'], 'sklearn' in sys.modules, out['predict_proba'].tolist()]))\n"
    )
    env_run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    hit, imported, proba = json.loads(env_run.stdout)
    assert hit == "hit" and imported is False
    np.testing.assert_allclose(proba, out["predict_proba"], atol=1e-6)


def test_compiled_regressor_and_compile_none(tmp_path: Path, cache: Path) -> None:
    y = X @ np.arange(8) + 0.5
    est = LinearRegression().fit(X, y)
    path = _save(tmp_path, est)
    m = SklearnModel("r", "1", path, {})
    assert m.load().extra.get("compiled") == "onnx"
    got = m.predict({"input-0": PROBE})["predict"]
    np.testing.assert_allclose(got, est.predict(PROBE), rtol=1e-4, atol=1e-4)
    plain = SklearnModel("r", "1", path, {"compile": "none"})
    assert "compiled" not in plain.load().extra
    np.testing.assert_allclose(plain.predict({"input-0": PROBE})["predict"], est.predict(PROBE))


def _unconvertible() -> object:
    y = (X[:, 0] > 0).astype(int)
    return make_pipeline(FunctionTransformer(np.tanh), LogisticRegression()).fit(X, y)


def test_what_cannot_be_compiled_is_served_by_sklearn_or_refused(tmp_path: Path, cache: Path) -> None:
    labels = np.where(X[:, 0] > 0, "yes", "no")
    strings = _save(tmp_path, LogisticRegression().fit(X, labels), "strings.joblib")
    m = SklearnModel("s", "1", strings, {})
    assert "compiled" not in m.load().extra
    assert set(m.predict({"input-0": PROBE})["predict"]) <= {"yes", "no"}
    custom = _save(tmp_path, _unconvertible(), "custom.joblib")
    assert "compiled" not in SklearnModel("c", "1", custom, {}).load().extra
    with pytest.raises(ModelError, match="cannot be compiled"):
        SklearnModel("c", "1", custom, {"compile": "onnx"}).load()
    with pytest.raises(ModelError, match=r"args\.compile must be one of auto, onnx, none"):
        SklearnModel("c", "1", custom, {"compile": "fast"}).load()


def test_a_damaged_cache_entry_is_converted_again(tmp_path: Path, cache: Path) -> None:
    path = _save(tmp_path, _classifier())
    SklearnModel("m", "1", path, {}).load()
    graph = next((cache / "sklearn-onnx").glob("*.onnx"))
    graph.write_bytes(b"not a graph")
    info = SklearnModel("m", "1", path, {}).load()
    assert info.extra.get("compiled") == "onnx" and info.extra["cache"] == "written"


def test_an_unwritable_cache_still_serves_compiled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("KUBEINFER_CACHE_DIR", str(blocker / "sub"))
    m = SklearnModel("m", "1", _save(tmp_path, _classifier()), {})
    assert m.load().extra.get("compiled") == "onnx"
    assert m.predict({"input-0": PROBE})["predict_proba"].shape == (64, 3)


# -- what users bring: tree ensembles, DataFrame pipelines, outlier detectors ---------------------------------------


def _hgb_and_rows() -> tuple[object, np.ndarray]:
    from sklearn.ensemble import HistGradientBoostingClassifier

    from kubeinfer.runtimes.sklearn import tree_thresholds

    y = (X[:, 0] > 0).astype(int) + (X[:, 3] + X[:, 4] > 0.5).astype(int) + (X[:, 5] > 1).astype(int)
    est = HistGradientBoostingClassifier(max_iter=40, random_state=0).fit(X, y)
    splits = tree_thresholds(est)
    assert len(splits) > 100
    rows = np.repeat(PROBE[:1], len(splits), axis=0)
    for i, (f, t) in enumerate(splits):
        rows[i, f] = np.float32(t)  # a float32 feature at the threshold rounded to nearest
    return est, rows


def test_hist_gradient_boosting_is_compiled_and_exact_at_its_split_thresholds(tmp_path: Path, cache: Path) -> None:
    est, rows = _hgb_and_rows()
    m = SklearnModel("h", "1", _save(tmp_path, est), {})
    info = m.load()
    assert info.extra.get("compiled") == "onnx", info.extra
    got = m.predict({"input-0": rows})
    np.testing.assert_allclose(got["predict_proba"], est.predict_proba(rows), atol=1e-5)  # type: ignore[attr-defined]
    assert np.array_equal(got["predict"], est.predict(rows))  # type: ignore[attr-defined]


def test_a_graph_wrong_only_at_thresholds_is_caught_by_the_verification(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the threshold fix, random probes alone pass the graph; the probes at the thresholds refuse it."""
    from kubeinfer.runtimes import sklearn as runtime

    est, _ = _hgb_and_rows()
    monkeypatch.setattr(runtime, "_f32_at_most", lambda t: float(np.float32(t)))
    m = SklearnModel("h", "1", _save(tmp_path, est), {})
    info = m.load()
    assert "compiled" not in info.extra and "differs from the estimator" in info.extra["not_compiled"]
    with pytest.raises(ModelError, match="cannot be compiled: converted graph differs"):
        SklearnModel("h", "1", _save(tmp_path, est), {"compile": "onnx"}).load()


def _frame_pipeline() -> tuple[object, object]:
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(1)
    n = 300
    df = pd.DataFrame(
        {
            "age": rng.normal(40, 12, n),
            "income": rng.normal(52_000, 15_000, n),
            "city": rng.choice(["Paris", "Lyon", "Nice"], n),
            "plan": rng.choice(["free", "pro"], n),
        }
    )
    y = (df.age > 40).astype(int) + (df.plan == "pro").astype(int)
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), ["age", "income"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "plan"]),
        ]
    )
    return Pipeline([("pre", pre), ("lr", LogisticRegression(max_iter=1000))]).fit(df, y), df


def _columns(df: object, rows: slice) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for c in ("age", "income"):
        out[c] = df[c].to_numpy()[rows]  # type: ignore[index]
    for c in ("city", "plan"):
        out[c] = np.array([v.encode() for v in df[c].to_numpy()[rows]], dtype=object)  # type: ignore[index]
    return out


@pytest.mark.parametrize("compile_mode", ["auto", "none"])
def test_a_dataframe_pipeline_is_served_by_column(tmp_path: Path, cache: Path, compile_mode: str) -> None:
    est, df = _frame_pipeline()
    m = SklearnModel("p", "1", _save(tmp_path, est), {"compile": compile_mode})
    info = m.load()
    assert [(s.name, s.datatype, s.shape) for s in info.inputs] == [
        ("age", "FP64", (-1,)),
        ("income", "FP64", (-1,)),
        ("city", "BYTES", (-1,)),
        ("plan", "BYTES", (-1,)),
    ]
    assert [o.name for o in info.outputs] == ["predict", "predict_proba"]
    assert (info.extra.get("compiled") == "onnx") is (compile_mode == "auto")
    cols = _columns(df, slice(0, 50))
    cols["city"][0] = b"Oslo"  # a category never seen: ignored by the encoder, as in scikit-learn
    want_df = df.iloc[:50].copy()  # type: ignore[attr-defined]
    want_df.loc[want_df.index[0], "city"] = "Oslo"
    got = m.predict(cols)
    np.testing.assert_allclose(got["predict_proba"], est.predict_proba(want_df), atol=1e-4)  # type: ignore[attr-defined]
    assert np.array_equal(got["predict"], est.predict(want_df))  # type: ignore[attr-defined]


def test_an_outlier_detector_serves_its_scores(tmp_path: Path, cache: Path) -> None:
    from sklearn.ensemble import IsolationForest

    est = IsolationForest(n_estimators=20, random_state=0).fit(X)
    m = SklearnModel("o", "1", _save(tmp_path, est), {})
    info = m.load()
    assert [o.name for o in info.outputs] == ["predict", "decision_function", "score_samples"]
    got = m.predict({"input-0": PROBE})
    assert np.array_equal(got["predict"], est.predict(PROBE))
    np.testing.assert_allclose(got["decision_function"], est.decision_function(PROBE))
    np.testing.assert_allclose(got["score_samples"], est.score_samples(PROBE))
    assert set(m.predict({"input-0": PROBE}, frozenset({"score_samples"}))) == {"score_samples"}


def test_a_directory_as_the_model_uri_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"is a directory: point uri at the \.joblib/\.pkl file"):
        SklearnModel("d", "1", tmp_path, {}).load()


@pytest.mark.parametrize("lib", ["xgboost", "lightgbm"])
def test_scikit_learn_wrappers_of_xgboost_and_lightgbm_are_compiled(tmp_path: Path, cache: Path, lib: str) -> None:
    pytest.importorskip(lib)
    pytest.importorskip("onnxmltools")
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)
    if lib == "xgboost":
        from xgboost import XGBClassifier, XGBRegressor

        clf, reg = XGBClassifier(n_estimators=20, max_depth=3), XGBRegressor(n_estimators=20, max_depth=3)
    else:
        from lightgbm import LGBMClassifier, LGBMRegressor

        clf, reg = LGBMClassifier(n_estimators=20, verbose=-1), LGBMRegressor(n_estimators=20, verbose=-1)
    for est, target in ((clf, y), (reg, X[:, 0] * 3 + X[:, 1])):
        est.fit(X, target)
        m = SklearnModel("b", "1", _save(tmp_path, est, f"{type(est).__name__}.joblib"), {})
        assert m.load().extra.get("compiled") == "onnx"
        got = m.predict({"input-0": PROBE})
        if est is clf:
            np.testing.assert_allclose(got["predict_proba"], est.predict_proba(PROBE), atol=1e-5)
            assert np.array_equal(got["predict"], est.predict(PROBE))
        else:
            np.testing.assert_allclose(got["predict"], est.predict(PROBE), rtol=1e-4, atol=1e-4)
