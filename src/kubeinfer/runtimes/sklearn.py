"""scikit-learn models saved with joblib (or pickle): ``predict`` and, for classifiers, ``predict_proba``.

Inputs, by how the estimator was fitted:
- On an array: one 2-D tensor ``input-0`` of shape ``[-1, n_features]``; its datatype is FP32 unless
  ``args.inputDatatype`` says otherwise. Fitted on a DataFrame of numeric columns, the metadata also names the
  columns (``ModelInfo.columns``), so a request may send one input per column instead.
- On a DataFrame whose columns are picked by name (a ``ColumnTransformer`` in a ``Pipeline``, the usual shape of a
  real tabular model): one 1-D input per column, in the order the estimator saw them (``feature_names_in_``):
  ``BYTES`` for a column that an encoder holds string categories for, ``FP64`` otherwise. Each batch is handed to the
  estimator as a pandas DataFrame with those columns (strings decoded as UTF-8).

Outputs: ``predict`` (labels or values), ``predict_proba`` where the estimator has it, and for outlier detectors
(``IsolationForest``, ``OneClassSVM``, ``LocalOutlierFactor(novelty=True)``) ``decision_function`` and
``score_samples``. A request may ask for only some outputs; the others are then not computed.

**Compiled to ONNX, verified** (``args.compile``: ``auto``, the default; ``onnx``; ``none``). scikit-learn checks
its input on every call (about 0.3 ms a call on a small model, most of it before any arithmetic) and importing it
takes seconds; a replica spends both on every request and every start. So the estimator is converted with
``skl2onnx`` and run by ONNX Runtime -- but only if the converted graph reproduces the estimator on probe inputs
(random rows at three scales and zeros): labels identical except where the estimator's two best classes lie within
1e-4 of each other, probabilities and regression values within 1e-4 (absolute, and relative for values). The
graph is cached under ``$KUBEINFER_CACHE_DIR`` (default ``~/.cache/kubeinfer``) by the model file's SHA-256,
with its metadata and the measured error, so later starts load it without importing scikit-learn at all. With
``auto`` anything that fails -- no ``skl2onnx``, an estimator it cannot convert, string class labels, a mismatch
-- is logged and the estimator is served by scikit-learn itself; ``onnx`` makes it an error; ``none`` never
converts. The log says which one runs, and with what measured error. A DataFrame pipeline is compiled with one graph
input per column (strings as ONNX string tensors) and verified on rows drawn from its own categories and numeric
ranges; a tree ensemble also on rows set exactly at its split thresholds (and one float32 step either side), where
a threshold rounded the wrong way would show. ``HistGradientBoosting*`` graphs are built with two fixes to skl2onnx:
see ``_tree_fixes``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from kubeinfer.runtimes.base import ModelError, ModelInfo, TensorSpec, datatype_of, dtype_of
from kubeinfer.runtimes.compiled import (
    COMPILE_MODES,
    CannotCompile,
    cache_dir,
    compile_mode,
    model_file,
    short_error,
)
from kubeinfer.runtimes.compiled import f32_at_most as _f32_at_most  # a module name: tests patch it

__all__ = ["COMPILE_MODES", "SklearnModel", "cache_dir"]

log = logging.getLogger("kubeinfer.runtimes")

TOLERANCE = 1e-4
MAX_THRESHOLD_PROBES = 4096
_FORMAT = 2  # bump when the cached files change meaning
# Outputs of an outlier detector besides predict (served by scikit-learn: the graph has only labels and scores).
_OUTLIER_OUTPUTS = ("decision_function", "score_samples")
_ENCODERS = ("OneHotEncoder", "OrdinalEncoder", "TargetEncoder")


def _spec_json(s: TensorSpec) -> dict[str, Any]:
    return {"name": s.name, "datatype": s.datatype, "shape": list(s.shape)}


def _spec(d: Mapping[str, Any]) -> TensorSpec:
    return TensorSpec(str(d["name"]), str(d["datatype"]), tuple(int(x) for x in d["shape"]))


def _children(est: Any) -> Iterator[tuple[Any, Any]]:
    """(step, columns it reads, or None) for the estimators a Pipeline, ColumnTransformer or FeatureUnion holds."""
    for _, step in getattr(est, "steps", ()):
        yield step, None
    for _, trans, cols in getattr(est, "transformers_", getattr(est, "transformers", ())):
        yield trans, cols
    for _, trans in getattr(est, "transformer_list", ()):
        yield trans, None


def _walk(est: Any) -> Iterator[tuple[Any, Any]]:
    """Every estimator inside ``est`` (itself first), each with the column selector of its ColumnTransformer."""
    stack: list[tuple[Any, Any]] = [(est, None)]
    while stack:
        node, cols = stack.pop()
        if isinstance(node, str):  # 'drop' / 'passthrough'
            continue
        yield node, cols
        stack.extend(_children(node))


def _names(cols: Any) -> list[str] | None:
    """A ColumnTransformer selector as column names, or None when it selects by position, mask or callable."""
    if isinstance(cols, str):
        return [cols]
    if isinstance(cols, list | tuple) and cols and all(isinstance(c, str) for c in cols):
        return list(cols)
    return None


def table_columns(est: Any) -> list[tuple[str, str]] | None:
    """``[(column, OIP datatype)]`` when ``est`` must be called with a DataFrame (it picks columns by name), else
    None. A column is BYTES when an encoder of it holds string categories, FP64 otherwise."""
    names = getattr(est, "feature_names_in_", None)
    if names is None:
        return None
    by_name = False
    strings: set[str] = set()
    for node, cols in _walk(est):
        selected = _names(cols)
        if selected is None:
            continue
        by_name = True
        for inner, _ in _walk(node):
            cats = getattr(inner, "categories_", None)
            if type(inner).__name__ in _ENCODERS and cats is not None and len(cats) == len(selected):
                strings.update(c for c, cat in zip(selected, cats, strict=True) if np.asarray(cat).dtype.kind in "OUS")
    if not by_name:
        return None
    return [(str(c), "BYTES" if str(c) in strings else "FP64") for c in names]


@contextlib.contextmanager
def _tree_fixes() -> Iterator[None]:
    """Two fixes to skl2onnx's tree ensembles (<= 1.20), applied while converting:

    - It passes ``nodes_missing_value_tracks_true=False`` (a Python bool) for the leaves of a HistGradientBoosting
      tree, and onnx >= 1.17 refuses a bool in an INTS attribute: cast to int.
    - For HistGradientBoosting it writes each float64 split threshold rounded to the *nearest* float32, so a float32
      feature equal to that rounded value goes left in the graph and right in scikit-learn (measured: 10 of 6,000
      rows set at the thresholds of a 50-iteration model). Write the largest float32 <= the threshold instead, which
      makes ``x <= threshold`` agree for every float32 ``x``. (Its other tree converters already adjust.)

    The graph is then verified against the estimator, on probe rows set at its thresholds too."""
    try:
        from skl2onnx.common import tree_ensemble
    except ImportError:  # pragma: no cover - depends on the installed skl2onnx
        yield
        return
    original = tree_ensemble.add_node

    def add_node(*args: Any, **kwargs: Any) -> Any:
        if isinstance(kwargs.get("nodes_missing_value_tracks_true"), bool | np.bool_):
            kwargs["nodes_missing_value_tracks_true"] = int(kwargs["nodes_missing_value_tracks_true"])
        adjusted = args[13] if len(args) > 13 else kwargs.get("adjust_threshold_for_sklearn", False)
        if len(args) > 7 and args[6] == "BRANCH_LEQ" and not adjusted:
            args = (*args[:7], _f32_at_most(float(args[7])), *args[8:])
        return original(*args, **kwargs)

    tree_ensemble.add_node = add_node
    try:
        yield
    finally:
        tree_ensemble.add_node = original


def _register_boosting(est: Any) -> dict[str, int] | None:
    """Teach skl2onnx the scikit-learn wrappers of XGBoost and LightGBM (``XGBClassifier``, ``LGBMRegressor`` ...)
    found inside ``est``, with onnxmltools' converters (the documented way); their graphs need the ai.onnx.ml opset 3.
    None when there are none (skl2onnx's default opsets)."""
    found = {type(n) for n, _ in _walk(est) if type(n).__module__.split(".")[0] in ("xgboost", "lightgbm")}
    if not found:
        return None
    try:
        from skl2onnx import update_registered_converter
        from skl2onnx.common.shape_calculator import (
            calculate_linear_classifier_output_shapes,
            calculate_linear_regressor_output_shapes,
        )
    except ImportError:  # pragma: no cover - depends on the installed skl2onnx
        raise CannotCompile("skl2onnx is not installed") from None
    options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    for cls in found:
        lib = cls.__module__.split(".")[0]
        try:
            if lib == "xgboost":
                from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost as convert
            else:
                from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm as convert
        except ImportError:
            raise CannotCompile(f"{cls.__name__} needs onnxmltools: pip install 'kubeinfer[boosting]'") from None
        if hasattr(cls, "predict_proba"):
            update_registered_converter(
                cls, f"{lib}{cls.__name__}", calculate_linear_classifier_output_shapes, convert, options=options
            )
        else:
            extra = {"split": None} if lib == "lightgbm" else None
            update_registered_converter(
                cls, f"{lib}{cls.__name__}", calculate_linear_regressor_output_shapes, convert, options=extra
            )
    return {"": 17, "ai.onnx.ml": 3}


def tree_thresholds(est: Any) -> list[tuple[int, float]]:
    """``(feature, threshold)`` of every split of a tree ensemble fitted on the raw input (empty for other models):
    where a float32 rounding of the graph would show, so the verification probes there."""
    out: list[tuple[int, float]] = []
    for iteration in getattr(est, "_predictors", None) or ():  # HistGradientBoosting*
        for p in iteration:
            nodes = p.nodes
            split = ~nodes["is_leaf"].astype(bool)
            out += zip(nodes["feature_idx"][split].tolist(), nodes["num_threshold"][split].tolist(), strict=True)
    trees = getattr(est, "estimators_", None)
    if trees is not None and not out:
        for tree in np.ravel(np.asarray(trees, dtype=object)):
            t = getattr(tree, "tree_", None)
            if t is None:
                continue
            split = t.feature >= 0
            out += zip(t.feature[split].tolist(), t.threshold[split].tolist(), strict=True)
    t = getattr(est, "tree_", None)
    if t is not None:
        split = t.feature >= 0
        out += zip(t.feature[split].tolist(), t.threshold[split].tolist(), strict=True)
    return out


class SklearnModel:
    def __init__(self, name: str, version: str, path: Path, args: Mapping[str, Any]) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.args = dict(args)
        self._est: Any = None
        self._has_proba = False
        self._outlier = False
        self._sess: Any = None
        self._onnx_inputs: list[str] = []
        self._label_dtype: Any = None
        self._table: list[tuple[str, str]] | None = None  # (column, datatype) when the estimator takes a DataFrame
        self._columns: tuple[str, ...] = ()  # names of input-0's columns, when it was fitted on a DataFrame

    # -- loading ---------------------------------------------------------------------------------------
    def load(self) -> ModelInfo:
        mode = compile_mode(self.args)
        model_file(self.path, ".joblib/.pkl file")
        in_dtype = str(self.args.get("inputDatatype", "FP32"))
        digest = ""
        if mode != "none":
            digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
            cached = self._load_cached(digest, in_dtype)
            if cached is not None:
                return cached
        info = self._load_sklearn(in_dtype)
        if mode == "none":
            return info
        try:
            return self._compile(info, digest, in_dtype)
        except CannotCompile as e:
            if mode == "onnx":
                raise ModelError(f"args.compile is 'onnx' but {self.path.name} cannot be compiled: {e}") from None
            log.info("model %s: served by scikit-learn (not compiled to ONNX: %s)", self.name, e)
            info.extra["not_compiled"] = str(e)
            return info

    def _load_sklearn(self, in_dtype: str) -> ModelInfo:
        try:
            import joblib
        except ImportError as e:  # pragma: no cover - depends on extras
            raise ModelError("scikit-learn models need the [sklearn] extra: pip install 'kubeinfer[sklearn]'") from e
        try:
            self._est = joblib.load(self.path)
        except Exception as e:
            raise ModelError(f"cannot load {self.path} as a joblib/pickle file: {type(e).__name__}: {e}") from e
        est = self._est
        if not hasattr(est, "predict"):
            raise ModelError(f"{self.path} holds a {type(est).__name__}, which has no predict()")
        self._has_proba = hasattr(est, "predict_proba")
        self._outlier = not self._has_proba and all(hasattr(est, m) for m in _OUTLIER_OUTPUTS)
        self._table = table_columns(est)
        names = getattr(est, "feature_names_in_", None)
        self._columns = tuple(str(c) for c in names) if names is not None and self._table is None else ()
        inputs = self._input_specs(in_dtype)
        try:
            label = np.asarray(est.predict(self._frame(sample_rows(inputs, self._categories(), 1))))
        except Exception as e:
            raise ModelError(
                f"{self.path.name}: predict() fails on a row built from the model's inputs "
                f"({', '.join(f'{s.name} {s.datatype}' for s in inputs)}): {type(e).__name__}: {e}"
            ) from e
        self._label_dtype = label.dtype
        outputs = [TensorSpec("predict", datatype_of(label), (-1,))]
        if self._has_proba:
            n_classes = len(getattr(est, "classes_", [])) or -1
            outputs.append(TensorSpec("predict_proba", "FP32", (-1, n_classes)))
        if self._outlier:
            outputs += [TensorSpec(m, "FP64", (-1,)) for m in _OUTLIER_OUTPUTS]
        return ModelInfo(
            platform="sklearn",
            inputs=inputs,
            outputs=outputs,
            columns=self._columns,
            cast_numeric=True,
            extra={"estimator": type(est).__name__},
        )

    def _input_specs(self, in_dtype: str) -> list[TensorSpec]:
        if self._table is not None:
            return [TensorSpec(c, dt, (-1,)) for c, dt in self._table]
        n_features = int(getattr(self._est, "n_features_in_", -1))
        return [TensorSpec("input-0", in_dtype, (-1, n_features))]

    def _categories(self) -> dict[str, list[str]]:
        """String categories per BYTES column, from the encoders inside the estimator (probe rows draw from them)."""
        out: dict[str, list[str]] = {}
        for node, cols in _walk(self._est):
            selected = _names(cols)
            if selected is None:
                continue
            for inner, _ in _walk(node):
                cats = getattr(inner, "categories_", None)
                if type(inner).__name__ in _ENCODERS and cats is not None and len(cats) == len(selected):
                    for c, cat in zip(selected, cats, strict=True):
                        values = [str(v) for v in np.asarray(cat).tolist() if isinstance(v, str)]
                        if values:
                            out.setdefault(c, values)
        return out

    def _paths(self, digest: str) -> tuple[Path, Path]:
        base = cache_dir() / "sklearn-onnx" / f"{digest}-v{_FORMAT}"
        return base.with_suffix(".onnx"), base.with_suffix(".json")

    def _load_cached(self, digest: str, in_dtype: str) -> ModelInfo | None:
        graph, meta_path = self._paths(digest)
        try:
            meta = orjson.loads(meta_path.read_bytes())
            blob = graph.read_bytes()
        except (OSError, orjson.JSONDecodeError):
            return None
        if meta.get("input_datatype") != in_dtype:
            return None
        try:
            self._start_session(blob, meta)
        except Exception as e:  # a damaged or foreign cache entry: convert again
            log.warning("model %s: ignoring cached ONNX graph %s: %s", self.name, graph, e)
            return None
        return self._compiled_info(meta, cached=True)

    def _start_session(self, blob: bytes, meta: Mapping[str, Any]) -> None:
        from kubeinfer.runtimes.onnx import intra_op_threads, session

        self._sess = session(blob, intra_op_threads(self.args))
        self._onnx_inputs = [i.name for i in self._sess.get_inputs()]
        self._has_proba = bool(meta["has_proba"])
        self._label_dtype = np.dtype(str(meta["label_dtype"]))
        table = meta.get("table")
        self._table = [(str(c), str(dt)) for c, dt in table] if table else None
        self._columns = tuple(str(c) for c in meta.get("columns") or ())

    def _compiled_info(self, meta: Mapping[str, Any], cached: bool) -> ModelInfo:
        log.info(
            "model %s: %s compiled to ONNX (%s; largest difference on probe rows %.2g)",
            self.name,
            meta["estimator"],
            "cached graph" if cached else "converted and verified now",
            meta["max_error"],
        )
        return ModelInfo(
            platform="sklearn",
            inputs=[_spec(d) for d in meta["inputs"]],
            outputs=[_spec(d) for d in meta["outputs"]],
            columns=self._columns,
            cast_numeric=True,
            extra={
                "estimator": meta["estimator"],
                "compiled": "onnx",
                "max_error": meta["max_error"],
                "cache": "hit" if cached else "written",
            },
        )

    def _initial_types(self, info: ModelInfo, in_dtype: str) -> list[tuple[str, Any]]:
        from skl2onnx.common.data_types import FloatTensorType, StringTensorType

        if self._table is not None:
            return [
                (c, StringTensorType([None, 1]) if dt == "BYTES" else FloatTensorType([None, 1]))
                for c, dt in self._table
            ]
        if in_dtype != "FP32":
            raise CannotCompile(f"input datatype {in_dtype} (only FP32 is compiled)")
        n_features = info.inputs[0].shape[1]
        if n_features < 1:
            raise CannotCompile("the estimator does not say how many features it takes (n_features_in_)")
        return [("X", FloatTensorType([None, n_features]))]

    def _compile(self, info: ModelInfo, digest: str, in_dtype: str) -> ModelInfo:
        est = self._est
        if self._outlier:
            raise CannotCompile("an outlier detector's decision_function and score_samples are not in the graph")
        classes = getattr(est, "classes_", None)
        if self._has_proba and (classes is None or np.asarray(classes).dtype.kind not in "iub"):
            raise CannotCompile("class labels are not integers")
        try:
            from skl2onnx import to_onnx

            initial = self._initial_types(info, in_dtype)
        except ImportError:
            raise CannotCompile("skl2onnx is not installed") from None
        try:
            options = {id(est): {"zipmap": False}} if self._has_proba else None
            target = _register_boosting(est)
            with _tree_fixes():
                onx = to_onnx(est, initial_types=initial, options=options, target_opset=target)
            blob = onx.SerializeToString()
        except Exception as e:
            raise CannotCompile(f"skl2onnx: {type(e).__name__}: {short_error(e)}") from None
        meta: dict[str, Any] = {
            "estimator": type(est).__name__,
            "has_proba": self._has_proba,
            "label_dtype": self._label_dtype.str,  # what predict() returned on the load probe
            "input_datatype": in_dtype,
            "table": self._table,
            "columns": list(self._columns),
            "inputs": [_spec_json(s) for s in info.inputs],
            "outputs": [_spec_json(s) for s in info.outputs],
        }
        try:
            self._start_session(blob, meta)
        except Exception as e:
            raise CannotCompile(f"ONNX Runtime cannot run the converted graph: {short_error(e)}") from None
        try:
            meta["max_error"] = self._verify(info)
        except Exception as e:
            self._sess = None
            if isinstance(e, CannotCompile):
                raise
            raise CannotCompile(f"checking the converted graph failed: {type(e).__name__}: {short_error(e)}") from None
        self._write_cache(digest, blob, meta)
        return self._compiled_info(meta, cached=False)

    def _probes(self, info: ModelInfo) -> list[dict[str, np.ndarray[Any, Any]]]:
        """Probe batches: zeros, and random rows at three scales (around each scaler's mean and spread where the
        estimator has one, so a column like income is probed where its values live); categories drawn from the
        encoders, plus an unseen one where the encoder ignores unknowns."""
        rng = np.random.default_rng(0)
        cats = self._categories()
        centre, spread = self._numeric_ranges()
        probes = [sample_rows(info.inputs, cats, 4, rng, scale=0.0)]
        if self._table is None:
            probes += self._threshold_probes(info, rng)
        for scale in (0.1, 1.0, 10.0):
            probes.append(
                sample_rows(
                    info.inputs, cats, 256, rng, scale=scale, unseen=self._unknowns_ok(), centre=centre, spread=spread
                )
            )
        return probes

    def _threshold_probes(self, info: ModelInfo, rng: np.random.Generator) -> list[dict[str, np.ndarray[Any, Any]]]:
        """Rows with one feature set at a split threshold (as float32, and one float32 step either side), at most
        ``MAX_THRESHOLD_PROBES`` splits sampled, the other features random."""
        splits = tree_thresholds(self._est)
        n_features = info.inputs[0].shape[1]
        if not splits or n_features < 1:
            return []
        if len(splits) > MAX_THRESHOLD_PROBES:
            splits = [splits[int(i)] for i in rng.choice(len(splits), MAX_THRESHOLD_PROBES, replace=False)]
        feature = np.array([f for f, _ in splits], dtype=np.int64)
        at = np.array([t for _, t in splits], dtype=np.float32)
        out = []
        for value in (at, np.nextafter(at, np.float32(np.inf)), np.nextafter(at, np.float32(-np.inf))):
            rows = rng.normal(0.0, 1.0, (len(splits), n_features)).astype(np.float32)
            rows[np.arange(len(splits)), feature] = value
            for start in range(0, len(rows), 1024):
                out.append({"input-0": rows[start : start + 1024]})
        return out

    def _unknowns_ok(self) -> bool:
        """Whether every encoder inside takes a category it never saw (``handle_unknown`` other than 'error')."""
        modes = [getattr(n, "handle_unknown", "error") for n, _ in _walk(self._est) if type(n).__name__ in _ENCODERS]
        return bool(modes) and all(m != "error" for m in modes)

    def _numeric_ranges(self) -> tuple[dict[str, float], dict[str, float]]:
        centre: dict[str, float] = {}
        spread: dict[str, float] = {}
        for node, cols in _walk(self._est):
            selected = _names(cols)
            if selected is None:
                continue
            for inner, _ in _walk(node):
                mean, scale = getattr(inner, "mean_", None), getattr(inner, "scale_", None)
                if type(inner).__name__ == "StandardScaler" and mean is not None and len(mean) == len(selected):
                    for c, m, sd in zip(selected, mean, scale if scale is not None else [1.0] * len(mean), strict=True):
                        centre.setdefault(c, float(m))
                        spread.setdefault(c, float(sd) or 1.0)
        return centre, spread

    def _verify(self, info: ModelInfo) -> float:
        """Largest difference between the graph and the estimator on probe rows; raises if above tolerance."""
        worst = 0.0
        for batch in self._probes(info):
            frame = self._frame(batch)
            got = self._predict_onnx(batch, None)
            if self._has_proba:
                want = np.asarray(self._est.predict_proba(frame), dtype=np.float64)
                worst = max(worst, float(np.abs(got["predict_proba"] - want).max()))
                top2 = np.sort(want, axis=1)[:, -2:]
                clear = (top2[:, 1] - top2[:, 0]) > TOLERANCE
                labels = np.asarray(self._est.predict(frame))
                if not np.array_equal(got["predict"][clear], labels[clear]):
                    raise CannotCompile("converted graph predicts other labels than the estimator")
            else:
                want = np.asarray(self._est.predict(frame), dtype=np.float64)
                err = np.abs(got["predict"].astype(np.float64) - want) / np.maximum(1.0, np.abs(want))
                worst = max(worst, float(err.max()))
            if not worst <= TOLERANCE:
                raise CannotCompile(f"converted graph differs from the estimator by {worst:.3g} (> {TOLERANCE})")
        return worst

    def _write_cache(self, digest: str, blob: bytes, meta: Mapping[str, Any]) -> None:
        graph, meta_path = self._paths(digest)
        try:
            graph.parent.mkdir(parents=True, exist_ok=True)
            for path, data in ((graph, blob), (meta_path, orjson.dumps(meta))):  # metadata last: it marks complete
                tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
                tmp.write_bytes(data)
                tmp.replace(path)
        except OSError as e:
            log.info("model %s: compiled graph not cached (%s); it is converted again at the next start", self.name, e)

    # -- serving ---------------------------------------------------------------------------------------
    def _frame(self, inputs: Mapping[str, np.ndarray[Any, Any]]) -> Any:
        """What the estimator is called with: input-0 as it is, or a DataFrame of the named columns."""
        if self._table is None:
            return inputs["input-0"]
        import pandas as pd

        data: dict[str, Any] = {}
        for c, dt in self._table:
            col = inputs[c].reshape(-1)
            data[c] = (
                [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in col] if dt == "BYTES" else col
            )
        return pd.DataFrame(data, columns=[c for c, _ in self._table])

    def _feed(self, inputs: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        if self._table is None:
            x = inputs["input-0"]
            return {self._onnx_inputs[0]: x if x.dtype == np.float32 else x.astype(np.float32)}
        feed: dict[str, np.ndarray[Any, Any]] = {}
        for c, dt in self._table:
            col = inputs[c].reshape(-1, 1)
            if dt == "BYTES":
                feed[c] = np.array(
                    [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in col[:, 0]]
                )[:, None]
            else:
                feed[c] = col if col.dtype == np.float32 else col.astype(np.float32)
        return feed

    def _predict_onnx(
        self, inputs: Mapping[str, np.ndarray[Any, Any]], want: frozenset[str] | None
    ) -> dict[str, np.ndarray[Any, Any]]:
        feed = self._feed(inputs)
        rows = len(next(iter(feed.values())))
        if self._has_proba:
            label, proba = self._sess.run(None, feed)
            out = {"predict": np.asarray(label).astype(self._label_dtype, copy=False)}
            out["predict_proba"] = np.asarray(proba, dtype=np.float32)
        else:
            (value,) = self._sess.run(None, feed)
            value = np.asarray(value).reshape(rows, -1)
            if value.shape[1] == 1:
                value = value[:, 0]
            out = {"predict": value.astype(self._label_dtype, copy=False)}
        return out if want is None else {k: v for k, v in out.items() if k in want}

    def predict(
        self, inputs: Mapping[str, np.ndarray[Any, Any]], outputs: frozenset[str] | None = None
    ) -> dict[str, np.ndarray[Any, Any]]:
        if self._sess is not None:
            return self._predict_onnx(inputs, outputs)
        x = self._frame(inputs)
        est = self._est
        out: dict[str, np.ndarray[Any, Any]] = {}
        want = outputs or frozenset(("predict", "predict_proba", *_OUTLIER_OUTPUTS))
        # predict() is called even where predict_proba is too: the argmax of the probabilities is not what every
        # classifier predicts (SVC(probability=True) decides by its decision function, and float32 rounding makes ties).
        if "predict" in want:
            out["predict"] = np.asarray(est.predict(x))
        if self._has_proba and "predict_proba" in want:
            out["predict_proba"] = np.asarray(est.predict_proba(x), dtype=np.float32)
        if self._outlier:
            for m in _OUTLIER_OUTPUTS:
                if m in want:
                    out[m] = np.asarray(getattr(est, m)(x), dtype=np.float64)
        return out


def sample_rows(
    specs: Sequence[TensorSpec],
    categories: Mapping[str, Sequence[str]],
    rows: int,
    rng: np.random.Generator | None = None,
    *,
    scale: float = 0.0,
    unseen: bool = False,
    centre: Mapping[str, float] | None = None,
    spread: Mapping[str, float] | None = None,
) -> dict[str, np.ndarray[Any, Any]]:
    """Rows for the given inputs: numeric values ``centre + spread * N(0, scale)`` (zeros at scale 0; centre 0 and
    spread 1 unless given per column), strings drawn from ``categories`` (plus a value no encoder has seen, with
    ``unseen`` and ``scale > 0``)."""
    rng = rng or np.random.default_rng(0)
    centre, spread = centre or {}, spread or {}
    out: dict[str, np.ndarray[Any, Any]] = {}
    for s in specs:
        shape = tuple(rows if i == 0 else max(d, 1) for i, d in enumerate(s.shape)) or (rows,)
        if s.datatype == "BYTES":
            pool = list(categories.get(s.name, ())) or ["a"]
            if scale > 0 and unseen:
                pool = [*pool, "~unseen~"]
            out[s.name] = np.array([pool[int(i)].encode() for i in rng.integers(0, len(pool), rows)], dtype=object)
        else:
            values = centre.get(s.name, 0.0) + spread.get(s.name, 1.0) * rng.normal(0.0, scale, shape)
            out[s.name] = values.astype(dtype_of(s.datatype))
    return out
