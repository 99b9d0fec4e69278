"""Text generation through a real server process: the OpenAI client (completions, chat, streaming, errors), the Open
Inference Protocol generate extension, a client that disconnects, and the generation metrics."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeinfer.testing import ServerProcess
from llm import tiny_llm_dir

openai = pytest.importorskip("openai")

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(examples: Path) -> Iterator[ServerProcess]:
    """The example service itself (examples/tiny-llm), its model built if missing."""
    tiny_llm_dir()  # skips without torch and transformers
    folder = examples / "tiny-llm"
    if not (folder / "model" / "config.json").exists():
        subprocess.run([sys.executable, str(folder / "build.py")], check=True)
    with ServerProcess(folder / "service.yaml", grpc=False, start_timeout=60) as s:
        yield s


@pytest.fixture
def client(server: ServerProcess) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=30)
    yield c
    c.close()


def _metric(server: ServerProcess, name: str) -> float:
    _, body = server.get("/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} is not in /metrics")


def test_completion_is_greedy_and_counts_usage(client: openai.OpenAI, server: ServerProcess) -> None:
    a = client.completions.create(
        model="tiny-llm", prompt="Hello", max_tokens=6, temperature=0, extra_body={"ignore_eos": True}
    )
    b = client.completions.create(
        model="tiny-llm", prompt="Hello", max_tokens=6, temperature=0, extra_body={"ignore_eos": True}
    )
    assert a.choices[0].text == b.choices[0].text
    assert a.choices[0].finish_reason == "length"
    assert a.object == "text_completion" and a.model == "tiny-llm"
    assert a.usage is not None
    assert (a.usage.prompt_tokens, a.usage.completion_tokens, a.usage.total_tokens) == (2, 6, 8)
    # the OIP infer route generates greedily too (model.args.maxTokens, default 16): the same text
    status, _, body = server.post(
        "/v2/models/tiny-llm/infer",
        json.dumps({"inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [1], "data": ["Hello"]}]}).encode(),
    )
    assert status == 200
    sixteen = client.completions.create(model="tiny-llm", prompt="Hello", max_tokens=16, temperature=0)
    assert json.loads(body)["outputs"][0]["data"] == [sixteen.choices[0].text]


def test_streamed_completion_joins_to_the_whole_answer(client: openai.OpenAI) -> None:
    whole = client.completions.create(model="tiny-llm", prompt="The quick", max_tokens=10, temperature=0)
    chunks = list(
        client.completions.create(
            model="tiny-llm",
            prompt="The quick",
            max_tokens=10,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_a_stream_has_an_event_for_every_token_even_without_text(client: openai.OpenAI) -> None:
    """As vLLM's server streams: a token that adds no text yet (this prompt's first two tokens are parts of a UTF-8
    character) still sends its event, with empty text; the text joins to the whole answer all the same."""
    kw = {"model": "tiny-llm", "prompt": "Hi", "max_tokens": 10, "temperature": 0, "extra_body": {"ignore_eos": True}}
    whole = client.completions.create(**kw)
    chunks = [c for c in client.completions.create(stream=True, **kw) if c.choices]
    assert len(chunks) == whole.usage.completion_tokens == 10
    assert chunks[0].choices[0].text == ""  # the first token is part of a character
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text
    messages = [{"role": "user", "content": "Hi"}]
    chat = list(
        client.chat.completions.create(
            model="tiny-llm",
            messages=messages,
            max_tokens=10,
            temperature=0,
            stream=True,
            extra_body={"ignore_eos": True},
        )
    )
    # the role's event, then one per token
    assert chat[0].choices[0].delta.role == "assistant"
    assert len(chat) == 1 + 10


def test_chat_completion_applies_the_chat_template_and_streams(client: openai.OpenAI) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    whole = client.chat.completions.create(model="tiny-llm", messages=messages, max_tokens=8, temperature=0)
    assert whole.object == "chat.completion"
    assert whole.choices[0].message.role == "assistant"
    # the template's text, sent as a plain completion, is the same prompt: same tokens, same greedy answer
    templated = "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n"
    plain = client.completions.create(model="tiny-llm", prompt=templated, max_tokens=8, temperature=0)
    assert whole.usage.prompt_tokens == plain.usage.prompt_tokens
    assert whole.choices[0].message.content == plain.choices[0].text
    stream = client.chat.completions.create(
        model="tiny-llm", messages=messages, max_tokens=8, temperature=0, stream=True
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_n_choices_with_a_seed_are_reproducible(client: openai.OpenAI) -> None:
    kw = {"model": "tiny-llm", "prompt": "Numbers:", "max_tokens": 8, "temperature": 1.0, "top_p": 0.95, "seed": 3}
    first = client.completions.create(n=3, extra_body={"ignore_eos": True}, **kw)
    again = client.completions.create(n=3, extra_body={"ignore_eos": True}, **kw)
    one = client.completions.create(n=1, **kw)
    assert [c.index for c in first.choices] == [0, 1, 2]
    assert [c.text for c in first.choices] == [c.text for c in again.choices]
    assert len({c.text for c in first.choices}) > 1  # each choice samples with its own seed
    # the prompt is counted once, every choice's tokens are
    assert first.usage.prompt_tokens == one.usage.prompt_tokens
    assert first.usage.completion_tokens == 3 * 8


def test_stop_strings_are_not_part_of_the_text(client: openai.OpenAI) -> None:
    full = client.completions.create(
        model="tiny-llm", prompt="Hello", max_tokens=20, temperature=0, extra_body={"ignore_eos": True}
    )
    text = full.choices[0].text
    stop = next(text[i : i + 2] for i in range(3, len(text)) if text[i : i + 2].isalnum())
    cut = client.completions.create(
        model="tiny-llm", prompt="Hello", max_tokens=20, temperature=0, stop=[stop], extra_body={"ignore_eos": True}
    )
    assert cut.choices[0].text == text[: text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"model": "tiny-llm", "prompt": "Hi", "max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
        ({"model": "tiny-llm", "prompt": "Hi", "temperature": 3}, "temperature", "less than or equal to 2"),
        ({"model": "tiny-llm", "prompt": "Hi", "max_tokens": 600}, "max_tokens", "maximum context length is 512"),
        ({"model": "tiny-llm", "prompt": "Hi", "n": 0}, "n", "greater than or equal to 1"),
        ({"model": "tiny-llm", "prompt": "Hi", "stop": ["a", "b", "c", "d", "e"]}, None, "at most 4 stop"),
    ],
)
def test_bad_requests_get_openai_errors(
    client: openai.OpenAI, body: dict[str, object], param: str | None, words: str
) -> None:
    with pytest.raises(openai.BadRequestError) as ei:
        client.completions.create(**body)  # type: ignore[call-overload]
    error = ei.value.response.json()["error"]
    assert ei.value.status_code == 400
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert words in error["message"]


def test_unknown_model_is_not_found_in_openai_shape(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as ei:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "Hi"}])
    assert ei.value.response.json()["error"]["code"] == "model_not_found"


def test_oip_generate_and_generate_stream(server: ServerProcess) -> None:
    body = json.dumps({"text_input": "Hello", "parameters": {"max_tokens": 5, "temperature": 0, "ignore_eos": True}})
    status, _, raw = server.post("/v2/models/tiny-llm/generate", body.encode())
    assert status == 200
    doc = json.loads(raw)
    assert doc["model_name"] == "tiny-llm"
    assert doc["details"] == {"finish_reason": "length", "prompt_tokens": 2, "completion_tokens": 5}
    status, headers, raw = server.post("/v2/models/tiny-llm/generate_stream", body.encode())
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in raw.decode().split("\n\n") if line.startswith("data: ")]
    assert "".join(e["text_output"] for e in events) == doc["text_output"]
    assert events[-1]["details"]["finish_reason"] == "length"
    status, _, raw = server.post("/v2/models/tiny-llm/generate", b'{"text_input": "Hi", "parameters": {"top_k": 3}}')
    assert status == 400
    assert "parameters.top_k" in json.loads(raw)["error"]


def test_a_client_that_disconnects_stops_its_generation_and_frees_its_place(server: ServerProcess) -> None:
    generated_before = _generated(server)
    body = json.dumps(
        {
            "model": "tiny-llm",
            "prompt": "Hello",
            "max_tokens": 500,
            "stream": True,
            "ignore_eos": True,
            "temperature": 0,
        }
    ).encode()
    head = f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=30) as sock:
        sock.sendall(head.encode() + body)
        seen = b""
        while b"data: " not in seen:  # generation has begun
            chunk = sock.recv(4096)
            assert chunk, "the server closed the stream"
            seen += chunk
        assert seen.startswith(b"HTTP/1.1 200")
    deadline = time.monotonic() + 30
    while _metric(server, "kubeinfer_generation_sequences_running") > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _metric(server, "kubeinfer_generation_sequences_running") == 0
    assert _generated(server) - generated_before < 500, "the sequence ran on after its client left"
    # its place is free: the next request is served
    status, _, _ = server.post("/v1/completions", b'{"model": "tiny-llm", "prompt": "Hi", "max_tokens": 2}')
    assert status == 200


def test_a_missing_prompt_names_the_parameter(server: ServerProcess) -> None:
    status, _, raw = server.post("/v1/completions", b'{"model": "tiny-llm"}')
    assert status == 400
    assert json.loads(raw)["error"]["param"] == "prompt"
    status, _, raw = server.post("/v1/chat/completions", b"[1, 2]")
    assert status == 400
    assert "JSON object" in json.loads(raw)["error"]["message"]


def _generated(server: ServerProcess) -> float:
    _, body = server.get("/metrics")
    for line in body.decode().splitlines():
        if line.startswith("kubeinfer_generation_tokens_total{") and 'kind="generated"' in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no generated tokens counter")


def test_generation_metrics_are_exported(server: ServerProcess, client: openai.OpenAI) -> None:
    client.completions.create(model="tiny-llm", prompt="Hello", max_tokens=3, temperature=0)
    _, body = server.get("/metrics")
    text = body.decode()
    for family in (
        "kubeinfer_generation_sequences_waiting",
        "kubeinfer_generation_sequences_running",
        "kubeinfer_generation_time_to_first_token_seconds_count",
        "kubeinfer_generation_inter_token_latency_seconds_count",
        "kubeinfer_generation_tokens_per_second",
    ):
        assert f'{family}{{model="tiny-llm"}}' in text, family
    assert _metric(server, "kubeinfer_generation_time_to_first_token_seconds_count") >= 1
    assert 'kubeinfer_requests_total{code="200",model="tiny-llm",protocol="openai",version="1"}' in text


def test_the_generation_families_are_the_documented_ones(server: ServerProcess, client: openai.OpenAI) -> None:
    """docs/metrics.md's text generation table, both ways, with types."""
    from metrics_doc import documented, exposition_names

    client.completions.create(model="tiny-llm", prompt="Hello", max_tokens=2)
    docs = documented()["Text generation (format `llm`)"]
    _, body = server.get("/metrics")
    emitted = {n: t for n, t in exposition_names(body.decode()).items() if n.startswith("kubeinfer_generation_")}
    assert emitted == docs


def test_a_list_of_prompts_gets_n_choices_each_in_order(client: openai.OpenAI) -> None:
    both = client.completions.create(model="tiny-llm", prompt=["Hello", "The quick"], n=2, max_tokens=4, temperature=0)
    assert [c.index for c in both.choices] == [0, 1, 2, 3]
    hello = client.completions.create(model="tiny-llm", prompt="Hello", max_tokens=4, temperature=0)
    quick = client.completions.create(model="tiny-llm", prompt="The quick", max_tokens=4, temperature=0)
    assert [c.text for c in both.choices] == [hello.choices[0].text] * 2 + [quick.choices[0].text] * 2
    assert both.usage.prompt_tokens == hello.usage.prompt_tokens + quick.usage.prompt_tokens
