"""XGBoost and LightGBM boosters in their native formats (``format: xgboost`` | ``format: lightgbm``).

Why a runtime of its own. Gradient-boosted trees are the most common tabular model, and their users save the
booster itself (``Booster.save_model``: XGBoost ``.json``/``.ubj``/legacy binary, LightGBM's text model), not a
pickle of a scikit-learn wrapper. The booster knows its objective, so the service can say what it answers.

Input ``input-0``: FP32 ``[-1, n_features]`` (a numeric input of another datatype is cast; NaN is a missing value, as
the libraries read it). The feature names saved in the booster name its columns, so a request may also send one input
per column. Outputs, in this order: ``predict`` -- the class (INT64: the most probable one; for a binary objective,
probability > 0.5) or, for a regression objective, the value (FP32) -- and for classifiers ``predict_proba`` (FP32
``[-1, n_classes]``; binary models answer two columns, ``[1 - p, p]``). Objectives served: XGBoost ``binary:logistic``,
``binary:logitraw`` (probability = sigmoid of the margin), ``multi:softprob``, ``multi:softmax`` (softmax of the
margins), ``reg:*``, ``count:poisson``, ``survival:*``; LightGBM ``binary``, ``multiclass``, ``multiclassova``, and its
regression objectives. Ranking, hinge, custom and multi-output boosters are refused at load, naming the objective. An
XGBoost booster saved with a best iteration (early stopping) answers with the trees up to it, as
``XGBModel.predict`` does (LightGBM saves only those trees already).

**Compiled to ONNX where exact, served by whichever is faster** (``args.compile``: ``auto``, the default; ``onnx``;
``none``). The booster is converted with ``onnxmltools`` and run by ONNX Runtime only if the graph reproduces the
booster on probe rows -- zeros, random rows at three scales, rows with missing values, and rows with one feature set
exactly at a split threshold (and one float32 step either side) over a background drawn from the thresholds, so the
features sit where the trees split them: probabilities within 1e-4, values within 1e-4 relative, labels identical
except where the two best classes lie within 1e-4. LightGBM splits on ``x <= threshold`` in float64 while the graph
compares float32, and onnxmltools rounds each threshold to the *nearest* float32: a feature equal to a threshold
rounded up took the other branch (every model tested failed at its thresholds). The conversion here writes the
largest float32 not above each threshold instead, which agrees for every float32 input (see ``_lightgbm_fixes``),
and reads inputs within +-1e-35 as 0, as LightGBM does (``_zero_tiny_inputs``). (onnxmltools 1.16 builds other
answers for XGBoost ``binary:logitraw`` and ``multi:softmax`` and LightGBM ``multiclassova``: the verification refuses
those graphs, and the library serves them.) Then, in ``auto``, both are timed on a 1-row and a 64-row batch (median of a few runs, at the replica's thread
count): ONNX Runtime serves only when it is faster at both, since the answers are the same either way. The verified
graph is cached under ``$KUBEINFER_CACHE_DIR/boosting-onnx`` by the model file's SHA-256 with the timings per thread
count, so a later start with the same thread count skips conversion, verification and timing, and, when ONNX
serves, never imports XGBoost or LightGBM. The log and ``ModelInfo.extra`` say which path serves and why
(``served_by``, ``compiled`` or ``not_compiled``, ``timing_us``); ``onnx`` serves the graph without timing and makes
a failure to compile an error; ``none`` never converts.

Threads: ``args.intraOpThreads``, else ``OMP_NUM_THREADS`` (the CPU the replica is given), sets XGBoost's
``nthread``, LightGBM's ``num_threads`` and ONNX Runtime's intra-op pool alike (``runtimes/onnx.py``).
"""

from __future__ import annotations

import abc
import contextlib
import functools
import hashlib
import json
import logging
import os
import statistics
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson

from kubeinfer.runtimes.base import ModelError, ModelInfo, TensorSpec
from kubeinfer.runtimes.compiled import (
    COMPILE_MODES,
    F32_MAX,
    CannotCompile,
    cache_dir,
    compile_mode,
    f32_at_most,
    model_file,
    short_error,
)
from kubeinfer.runtimes.onnx import intra_op_threads, session

