"""Text generation over HTTP: OpenAI's ``/v1/completions`` and ``/v1/chat/completions``, and the Open Inference
Protocol generate extension (``/v2/models/{name}/generate`` and ``generate_stream``), for a model of format ``llm``.

The routes are rows of ``routes.py`` like every other; their handlers live here, on :class:`GenerateRoutes`, which
:class:`~kubeinfer.server.app.InferenceApp` holds as ``generate`` (a route's handler ``generate.completions`` is that
object's method). A request is validated (pydantic, errors naming the parameter), turned into one engine sequence per
prompt and choice (``n``), and answered whole or streamed as server-sent events as the engine's tokens arrive (the
engine runs on its own thread and hands each step's output to the event loop).

What the OpenAI routes follow: OpenAI's request and response objects (``id``, ``object``, ``created``, ``choices``,
``usage``; ``stream_options.include_usage``; ``data: [DONE]`` at the end of a stream) and its error object,
``{"error": {"message", "type", "param", "code"}}``, 400 for bad input. A stream has one event per generated token,
as vLLM's server sends them: a token that adds no text yet (part of a UTF-8 character, or text held back because it
may be the start of a stop string) is an event with empty text, so a client's first event comes with the first
token; a chat stream's first event, the assistant's role, goes out with it too. The OIP routes follow KServe's and
Triton's generate extension (``text_input`` and ``parameters`` in, ``text_output`` out) and answer errors in the
protocol's ``{"error": "..."}``. A client that disconnects stops its sequences: they leave the batch before the engine's next
step and their caches are freed.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kubeinfer.runtimes.llm import SamplingParams, TextGenerator, generator_of
from kubeinfer.server.errors import InvalidInput, ModelNotFound, ServerError, http_status
from kubeinfer.server.generate_metrics import GenerationMetrics

if TYPE_CHECKING:
    from kubeinfer.runtimes.llm.engine import Output
    from kubeinfer.server.app import InferenceApp, _Call
    from kubeinfer.server.dataplane import ModelSlot

__all__ = ["SCHEMAS", "ChatRequest", "CompletionRequest", "GenerateRequest", "GenerateRoutes"]

_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_DONE = b"data: [DONE]\n\n"
MAX_CHOICES = 256  # sequences one request may start (prompts x n)
CLIENT_CLOSED = 499  # the status recorded for a request whose client went away (nginx's convention)


# -- requests --------------------------------------------------------------------------------------------
class _Sampling(BaseModel):
    """The sampling parameters every generate route takes."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    ignore_eos: bool = False

    def stops(self) -> tuple[str, ...]:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or ())
        if len(stop) > 4:
            raise InvalidInput("stop: at most 4 stop sequences")
        return tuple(s for s in stop if s)


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    include_usage: bool = False


class _OpenAI(_Sampling):
    model: str | None = None
    n: int = Field(default=1, ge=1, le=16)
    stream: bool = False
    stream_options: _StreamOptions | None = None
    logprobs: Any = None
    echo: bool = False


class CompletionRequest(_OpenAI):
    prompt: str | list[str] | list[int] | list[list[int]]


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    type: Literal["text"]
    text: str


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[_Part] | None = None

    def as_template(self) -> dict[str, str]:
        content = self.content
        text = "".join(p.text for p in content) if isinstance(content, list) else content or ""
        return {"role": self.role, "content": text}


