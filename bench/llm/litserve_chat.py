"""LitServe serving a Hugging Face causal LM folder behind its OpenAI spec, streaming, on ``transformers``.

    bench/peers/.envs/litserve-llm/bin/python bench/llm/litserve_chat.py MODEL_DIR --port 8000 \
        [--max-batch-size 16 --batch-timeout 0.01] [--workers 1] [--threads 1] [--ignore-eos] [--fast-queue]

What a LitServe user writes for a chat model: a ``LitAPI`` with ``spec=OpenAISpec()`` (``/v1/chat/completions``,
streaming), ``setup`` loading the model and tokenizer, and a ``predict`` generator around ``model.generate`` with a
streamer (``generate`` runs on a thread; the streamer hands each step's tokens to ``predict``, which yields the new
text). The prompt goes through the tokenizer's chat template, as kubeinfer's chat route does.

LitServe has two ways to stream generation (``bench/llm/PEERS.md`` says more):

- ``--max-batch-size 1`` (default): LitServe's ``StreamingLoop``; a worker generates one request at a time, the others
  wait in LitServe's queue. ``--workers`` worker processes (LitServe's ``workers_per_device``) each hold a copy of the
  model and take requests from the same queue.
- ``--max-batch-size N``: LitServe's ``BatchedStreamingLoop`` (its dynamic batching, with ``batch_timeout``): a worker
  takes up to N waiting requests, ``predict`` gets them together and yields one list of texts per step. The batch is
  static: one ``model.generate`` over the left-padded prompts runs until the longest request has its tokens, and the
  requests' streams end together, when it is done; requests that arrive meanwhile wait for the next batch.

OpenAI's ``ChatCompletionRequest`` model in LitServe drops fields it does not know, so ``ignore_eos`` cannot come with
the request: ``--ignore-eos`` makes every request generate its ``max_tokens`` (EOS is generated like any token and
does not end the sequence, as kubeinfer's ``ignore_eos`` does).
"""

from __future__ import annotations

import argparse
import copy
import queue
import threading
from collections.abc import Iterator
from typing import Any

try:
    import litserve as ls
    from transformers.generation.streamers import BaseStreamer
except ImportError:  # imported by the linter outside the env
    ls = None
    BaseStreamer = object

REPLACEMENT = "\ufffd"


class _Steps(BaseStreamer):  # type: ignore[misc,valid-type]
    """A streamer that hands each generated step (one token per row) to the consumer, through a queue."""

    def __init__(self) -> None:
        self.queue: queue.Queue[list[int] | None] = queue.Queue()
        self._prompt = True

    def put(self, value: Any) -> None:
        if self._prompt:  # generate's first call is the prompt
            self._prompt = False
            return
        self.queue.put(value.reshape(-1).tolist())

    def end(self) -> None:
        self.queue.put(None)