__all__ = ["COMPILE_MODES", "LIBRARIES", "BoostingModel", "Task"]

log = logging.getLogger("kubeinfer.runtimes")

Library = Literal["xgboost", "lightgbm"]
LIBRARIES: tuple[Library, ...] = ("xgboost", "lightgbm")
ARGS = frozenset({"compile", "intraOpThreads"})
TOLERANCE = 1e-4
MAX_THRESHOLD_PROBES = 4096
TIMING_ROWS = (1, 64)
_TIMING_BUDGET_S = 0.05  # per measurement; four measurements
# Before timing a path: the other runtime's idle threads spin a few ms after their last call (OpenMP, ONNX Runtime).
_SETTLE_S = 0.02
_FORMAT = 1  # bump when the cached files change meaning
_INSTALL = "pip install 'kubeinfer[boosting]'"
_LGB_ZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold (a float32 constant)

_XGB_REGRESSION = ("reg:", "count:poisson", "survival:")
_XGB_SUPPORTED = "binary:logistic, binary:logitraw, multi:softprob, multi:softmax, reg:*, count:poisson, survival:*"
_LGB_REGRESSION = frozenset(
    {"regression", "regression_l1", "huber", "fair", "poisson", "quantile", "mape", "gamma", "tweedie"}
)
_LGB_SUPPORTED = "binary, multiclass, multiclassova, " + ", ".join(sorted(_LGB_REGRESSION))


@dataclass(frozen=True, slots=True)
class Task:
    """What a booster answers. ``link`` is how the native library's prediction becomes ``predict_proba`` or the
    value: ``value`` (it is already), ``sigmoid`` / ``softmax`` (of the margins)."""

    objective: str
    kind: Literal["binary", "multiclass", "regression"]
    n_classes: int = 0
    link: Literal["value", "sigmoid", "softmax"] = "value"

    @property
    def classifier(self) -> bool:
        return self.kind != "regression"


def xgboost_task(config: Mapping[str, Any]) -> Task:
    """The task of an XGBoost booster from ``json.loads(booster.save_config())``."""
    learner = config.get("learner", {})
    name = str(learner.get("objective", {}).get("name", "")) or "(none)"
    params = learner.get("learner_model_param", {})
    n_classes = int(params.get("num_class", 0) or 0)
    targets = int(params.get("num_target", 1) or 1)
    if targets > 1:
        raise ModelError(f"XGBoost booster has {targets} targets (multi-output {name}): only one target is served")
    if name in ("binary:logistic", "binary:logitraw"):
        return Task(name, "binary", 2, "value" if name == "binary:logistic" else "sigmoid")
    if name in ("multi:softprob", "multi:softmax") and n_classes >= 2:
        return Task(name, "multiclass", n_classes, "value" if name == "multi:softprob" else "softmax")
    if name.startswith(_XGB_REGRESSION):
        return Task(name, "regression")
    raise ModelError(f"XGBoost objective {name!r} is not served; format xgboost serves {_XGB_SUPPORTED}")


def lightgbm_task(objective: str, n_classes: int) -> Task:
    """The task of a LightGBM booster from its dumped ``objective`` (``'multiclass num_class:4'``, ``'binary
    sigmoid:1'``) and number of classes."""
    name = objective.split(" ", 1)[0] if objective else "(none: custom objective)"
    if name == "binary":
        return Task(objective, "binary", 2)
    if name in ("multiclass", "multiclassova") and n_classes >= 2:
        return Task(objective, "multiclass", n_classes)
    if name in _LGB_REGRESSION:
        return Task(objective, "regression")
    raise ModelError(f"LightGBM objective {name!r} is not served; format lightgbm serves {_LGB_SUPPORTED}")