class ChatRequest(_OpenAI):
    messages: list[_Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: Any = None


class _OipParameters(_Sampling):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GenerateRequest(BaseModel):
    """The OIP generate extension's body; parameters may also sit at the top level (Triton's form)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    text_input: str
    id: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)


def _parse(kind: type[BaseModel], body: bytes) -> Any:
    try:
        return kind.model_validate_json(body or b"null")
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        if first["type"] == "json_invalid":
            raise InvalidInput(f"request body is not valid JSON: {first['msg']}") from None
        if not where:
            raise InvalidInput(f"request body must be a JSON object ({first['msg']})") from None
        raise _ParamError(f"{where}: {first['msg']}", str(first["loc"][0])) from None


def _ParamError(message: str, param: str | None = None) -> InvalidInput:
    """Bad input (400) naming the request parameter (OpenAI's ``param``)."""
    e = InvalidInput(message)
    e.param = param  # type: ignore[attr-defined]
    return e


# -- one request's sequences on the engine ---------------------------------------------------------------
class _Mailbox:
    """Hands the engine thread's outputs to the event loop with one wake-up per batch of outputs, not one per token:
    at 16 sequences a decode pass makes 16 outputs, and each ``call_soon_threadsafe`` writes to the loop's self-pipe
    and costs the loop a turn."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._items: deque[tuple[asyncio.Queue[tuple[int, Output] | None], tuple[int, Output]]] = deque()
        self._lock = threading.Lock()
        self._scheduled = False

    def post(self, queue: asyncio.Queue[tuple[int, Output] | None], item: tuple[int, Output]) -> None:
        """On the engine's thread."""
        with self._lock:
            self._items.append((queue, item))
            if self._scheduled:
                return
            self._scheduled = True
        self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            items, self._items = self._items, deque()
            self._scheduled = False
        for queue, item in items:
            queue.put_nowait(item)


class _Run:
    """The engine sequences of one request (one per prompt and choice); their outputs in one loop-side queue."""

    def __init__(
        self, generator: TextGenerator, model: str, metrics: GenerationMetrics, started: float, mailbox: _Mailbox
    ) -> None:
        self.engine = generator.engine
        self.model = model
        self.metrics = metrics
        self.started = started
        self.mailbox = mailbox
        self.queue: asyncio.Queue[tuple[int, Output] | None] = asyncio.Queue()
        self.seq_ids: list[int] = []
        self.open: set[int] = set()
        self.last: dict[int, float] = {}
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.aborted = False

    def add(self, index: int, prompt: list[int], params: SamplingParams) -> None:
        post, queue = self.mailbox.post, self.queue

        def deliver(out: Output) -> None:  # on the engine's thread
            post(queue, (index, out))

        self.open.add(index)
        self.seq_ids.append(self.engine.add(prompt, params, deliver))

    def abort(self) -> None:
        for seq_id in self.seq_ids:
            self.engine.abort(seq_id)
        self.open.clear()
        self.aborted = True
        self.queue.put_nowait(None)

    async def outputs(self) -> list[tuple[int, Output]] | None:
        """The outputs ready now (waiting for at least one); ``None`` once every sequence ended or was aborted."""
        if not self.open:
            return None
        item = await self.queue.get()
        items = [item]
        while not self.queue.empty():
            items.append(self.queue.get_nowait())
        ready: list[tuple[int, Output]] = []
        now = time.perf_counter()
        for entry in items:
            if entry is None:
                return None
            index, out = entry
            previous = self.last.get(index)
            if previous is None:
                self.metrics.first_token(self.model, now - self.started)
            else:
                self.metrics.next_token(self.model, now - previous)
            self.last[index] = now
            if out.finish_reason is not None:
                self.open.discard(index)
                self.completion_tokens += out.completion_tokens
                if out.finish_reason.startswith("error"):
                    self.abort()
                    raise ServerError(f"generation failed: {out.finish_reason.removeprefix('error: ')}")
            ready.append((index, out))
        return ready


async def _watch_disconnect(call: _Call, run: _Run) -> None:
    """Abort the run when the client goes away (the ASGI server answers ``http.disconnect``)."""
    while True:
        msg = await call.receive()
        if msg["type"] == "http.disconnect":
            run.abort()
            return


# -- the routes ------------------------------------------------------------------------------------------
class GenerateRoutes:
    """The handlers of the generate routes over one :class:`~kubeinfer.server.app.InferenceApp`."""

    def __init__(self, app: InferenceApp) -> None:
        self.app = app
        self.plane = app.plane
        self.metrics = GenerationMetrics(self._engines)
        self._box: _Mailbox | None = None
        self.plane.metrics.registry.register(self.metrics)

    def _mailbox(self) -> _Mailbox:
        loop = asyncio.get_running_loop()
        if self._box is None or self._box.loop is not loop:
            self._box = _Mailbox(loop)
        return self._box

    def _engines(self) -> list[tuple[str, Any]]:
        out = []
        for slot in self.plane.models.values():
            gen = generator_of(slot.model)
            if gen is not None:
                out.append((slot.name, gen.engine))
        return out

    def _generator(self, slot: ModelSlot) -> TextGenerator:
        self.plane.live_model(slot)  # 503 while loading, 429 past the concurrency limit
        gen = generator_of(slot.model)
        if gen is None:
            raise InvalidInput(f"model {slot.name!r} does not generate text (it is not of format 'llm')")
        return gen

    def _choose(self, name: str | None) -> ModelSlot:
        """The model an OpenAI request names, or the one generative model served."""
        if name is not None:
            return self.plane.model(name, None)
        served = [s for s in self.plane.models.values() if generator_of(s.model) is not None]
        if len(served) == 1:
            return served[0]
        if not served:
            raise ModelNotFound("this server serves no text generation model")
        raise _ParamError('"model" is required: name the model', "model")

    # -- OpenAI ----------------------------------------------------------------------------------------
    async def completions(self, call: _Call) -> int:
        return await self._openai(call, chat=False)

    async def chat_completions(self, call: _Call) -> int:
        return await self._openai(call, chat=True)

    async def _openai(self, call: _Call, chat: bool) -> int:
        started = time.perf_counter()
        try:
            body, _ = await self.app._read_body(call.scope, call.receive)
            req: CompletionRequest | ChatRequest = _parse(ChatRequest if chat else CompletionRequest, body)
            slot = self._choose(req.model)
            call.slot = slot
            gen = self._generator(slot)
            if req.logprobs:
                raise _ParamError("logprobs are not supported", "logprobs")
            if req.echo:
                raise _ParamError("echo is not supported", "echo")
            if isinstance(req, ChatRequest):
                if req.tools:
                    raise _ParamError("tools are not supported", "tools")
                try:
                    prompts = [gen.chat_prompt([m.as_template() for m in req.messages])]
                except Exception as e:  # the template refused the conversation (roles, order)
                    raise _ParamError(f"messages: {e}", "messages") from None
                max_tokens = req.max_completion_tokens or req.max_tokens
            else:
                prompts = self._prompts(gen, req.prompt)
                max_tokens = req.max_tokens or 16  # OpenAI's default for completions
            if len(prompts) * req.n > MAX_CHOICES:
                raise _ParamError(f"prompts x n is {len(prompts) * req.n}; at most {MAX_CHOICES} choices", "n")
            params = self._params(gen, req, prompts, max_tokens)
        except ServerError as e:
            return await _openai_error(call, e)
        run = _Run(gen, slot.name, self.metrics, started, self._mailbox())
        for p, prompt in enumerate(prompts):
            run.prompt_tokens += len(prompt)
            for j in range(req.n):
                seed = None if req.seed is None else req.seed + j
                run.add(p * req.n + j, prompt, _with_seed(params[p], seed))
        rid = ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12)
        head = {"id": rid, "object": "chat.completion" if chat else "text_completion", "created": int(time.time())}
        head["model"] = slot.name
        watcher = asyncio.create_task(_watch_disconnect(call, run), name="kubeinfer-disconnect")
        try:
            if req.stream:
                return await self._openai_stream(call, run, head, chat, len(prompts) * req.n, req)
            return await self._openai_whole(call, run, head, chat, len(prompts) * req.n)
        finally:
            watcher.cancel()
            if run.open:  # the handler was cancelled (shutdown) or failed: the sequences stop with it
                run.abort()

    def _prompts(self, gen: TextGenerator, prompt: Any) -> list[list[int]]:
        if isinstance(prompt, str):
            texts: list[Any] = [prompt]
        elif prompt and all(isinstance(t, int) for t in prompt):
            texts = [prompt]
        else:
            texts = list(prompt)
        if not texts:
            raise _ParamError("prompt: must not be empty", "prompt")
        vocab = len(gen.tokenizer)
        out = []
        for t in texts:
            if isinstance(t, str):
                out.append(gen.encode(t))
            else:
                if any(i < 0 or i >= vocab for i in t):
                    raise _ParamError(f"prompt: token ids must be in [0, {vocab})", "prompt")
                out.append(list(t))
        return out

    def _params(
        self, gen: TextGenerator, req: _Sampling, prompts: Sequence[list[int]], max_tokens: int | None
    ) -> list[SamplingParams]:
        stops = req.stops()
        params = []
        for prompt in prompts:
            try:
                allowed = gen.check_length(len(prompt), max_tokens)
            except ValueError as e:
                raise _ParamError(str(e), "max_tokens" if "max_tokens" in str(e) else "prompt") from None
            params.append(
                SamplingParams(
                    max_tokens=allowed,
                    temperature=req.temperature,
                    top_p=req.top_p,
                    seed=req.seed,
                    stop=stops,
                    ignore_eos=req.ignore_eos,
                )
            )
        return params

    async def _openai_whole(self, call: _Call, run: _Run, head: dict[str, Any], chat: bool, choices: int) -> int:
        texts = [[] for _ in range(choices)]  # type: list[list[str]]
        reasons: list[str | None] = [None] * choices
        try:
            while (batch := await run.outputs()) is not None:
                for index, out in batch:
                    texts[index].append(out.text)
                    reasons[index] = out.finish_reason
        except ServerError as e:
            return await _openai_error(call, e)
        if run.aborted:
            return CLIENT_CLOSED
        doc = dict(head)
        if chat:
            doc["choices"] = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": "".join(texts[i])},
                    "logprobs": None,
                    "finish_reason": reasons[i],
                }
                for i in range(choices)
            ]
        else:
            doc["choices"] = [
                {"index": i, "text": "".join(texts[i]), "logprobs": None, "finish_reason": reasons[i]}
                for i in range(choices)
            ]
        doc["usage"] = _usage(run)
        await _send(call, 200, orjson.dumps(doc), _JSON)
        return 200

    async def _openai_stream(
        self, call: _Call, run: _Run, head: dict[str, Any], chat: bool, choices: int, req: _OpenAI
    ) -> int:
        head = dict(head, object="chat.completion.chunk" if chat else "text_completion")
        await call.send({"type": "http.response.start", "status": 200, "headers": _SSE})
        greeted = not chat  # chat: the assistant's role goes out once, with the first output (as vLLM sends it)
        try:
            while (batch := await run.outputs()) is not None:
                events = []
                if not greeted:
                    greeted = True
                    first = [
                        {
                            "index": i,
                            "delta": {"role": "assistant", "content": ""},
                            "logprobs": None,
                            "finish_reason": None,
                        }
                        for i in range(choices)
                    ]
                    events.append(dict(head, choices=first))
                for index, out in batch:
                    # one event per generated token, also when it adds no text yet (part of a character, or text held
                    # back as the start of a stop string): the client sees each token as it is made, as vLLM's server
                    # sends it; an output without tokens and without an end (none is made) sends nothing
                    if not out.token_ids and not out.text and out.finish_reason is None:
                        continue
                    if chat:
                        delta = {"content": out.text} if out.text or out.finish_reason is None else {}
                        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": out.finish_reason}
                    else:
                        choice = {
                            "index": index,
                            "text": out.text,
                            "logprobs": None,
                            "finish_reason": out.finish_reason,
                        }
                    events.append(dict(head, choices=[choice]))
                await _event(call, events)
        except ServerError as e:
            await _event(call, [{"error": _openai_error_object(e)}], done=True)
            return int(http_status(e))
        if run.aborted:
            return CLIENT_CLOSED
        if req.stream_options is not None and req.stream_options.include_usage:
            await _event(call, [dict(head, choices=[], usage=_usage(run))])
        await _event(call, [], done=True)
        return 200

    # -- Open Inference Protocol generate extension ----------------------------------------------------------
    async def generate(self, call: _Call) -> int:
        return await self._oip(call, stream=False)

    async def generate_stream(self, call: _Call) -> int:
        return await self._oip(call, stream=True)

    async def _oip(self, call: _Call, stream: bool) -> int:
        started = time.perf_counter()
        slot = call.slot
        if slot is None:
            raise ModelNotFound("this route names no model")
        gen = self._generator(slot)
        body, _ = await self.app._read_body(call.scope, call.receive)
        req: GenerateRequest = _parse(GenerateRequest, body)
        merged = {**(req.model_extra or {}), **req.parameters}
        try:
            sampling = _OipParameters.model_validate(merged)
        except ValidationError as e:
            first = e.errors(include_url=False)[0]
            raise InvalidInput(f"parameters.{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
        prompt = gen.encode(req.text_input)
        params = self._params(gen, sampling, [prompt], sampling.max_tokens or 16)[0]
        run = _Run(gen, slot.name, self.metrics, started, self._mailbox())
        run.prompt_tokens = len(prompt)
        run.add(0, prompt, params)
        head: dict[str, Any] = {"model_name": slot.name, "model_version": slot.version}
        if req.id is not None:
            head["id"] = req.id
        watcher = asyncio.create_task(_watch_disconnect(call, run), name="kubeinfer-disconnect")
        try:
            return await (self._oip_stream(call, run, head) if stream else self._oip_whole(call, run, head))
        finally:
            watcher.cancel()
            if run.open:  # the handler was cancelled (shutdown) or failed: the sequences stop with it
                run.abort()

    async def _oip_whole(self, call: _Call, run: _Run, head: dict[str, Any]) -> int:
        parts: list[str] = []
        reason: str | None = None
        while (batch := await run.outputs()) is not None:
            for _, out in batch:
                parts.append(out.text)
                reason = out.finish_reason
        if run.aborted or reason is None:
            return CLIENT_CLOSED
        doc = dict(head, text_output="".join(parts), details=_details(run, reason))
        await _send(call, 200, orjson.dumps(doc), _JSON)
        return 200

    async def _oip_stream(self, call: _Call, run: _Run, head: dict[str, Any]) -> int:
        await call.send({"type": "http.response.start", "status": 200, "headers": _SSE})
        reason: str | None = None
        try:
            while (batch := await run.outputs()) is not None:
                events = []
                for _, out in batch:
                    reason = out.finish_reason
                    doc = dict(head, text_output=out.text)
                    if reason is not None:
                        doc["details"] = _details(run, reason)
                    events.append(doc)
                await _event(call, events)
        except ServerError as e:
            await _event(call, [{"error": str(e)}])
            await call.send({"type": "http.response.body", "body": b"", "more_body": False})
            return int(http_status(e))
        await call.send({"type": "http.response.body", "body": b"", "more_body": False})
        return CLIENT_CLOSED if run.aborted else 200


def _with_seed(params: SamplingParams, seed: int | None) -> SamplingParams:
    if seed == params.seed:
        return params
    from dataclasses import replace

    return replace(params, seed=seed)


def _usage(run: _Run) -> dict[str, int]:
    return {
        "prompt_tokens": run.prompt_tokens,
        "completion_tokens": run.completion_tokens,
        "total_tokens": run.prompt_tokens + run.completion_tokens,
    }


def _details(run: _Run, reason: str) -> dict[str, Any]:
    return {"finish_reason": reason, "prompt_tokens": run.prompt_tokens, "completion_tokens": run.completion_tokens}


_ERROR_TYPES = {400: "invalid_request_error", 404: "invalid_request_error", 429: "rate_limit_error"}


def _openai_error_object(e: ServerError) -> dict[str, Any]:
    status = int(http_status(e))
    code = "model_not_found" if isinstance(e, ModelNotFound) else None
    return {
        "message": str(e),
        "type": _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"),
        "param": getattr(e, "param", None),
        "code": code,
    }


async def _openai_error(call: _Call, e: ServerError) -> int:
    status = int(http_status(e))
    headers = list(_JSON)
    if e.retry_after is not None and status in (429, 503):
        headers.append((b"retry-after", str(max(1, round(e.retry_after))).encode()))
    await _send(call, status, orjson.dumps({"error": _openai_error_object(e)}), headers)
    return status


async def _event(call: _Call, docs: list[dict[str, Any]], done: bool = False) -> None:
    body = b"".join(b"data: " + orjson.dumps(d) + b"\n\n" for d in docs) + (_DONE if done else b"")
    if body:
        await call.send({"type": "http.response.body", "body": body, "more_body": not done})
    elif done:
        await call.send({"type": "http.response.body", "body": b"", "more_body": False})


async def _send(call: _Call, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await call.send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await call.send({"type": "http.response.body", "body": body})


# The OpenAPI schemas of these routes (openapi.py adds them to the document).
_USAGE = {
    "type": "object",
    "properties": {k: {"type": "integer"} for k in ("prompt_tokens", "completion_tokens", "total_tokens")},
}
_SAMPLING_PROPS: dict[str, Any] = {
    "max_tokens": {"type": "integer", "minimum": 1},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "top_p": {"type": "number", "exclusiveMinimum": True, "minimum": 0, "maximum": 1},
    "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 4}]},
    "seed": {"type": "integer"},
    "ignore_eos": {"type": "boolean"},
}
_OPENAI_PROPS: dict[str, Any] = {
    **_SAMPLING_PROPS,
    "model": {"type": "string"},
    "n": {"type": "integer", "minimum": 1, "maximum": 16},
    "stream": {"type": "boolean"},
    "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
}


def _completion_schema(description: str) -> dict[str, Any]:
    """A completion or chat completion answer: the same envelope, told apart by ``object``."""
    return {
        "type": "object",
        "description": description,
        "required": ["id", "object", "created", "model", "choices"],
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string"},
            "created": {"type": "integer"},
            "model": {"type": "string"},
            "choices": {"type": "array", "items": {"type": "object"}},
            "usage": _USAGE,
        },
    }


SCHEMAS: dict[str, Any] = {
    "OpenAIError": {
        "type": "object",
        "required": ["message", "type"],
        "properties": {
            "message": {"type": "string"},
            "type": {"type": "string"},
            "param": {"type": "string", "nullable": True},
            "code": {"type": "string", "nullable": True},
        },
    },
    "CompletionRequest": {
        "type": "object",
        "required": ["prompt"],
        "properties": {
            **_OPENAI_PROPS,
            "prompt": {
                "oneOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string"}, "minItems": 1},
                    {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1},
                ]
            },
        },
    },
    "ChatCompletionRequest": {
        "type": "object",
        "required": ["messages"],
        "properties": {
            **_OPENAI_PROPS,
            "max_completion_tokens": {"type": "integer", "minimum": 1},
            "messages": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["role"],
                    "properties": {
                        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
                        "content": {"type": "string"},
                    },
                },
            },
        },
    },
    "CompletionResponse": _completion_schema(
        "With stream true: text/event-stream of these objects (object text_completion), then [DONE]."
    ),
    "ChatCompletionResponse": _completion_schema(
        "With stream true: text/event-stream of chat.completion.chunk objects, then [DONE]."
    ),
    "GenerateRequest": {
        "type": "object",
        "required": ["text_input"],
        "properties": {
            "text_input": {"type": "string"},
            "id": {"type": "string"},
            "parameters": {"type": "object", "properties": _SAMPLING_PROPS, "additionalProperties": False},
        },
    },
    "GenerateResponse": {
        "type": "object",
        "description": "generate_stream: text/event-stream of these objects, the last with details.",
        "required": ["model_name", "text_output"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "text_output": {"type": "string"},
            "details": {"type": "object"},
        },
    },
}
