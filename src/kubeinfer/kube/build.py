"""``kubeinfer build``: a container build context holding the model and the spec.

The context is small and self-describing: ``Dockerfile`` (FROM the kubeinfer server image, built from
``deploy/Dockerfile`` with the extras the model formats need), ``model/`` (the artifact each ``uri`` names, plus the
spec folder's ``*.py`` for ``format: python``), ``service.yaml`` (the spec with each ``uri`` pointing into the image)
and ``.dockerignore``. The models land under ``/opt/kubeinfer/model``, where rendered manifests expect them (a
``spec.models`` entry by the last segment of its uri; two entries whose files share a name are refused). A
remote ``uri`` (``s3://``, ``hf://`` ...) is fetched through the model cache and baked in the same way; render such an
image's manifests with ``model_in_image`` (``kubeinfer render --model-in-image``).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

from kubeinfer.kube.names import CONFIG_DIR, CONFIG_KEY, MODEL_DIR
from kubeinfer.kube.render import RUN_AS, container_spec_doc, image_model_uri
from kubeinfer.spec import InferenceService, resolve_uri
from kubeinfer.spec.service import ModelSpec
from kubeinfer.storage import StorageError, fetch, is_remote, model_entries

__all__ = ["CACHE_DIR", "EXTRAS", "BuildContext", "build_context", "model_extra", "service_image"]

CACHE_DIR = "/opt/kubeinfer/cache"
"""Where the image keeps what ``kubeinfer prepare`` compiled (read-only at run time)."""

EXTRAS = {
    "sklearn": "sklearn",
    "onnx": "onnx",
    "xgboost": "boosting",
    "lightgbm": "boosting",
    "sentence-transformers": "embeddings",
    "python": "",
    "llm": "llm",
}
"""The ``kubeinfer[...]`` extra the server image needs per model format."""


def model_extra(model: ModelSpec) -> str:
    """The extra one model needs: its format's, or ``vllm`` for an ``llm`` model on vLLM's engine (vLLM brings its
    own CUDA build of PyTorch, so that image gets no CPU wheel)."""
    if model.format == "llm" and model.args.get("engine") == "vllm":
        return "vllm"
    return EXTRAS[model.format]


class BuildError(ValueError):
    pass


@dataclass(frozen=True)
class BuildContext:
    path: Path
    files: list[str]
    extras: str
    base_image: str


def _dockerfile(base_image: str, prepare: bool) -> str:
    # A scikit-learn model is compiled to ONNX once, at build time, into a cache inside the image: pods then start
    # without importing scikit-learn (runtimes/sklearn.py). It also fails the build on a model that cannot load.
    warm = (
        f"""USER 0:0
ENV KUBEINFER_CACHE_DIR={CACHE_DIR}
RUN kubeinfer prepare {CONFIG_DIR}/{CONFIG_KEY}
"""
        if prepare
        else ""
    )
    return f"""# Built by `kubeinfer build`: the kubeinfer server image plus this service's model and spec.
# The base image is deploy/Dockerfile from the kubeinfer repository, built with the extras this model needs.
ARG BASE_IMAGE={base_image}
FROM ${{BASE_IMAGE}}
COPY --chown=0:0 --chmod=0755 model/ {MODEL_DIR}/
COPY --chown=0:0 --chmod=0644 {CONFIG_KEY} {CONFIG_DIR}/{CONFIG_KEY}
{warm}USER {RUN_AS}:{RUN_AS}
"""


def service_image(svc: InferenceService) -> str:
    """The image this service runs: ``spec.image`` when the spec sets it, else one tag per service and model version
    (``kubeinfer/iris:1``), so two services built on one machine do not overwrite each other's image."""
    if "image" in svc.spec.model_fields_set:
        return svc.spec.image
    tag = re.sub(r"[^A-Za-z0-9_.-]", "-", svc.spec.model.version)[:128].lstrip(".-") or "latest"
    return f"kubeinfer/{svc.name}:{tag}"


def _source(field: str, model: ModelSpec, spec_dir: Path) -> Path | None:
    """The artifact to bake for one model entry: fetched (verified, through the model cache, with this machine's
    credentials) when remote, else the local file or folder."""
    uri = model.uri
    if not uri:
        return None
    if is_remote(uri):
        try:
            return fetch(uri, sha256=model.sha256)
        except StorageError as e:
            raise BuildError(f"{field}.uri: {e}") from None
    src = resolve_uri(uri, spec_dir)
    if not src.exists():
        raise BuildError(f"{field}.uri {uri!r}: {src} does not exist (build or download the model first)")
    return src


def build_context(svc: InferenceService, spec_dir: Path, out: Path, base_image: str | None = None) -> BuildContext:
    """Write the build context for ``svc`` (whose spec file lives in ``spec_dir``) into ``out``. Every model of the
    spec (``spec.model``, or each ``spec.models`` entry) lands where the rendered spec expects it in the image."""
    entries = model_entries(svc)
    formats = [m.format for _, m in entries]
    extras = ",".join(sorted({model_extra(m) for _, m in entries} - {""}))
    base = base_image or f"kubeinfer/server:{extras.replace(',', '-') or 'base'}"
    # where each model goes: the path the mounted spec names (render's image_model_uri), relative to MODEL_DIR
    placed: dict[str, tuple[str, Path]] = {}
    for i, (field, model) in enumerate(entries):
        src = _source(field, model, spec_dir)
        if src is None:
            continue
        dest = str(
            PurePosixPath(image_model_uri(model, True, None if svc.spec.models is None else i)).relative_to(MODEL_DIR)
        )
        if dest in placed and placed[dest][1] != src:
            raise BuildError(
                f"{field}.uri {model.uri!r}: lands at {MODEL_DIR}/{dest} in the image, where {placed[dest][0]} already "
                "is; give one of the files (or folders) another name"
            )
        placed[dest] = (field, src)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = out / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model_dir.mkdir()
    for dest, (_, src) in placed.items():
        if src.is_dir():
            shutil.copytree(
                src, model_dir / dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), dirs_exist_ok=True
            )
        else:
            shutil.copy2(src, model_dir / dest)
    if "python" in formats:
        for py in sorted(spec_dir.glob("*.py")):
            shutil.copy2(py, model_dir / py.name)
    (out / CONFIG_KEY).write_text(
        "# The spec as the container reads it (model uri inside the image).\n"
        + yaml.safe_dump(container_spec_doc(svc, model_in_image=True), sort_keys=False)
    )
    (out / "Dockerfile").write_text(_dockerfile(base, prepare="sklearn" in formats))
    (out / ".dockerignore").write_text("**/__pycache__\n**/*.pyc\n")
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    return BuildContext(out, files, extras, base)
