"""The model zoo: one small model of each family the server serves, each with its answer computed in-process.

``tests/integration/test_zoo.py`` serves every model here end to end and compares each answer with ``reference``
on the same rows. A builder writes the model file and ``spec.yaml`` into a folder and returns a ``ZooModel``:
the spec to serve it, the in-process reference, a row generator and the outputs to compare with their tolerance.

Everything is seeded and small (a few hundred rows, a few dozen trees) so that building the whole zoo takes
seconds on two cores. Rows are generated as the wire carries them (FP32 features, bytes for strings), and the
reference is computed from exactly those rows: a served ONNX graph computes from FP32 inputs, so a reference from
FP64 rows would differ by the inputs' rounding, not by the server.
"""

from __future__ import annotations

import textwrap
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["NAMES", "SKLEARN", "UNCOMPILED", "ZOO", "Output", "ZooModel", "build", "compare", "oip_datatype"]

Arrays = dict[str, np.ndarray]
TOL = 1e-4  # what the server promises for a compiled scikit-learn graph (docs/server.md)


@dataclass(frozen=True)
class Output:
    """An output to compare. ``exact``: labels, integers, strings, booleans. ``ties``: for classifier labels, the
    probability output whose two best classes, when within ``TOL`` in the reference, excuse a different label (the
    server's contract for a compiled graph: docs/server.md, "scikit-learn: compiled to ONNX, verified")."""

    name: str
    exact: bool = False
    rtol: float = TOL
    atol: float = TOL
    ties: str | None = None


@dataclass(frozen=True)
class ZooModel:
    name: str  # the served model's name (metadata.name)
    kind: str  # sklearn | table | onnx | python | booster
    folder: Path
    spec: str  # the spec YAML, written to folder / "spec.yaml"
    reference: Callable[[Arrays], Arrays]  # the model run in-process on the same inputs
    sample: Callable[[np.random.Generator, int], Arrays]  # rows -> input name -> array (first axis: rows)
    outputs: tuple[Output, ...]  # what the server must answer, compared with the reference
    inputs: tuple[tuple[str, str, tuple[int, ...]], ...]  # (name, datatype, shape) the metadata must list
    fixed_rows: int | None = None  # a fixed batch dimension: every request carries exactly this many rows
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def spec_path(self) -> Path:
        return self.folder / "spec.yaml"

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.outputs)


def oip_datatype(arr: np.ndarray) -> str:
    """The Open Inference Protocol datatype of an array (object and string arrays are BYTES)."""
    if arr.dtype.kind in "OUS":
        return "BYTES"
    return {
        "b1": "BOOL",
        "u1": "UINT8",
        "u2": "UINT16",
        "u4": "UINT32",
        "u8": "UINT64",
        "i1": "INT8",
        "i2": "INT16",
        "i4": "INT32",
        "i8": "INT64",
        "f2": "FP16",
        "f4": "FP32",
        "f8": "FP64",
    }[f"{arr.dtype.kind}{arr.dtype.itemsize}"]


def _spec(name: str, model: str, *, workers: int = 1, max_batch: int = 32) -> str:
    return (
        "apiVersion: kubeinfer.io/v1alpha1\n"
        "kind: InferenceService\n"
        f"metadata: {{name: {name}}}\n"
        "spec:\n"
        f"  model: {model}\n"
        f"  batching: {{maxBatchSize: {max_batch}, maxDelayMs: 2}}\n"
        f"  server: {{workers: {workers}, limits: {{drainTimeoutSeconds: 5}}}}\n"
    )


