"""scikit-learn models saved with joblib (or pickle): ``predict`` and, for classifiers, ``predict_proba``.

Input is one 2-D tensor ``input-0`` of shape ``[-1, n_features]``; its datatype is FP32 unless
``args.inputDatatype`` says otherwise. Outputs: ``predict`` (labels or values) and ``predict_proba`` where the
estimator has it. A request may ask for only some outputs; the others are then not computed.

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
converts. The log says which one runs, and with what measured error.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from kubeinfer.runtimes.base import ModelError, ModelInfo, TensorSpec, datatype_of

__all__ = ["COMPILE_MODES", "SklearnModel", "cache_dir"]

log = logging.getLogger("kubeinfer.runtimes")

COMPILE_MODES = ("auto", "onnx", "none")
TOLERANCE = 1e-4
_FORMAT = 1  # bump when the cached files change meaning


class CannotCompile(Exception):
    """The estimator is served by scikit-learn: why it was not converted."""


def cache_dir() -> Path:
    root = os.environ.get("KUBEINFER_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "kubeinfer"


def _spec_json(s: TensorSpec) -> dict[str, Any]:
    return {"name": s.name, "datatype": s.datatype, "shape": list(s.shape)}


def _spec(d: Mapping[str, Any]) -> TensorSpec:
    return TensorSpec(str(d["name"]), str(d["datatype"]), tuple(int(x) for x in d["shape"]))


class SklearnModel:
    def __init__(self, name: str, version: str, path: Path, args: Mapping[str, Any]) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.args = dict(args)
        self._est: Any = None
        self._has_proba = False
        self._sess: Any = None
        self._onnx_input = ""
        self._label_dtype: Any = None

    # -- loading ---------------------------------------------------------------------------------------
    def load(self) -> ModelInfo:
        mode = str(self.args.get("compile", "auto"))
        if mode not in COMPILE_MODES:
            raise ModelError(f"args.compile must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
        if not self.path.exists():
            raise ModelError(f"model file {self.path} does not exist")
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
            return info

    def _load_sklearn(self, in_dtype: str) -> ModelInfo:
        try:
            import joblib
        except ImportError as e:  # pragma: no cover - depends on extras
            raise ModelError("scikit-learn models need the [sklearn] extra: pip install 'kubeinfer[sklearn]'") from e
        try:
            self._est = joblib.load(self.path)
        except Exception as e:
            raise ModelError(f"cannot load {self.path} as a joblib/pickle file: {e}") from e
        if not hasattr(self._est, "predict"):
            raise ModelError(f"{self.path} holds a {type(self._est).__name__}, which has no predict()")
        n_features = int(getattr(self._est, "n_features_in_", -1))
        self._has_proba = hasattr(self._est, "predict_proba")
        probe = np.zeros((1, max(n_features, 1)), dtype=np.float64)
        label = np.asarray(self._est.predict(probe))
        self._label_dtype = label.dtype
        outputs = [TensorSpec("predict", datatype_of(label), (-1,))]
        if self._has_proba:
            n_classes = len(getattr(self._est, "classes_", [])) or -1
            outputs.append(TensorSpec("predict_proba", "FP32", (-1, n_classes)))
        return ModelInfo(
            platform="sklearn",
            inputs=[TensorSpec("input-0", in_dtype, (-1, n_features))],
            outputs=outputs,
            extra={"estimator": type(self._est).__name__},
        )

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
        self._onnx_input = self._sess.get_inputs()[0].name
        self._has_proba = bool(meta["has_proba"])
        self._label_dtype = np.dtype(str(meta["label_dtype"]))

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
            extra={
                "estimator": meta["estimator"],
                "compiled": "onnx",
                "max_error": meta["max_error"],
                "cache": "hit" if cached else "written",
            },
        )

    def _compile(self, info: ModelInfo, digest: str, in_dtype: str) -> ModelInfo:
        if in_dtype != "FP32":
            raise CannotCompile(f"input datatype {in_dtype} (only FP32 is compiled)")
        est = self._est
        n_features = info.inputs[0].shape[1]
        if n_features < 1:
            raise CannotCompile("the estimator does not say how many features it takes (n_features_in_)")
        classes = getattr(est, "classes_", None)
        if self._has_proba and (classes is None or np.asarray(classes).dtype.kind not in "iub"):
            raise CannotCompile("class labels are not integers")
        try:
            from skl2onnx import to_onnx
            from skl2onnx.common.data_types import FloatTensorType
        except ImportError:
            raise CannotCompile("skl2onnx is not installed") from None
        try:
            options = {id(est): {"zipmap": False}} if self._has_proba else None
            onx = to_onnx(est, initial_types=[("X", FloatTensorType([None, n_features]))], options=options)
            blob = onx.SerializeToString()
        except Exception as e:
            raise CannotCompile(f"skl2onnx: {type(e).__name__}: {e}") from None
        meta: dict[str, Any] = {
            "estimator": type(est).__name__,
            "has_proba": self._has_proba,
            "label_dtype": self._label_dtype.str,  # what predict() returned on the load probe
            "input_datatype": in_dtype,
            "inputs": [_spec_json(s) for s in info.inputs],
            "outputs": [_spec_json(s) for s in info.outputs],
        }
        try:
            self._start_session(blob, meta)
        except Exception as e:
            raise CannotCompile(f"ONNX Runtime cannot run the converted graph: {e}") from None
        try:
            meta["max_error"] = self._verify(n_features)
        except Exception as e:
            self._sess = None
            if isinstance(e, CannotCompile):
                raise
            raise CannotCompile(f"checking the converted graph failed: {type(e).__name__}: {e}") from None
        self._write_cache(digest, blob, meta)
        return self._compiled_info(meta, cached=False)

    def _verify(self, n_features: int) -> float:
        """Largest difference between the graph and the estimator on probe rows; raises if above tolerance."""
        rng = np.random.default_rng(0)
        probes = [np.zeros((4, n_features))] + [rng.normal(0, s, (256, n_features)) for s in (0.1, 1.0, 10.0)]
        worst = 0.0
        for x64 in probes:
            x = x64.astype(np.float32)
            got = self._predict_onnx(x, None)
            if self._has_proba:
                want = np.asarray(self._est.predict_proba(x), dtype=np.float64)
                worst = max(worst, float(np.abs(got["predict_proba"] - want).max()))
                top2 = np.sort(want, axis=1)[:, -2:]
                clear = (top2[:, 1] - top2[:, 0]) > TOLERANCE
                labels = np.asarray(self._est.predict(x))
                if not np.array_equal(got["predict"][clear], labels[clear]):
                    raise CannotCompile("converted graph predicts other labels than the estimator")
            else:
                want = np.asarray(self._est.predict(x), dtype=np.float64)
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
    def _predict_onnx(self, x: np.ndarray[Any, Any], want: frozenset[str] | None) -> dict[str, np.ndarray[Any, Any]]:
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        if self._has_proba:
            label, proba = self._sess.run(None, {self._onnx_input: x})
            out = {"predict": np.asarray(label).astype(self._label_dtype, copy=False)}
            out["predict_proba"] = np.asarray(proba, dtype=np.float32)
        else:
            (value,) = self._sess.run(None, {self._onnx_input: x})
            value = np.asarray(value).reshape(len(x), -1)
            if value.shape[1] == 1:
                value = value[:, 0]
            out = {"predict": value.astype(self._label_dtype, copy=False)}
        return out if want is None else {k: v for k, v in out.items() if k in want}

    def predict(
        self, inputs: Mapping[str, np.ndarray[Any, Any]], outputs: frozenset[str] | None = None
    ) -> dict[str, np.ndarray[Any, Any]]:
        x = inputs["input-0"]
        if self._sess is not None:
            return self._predict_onnx(x, outputs)
        out: dict[str, np.ndarray[Any, Any]] = {}
        want = outputs or frozenset(("predict", "predict_proba"))
        if self._has_proba and "predict_proba" in want:
            proba = np.asarray(self._est.predict_proba(x), dtype=np.float32)
            out["predict_proba"] = proba
            if "predict" in want:
                # argmax of the probabilities is what predict() computes for classifiers; one pass, not two.
                out["predict"] = np.asarray(self._est.classes_)[proba.argmax(axis=1)]
        elif "predict" in want:
            out["predict"] = np.asarray(self._est.predict(x))
        return out
