"""scikit-learn models saved with joblib (or pickle): ``predict`` and, for classifiers, ``predict_proba``.

Input is one 2-D tensor ``input-0`` of shape ``[-1, n_features]``; its datatype is FP32 unless
``args.inputDatatype`` says otherwise. Outputs: ``predict`` (labels or values) and ``predict_proba`` where the
estimator has it. A request may ask for only some outputs; the others are then not computed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kubeinfer.runtimes.base import ModelError, ModelInfo, TensorSpec, datatype_of

__all__ = ["SklearnModel"]


class SklearnModel:
    def __init__(self, name: str, version: str, path: Path, args: Mapping[str, Any]) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.args = dict(args)
        self._est: Any = None
        self._has_proba = False

    def load(self) -> ModelInfo:
        try:
            import joblib
        except ImportError as e:  # pragma: no cover - depends on extras
            raise ModelError("scikit-learn models need the [sklearn] extra: pip install 'kubeinfer[sklearn]'") from e
        if not self.path.exists():
            raise ModelError(f"model file {self.path} does not exist")
        try:
            self._est = joblib.load(self.path)
        except Exception as e:
            raise ModelError(f"cannot load {self.path} as a joblib/pickle file: {e}") from e
        if not hasattr(self._est, "predict"):
            raise ModelError(f"{self.path} holds a {type(self._est).__name__}, which has no predict()")
        n_features = int(getattr(self._est, "n_features_in_", -1))
        in_dtype = str(self.args.get("inputDatatype", "FP32"))
        self._has_proba = hasattr(self._est, "predict_proba")
        probe = np.zeros((1, max(n_features, 1)), dtype=np.float64)
        label = np.asarray(self._est.predict(probe))
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

    def predict(
        self, inputs: Mapping[str, np.ndarray[Any, Any]], outputs: frozenset[str] | None = None
    ) -> dict[str, np.ndarray[Any, Any]]:
        x = inputs["input-0"]
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