def _write(folder: Path, spec: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.yaml").write_text(spec)


# -- scikit-learn: one FP32 table input ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sk:
    make: Callable[[], Any]
    task: str  # classify | regress | outliers
    n_features: int
    n_classes: int = 2
    workers: int = 1


def _sk_models() -> dict[str, _Sk]:
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        IsolationForest,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
    from sklearn.neighbors import KNeighborsClassifier, LocalOutlierFactor
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC, OneClassSVM

    return {
        "logreg": _Sk(lambda: LogisticRegression(max_iter=2000), "classify", 20, 4),
        "linreg": _Sk(LinearRegression, "regress", 16, workers=2),
        "ridge": _Sk(lambda: Ridge(alpha=1.0), "regress", 24),
        "rf-clf": _Sk(
            lambda: RandomForestClassifier(n_estimators=20, max_depth=8, random_state=0), "classify", 32, 3, 2
        ),
        "rf-reg": _Sk(lambda: RandomForestRegressor(n_estimators=20, max_depth=8, random_state=0), "regress", 16),
        "et-clf": _Sk(lambda: ExtraTreesClassifier(n_estimators=20, max_depth=8, random_state=0), "classify", 16, 3),
        "et-reg": _Sk(
            lambda: ExtraTreesRegressor(n_estimators=20, max_depth=8, random_state=0), "regress", 24, workers=2
        ),
        "hgb-clf": _Sk(lambda: HistGradientBoostingClassifier(max_iter=25, random_state=0), "classify", 64, 4),
        "hgb-reg": _Sk(lambda: HistGradientBoostingRegressor(max_iter=30, random_state=0), "regress", 32, workers=2),
        "gb-clf": _Sk(
            lambda: GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=0), "classify", 16, 3
        ),
        "svc": _Sk(lambda: SVC(probability=True, random_state=0), "classify", 16, 3, 2),
        "knn": _Sk(lambda: KNeighborsClassifier(n_neighbors=5), "classify", 24, 3),
        "mlp": _Sk(lambda: MLPClassifier(hidden_layer_sizes=(32,), max_iter=400, random_state=0), "classify", 32, 3, 2),
        "iforest": _Sk(lambda: IsolationForest(n_estimators=50, random_state=0), "outliers", 16),
        "pipeline": _Sk(
            lambda: Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=2000))]),
            "classify",
            48,
            3,
        ),
        "gb-reg": _Sk(lambda: GradientBoostingRegressor(n_estimators=30, max_depth=3, random_state=0), "regress", 20),
        "ocsvm": _Sk(lambda: OneClassSVM(nu=0.1, gamma="scale"), "outliers", 12),
        "lof": _Sk(lambda: LocalOutlierFactor(n_neighbors=20, novelty=True), "outliers", 10),
    }


SKLEARN = (
    "logreg",
    "linreg",
    "ridge",
    "rf-clf",
    "rf-reg",
    "et-clf",
    "et-reg",
    "hgb-clf",
    "hgb-reg",
    "gb-clf",
    "svc",
    "knn",
    "mlp",
    "iforest",
    "pipeline",
    "gb-reg",
    "ocsvm",
    "lof",
)
# The same estimators served by scikit-learn itself (``args.compile: none``) rather than by the compiled graph:
# its outputs come as scikit-learn makes them (a Fortran-ordered predict_proba from HistGradientBoosting, float64
# values, a DataFrame per batch for the table), which is the path users get whenever a model cannot be compiled.
UNCOMPILED = ("hgb-clf-sk", "rf-clf-sk", "svc-sk", "knn-sk", "linreg-sk", "table-sk")
_COMPILE_NONE = ", args: {compile: none}"


def _fit(est: Any, x: np.ndarray, y: np.ndarray | None) -> Any:
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        # A small seeded problem: an MLP or solver that stops a little short of convergence is still a fixed model.
        warnings.simplefilter("ignore", ConvergenceWarning)
        # scikit-learn 1.9 deprecates SVC(probability=True); users have such models, so the zoo keeps one.
        warnings.filterwarnings("ignore", message=r"The `probability` parameter", category=FutureWarning)
        return est.fit(x) if y is None else est.fit(x, y)


