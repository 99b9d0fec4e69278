"""Model runtimes behind one ``Model`` protocol; heavy frameworks are imported only when their format is used."""

from __future__ import annotations

from pathlib import Path

from kubeinfer.runtimes.base import DATATYPES, Model, ModelError, ModelInfo, TensorSpec, sample_batch
from kubeinfer.spec import InferenceService, resolve_uri

__all__ = ["DATATYPES", "Model", "ModelError", "ModelInfo", "TensorSpec", "create_model", "sample_batch"]


def create_model(svc: InferenceService, base_dir: Path | None = None) -> Model:
    """Build (not load) the model a spec names; ``base_dir`` resolves relative URIs (the spec file's folder). With
    ``model.inputs``/``model.outputs`` declared, the model is seen through that declaration (``runtimes/declared.py``)."""
    from kubeinfer.runtimes.declared import declare

    m = svc.spec.model
    return declare(_runtime(svc, base_dir), m.inputs, m.outputs)


def _runtime(svc: InferenceService, base_dir: Path | None) -> Model:
    m = svc.spec.model
    name, version = svc.model_name, m.version
    path = resolve_uri(m.uri, base_dir) if m.uri else Path()
    if m.format == "sklearn":
        from kubeinfer.runtimes.sklearn import SklearnModel

        return SklearnModel(name, version, path, m.args)
    if m.format == "onnx":
        from kubeinfer.runtimes.onnx import OnnxModel

        return OnnxModel(name, version, path, m.args)
    if m.format in ("xgboost", "lightgbm"):
        from kubeinfer.runtimes.boosting import BoostingModel

        return BoostingModel(name, version, path, m.args, m.format)
    if m.format == "sentence-transformers":
        from kubeinfer.runtimes.embeddings import EmbeddingModel

        return EmbeddingModel(name, version, path, m.args)
    if m.format == "llm":
        from kubeinfer.runtimes.llm.model import LLMModel

        return LLMModel(name, version, path, m.args)
    if m.format == "python":
        from kubeinfer.runtimes.python import PythonModel

        # the module beside the spec, in the uri folder, or beside the uri file (as `kubeinfer build` lays it out)
        where = (path if path.is_dir() else path.parent) if m.uri else None
        paths = [p for p in (base_dir, where) if p is not None]
        return PythonModel(name, version, m.className or "", paths, m.args)
    raise ModelError(f"unknown model format {m.format!r}")  # unreachable: the spec validates the format
