"""``vllm.v1.engine.async_llm.AsyncLLM``, the stand-in (see the package's docstring)."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import sys
from collections.abc import AsyncGenerator
from dataclasses import asdict, dataclass
from typing import Any

from vllm import AsyncEngineArgs
from vllm.sampling_params import RequestOutputKind, SamplingParams

_REPLACEMENT = "\ufffd"


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None


@dataclass
class RequestOutput:
    request_id: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool


@dataclass
class ModelConfig:
    max_model_len: int


class AsyncLLM:
    """Greedy or seeded sampling over the folder's transformers model, one token per step, one sequence at a time."""

    def __init__(self, args: AsyncEngineArgs) -> None:
        import torch
        import transformers

        if args.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"unknown dtype {args.dtype!r}")
        self.args = args
        self.torch = torch
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(args.tokenizer or args.model)
        self.model = transformers.AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
        limit = int(self.model.config.max_position_embeddings)
        if args.max_model_len is not None and args.max_model_len > limit:
            raise ValueError(f"max_model_len ({args.max_model_len}) is greater than the model's {limit}")
        self.model_config = ModelConfig(args.max_model_len or limit)
        eos = self.model.generation_config.eos_token_id
        self.eos = {eos} if isinstance(eos, int) else set(eos or ())
        forward = inspect.signature(type(self.model).forward).parameters
        self.cache_arg = "cache" if "cache" in forward else "past_key_values"  # transformers 5 / 4.x
        self.lock = asyncio.Lock()  # one sequence steps at a time
        self.aborted: list[str] = []
        self.closed = False
        # what kubeinfer asked for, for the tests to read back
        record = os.environ.get("FAKE_VLLM_RECORD")
        if record:
            with open(record, "w") as f:
                json.dump(asdict(args), f)
        print(f"fake vLLM: engine args {json.dumps(asdict(args), sort_keys=True)}", file=sys.stderr, flush=True)

    @classmethod
    def from_engine_args(cls, engine_args: AsyncEngineArgs, **_: Any) -> AsyncLLM:
        return cls(engine_args)

    def shutdown(self) -> None:
        self.closed = True

    async def generate(
        self, prompt: dict[str, Any], sampling_params: SamplingParams, request_id: str, **_: Any
    ) -> AsyncGenerator[RequestOutput, None]:
        if self.closed:
            raise RuntimeError("engine is shut down")
        torch = self.torch
        ids = list(prompt["prompt_token_ids"])
        p = sampling_params
        if p.n != 1 or p.output_kind is not RequestOutputKind.DELTA:
            raise ValueError("the stand-in serves n=1 in DELTA mode only")
        limit = min(p.max_tokens or self.model_config.max_model_len, self.model_config.max_model_len - len(ids))
        gen = torch.Generator().manual_seed(p.seed if p.seed is not None else 0) if p.temperature > 0 else None
        out: list[int] = []
        sent_text = ""
        sent_tokens = 0
        cache = None
        step_ids = torch.tensor([ids])
        try:
            while True:
                async with self.lock:
                    with torch.no_grad():
                        res = self.model(step_ids, **{self.cache_arg: cache}, use_cache=True)
                    cache = res.past_key_values
                    logits = res.logits[0, -1]
                    if gen is None:
                        token = int(logits.argmax())
                    else:
                        probs = torch.softmax(logits / p.temperature, -1)
                        token = int(torch.multinomial(probs, 1, generator=gen))
                await asyncio.sleep(0)
                out.append(token)
                step_ids = torch.tensor([[token]])
                finish = None
                if token in self.eos and not p.ignore_eos:
                    finish = "stop"
                text = self.tokenizer.decode(out, skip_special_tokens=p.skip_special_tokens)
                if finish is None and p.stop:
                    cuts = [i for i in (text.find(s) for s in p.stop) if i >= 0]
                    if cuts:
                        text, finish = text[: min(cuts)], "stop"
                if finish is None and len(out) >= limit:
                    finish = "length"
                if finish is None and text.endswith(_REPLACEMENT):
                    text = sent_text  # an incomplete character: its text waits, the token goes out (as vLLM's)
                delta = text[len(sent_text) :] if text.startswith(sent_text) else text
                new_tokens = out[sent_tokens:]
                sent_text, sent_tokens = text, len(out)
                done = finish is not None
                yield RequestOutput(request_id, ids, [CompletionOutput(0, delta, new_tokens, finish)], done)
                if done:
                    return
        except (asyncio.CancelledError, GeneratorExit):
            self.aborted.append(request_id)
            print(f"fake vLLM: aborted {request_id}", file=sys.stderr, flush=True)
            raise