def _build_sklearn(name: str, folder: Path) -> ZooModel:
    import joblib
    from sklearn.datasets import make_classification, make_regression

    base = name.removesuffix("-sk")
    cfg = _sk_models()[base]
    seed = SKLEARN.index(base)
    n = 600 + 256
    if cfg.task == "regress":
        x64, y = make_regression(n, cfg.n_features, n_informative=min(10, cfg.n_features), noise=5.0, random_state=seed)
    else:
        x64, y = make_classification(
            n,
            cfg.n_features,
            n_informative=min(8, cfg.n_features),
            n_redundant=2,
            n_classes=cfg.n_classes,
            n_clusters_per_class=1,
            random_state=seed,
        )
    x = x64.astype(np.float32)
    train, pool = x[:600], x[600:]
    est = _fit(cfg.make(), train, None if cfg.task == "outliers" else y[:600])
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(est, folder / "model.joblib")

    def sample(rng: np.random.Generator, rows: int) -> Arrays:
        # Rows near the data (the held-out rows plus a little noise), as FP32, the wire's datatype.
        near = pool[rng.integers(0, len(pool), rows)]
        return {"input-0": (near + rng.normal(0.0, 0.05, near.shape)).astype(np.float32)}

    if cfg.task == "classify":
        outputs: tuple[Output, ...] = (Output("predict", exact=True, ties="predict_proba"), Output("predict_proba"))

        def reference(inputs: Arrays) -> Arrays:
            x = inputs["input-0"]
            return {"predict": est.predict(x), "predict_proba": est.predict_proba(x)}

    elif cfg.task == "regress":
        outputs = (Output("predict"),)

        def reference(inputs: Arrays) -> Arrays:
            return {"predict": est.predict(inputs["input-0"])}

    else:
        outputs = (Output("predict", exact=True), Output("decision_function"), Output("score_samples"))

        def reference(inputs: Arrays) -> Arrays:
            x = inputs["input-0"]
            return {
                "predict": est.predict(x),
                "decision_function": est.decision_function(x),
                "score_samples": est.score_samples(x),
            }

    args = _COMPILE_NONE if name in UNCOMPILED else ""
    spec = _spec(name, f"{{format: sklearn, uri: ./model.joblib{args}}}", workers=cfg.workers)
    _write(folder, spec)
    return ZooModel(
        name=name,
        kind="sklearn",
        folder=folder,
        spec=spec,
        reference=reference,
        sample=sample,
        outputs=outputs,
        inputs=(("input-0", "FP32", (-1, cfg.n_features)),),
        extra={"estimator": est},
    )


# -- scikit-learn: a Pipeline fitted on a pandas DataFrame with string columns -------------------------------------

CITIES = ("Paris", "Lyon", "Lille", "Nantes", "Nice")
PLANS = ("free", "pro", "team")
TABLE_COLUMNS = (("age", "FP64", (-1,)), ("income", "FP64", (-1,)), ("city", "BYTES", (-1,)), ("plan", "BYTES", (-1,)))


def _table_frame(inputs: Mapping[str, np.ndarray]) -> Any:
    import pandas as pd

    def text(col: np.ndarray) -> list[str]:
        return [v.decode() if isinstance(v, bytes) else str(v) for v in col.reshape(-1)]

    return pd.DataFrame(
        {
            "age": np.asarray(inputs["age"], dtype=np.float64).reshape(-1),
            "income": np.asarray(inputs["income"], dtype=np.float64).reshape(-1),
            "city": text(inputs["city"]),
            "plan": text(inputs["plan"]),
        }
    )


def _table_rows(rng: np.random.Generator, rows: int, unseen: bool) -> Arrays:
    cities = (*CITIES, "Tokyo") if unseen else CITIES  # a city the encoder never saw: it ignores unknowns
    return {
        "age": np.round(rng.uniform(18, 80, rows), 1),
        "income": np.round(rng.lognormal(10.8, 0.5, rows), 2),
        "city": np.array([cities[i].encode() for i in rng.integers(0, len(cities), rows)], dtype=object),
        "plan": np.array([PLANS[i].encode() for i in rng.integers(0, len(PLANS), rows)], dtype=object),
    }


