"""The KV-cache gauges of format ``llm``: what the transformers engine's running batch holds, read while sequences
decode and after they end, through the metrics collector the replica's ``/metrics`` serves."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from llm import tiny_llm_dir

pytest.importorskip("torch")
pytest.importorskip("transformers")

from kubeinfer.runtimes.llm.model import LLMModel
from kubeinfer.runtimes.llm.text import SamplingParams
from kubeinfer.server.generate_metrics import GenerationMetrics


@pytest.fixture(scope="module")
def llm() -> Iterator[LLMModel]:
    model = LLMModel(
        "tiny",
        "1",
        tiny_llm_dir(),
        {"maxNumSeqs": 4, "maxNumBatchedTokens": 64, "maxModelLen": 512, "engineProcess": False},
    )
    model.load()
    yield model
    model.engine.stop()


def _gauges(llm: LLMModel) -> dict[str, float]:
    metrics = GenerationMetrics(lambda: [("tiny", llm.engine)])
    return {
        f.name: f.samples[0].value
        for f in metrics.collect()
        if f.name.startswith("kubeinfer_generation_kv_cache") and f.samples
    }


def test_the_kv_gauges_follow_the_running_batch(llm: LLMModel) -> None:
    assert _gauges(llm) == {"kubeinfer_generation_kv_cache_tokens": 0, "kubeinfer_generation_kv_cache_usage_ratio": 0}
    seen: list[dict[str, float]] = []
    done = [threading.Event() for _ in range(2)]
    prompts = [llm.encode("Hello"), llm.encode("The quick brown fox jumps over the lazy dog.")]

    def collect(i: int):  # type: ignore[no-untyped-def]
        def on_output(out) -> None:  # type: ignore[no-untyped-def]
            if i == 0 and len(seen) < 3:
                seen.append(_gauges(llm))  # on the engine's thread, between passes
            if out.finish_reason is not None:
                done[i].set()

        return on_output

    params = SamplingParams(max_tokens=40, temperature=0.0, ignore_eos=True)
    for i, prompt in enumerate(prompts):
        llm.engine.add(prompt, params, collect(i))
    for d in done:
        assert d.wait(60)
    longest = max(len(p) for p in prompts)
    held = [g["kubeinfer_generation_kv_cache_tokens"] for g in seen]
    # two rows at least as wide as the longer prompt (the shorter one left-padded), growing a column per step
    assert all(h >= 2 * longest for h in held[1:])
    assert held == sorted(held)
    ratios = [g["kubeinfer_generation_kv_cache_usage_ratio"] for g in seen]
    assert all(abs(r - h / (4 * 512)) < 1e-9 for r, h in zip(ratios, held, strict=True))
    deadline = time.monotonic() + 10
    while _gauges(llm)["kubeinfer_generation_kv_cache_tokens"] != 0:  # idle: the batch's cache is let go
        assert time.monotonic() < deadline, "the idle engine still holds its last batch's cache"
        time.sleep(0.01)


def test_an_engine_process_reports_its_kv_cache_with_its_counters() -> None:
    """``engineProcess: true``: the engine's KV figure comes with the counters it reports after each pass."""
    model = LLMModel("tiny", "1", tiny_llm_dir(), {"engineProcess": True, "maxNumSeqs": 4, "maxModelLen": 512})
    model.load()
    try:
        seen: list[float] = []
        done = threading.Event()

        def on_output(out) -> None:  # type: ignore[no-untyped-def]
            seen.append(_gauges(model)["kubeinfer_generation_kv_cache_tokens"])
            if out.finish_reason is not None:
                done.set()

        params = SamplingParams(max_tokens=30, temperature=0.0, ignore_eos=True)
        model.engine.add(model.encode("The quick brown fox"), params, on_output)
        assert done.wait(60)
        assert max(seen) > 0
        assert _gauges(model)["kubeinfer_generation_kv_cache_usage_ratio"] <= max(seen) / (4 * 512)
        deadline = time.monotonic() + 10
        while _gauges(model)["kubeinfer_generation_kv_cache_tokens"] != 0:  # the idle report
            assert time.monotonic() < deadline, "the engine process's idle report never came"
            time.sleep(0.01)
    finally:
        model.close()
