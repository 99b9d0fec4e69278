"""``engine: vllm`` of format ``llm`` before any engine starts: the args each engine takes, the errors that name what to
fix, the spec's checks against the replica's GPUs, and what ``build`` and ``render`` make of it."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from kubeinfer.kube.build import build_context, model_extra
from kubeinfer.kube.render import RenderOptions, render
from kubeinfer.runtimes.base import ModelError
from kubeinfer.runtimes.llm.model import LLMModel
from kubeinfer.spec import validate_spec

ROOT = Path(__file__).resolve().parents[3]


def _model(args: dict[str, Any]) -> LLMModel:
    return LLMModel("m", "1", Path("/nowhere"), args)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"engine": "vllm", "engineProcess": True}, "engineProcess applies to engine 'transformers' only"),
        ({"engine": "vllm", "device": "cpu"}, "device applies to engine 'transformers' only"),
        ({"engine": "vllm", "intraOpThreads": 2}, "intraOpThreads applies to engine 'transformers' only"),
        ({"gpuMemoryUtilization": 0.5}, "gpuMemoryUtilization applies to engine 'vllm' only"),
        ({"engine": "transformers", "tensorParallelSize": 2}, "tensorParallelSize applies to engine 'vllm' only"),
        ({"engine": "vllm", "gpuMemoryUtilization": 1.5}, r"gpuMemoryUtilization must be a number in \(0, 1\]"),
        ({"engine": "vllm", "gpuMemoryUtilization": True}, "gpuMemoryUtilization must be a number"),
        ({"engine": "vllm", "enforceEager": "yes"}, "enforceEager must be true or false"),
        ({"engine": "vllm", "tensorParallelSize": 0}, "tensorParallelSize must be an integer >= 1"),
        ({"engine": "tgi"}, "engine 'tgi' is not supported: use one of transformers, vllm"),
    ],
)
def test_bad_args_name_what_to_fix(args: dict[str, Any], message: str) -> None:
    with pytest.raises(ModelError, match=message):
        _model(args)


def test_vllm_args_are_accepted() -> None:
    m = _model({"engine": "vllm", "gpuMemoryUtilization": 0.5, "tensorParallelSize": 2, "enforceEager": True})
    assert m.engine_name == "vllm"


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_without_vllm_installed_loading_says_how_to_get_it(tmp_path: Path) -> None:
    m = LLMModel("m", "1", tmp_path, {"engine": "vllm"})
    with pytest.raises(
        ModelError, match=r"engine 'vllm' needs vLLM \(vllm is missing\): pip install 'kubeinfer\[vllm\]'"
    ):
        m.load()


def _svc(args: dict[str, Any], gpu: dict[str, Any] | None = None) -> Any:
    doc: dict[str, Any] = {
        "apiVersion": "kubeinfer.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "chat"},
        "spec": {"model": {"format": "llm", "uri": "hf://org/model", "args": args}},
    }
    if gpu is not None:
        doc["spec"]["resources"] = {"gpu": gpu}
    return validate_spec(doc)


def test_tensor_parallelism_needs_that_many_gpus() -> None:
    with pytest.raises(
        ValueError, match=r"tensorParallelSize 2 splits the model over 2 GPUs, and resources.gpu.count is 1"
    ):
        _svc({"engine": "vllm", "tensorParallelSize": 2}, {"count": 1})
    _svc({"engine": "vllm", "tensorParallelSize": 2}, {"count": 2})


def test_a_shared_gpu_caps_vllm_s_memory_share() -> None:
    shared = {"sharing": "time-slicing", "fraction": 0.25}
    with pytest.raises(ValueError, match=r"gpuMemoryUtilization is vLLM's default 0.9.*at most 0.25"):
        _svc({"engine": "vllm"}, shared)
    with pytest.raises(ValueError, match=r"gpuMemoryUtilization is 0.5.*at most 0.25"):
        _svc({"engine": "vllm", "gpuMemoryUtilization": 0.5}, shared)
    _svc({"engine": "vllm", "gpuMemoryUtilization": 0.2}, shared)
    _svc({"engine": "transformers"}, shared)  # the transformers engine takes what it needs


def test_build_and_render_of_a_vllm_model(tmp_path: Path) -> None:
    vllm = _svc({"engine": "vllm"}, {"count": 1})
    assert model_extra(vllm.spec.model) == "vllm"
    plain = _svc({"engine": "transformers"})
    assert model_extra(plain.spec.model) == "llm"

    def env(svc: Any) -> dict[str, Any]:
        [dep] = [o for o in render(svc, RenderOptions()) if o["kind"] == "Deployment"]
        [server] = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "server"]
        return {e["name"]: e.get("value") for e in server["env"]}

    assert env(vllm)["VLLM_NO_USAGE_STATS"] == "1"
    assert "VLLM_NO_USAGE_STATS" not in env(plain)


def test_build_picks_the_vllm_image(tmp_path: Path) -> None:
    from kubeinfer.spec import load_spec

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    spec = tmp_path / "service.yaml"
    spec.write_text(
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: chat}\n"
        "spec:\n  model: {format: llm, uri: ./model, args: {engine: vllm}}\n  resources: {gpu: {count: 1}}\n"
    )
    ctx = build_context(load_spec(spec), tmp_path, tmp_path / "ctx")
    assert ctx.extras == "vllm" and ctx.base_image == "kubeinfer/server:vllm"
    assert "FROM ${BASE_IMAGE}" in (tmp_path / "ctx" / "Dockerfile").read_text()