def _build_table(name: str, folder: Path) -> ZooModel:
    import joblib
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(42)
    frame = _table_frame(_table_rows(rng, 600, unseen=False))
    score = (
        (frame["age"] - 45) / 15
        + (np.log(frame["income"]) - 10.8) / 0.5
        + frame["city"].map(dict(zip(CITIES, (1.0, -0.5, 0.0, 0.5, -1.0), strict=True)))
        + frame["plan"].map({"free": -1.0, "pro": 0.5, "team": 1.0})
        + rng.normal(0, 0.5, len(frame))
    )
    label = np.digitize(score, [-0.7, 0.7]).astype(np.int64)  # three classes
    pipe = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), ["age", "income"]),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "plan"]),
                    ]
                ),
            ),
            ("clf", LogisticRegression(max_iter=2000)),
        ]
    )
    _fit(pipe, frame, label)
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipe, folder / "model.joblib")

    def reference(inputs: Arrays) -> Arrays:
        df = _table_frame(inputs)
        return {"predict": pipe.predict(df), "predict_proba": pipe.predict_proba(df)}

    def sample(rng: np.random.Generator, rows: int) -> Arrays:
        return _table_rows(rng, rows, unseen=True)

    args = _COMPILE_NONE if name in UNCOMPILED else ""
    spec = _spec(name, f"{{format: sklearn, uri: ./model.joblib{args}}}")
    _write(folder, spec)
    return ZooModel(
        name=name,
        kind="table",
        folder=folder,
        spec=spec,
        reference=reference,
        sample=sample,
        outputs=(Output("predict", exact=True, ties="predict_proba"), Output("predict_proba")),
        inputs=TABLE_COLUMNS,
        extra={"estimator": pipe},
    )


# -- ONNX graphs built with onnx.helper ------------------------------------------------------------------------------

ONNX_OPSET = 17
ONNX_IR_VERSION = 8  # the IR version of opset 17: every onnxruntime >= 1.11 reads it


def _save_onnx(folder: Path, graph: Any, ml: bool = False) -> None:
    import onnx
    from onnx import helper

    opsets = [helper.make_opsetid("", ONNX_OPSET)]
    if ml:
        opsets.append(helper.make_opsetid("ai.onnx.ml", 2))
    model = helper.make_model(graph, opset_imports=opsets, ir_version=ONNX_IR_VERSION, producer_name="kubeinfer-zoo")
    onnx.checker.check_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "model.onnx"))


def _onnx_zoo(name: str, folder: Path, **kw: Any) -> ZooModel:
    spec = _spec(name, "{format: onnx, uri: ./model.onnx, args: {intraOpThreads: 1}}", workers=kw.pop("workers", 1))
    _write(folder, spec)
    return ZooModel(name=name, kind="onnx", folder=folder, spec=spec, **kw)


def _build_onnx_multi(name: str, folder: Path) -> ZooModel:
    """Two inputs of two datatypes, two outputs of two others: sum = a + float(b), any_pos = any(a > 0) per row."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["b"], ["b_float"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["a", "b_float"], ["sum"]),
            helper.make_node("ReduceMax", ["a"], ["row_max"], axes=[1], keepdims=0),
            helper.make_node("Greater", ["row_max", "zero"], ["any_pos"]),
        ],
        "multi",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("b", TensorProto.INT64, ["batch", 4]),
        ],
        [
            helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("any_pos", TensorProto.BOOL, ["batch"]),
        ],
        initializer=[helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])],
    )
    _save_onnx(folder, graph)

    def reference(inputs: Arrays) -> Arrays:
        a, b = inputs["a"], inputs["b"]
        return {"sum": a + b.astype(np.float32), "any_pos": (a > 0).any(axis=1)}

    def sample(rng: np.random.Generator, rows: int) -> Arrays:
        # Rows of only negative numbers too, so that any_pos is false now and then.
        a = rng.normal(0.0, 1.0, (rows, 4)).astype(np.float32)
        negative = rng.random(rows) < 0.3
        a[negative] = -np.abs(a[negative])
        return {"a": a, "b": rng.integers(-1000, 1000, (rows, 4)).astype(np.int64)}

    return _onnx_zoo(
        name,
        folder,
        reference=reference,
        sample=sample,
        outputs=(Output("sum", rtol=0.0, atol=0.0), Output("any_pos", exact=True)),
        inputs=(("a", "FP32", (-1, 4)), ("b", "INT64", (-1, 4))),
        workers=2,
    )


def _build_onnx_fp16(name: str, folder: Path) -> ZooModel:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])],
        "fp16",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["batch", 8])],
        initializer=[helper.make_tensor("two", TensorProto.FLOAT16, [], [2.0])],
    )
    _save_onnx(folder, graph)

    def reference(inputs: Arrays) -> Arrays:
        return {"y": inputs["x"] * np.float16(2)}

    def sample(rng: np.random.Generator, rows: int) -> Arrays:
        return {"x": rng.normal(0.0, 100.0, (rows, 8)).astype(np.float16)}

    return _onnx_zoo(
        name,
        folder,
        reference=reference,
        sample=sample,
        outputs=(Output("y", rtol=0.0, atol=0.0),),  # doubling is exact in FP16
        inputs=(("x", "FP16", (-1, 8)),),
    )


def _build_onnx_fixed(name: str, folder: Path) -> ZooModel:
    """A graph exported with batch 1: the server does not batch it, and must still answer 64 clients correctly."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    _save_onnx(folder, graph)

    def reference(inputs: Arrays) -> Arrays:
        return {"y": np.maximum(inputs["x"], np.float32(0))}

    def sample(rng: np.random.Generator, rows: int) -> Arrays:
        return {"x": rng.normal(0.0, 1.0, (rows, 3)).astype(np.float32)}

    return _onnx_zoo(
        name,
        folder,
        reference=reference,
        sample=sample,
        outputs=(Output("y", rtol=0.0, atol=0.0),),
        inputs=(("x", "FP32", (1, 3)),),
        fixed_rows=1,
    )