def _lightgbm_nodes(tree: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every split node of one dumped LightGBM tree (iteratively: trees can be deeper than Python's recursion)."""
    stack = [tree.get("tree_structure", tree)]
    while stack:
        node = stack.pop()
        if "split_feature" in node:
            yield node
            stack += (node["left_child"], node["right_child"])


@contextlib.contextmanager
def _lightgbm_fixes() -> Iterator[None]:
    """While converting: hand onnxmltools a dump whose ``<=`` thresholds are already float32 numbers, the largest
    float32 not above LightGBM's float64 threshold, so its rounding to float32 is exact (module docstring)."""
    from onnxmltools.convert.lightgbm.operator_converters import LightGbm

    original = LightGbm.dump_booster_model

    def dump(*args: Any, **kwargs: Any) -> Any:
        text, info = original(*args, **kwargs)
        for tree in text.get("tree_info", ()):
            for node in _lightgbm_nodes(tree):
                if node.get("decision_type") == "<=":
                    node["threshold"] = f32_at_most(float(node["threshold"]))
        return text, info

    LightGbm.dump_booster_model = dump
    try:
        yield
    finally:
        LightGbm.dump_booster_model = original


def _softmax(m: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    z = np.exp(m - m.max(axis=1, keepdims=True))
    return np.asarray(z / z.sum(axis=1, keepdims=True))


def _median_us(fn: Callable[[np.ndarray[Any, Any]], Any], x: np.ndarray[Any, Any], reps: int = 7) -> float:
    """Median wall time of ``fn(x)`` in microseconds, after one warm-up call; at least 3 runs, fewer than ``reps``
    when they take longer than the budget."""
    fn(x)
    times: list[float] = []
    deadline = time.perf_counter() + _TIMING_BUDGET_S
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
        if len(times) >= 3 and time.perf_counter() > deadline:
            break
    return statistics.median(times) * 1e6


# -- the two libraries, behind one small interface -------------------------------------------------------------
class _Native(abc.ABC):
    """A loaded booster of one library: its task, features, thresholds, native predictions and ONNX conversion."""

    library: Library
    task: Task
    n_features: int
    feature_names: tuple[str, ...]

    @abc.abstractmethod
    def raw(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """The library's own prediction: probabilities (``[n]`` of the positive class for binary), or values."""

    @abc.abstractmethod
    def thresholds(self) -> list[tuple[int, float]]:
        """Every split as (feature index, threshold), for the verification's probe rows."""

    @abc.abstractmethod
    def convert(self) -> bytes:
        """The booster converted to an ONNX graph (serialized), with the library's own fixes applied."""


class _XGBoost(_Native):
    library: Library = "xgboost"

    def __init__(self, path: Path, threads: int | None) -> None:
        try:
            import xgboost
        except ImportError as e:
            raise ModelError(f"format xgboost needs the [boosting] extra: {_INSTALL}") from e
        try:
            booster = xgboost.Booster(model_file=str(path))
        except Exception as e:
            raise ModelError(f"cannot load {path} as an XGBoost model: {type(e).__name__}: {short_error(e)}") from e
        self.task = xgboost_task(json.loads(booster.save_config()))
        best = booster.attr("best_iteration")
        if best is not None and int(best) + 1 < booster.num_boosted_rounds():
            # What XGBModel.predict answers for an early-stopped model; slicing keeps the graph and the booster equal.
            log.info("XGBoost booster %s: serving its first %d rounds (best_iteration)", path.name, int(best) + 1)
            booster = booster[: int(best) + 1]
        if threads:
            booster.set_param({"nthread": threads})
        self.booster = booster
        self.n_features = int(booster.num_features())
        self.feature_names = tuple(booster.feature_names or ())

    def raw(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        if self.task.link == "value":
            return np.asarray(self.booster.inplace_predict(x, validate_features=False))
        margin = np.asarray(self.booster.inplace_predict(x, predict_type="margin", validate_features=False))
        margin = margin.astype(np.float64)
        return 1.0 / (1.0 + np.exp(-margin)) if self.task.link == "sigmoid" else _softmax(margin)

    def thresholds(self) -> list[tuple[int, float]]:
        model = json.loads(bytes(self.booster.save_raw("json")))["learner"]["gradient_booster"]
        trees = (model.get("model") or model.get("gbtree", {}).get("model") or {}).get("trees", ())
        out: list[tuple[int, float]] = []
        for t in trees:
            left = np.asarray(t["left_children"])
            split = left != -1
            if "split_type" in t and len(t["split_type"]) == len(left):
                split &= np.asarray(t["split_type"]) == 0  # numerical splits only
            feats = np.asarray(t["split_indices"])[split].tolist()
            conds = np.asarray(t["split_conditions"], dtype=np.float64)[split].tolist()
            out += zip(feats, conds, strict=True)
        return out

    def convert(self) -> bytes:
        import onnxmltools
        from onnxmltools.convert.common.data_types import FloatTensorType

        onx = onnxmltools.convert_xgboost(
            self.booster, initial_types=[("input", FloatTensorType([None, self.n_features]))]
        )
        return bytes(onx.SerializeToString())


class _LightGBM(_Native):
    library: Library = "lightgbm"

    def __init__(self, path: Path, threads: int | None) -> None:
        try:
            import lightgbm
        except ImportError as e:
            raise ModelError(f"format lightgbm needs the [boosting] extra: {_INSTALL}") from e
        try:
            booster = lightgbm.Booster(model_file=str(path))
        except Exception as e:
            raise ModelError(f"cannot load {path} as a LightGBM model: {type(e).__name__}: {short_error(e)}") from e
        head = booster.dump_model(num_iteration=1)
        self.task = lightgbm_task(str(head.get("objective", "")), int(head.get("num_class", 1)))
        self.booster = booster
        self._kwargs: dict[str, Any] = {"num_threads": threads} if threads else {}
        self.n_features = int(booster.num_feature())
        names = tuple(str(n) for n in booster.feature_name())
        # LightGBM names unnamed features Column_0, Column_1, ...: those name nothing.
        self.feature_names = () if names == tuple(f"Column_{i}" for i in range(len(names))) else names

    def raw(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return np.asarray(self.booster.predict(x, **self._kwargs))

    def thresholds(self) -> list[tuple[int, float]]:
        out: list[tuple[int, float]] = []
        for tree in self.booster.dump_model().get("tree_info", ()):
            for node in _lightgbm_nodes(tree):
                if node.get("decision_type") == "<=":
                    out.append((int(node["split_feature"]), float(node["threshold"])))
        return out

    def convert(self) -> bytes:
        import onnxmltools
        from onnxmltools.convert.common.data_types import FloatTensorType

        with _lightgbm_fixes():
            onx = onnxmltools.convert_lightgbm(
                self.booster, initial_types=[("input", FloatTensorType([None, self.n_features]))], zipmap=False
            )
        _zero_tiny_inputs(onx, "input")
        return bytes(onx.SerializeToString())


def _zero_tiny_inputs(model: Any, name: str) -> None:
    """Make the graph read an input within +-1e-35 as 0, as LightGBM does (``kZeroThreshold``: it drops such values
    from a dense row before walking the trees): ``x * (|x| > 1e-35)`` before everything else (NaN stays NaN, and
    -0.0 compares as 0). Without it a value between 0 and a split at -1e-35 -- a threshold LightGBM's binning puts
    beside zero on most features -- went the other way in the graph. Opset 7 operators: the regressor graphs are
    opset 8."""
    from onnx import TensorProto, helper

    graph = model.graph
    zeroed = name + "_zeroed"
    for node in graph.node:
        node.input[:] = [zeroed if i == name else i for i in node.input]
    graph.initializer.append(helper.make_tensor("kubeinfer_zero_threshold", TensorProto.FLOAT, [], [_LGB_ZERO]))
    prefix = [
        helper.make_node("Abs", [name], [name + "_abs"], name="kubeinfer_abs"),
        helper.make_node("Greater", [name + "_abs", "kubeinfer_zero_threshold"], [name + "_big"], name="kubeinfer_gt"),
        helper.make_node("Cast", [name + "_big"], [name + "_keep"], name="kubeinfer_cast", to=TensorProto.FLOAT),
        helper.make_node("Mul", [name, name + "_keep"], [zeroed], name="kubeinfer_mul"),
    ]
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(prefix + nodes)


class BoostingModel:
    """A booster served natively or through its verified ONNX graph, whichever is faster (module docstring)."""

    def __init__(self, name: str, version: str, path: Path, args: Mapping[str, Any], library: Library) -> None:
        if library not in LIBRARIES:
            raise ModelError(f"library must be one of {', '.join(LIBRARIES)}, got {library!r}")
        self.name = name
        self.version = version
        self.path = path
        self.args = dict(args)
        self.library: Library = library
        self._native: _Native | None = None
        self._sess: Any = None
        self._onnx_input = ""
        self._onnx_output = ""
        self._task = Task("", "regression")
        self._serve_onnx = False

    # -- loading -------------------------------------------------------------------------------------------
    def load(self) -> ModelInfo:
        unknown = sorted(set(self.args) - ARGS)
        if unknown:
            raise ModelError(
                f"unknown args for format {self.library}: {', '.join(unknown)} (allowed: {', '.join(sorted(ARGS))})"
            )
        mode = compile_mode(self.args)
        model_file(self.path, f"{self.library} model file")
        threads = intra_op_threads(self.args)
        if mode == "none":
            native = self._load_native(threads)
            return self._info(native.n_features, native.feature_names, {"served_by": self.library})
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        meta = self._load_cached(digest, threads)
        cached = meta is not None
        if meta is not None:
            timing = meta.get("timings", {}).get(_threads_key(threads))
            if mode == "onnx" or (timing is not None and timing["onnx_wins"]):
                return self._onnx_info(meta, cached=True, timing=timing if mode == "auto" else None)
        native = self._load_native(threads)
        if meta is None:
            try:
                meta = self._compile(native, digest, threads)
            except CannotCompile as e:
                if mode == "onnx":
                    raise ModelError(f"args.compile is 'onnx' but {self.path.name} cannot be compiled: {e}") from None
                log.info("model %s: served by %s (not compiled to ONNX: %s)", self.name, self.library, e)
                return self._info(
                    native.n_features, native.feature_names, {"served_by": self.library, "not_compiled": str(e)}
                )
        if mode == "onnx":
            return self._onnx_info(meta, cached=cached, timing=None)
        timing = meta.get("timings", {}).get(_threads_key(threads))
        if timing is None:
            timing = self._time(threads)
            meta.setdefault("timings", {})[_threads_key(threads)] = timing
            self._write_meta(digest, meta)
        if timing["onnx_wins"]:
            return self._onnx_info(meta, cached=cached, timing=timing)
        self._sess, self._serve_onnx = None, False
        why = f"ONNX Runtime is not faster at both batch sizes ({_describe(timing)})"
        log.info("model %s: served by %s, graph verified but %s", self.name, self.library, why)
        extra = {
            "served_by": self.library,
            "not_compiled": why,
            "max_error": meta["max_error"],
            "cache": _cache_state(meta, cached),
            "timing_us": _timing_us(timing),
        }
        return self._info(native.n_features, native.feature_names, extra)

    def _load_native(self, threads: int | None) -> _Native:
        native: _Native = (_XGBoost if self.library == "xgboost" else _LightGBM)(self.path, threads)
        self._native, self._task = native, native.task
        probe = native.raw(np.zeros((1, native.n_features), dtype=np.float32))
        if probe.shape != ((1, native.task.n_classes) if native.task.kind == "multiclass" else (1,)):
            raise ModelError(
                f"{self.path.name}: objective {native.task.objective!r} answers shape {list(probe.shape)[1:]} per row; "
                "only one value (or one probability per class) is served"
            )
        return native

    def _info(self, n_features: int, names: tuple[str, ...], extra: dict[str, Any]) -> ModelInfo:
        task = self._task
        outputs = [TensorSpec("predict", "INT64" if task.classifier else "FP32", (-1,))]
        if task.classifier:
            outputs.append(TensorSpec("predict_proba", "FP32", (-1, task.n_classes)))
        return ModelInfo(
            platform=self.library,
            inputs=[TensorSpec("input-0", "FP32", (-1, n_features))],
            outputs=outputs,
            columns=names if len(names) == n_features else (),
            cast_numeric=True,
            extra={"objective": task.objective, **extra},
        )

    # -- the compiled graph --------------------------------------------------------------------------------
    def _paths(self, digest: str) -> tuple[Path, Path]:
        base = cache_dir() / "boosting-onnx" / f"{digest}-v{_FORMAT}"
        return base.with_suffix(".onnx"), base.with_suffix(".json")

    def _load_cached(self, digest: str, threads: int | None) -> dict[str, Any] | None:
        graph, meta_path = self._paths(digest)
        try:
            meta = orjson.loads(meta_path.read_bytes())
            blob = graph.read_bytes()
        except (OSError, orjson.JSONDecodeError):
            return None
        if meta.get("library") != self.library:
            return None
        try:
            self._task = Task(**meta["task"])
            self._start_session(blob, threads)
        except Exception as e:  # a damaged or foreign cache entry: convert again
            log.warning("model %s: ignoring cached ONNX graph %s: %s", self.name, graph, e)
            self._sess = None
            return None
        return dict(meta)

    def _start_session(self, blob: bytes, threads: int | None) -> None:
        sess = session(blob, threads)
        floats = [o.name for o in sess.get_outputs() if o.type == "tensor(float)"]
        if len(sess.get_inputs()) != 1 or len(floats) != 1:
            raise CannotCompile(f"the converted graph has {len(sess.get_inputs())} inputs and float outputs {floats}")
        self._sess, self._onnx_input, self._onnx_output = sess, sess.get_inputs()[0].name, floats[0]

    def _compile(self, native: _Native, digest: str, threads: int | None) -> dict[str, Any]:
        try:
            import onnxmltools  # noqa: F401
        except ImportError:
            raise CannotCompile(f"onnxmltools is not installed ({_INSTALL})") from None
        try:
            with warnings.catch_warnings():
                # onnxmltools warns about opsets and deprecated onnx helpers; the graph is verified below either way.
                warnings.simplefilter("ignore")
                blob = native.convert()
        except Exception as e:
            raise CannotCompile(f"onnxmltools: {type(e).__name__}: {short_error(e)}") from None
        try:
            self._start_session(blob, threads)
        except CannotCompile:
            raise
        except Exception as e:
            raise CannotCompile(f"ONNX Runtime cannot run the converted graph: {short_error(e)}") from None
        try:
            max_error = self._verify(native)
        except Exception as e:
            self._sess = None
            if isinstance(e, CannotCompile):
                raise
            raise CannotCompile(f"checking the converted graph failed: {type(e).__name__}: {short_error(e)}") from None
        meta: dict[str, Any] = {
            "library": self.library,
            "task": {
                "objective": self._task.objective,
                "kind": self._task.kind,
                "n_classes": self._task.n_classes,
                "link": self._task.link,
            },
            "n_features": native.n_features,
            "feature_names": list(native.feature_names),
            "max_error": max_error,
            "timings": {},
        }
        graph, _ = self._paths(digest)
        try:
            graph.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(graph, blob)
        except OSError as e:
            log.info("model %s: compiled graph not cached (%s); it is converted again at the next start", self.name, e)
            meta["unwritable"] = True
            return meta
        self._write_meta(digest, meta)  # metadata last: it marks the entry complete
        return meta

    def _write_meta(self, digest: str, meta: Mapping[str, Any]) -> None:
        if meta.get("unwritable"):
            return
        _, meta_path = self._paths(digest)
        try:
            _atomic_write(meta_path, orjson.dumps(meta))
        except OSError as e:
            log.info("model %s: compiled graph metadata not cached (%s)", self.name, e)

    def _onnx_info(self, meta: Mapping[str, Any], cached: bool, timing: Mapping[str, Any] | None) -> ModelInfo:
        self._serve_onnx = True
        why = "args.compile is 'onnx'" if timing is None else f"faster than {self.library} ({_describe(timing)})"
        log.info(
            "model %s: %s %s compiled to ONNX (%s; largest difference on probe rows %.2g; %s)",
            self.name,
            self.library,
            self._task.objective,
            "cached graph" if cached else "converted and verified now",
            meta["max_error"],
            why,
        )
        extra: dict[str, Any] = {
            "served_by": "onnx",
            "compiled": "onnx",
            "max_error": meta["max_error"],
            "cache": _cache_state(meta, cached),
            "why": why,
        }
        if timing is not None:
            extra["timing_us"] = _timing_us(timing)
        names = tuple(str(n) for n in meta.get("feature_names") or ())
        return self._info(int(meta["n_features"]), names, extra)

    # -- verification and timing ---------------------------------------------------------------------------
    def _probes(self, native: _Native) -> list[np.ndarray[Any, Any]]:
        """Zeros; random rows at three scales; random rows with a fifth of the values missing (NaN); and rows with
        one feature at a split threshold (as float32 compares it, and one float32 step either side) over a
        background of other thresholds, at most ``MAX_THRESHOLD_PROBES`` splits sampled."""
        rng = np.random.default_rng(0)
        n = native.n_features
        probes = [np.zeros((4, n), dtype=np.float32)]
        probes += [rng.normal(0.0, scale, (256, n)).astype(np.float32) for scale in (0.1, 1.0, 10.0)]
        missing = rng.normal(0.0, 1.0, (256, n)).astype(np.float32)
        missing[rng.random(missing.shape) < 0.2] = np.nan
        probes.append(missing)
        splits = [(f, f32_at_most(t)) for f, t in native.thresholds() if 0 <= f < n and abs(t) <= F32_MAX]
        if not splits:
            return probes
        if len(splits) > MAX_THRESHOLD_PROBES:
            splits = [splits[int(i)] for i in rng.choice(len(splits), MAX_THRESHOLD_PROBES, replace=False)]
        feature = np.array([f for f, _ in splits], dtype=np.int64)
        at = np.array([t for _, t in splits], dtype=np.float32)
        # Background: each feature drawn from its own thresholds, so every feature sits where the trees split it.
        background = rng.normal(0.0, 1.0, (len(splits), n)).astype(np.float32)
        for f in np.unique(feature):
            pool = at[feature == f]
            background[:, f] = pool[rng.integers(0, len(pool), len(splits))]
        for value in (at, np.nextafter(at, np.float32(np.inf)), np.nextafter(at, np.float32(-np.inf))):
            rows = background.copy()
            rows[np.arange(len(splits)), feature] = value
            probes += [rows[i : i + 1024] for i in range(0, len(rows), 1024)]
        return probes

    def _verify(self, native: _Native) -> float:
        """Largest difference between the graph and the booster on probe rows; raises if above tolerance."""
        worst = 0.0
        for x in self._probes(native):
            got = self._predict_onnx(x, None)
            raw = native.raw(x)
            want = self._outputs(raw, None)
            if self._task.classifier:
                g, w = got["predict_proba"].astype(np.float64), want["predict_proba"].astype(np.float64)
                if not np.isfinite(g).all():
                    raise CannotCompile("converted graph answers non-finite probabilities")
                worst = max(worst, float(np.abs(g - w).max()))
                top2 = np.sort(w, axis=1)[:, -2:]
                clear = (top2[:, 1] - top2[:, 0]) > TOLERANCE
                if not np.array_equal(got["predict"][clear], want["predict"][clear]):
                    raise CannotCompile("converted graph predicts other classes than the booster")
            else:
                g, w = got["predict"].astype(np.float64), raw.astype(np.float64).reshape(-1)
                if not np.array_equal(np.isfinite(g), np.isfinite(w)):
                    raise CannotCompile("converted graph answers non-finite values where the booster does not")
                fin = np.isfinite(w)
                err = np.abs(g[fin] - w[fin]) / np.maximum(1.0, np.abs(w[fin]))
                worst = max(worst, float(err.max()) if err.size else 0.0)
            if not worst <= TOLERANCE:
                raise CannotCompile(f"converted graph differs from the booster by {worst:.3g} (> {TOLERANCE})")
        return worst

    def _time(self, threads: int | None) -> dict[str, Any]:
        """Median microseconds of both paths (all outputs) on a 1-row and a 64-row batch."""
        rng = np.random.default_rng(1)
        n = self._n_features()
        out: dict[str, Any] = {"threads": threads}
        batches = {rows: rng.normal(0.0, 1.0, (rows, n)).astype(np.float32) for rows in TIMING_ROWS}
        # One path at a time, as a replica runs only one: ONNX Runtime's spinning threads would slow OpenMP's.
        for path, fn in (("native", self._predict_native), ("onnx", self._predict_onnx)):
            time.sleep(_SETTLE_S)
            for rows, x in batches.items():
                out[f"{path}_{rows}"] = _median_us(functools.partial(fn, want=None), x)
        out["onnx_wins"] = all(out[f"onnx_{r}"] < out[f"native_{r}"] for r in TIMING_ROWS)
        return out

    def _n_features(self) -> int:
        if self._native is not None:
            return self._native.n_features
        return int(self._sess.get_inputs()[0].shape[1])

    # -- serving -------------------------------------------------------------------------------------------
    def _outputs(self, raw: np.ndarray[Any, Any], want: frozenset[str] | None) -> dict[str, np.ndarray[Any, Any]]:
        """``predict`` / ``predict_proba`` from probabilities (``[n]`` positive-class or ``[n, k]``) or values."""
        task = self._task
        if not task.classifier:
            return {"predict": raw.reshape(-1).astype(np.float32, copy=False)}
        if task.kind == "binary":
            # Native: p of the positive class; the graph: [1 - p, p] already.
            p = raw if raw.ndim == 1 else raw[:, 1]
            label = (p > 0.5).astype(np.int64)
            if want is not None and "predict_proba" not in want:
                return {"predict": label}
            if raw.ndim == 1:
                proba = np.empty((len(p), 2), dtype=np.float32)
                proba[:, 1] = p
                proba[:, 0] = 1.0 - proba[:, 1]
            else:
                proba = raw.astype(np.float32, copy=False)
        else:
            proba = raw.astype(np.float32, copy=False)
            label = proba.argmax(axis=1).astype(np.int64)
        if want is None:
            return {"predict": label, "predict_proba": proba}
        out: dict[str, np.ndarray[Any, Any]] = {}
        if "predict" in want:
            out["predict"] = label
        if "predict_proba" in want:
            out["predict_proba"] = proba
        return out

    def _predict_native(self, x: np.ndarray[Any, Any], want: frozenset[str] | None) -> dict[str, np.ndarray[Any, Any]]:
        assert self._native is not None
        return self._outputs(self._native.raw(x), want)

    def _predict_onnx(self, x: np.ndarray[Any, Any], want: frozenset[str] | None) -> dict[str, np.ndarray[Any, Any]]:
        (raw,) = self._sess.run([self._onnx_output], {self._onnx_input: x})
        return self._outputs(np.asarray(raw), want)

    def predict(
        self, inputs: Mapping[str, np.ndarray[Any, Any]], outputs: frozenset[str] | None = None
    ) -> dict[str, np.ndarray[Any, Any]]:
        x = inputs["input-0"]
        if x.dtype != np.float32 or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, dtype=np.float32)
        if self._serve_onnx:
            return self._predict_onnx(x, outputs)
        return self._predict_native(x, outputs)


def _cache_state(meta: Mapping[str, Any], cached: bool) -> str:
    return "hit" if cached else "not written" if meta.get("unwritable") else "written"


def _threads_key(threads: int | None) -> str:
    return str(threads) if threads else "default"


def _timing_us(t: Mapping[str, Any]) -> dict[str, float]:
    return {f"{p}_{r}": round(float(t[f"{p}_{r}"]), 1) for p in ("native", "onnx") for r in TIMING_ROWS}


def _describe(t: Mapping[str, Any]) -> str:
    return ", ".join(
        f"{r} row{'s' if r > 1 else ''}: ONNX {t[f'onnx_{r}']:.0f} us vs native {t[f'native_{r}']:.0f} us"
        for r in TIMING_ROWS
    )


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
