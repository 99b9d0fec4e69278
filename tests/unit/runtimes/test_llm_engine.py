"""The continuous-batching engine on a real (tiny) causal LM: outputs equal ``model.generate``'s while sequences join
and leave the batch, seeded sampling does not depend on the neighbours, stop strings, aborts and argument errors."""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from llm import tiny_llm_dir

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from kubeinfer.runtimes.base import ModelError  # noqa: E402
from kubeinfer.runtimes.llm.engine import SWITCH_INTERVAL  # noqa: E402
from kubeinfer.runtimes.llm.model import LLMModel  # noqa: E402
from kubeinfer.runtimes.llm.text import SamplingParams  # noqa: E402

PROMPTS = [
    "Hello",
    "The quick brown fox jumps over the lazy dog.",
    "A model server answers requests for predictions, embeddings and generated text. Continuous batching",
    "x",
    "Numbers: 0 1 2 3",
    "Kubernetes schedules pods",
]


@pytest.fixture(scope="module")
def llm() -> Iterator[LLMModel]:
    model = LLMModel("tiny", "1", tiny_llm_dir(), {"maxNumSeqs": 3, "maxNumBatchedTokens": 64, "engineProcess": False})
    model.load()
    yield model
    model.engine.stop()


@dataclass
class _Collected:
    tokens: list[int] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    reason: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def __call__(self, out) -> None:  # type: ignore[no-untyped-def]
        self.tokens += out.token_ids
        self.text.append(out.text)
        if out.finish_reason is not None:
            self.reason = out.finish_reason
            self.done.set()


def _run(llm: LLMModel, jobs: list[tuple[str, SamplingParams]]) -> list[_Collected]:
    """Submit every job at once (they share the engine's batch) and wait for all."""
    results = [_Collected() for _ in jobs]
    for (prompt, params), result in zip(jobs, results, strict=True):
        llm.engine.add(llm.encode(prompt), params, result)
    for result in results:
        assert result.done.wait(60)
    return results


def _reference(llm: LLMModel, prompt: str, max_new: int) -> list[int]:
    ids = torch.tensor([llm.encode(prompt)])
    with torch.no_grad():
        out = llm.engine.model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new, do_sample=False
        )
    return [int(t) for t in out[0, ids.shape[1] :]]


def test_greedy_outputs_equal_model_generate_for_concurrent_prompts_of_different_lengths(llm: LLMModel) -> None:
    """Six prompts (1 to 20 tokens), three batch places, different lengths to generate: sequences join the running
    batch as others leave it, and each output is token for token what ``generate`` gives for that prompt alone."""
    lengths = [24, 9, 17, 30, 5, 12]
    jobs = [(p, SamplingParams(max_tokens=n, temperature=0.0)) for p, n in zip(PROMPTS, lengths, strict=True)]
    results = _run(llm, jobs)
    for (prompt, _), n, result in zip(jobs, lengths, results, strict=True):
        assert result.tokens == _reference(llm, prompt, n), prompt
        assert result.reason in ("length", "stop")
    assert llm.engine.num_running == 0 and llm.engine.num_waiting == 0


def test_an_arrival_gets_its_first_token_in_the_next_step_before_sixteen_running_sequences_decode(
    llm: LLMModel,
) -> None:
    """Prefill before decode: with 16 sequences decoding, a request added between two steps has its first token out
    in the very next step, ahead of that step's 16 decode tokens; one that arrives while that step's prefill pass runs
    (here: added from the first one's output callback, on the engine's thread) joins the same step, also ahead of the
    decode pass. Both then generate what ``model.generate`` gives for their prompts alone."""
    model = LLMModel(
        "tiny", "1", tiny_llm_dir(), {"maxNumSeqs": 32, "maxNumBatchedTokens": 256, "engineProcess": False}
    )
    engine = model.build_engine()  # not started: the test runs the steps itself
    delivered: list[str] = []  # who got an output, in delivery order

    def tagged(tag: str, result: _Collected, then=None):  # type: ignore[no-untyped-def]
        def on_output(out) -> None:  # type: ignore[no-untyped-def]
            delivered.append(tag)
            result(out)
            if then is not None and len(result.tokens) == 1:
                then()

        return on_output

    running = [_Collected() for _ in range(16)]
    new, late = _Collected(), _Collected()
    greedy = SamplingParams(max_tokens=20, temperature=0.0, ignore_eos=True)
    with torch.no_grad():
        for i, result in enumerate(running):
            engine.add(model.encode(PROMPTS[i % len(PROMPTS)]), greedy, tagged("running", result))
        engine.step()  # the 16 join
        engine.step()
        assert engine.num_running == 16
        delivered.clear()

        def arrive_late() -> None:
            engine.add(model.encode(PROMPTS[3]), greedy, tagged("late", late))

        engine.add(model.encode(PROMPTS[2]), greedy, tagged("new", new, then=arrive_late))
        engine.step()
        assert delivered == ["new", "late"] + ["running"] * 16
        assert engine.num_running == 18 and engine.num_waiting == 0
        while engine.num_running or engine.num_waiting:
            engine.step()
    assert new.tokens == _reference(llm, PROMPTS[2], 20)
    assert late.tokens == _reference(llm, PROMPTS[3], 20)
    assert all(r.reason == "length" for r in running)


def test_seeded_sampling_does_not_depend_on_the_other_sequences_of_the_batch(llm: LLMModel) -> None:
    params = SamplingParams(max_tokens=12, temperature=0.9, top_p=0.9, seed=7, ignore_eos=True)
    alone = _run(llm, [(PROMPTS[1], params)])[0].tokens
    crowded = _run(llm, [(PROMPTS[1], params), (PROMPTS[2], params), (PROMPTS[0], params)])[0].tokens
    assert alone == crowded
    other_seed = _run(llm, [(PROMPTS[1], SamplingParams(max_tokens=12, temperature=0.9, seed=8, ignore_eos=True))])
    assert other_seed[0].tokens != alone