WORDS = ("apple", "banana", "cherry", "café", "naïve ✓", "", "two words", "Ünïcödé")
WORD_IDS = {"apple": 1, "banana": 2, "cherry": 3, "café": 4}  # others: -1


def _build_onnx_strings(name: str, folder: Path) -> ZooModel:
    """A string tensor in, the same strings out (UTF-8, empty strings included), and an INT64 id per string."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["s"], ["same"]),
            helper.make_node(
                "LabelEncoder",
                ["s"],
                ["n"],
                domain="ai.onnx.ml",
                keys_strings=list(WORD_IDS),
                values_int64s=list(WORD_IDS.values()),
                default_int64=-1,
            ),
        ],
        "strings",
        [helper.make_tensor_value_info("s", TensorProto.STRING, ["batch"])],
        [
            helper.make_tensor_value_info("same", TensorProto.STRING, ["batch"]),
            helper.make_tensor_value_info("n", TensorProto.INT64, ["batch"]),
        ],
    )
    _save_onnx(folder, graph, ml=True)

    def reference(inputs: Arrays) -> Arrays:
        s = inputs["s"]
        return {"same": s.copy(), "n": np.array([WORD_IDS.get(v.decode(), -1) for v in s], dtype=np.int64)}

    def sample(rng: np.random.Generator, rows: int) -> Arrays:
        return {"s": np.array([WORDS[i].encode() for i in rng.integers(0, len(WORDS), rows)], dtype=object)}

    return _onnx_zoo(
        name,
        folder,
        reference=reference,
        sample=sample,
        outputs=(Output("same", exact=True), Output("n", exact=True)),
        inputs=(("s", "BYTES", (-1,)),),
    )


# -- format: python, returning every array layout numpy gives ------------------------------------------------------

WEIRD_W = np.arange(24, dtype=np.float32).reshape(6, 4) / 10 - 1

WEIRD_MODULE = '''
"""A user's model whose outputs come in every layout numpy produces (written by tests/zoo.py)."""

import numpy as np

W = np.arange(24, dtype=np.float32).reshape(6, 4) / 10 - 1


