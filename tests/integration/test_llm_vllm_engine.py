"""Format ``llm`` on ``engine: vllm`` through a real server process and the real ``openai`` client.

vLLM's engine needs a GPU, so here the server imports the stand-in of vLLM's Python API in ``tests/fake_vllm`` (the
surface and semantics kubeinfer's adapter relies on; see its docstring), which generates with the real tiny model.
What is tested is kubeinfer's side: the spec's args reaching vLLM's engine arguments, outputs in DELTA mode turned
into completions, streams, stop strings and usage, a disconnect aborting the request inside the engine, the counters
behind the metrics, and a prompt longer than one step's token budget (vLLM prefills it in chunks). The ``gpu`` test
at the end runs the same against the real vLLM.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubeinfer.testing import ServerProcess
from llm import tiny_llm_dir

openai = pytest.importorskip("openai")

pytestmark = pytest.mark.integration

FAKE = Path(__file__).resolve().parents[1] / "fake_vllm"
ARGS = "{engine: vllm, maxNumSeqs: 8, maxNumBatchedTokens: 16, maxModelLen: 256, gpuMemoryUtilization: 0.5, enforceEager: true}"


def _spec(folder: Path, args: str) -> Path:
    path = folder / "vllm.yaml"
    path.write_text(
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: tiny}\n"
        f"spec:\n  model: {{format: llm, uri: '{tiny_llm_dir()}', args: {args}}}\n"
    )
    return path


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("vllm") / "engine-args.json"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, record: Path) -> Iterator[ServerProcess]:
    spec = _spec(tmp_path_factory.mktemp("spec"), ARGS)
    path = os.pathsep.join(p for p in (str(FAKE), os.environ.get("PYTHONPATH", "")) if p)
    env = {"PYTHONPATH": path, "FAKE_VLLM_RECORD": str(record)}
    with ServerProcess(spec, grpc=False, env=env, start_timeout=90) as s:
        yield s


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Any]:
    c = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)
    yield c
    c.close()


def _reference(prompt: str, max_tokens: int) -> str:
    """Greedy text of the same model computed by ``transformers`` directly, the most likely token at every step and
    end-of-sequence not stopping it (``ignore_eos``): what vLLM's greedy output matches."""
    import torch
    import transformers

    folder = tiny_llm_dir()
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    start = ids.shape[1]
    with torch.no_grad():
        for _ in range(max_tokens):
            ids = torch.cat([ids, model(ids).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return str(tok.decode(ids[0, start:], skip_special_tokens=True))


def _metric(server: ServerProcess, name: str, labels: str = "") -> float:
    _, body = server.get("/metrics")
    for line in body.decode().splitlines():
        if line.startswith(f"{name}{{") and labels in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{{{labels}}} is not in /metrics")


def test_the_spec_s_args_become_vllm_s_engine_arguments(server: ServerProcess, record: Path) -> None:
    args = json.loads(record.read_text())
    assert args["model"] == str(tiny_llm_dir()) and args["tokenizer"] == str(tiny_llm_dir())
    assert args["max_num_seqs"] == 8
    assert args["max_num_batched_tokens"] == 16
    assert args["max_model_len"] == 256
    assert args["gpu_memory_utilization"] == 0.5
    assert args["enforce_eager"] is True
    assert args["dtype"] == "auto"  # the model's own dtype unless model.args.dtype says otherwise
    _, body = server.get("/v2/models/tiny")
    assert json.loads(body)["platform"] == "vllm"


def test_greedy_completion_matches_transformers_generate(client: Any) -> None:
    got = client.completions.create(
        model="tiny", prompt="Hello there", max_tokens=12, temperature=0, extra_body={"ignore_eos": True}
    )
    assert got.choices[0].text == _reference("Hello there", 12)
    assert got.choices[0].finish_reason == "length"
    assert got.usage.completion_tokens == 12
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(tiny_llm_dir())
    assert got.usage.prompt_tokens == len(tok("Hello there")["input_ids"])


def test_a_stream_carries_the_same_text_and_usage(client: Any) -> None:
    whole = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=10, temperature=0
    )
    parts: list[str] = []
    usage = None
    finish = None
    stream = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=10,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage is not None:
            usage = chunk.usage
    assert "".join(parts) == whole.choices[0].message.content
    assert finish == whole.choices[0].finish_reason
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens


def test_a_stop_string_ends_the_text_before_it(client: Any) -> None:
    full = _reference("Hello there", 12)
    stop = full[4:7]
    assert stop.strip() and stop in full
    got = client.completions.create(
        model="tiny", prompt="Hello there", max_tokens=12, temperature=0, stop=[stop], extra_body={"ignore_eos": True}
    )
    assert got.choices[0].text == full[: full.find(stop)]
    assert got.choices[0].finish_reason == "stop"


def test_a_prompt_longer_than_one_step_s_budget_is_served(client: Any) -> None:
    """maxNumBatchedTokens is 16: vLLM prefills a longer prompt in chunks (the transformers engine refuses it)."""
    prompt = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"
    got = client.completions.create(model="tiny", prompt=prompt, max_tokens=3, temperature=0)
    assert got.usage.prompt_tokens > 16
    assert got.usage.completion_tokens >= 1
    with pytest.raises(openai.BadRequestError, match="maximum context length is 256"):
        client.completions.create(model="tiny", prompt="word " * 300, max_tokens=3)


def test_a_client_that_goes_away_aborts_its_request_in_the_engine(server: ServerProcess) -> None:
    generated = _metric(server, "kubeinfer_generation_tokens_total", 'kind="generated"')
    c = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)
    stream = c.completions.create(
        model="tiny", prompt="Go on", max_tokens=200, temperature=0, stream=True, extra_body={"ignore_eos": True}
    )
    seen = 0
    for chunk in stream:
        seen += bool(chunk.choices and chunk.choices[0].text)
        if seen >= 2:
            break
    stream.close()
    c.close()
    deadline = time.monotonic() + 20
    while not any("fake vLLM: aborted" in line for line in server.output):
        assert time.monotonic() < deadline, "the engine never saw the abort:\n" + server.log()
        time.sleep(0.1)
    while _metric(server, "kubeinfer_generation_sequences_running") or _metric(
        server, "kubeinfer_generation_sequences_waiting"
    ):
        assert time.monotonic() < deadline, "the aborted sequence still counts as running"
        time.sleep(0.1)
    assert _metric(server, "kubeinfer_generation_kv_cache_tokens") == 0  # its tokens no longer count as held
    after = _metric(server, "kubeinfer_generation_tokens_total", 'kind="generated"')
    assert 2 <= after - generated < 200  # it generated some tokens, not all 200


@pytest.mark.gpu
def test_the_real_vllm_serves_the_tiny_model(tmp_path: Path) -> None:
    """On a machine with a GPU and ``kubeinfer[vllm]``: the real engine, greedy output as transformers gives it."""
    pytest.importorskip("vllm")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no GPU")
    spec = _spec(tmp_path, "{engine: vllm, maxNumSeqs: 8, maxModelLen: 256, dtype: float32, gpuMemoryUtilization: 0.3}")
    with ServerProcess(spec, grpc=False, start_timeout=600) as s:
        c = openai.OpenAI(base_url=f"{s.url}/v1", api_key="unused", max_retries=0, timeout=120)
        got = c.completions.create(
            model="tiny", prompt="Hello there", max_tokens=12, temperature=0, extra_body={"ignore_eos": True}
        )
        assert got.choices[0].text == _reference("Hello there", 12)
        chunks = list(
            c.completions.create(model="tiny", prompt="Hello there", max_tokens=12, temperature=0, stream=True)
        )
        assert "".join(ch.choices[0].text for ch in chunks if ch.choices).startswith(got.choices[0].text[:1])
        c.close()