def test_max_tokens_ends_a_sequence_with_finish_reason_length(llm: LLMModel) -> None:
    result = _run(llm, [(PROMPTS[0], SamplingParams(max_tokens=5, temperature=0.0, ignore_eos=True))])[0]
    assert len(result.tokens) == 5
    assert result.reason == "length"


def test_a_stop_string_ends_the_text_before_it(llm: LLMModel) -> None:
    full = "".join(_run(llm, [(PROMPTS[1], SamplingParams(max_tokens=30, temperature=0.0, ignore_eos=True))])[0].text)
    visible = full.strip("\x00\ufffd")
    stop = next(visible[i : i + 2] for i in range(len(visible) // 2, len(visible)) if visible[i : i + 2].isalnum())
    cut = full.index(stop)
    params = SamplingParams(max_tokens=30, temperature=0.0, ignore_eos=True, stop=(stop,))
    result = _run(llm, [(PROMPTS[1], params)])[0]
    assert "".join(result.text) == full[:cut]
    assert result.reason == "stop"


def test_an_aborted_sequence_leaves_the_batch_and_its_place_is_taken(llm: LLMModel) -> None:
    first = threading.Event()
    got: list[int] = []

    def on_output(out) -> None:  # type: ignore[no-untyped-def]
        got.extend(out.token_ids)
        first.set()

    seq = llm.engine.add(
        llm.encode("Hello"), SamplingParams(max_tokens=400, temperature=0.0, ignore_eos=True), on_output
    )
    assert first.wait(30)
    llm.engine.abort(seq)
    # the engine keeps serving: a later sequence completes, and the aborted one stopped well before its 400 tokens
    after = _run(llm, [(PROMPTS[0], SamplingParams(max_tokens=3, temperature=0.0))])[0]
    assert after.reason is not None
    assert llm.engine.num_running == 0
    assert len(got) < 400


def test_open_inference_protocol_infer_generates_greedily(llm: LLMModel) -> None:
    import numpy as np

    out = llm.predict({"text_input": np.array([b"Hello", b"x"], dtype=object)})
    texts = [t.decode() for t in out["text_output"]]
    assert texts[0] == llm.tokenizer.decode(_reference(llm, "Hello", 16), skip_special_tokens=True)
    assert len(texts) == 2


def test_context_checks_say_what_fits(llm: LLMModel) -> None:
    assert llm.check_length(10, None) == llm.max_model_len - 10
    with pytest.raises(ValueError, match="maximum context length is 512 tokens; the prompt has 10 and max_tokens"):
        llm.check_length(10, 600)
    with pytest.raises(ValueError, match="maxNumBatchedTokens"):
        llm.check_length(65, 1)


def test_chat_prompt_uses_the_tokenizers_chat_template(llm: LLMModel) -> None:
    ids = llm.chat_prompt([{"role": "user", "content": "Hi"}])
    assert llm.tokenizer.decode(ids) == "<|user|>\nHi<|end|>\n<|assistant|>\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"engine": "tgi"}, "model.args.engine 'tgi' is not supported: use one of transformers, vllm"),
        ({"maxNumSeqs": 0}, "model.args.maxNumSeqs must be an integer >= 1"),
        ({"batch": 4}, "model.args: unknown 'batch'"),
        ({"dtype": "int8"}, "model.args.dtype 'int8' is not supported"),
    ],
)
def test_bad_args_are_refused_naming_the_field(args: dict[str, object], message: str) -> None:
    with pytest.raises(ModelError, match=message.replace(".", r"\.").replace("(", r"\(")):
        LLMModel("tiny", "1", Path("."), args)


def test_a_folder_that_is_not_a_model_fails_to_load_with_its_path(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot load a causal language model from"):
        LLMModel("tiny", "1", tmp_path, {}).load()


def test_close_stops_the_engines_thread() -> None:
    model = LLMModel("tiny", "1", tiny_llm_dir(), {"engineProcess": False})
    model.load()
    thread = model.engine._thread
    assert thread is not None and thread.is_alive()
    model.close()
    assert not thread.is_alive()


def test_an_engine_process_generates_the_same_and_its_death_ends_its_sequences(llm: LLMModel) -> None:
    """``engineProcess: true``: the same greedy text as in-process; a killed engine process ends the open sequences
    with an error instead of leaving their clients waiting. The server's side is tuned as an in-process engine's is
    (its reader thread works beside the event loop): a short GIL switch interval, the loaded objects frozen out of
    the collector's reach until it stops."""
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.005)  # Python's default: what the module's in-process engine changed
    gc.unfreeze()
    model = LLMModel("tiny", "1", tiny_llm_dir(), {"engineProcess": True, "intraOpThreads": 1})
    model.load()
    try:
        assert sys.getswitchinterval() <= SWITCH_INTERVAL
        assert gc.get_freeze_count() > 0
        params = SamplingParams(max_tokens=12, temperature=0.0, ignore_eos=True)
        assert model.generate_blocking(llm.encode("Hello"), params) == llm.generate_blocking(
            llm.encode("Hello"), params
        )
        first, result = threading.Event(), _Collected()

        def on_output(out) -> None:  # type: ignore[no-untyped-def]
            first.set()
            result(out)

        model.engine.add(llm.encode("Hello"), SamplingParams(max_tokens=500, ignore_eos=True), on_output)
        assert first.wait(30)
        model.engine._proc.kill()
        assert result.done.wait(30)
        assert result.reason is not None and result.reason.startswith("error")
    finally:
        model.close()
        sys.setswitchinterval(switch)
    assert gc.get_freeze_count() == 0