class Weird:
    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 6]}]
    outputs = [
        {"name": "view", "datatype": "FP32", "shape": [-1, 3]},
        {"name": "fortran", "datatype": "FP32", "shape": [-1, 4]},
        {"name": "big_endian", "datatype": "FP32", "shape": [-1, 6]},
        {"name": "transposed", "datatype": "FP32", "shape": [-1, 6]},
        {"name": "column", "datatype": "INT64", "shape": [-1]},
        {"name": "norm", "datatype": "FP64", "shape": [-1]},
        {"name": "broadcast", "datatype": "FP32", "shape": [-1]},
    ]

    def predict(self, inputs):
        x = inputs["x"]
        # Returned in another order than declared: responses must follow the declaration.
        return {
            "broadcast": np.broadcast_to(np.float32(7.5), (len(x),)),  # zero strides, read-only
            "norm": np.sqrt((x.astype(np.float64) ** 2).sum(axis=1)),
            "column": np.floor(x * 10).astype(np.int64)[:, 2],  # a strided 1-D view of a 2-D array
            "transposed": (x + 1).T.copy().T,  # F-contiguous
            "big_endian": (x * 3).astype(">f4"),
            "fortran": np.asfortranarray(x @ W),
            "view": x[:, ::2],
        }
'''


def _build_python(name: str, folder: Path) -> ZooModel:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zoomodel.py").write_text(textwrap.dedent(WEIRD_MODULE).lstrip())

    def reference(inputs: Arrays) -> Arrays:
        x = inputs["x"]
        return {
            "view": x[:, [0, 2, 4]],
            "fortran": x @ WEIRD_W,
            "big_endian": x * np.float32(3),
            "transposed": x + np.float32(1),
            "column": np.floor(x[:, 2] * np.float32(10)).astype(np.int64),
            "norm": np.sqrt((x.astype(np.float64) ** 2).sum(axis=1)),
            "broadcast": np.full(len(x), 7.5, np.float32),
        }

    def sample(rng: np.random.Generator, rows: int) -> Arrays:
        return {"x": rng.normal(0.0, 2.0, (rows, 6)).astype(np.float32)}

    spec = _spec(name, "{format: python, className: 'zoomodel:Weird'}")
    _write(folder, spec)
    return ZooModel(
        name=name,
        kind="python",
        folder=folder,
        spec=spec,
        reference=reference,
        sample=sample,
        outputs=(
            Output("view", exact=True),
            Output("fortran", rtol=1e-5, atol=1e-5),  # a matrix product: BLAS may sum in another order per batch
            Output("big_endian", exact=True),
            Output("transposed", exact=True),
            Output("column", exact=True),
            Output("norm", rtol=1e-12, atol=0.0),
            Output("broadcast", exact=True),
        ),
        inputs=(("x", "FP32", (-1, 6)),),
    )


# -- XGBoost and LightGBM boosters in their own file formats ---------------------------------------------------------

BOOSTERS = ("xgb-clf", "xgb-reg", "lgbm-clf")


def _build_booster(name: str, folder: Path) -> ZooModel:
    from sklearn.datasets import make_classification, make_regression

    seed = 100 + BOOSTERS.index(name)
    n_features = {"xgb-clf": 24, "xgb-reg": 16, "lgbm-clf": 32}[name]
    n = 800 + 256
    if name == "xgb-reg":
        x64, y = make_regression(n, n_features, n_informative=10, noise=5.0, random_state=seed)
    else:
        x64, y = make_classification(
            n,
            n_features,
            n_informative=8,
            n_redundant=2,
            n_classes=3 if name == "xgb-clf" else 2,
            n_clusters_per_class=1,
            random_state=seed,
        )
    x = x64.astype(np.float32)
    train, pool = x[:800], x[800:]
    folder.mkdir(parents=True, exist_ok=True)
    if name.startswith("xgb"):
        import xgboost as xgb

        params: dict[str, Any] = {"max_depth": 4, "eta": 0.3, "nthread": 1, "seed": 0}
        params |= (
            {"objective": "multi:softprob", "num_class": 3} if name == "xgb-clf" else {"objective": "reg:squarederror"}
        )
        booster = xgb.train(params, xgb.DMatrix(train, label=y[:800]), num_boost_round=30)
        booster.save_model(folder / "model.json")
        fmt, uri = "xgboost", "./model.json"

        def raw(a: np.ndarray) -> np.ndarray:
            return np.asarray(booster.predict(xgb.DMatrix(a)))

    else:
        import lightgbm as lgb

        params = {"objective": "binary", "num_leaves": 15, "verbose": -1, "num_threads": 1, "seed": 0}
        booster = lgb.train(params, lgb.Dataset(train, label=y[:800]), num_boost_round=30)
        booster.save_model(str(folder / "model.txt"))
        fmt, uri = "lightgbm", "./model.txt"

        def raw(a: np.ndarray) -> np.ndarray:
            return np.asarray(booster.predict(a))

    def sample(rng: np.random.Generator, rows: int) -> Arrays:
        near = pool[rng.integers(0, len(pool), rows)]
        return {"input-0": (near + rng.normal(0.0, 0.05, near.shape)).astype(np.float32)}

    if name == "xgb-reg":
        outputs: tuple[Output, ...] = (Output("predict", rtol=1e-4, atol=1e-3),)

        def reference(inputs: Arrays) -> Arrays:
            return {"predict": raw(inputs["input-0"])}

    else:
        outputs = (Output("predict", exact=True, ties="predict_proba"), Output("predict_proba"))

        def reference(inputs: Arrays) -> Arrays:
            p = raw(inputs["input-0"])
            proba = p if p.ndim == 2 else np.stack([1.0 - p, p], axis=1)
            return {"predict": proba.argmax(axis=1), "predict_proba": proba}

    spec = _spec(name, f"{{format: {fmt}, uri: {uri}}}")
    _write(folder, spec)
    return ZooModel(
        name=name,
        kind="booster",
        folder=folder,
        spec=spec,
        reference=reference,
        sample=sample,
        outputs=outputs,
        inputs=(("input-0", "FP32", (-1, n_features)),),
    )


# -- the zoo ---------------------------------------------------------------------------------------------------------

ZOO: dict[str, Callable[[str, Path], ZooModel]] = {
    **dict.fromkeys(SKLEARN, _build_sklearn),
    "table": _build_table,
    **dict.fromkeys(UNCOMPILED[:-1], _build_sklearn),
    "table-sk": _build_table,
    "onnx-multi": _build_onnx_multi,
    "onnx-fp16": _build_onnx_fp16,
    "onnx-fixed": _build_onnx_fixed,
    "onnx-strings": _build_onnx_strings,
    "python-weird": _build_python,
    **dict.fromkeys(BOOSTERS, _build_booster),
}
NAMES = tuple(ZOO)


def build(name: str, folder: Path) -> ZooModel:
    """Build zoo model ``name`` into ``folder`` (model file and spec.yaml)."""
    return ZOO[name](name, folder)


# -- comparing answers -----------------------------------------------------------------------------------------------


def _text(a: np.ndarray) -> np.ndarray:
    return np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in a.reshape(-1)], dtype=object)


def compare(
    model: ZooModel,
    got: Mapping[str, np.ndarray],
    want: Mapping[str, np.ndarray],
    only: tuple[str, ...] | None = None,
) -> list[str]:
    """What differs between a served answer and the reference on the same rows (empty: none). ``got`` must hold
    exactly the model's outputs, or exactly ``only``."""
    problems: list[str] = []
    names = set(only if only is not None else model.output_names)
    if set(got) != names:
        problems.append(f"outputs {sorted(got)}, expected {sorted(names)}")
    for out in model.outputs:
        if out.name not in got or out.name not in names:
            continue
        g = np.asarray(got[out.name])
        w = np.asarray(want[out.name])
        if g.shape != w.shape:
            problems.append(f"{out.name}: shape {list(g.shape)}, expected {list(w.shape)}")
            continue
        if w.dtype.kind in "OUS":
            bad = _text(g) != _text(w)
        elif out.exact:
            bad = np.asarray(g != w)
        else:
            bad = ~np.isclose(g.astype(np.float64), w.astype(np.float64), rtol=out.rtol, atol=out.atol)
        if out.ties is not None and bad.any():
            proba = np.sort(np.asarray(want[out.ties], dtype=np.float64), axis=1)
            bad &= (proba[:, -1] - proba[:, -2]) > TOL
        if bad.any():
            rows = sorted({int(i) for i in np.argwhere(bad)[:, 0]})
            problems.append(
                f"{out.name}: {int(bad.sum())} values differ in rows {rows[:5]}: got {g[rows[0]]!r}, "
                f"expected {w[rows[0]]!r}"
            )
    return problems