class _Text:
    """The text of one row's tokens so far, and the part already sent (a character still incomplete waits)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.sent = 0

    def push(self, token: int) -> str:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith(REPLACEMENT) or len(text) <= self.sent:
            return ""
        new, self.sent = text[self.sent :], len(text)
        return new

    def flush(self) -> str:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        new, self.sent = text[self.sent :], max(self.sent, len(text))
        return new


class Chat(ls.LitAPI if ls else object):  # type: ignore[misc]
    """One request at a time (LitServe's streaming loop)."""

    def __init__(self, model_dir: str, threads: int, ignore_eos: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_dir = model_dir
        self.threads = threads
        self.ignore_eos = ignore_eos

    def setup(self, device: str) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(self.threads)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.tokenizer.padding_side = "left"
        self.model = AutoModelForCausalLM.from_pretrained(self.model_dir).to(device).eval()
        eos = self.model.generation_config.eos_token_id
        self.eos = set() if eos is None else {eos} if isinstance(eos, int) else set(eos)
        if self.ignore_eos:
            # on the model's own config: generate fills what a config passed to it leaves unset from that one
            self.model.generation_config.eos_token_id = None
        self.config = copy.deepcopy(self.model.generation_config)

    def generate(self, requests: list[Any]) -> Iterator[list[dict[str, Any]]]:
        """Greedy (or sampled, by the first request's temperature) generation for a list of chat requests: yields
        one list per step with each request's new text; the last list carries the token counts."""
        import torch

        prompts = [
            self.tokenizer.apply_chat_template(
                [{"role": m.role, "content": m.content} for m in r.messages], add_generation_prompt=True, tokenize=False
            )
            for r in requests
        ]
        inputs = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        limits = [r.max_completion_tokens or r.max_tokens or 16 for r in requests]
        temperature = requests[0].temperature or 0.0
        sampling = {"do_sample": True, "temperature": temperature, "top_p": requests[0].top_p or 1.0}
        config = copy.deepcopy(self.config)
        config.update(max_new_tokens=max(limits), **(sampling if temperature > 0 else {"do_sample": False}))
        streamer = _Steps()
        kwargs = {**inputs, "generation_config": config, "streamer": streamer}

        def run() -> None:
            try:
                with torch.inference_mode():
                    self.model.generate(**kwargs)
            finally:
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        texts = [_Text(self.tokenizer) for _ in requests]
        stop = set() if self.ignore_eos else self.eos
        done = [False] * len(requests)
        while (step := streamer.queue.get()) is not None:
            out = []
            for i, token in enumerate(step):
                if done[i]:
                    out.append({"role": "assistant", "content": ""})
                    continue
                text = texts[i].push(token)
                if len(texts[i].ids) >= limits[i] or token in stop:
                    done[i] = True
                    text += texts[i].flush()
                out.append({"role": "assistant", "content": text})
            yield out
        thread.join()
        yield [
            {
                "role": "assistant",
                "content": "",
                "prompt_tokens": p,
                "completion_tokens": len(t.ids),
                "total_tokens": p + len(t.ids),
            }
            for p, t in zip(prompt_tokens, texts, strict=True)
        ]

    def predict(self, request: Any) -> Iterator[dict[str, Any]]:
        for out in self.generate([request]):
            yield out[0]


class BatchedChat(Chat):
    """Up to ``max_batch_size`` requests together (LitServe's batched streaming loop)."""

    def batch(self, inputs: list[Any]) -> list[Any]:
        return inputs

    def predict(self, requests: list[Any]) -> Iterator[list[dict[str, Any]]]:  # type: ignore[override]
        yield from self.generate(requests)

    def unbatch(self, output: Any) -> Any:
        return output

    def encode_response(self, outputs: Iterator[list[dict[str, Any]]]) -> Iterator[list[dict[str, Any]]]:
        yield from outputs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--max-batch-size", type=int, default=1)
    ap.add_argument("--batch-timeout", type=float, default=0.0, help="seconds")
    ap.add_argument("--workers", type=int, default=1, help="LitServe's workers_per_device")
    ap.add_argument("--threads", type=int, default=1, help="PyTorch threads per worker")
    ap.add_argument("--ignore-eos", action="store_true")
    ap.add_argument("--fast-queue", action="store_true", help="LitServe's ZeroMQ transport between workers and API")
    args = ap.parse_args()
    common = {"spec": ls.OpenAISpec(), "stream": True}
    if args.max_batch_size > 1:
        api: Chat = BatchedChat(
            args.model_dir,
            args.threads,
            args.ignore_eos,
            max_batch_size=args.max_batch_size,
            batch_timeout=args.batch_timeout,
            **common,
        )
    else:
        api = Chat(args.model_dir, args.threads, args.ignore_eos, **common)
    server = ls.LitServer(
        api, accelerator="cpu", workers_per_device=args.workers, timeout=600, fast_queue=args.fast_queue
    )
    server.run(host="127.0.0.1", port=args.port, generate_client_file=False, log_level="warning")


if __name__ == "__main__":
    main()
