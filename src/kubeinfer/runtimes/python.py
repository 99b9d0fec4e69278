"""A user's own Python class as a model: ``className: mymodule:MyModel``.

The class is constructed with keyword ``args`` from the spec and must provide
``predict(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]``. Optional: ``load()`` (called once before
the server reports ready), ``inputs`` / ``outputs`` (lists of ``{"name", "datatype", "shape"}`` or
``TensorSpec``) and ``batchable`` (default true). Without declared inputs, any input is accepted as sent.
The spec file's folder (and ``uri``, if a folder) is put on ``sys.path`` so the module can live beside the spec.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kubeinfer.runtimes.base import DATATYPES, ModelError, ModelInfo, TensorSpec

__all__ = ["PythonModel"]


def _spec(obj: Any, where: str) -> TensorSpec:
    if isinstance(obj, TensorSpec):
        return obj
    if isinstance(obj, Mapping) and {"name", "datatype", "shape"} <= obj.keys():
        if obj["datatype"] not in DATATYPES:
            raise ModelError(f"{where}: datatype {obj['datatype']!r} is not one of {sorted(DATATYPES)}")
        return TensorSpec(
            str(obj["name"]),
            str(obj["datatype"]),
            tuple(int(d) for d in obj["shape"]),
            bool(obj.get("optional", False)),
        )
    raise ModelError(f"{where}: expected a TensorSpec or a mapping with name, datatype and shape, got {obj!r}")


class PythonModel:
    def __init__(
        self, name: str, version: str, class_name: str, search_paths: list[Path], args: Mapping[str, Any]
    ) -> None:
        self.name = name
        self.version = version
        self.class_name = class_name
        self.search_paths = search_paths
        self.args = dict(args)
        self._obj: Any = None

    def load(self) -> ModelInfo:
        module_name, _, cls_name = self.class_name.partition(":")
        for p in self.search_paths:
            if str(p) not in sys.path:
                sys.path.insert(0, str(p))
        try:
            module = importlib.import_module(module_name)
        except Exception as e:
            raise ModelError(f"cannot import module {module_name!r} for className {self.class_name!r}: {e}") from e
        cls = getattr(module, cls_name, None)
        if cls is None:
            raise ModelError(f"module {module_name!r} has no class {cls_name!r}")
        if not inspect.isclass(cls):
            # className: os:system would otherwise be called with the args: any callable runs (docs/security.md).
            raise ModelError(
                f"className {self.class_name!r} is a {type(cls).__name__}, not a class: name your model's class "
                "(module:Class, with a predict(inputs) method)"
            )
        if cls.__module__.split(".")[0] in sys.stdlib_module_names:
            raise ModelError(
                f"className {self.class_name!r} names a class of the standard library ({cls.__module__}), not a model: "
                "name your model's class"
            )
        try:
            self._obj = cls(**self.args)
            if hasattr(self._obj, "load"):
                self._obj.load()
        except Exception as e:
            raise ModelError(f"{self.class_name} failed to load: {e}") from e
        if not callable(getattr(self._obj, "predict", None)):
            raise ModelError(f"{self.class_name} has no predict(inputs) method")
        inputs = [_spec(s, f"{self.class_name}.inputs") for s in getattr(self._obj, "inputs", [])]
        outputs = [_spec(s, f"{self.class_name}.outputs") for s in getattr(self._obj, "outputs", [])]
        return ModelInfo(
            platform="python", inputs=inputs, outputs=outputs, batchable=bool(getattr(self._obj, "batchable", True))
        )

    def predict(
        self, inputs: Mapping[str, np.ndarray[Any, Any]], outputs: frozenset[str] | None = None
    ) -> dict[str, np.ndarray[Any, Any]]:
        result = self._obj.predict(dict(inputs))
        if not isinstance(result, Mapping):
            raise ModelError(f"{self.class_name}.predict returned {type(result).__name__}, expected a dict")
        return {str(k): np.asarray(v) for k, v in result.items()}
