"""The continuous-batching engine over a Hugging Face causal LM (``transformers``), on one thread of its own.

A step (``scheduler.py`` decides which sequences) is at most three forward passes: one over the prompts of the
sequences that join (left-padded to the longest, no cache), a second one for those that arrived while the first ran
(``Scheduler.join``), and one that decodes the next token of every running sequence; the joining sequences' first
tokens go out before the decode pass. The running batch keeps one key/value cache, ``[rows, kv_heads, width,
head_dim]`` per layer, left-padded: row ``r``'s first ``pads[r]`` columns are padding, masked by ``attention_mask``, and
each row has its own positions (``position_ids``). From one decode pass to the next the same ``DynamicCache`` is handed
back to the model (it appends the new column), so a step copies nothing beyond what the model's own cache update does
(rebuilding it over the same tensors at every pass would copy the whole cache once more). When
a sequence ends (or its client goes away) its row is cut out and the padding every remaining row shares is trimmed;
joining sequences' prompt caches are merged in after the decode pass, both sides padded to the wider. The result is
the one ``model.generate`` computes for the same prompt alone (greedy outputs are tested to be identical).

Attention runs ``eager``: padded rows whose queries see only padding then get a finite, ignored result (an SDPA kernel
may produce NaN there, which the next layer would spread).

Requests come in and results go out through thread-safe calls: :meth:`Engine.add` and :meth:`Engine.abort` from any
thread, ``on_output`` called on the engine's thread with each sequence's new tokens and text (the server hands them to
its event loop). The outputs of a pass are delivered when the pass ends (each sequence has one output per pass, so its
tokens arrive in order).
"""

from __future__ import annotations

import gc
import inspect
import itertools
import logging
import random
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from kubeinfer.runtimes.llm.scheduler import Scheduler, SchedulerConfig
from kubeinfer.runtimes.llm.text import FinishReason, SamplingParams, TextTail

__all__ = ["Engine", "EngineStats", "Output"]

log = logging.getLogger("kubeinfer.llm")

SWITCH_INTERVAL = 0.0005  # seconds; see tune_for_serving


def tune_for_serving() -> None:
    """Tune this process for answering requests while one of its threads works beside the event loop: the engine's
    (in the server's process), or the reader of an engine process's outputs (in the server's, beside the child).

    That thread runs Python (the model's modules and sampling between the kernels that release the GIL; the reader,
    each pass's outputs); with the default 5 ms switch interval the event loop could wait that long for the GIL to
    answer a request, send a token, or return from writing a request to the engine process's pipe (a system call
    gives the GIL up). A shorter interval lets it in sooner (time to first token under load).

    The objects loaded so far (the model's modules, torch, transformers, the server: hundreds of thousands) live as
    long as the process, but a full collection of the oldest generation walks them all: a pause of hundreds of
    milliseconds on a small CPU, which every running sequence and every arriving request waits out (it set the tail
    of the time to first token). Frozen, they are out of the collector's reach (reference counting still frees them);
    the engine's ``stop`` gives them back to it (``gc.unfreeze``), so that a model unloaded later can be collected."""
    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
    gc.collect()
    gc.freeze()


@dataclass(frozen=True, slots=True)
class Output:
    """What one step produced for one sequence: new tokens and text, and why it ended (on its last output)."""

    token_ids: tuple[int, ...]
    text: str
    finish_reason: FinishReason | None
    prompt_tokens: int
    completion_tokens: int


@dataclass(slots=True)
class EngineStats:
    """Counters the server's metrics read (plain values, written by the engine's thread only)."""

    prompt_tokens: int = 0
    generated_tokens: int = 0
    steps: int = 0
    # tokens generated per whole second of the monotonic clock, for the last minute: the tokens/s gauge
    recent: deque[list[int]] = field(default_factory=lambda: deque(maxlen=64))

    def generated(self, now: float, tokens: int) -> None:
        self.generated_tokens += tokens
        second = int(now)
        recent = self.recent
        if recent and recent[-1][0] == second:
            recent[-1][1] += tokens
        else:
            recent.append([second, tokens])

    def tokens_per_second(self, now: float, window: int = 10) -> float:
        """Tokens generated per second over the last ``window`` whole seconds (the current one excluded)."""
        second = int(now)
        return sum(n for s, n in list(self.recent) if second - window <= s < second) / window


class _Seq:
    __slots__ = ("generator", "id", "max_total", "on_output", "params", "prompt", "tail")

    def __init__(
        self,
        seq_id: int,
        prompt: list[int],
        params: SamplingParams,
        on_output: Callable[[Output], None],
        tail: TextTail,
        max_total: int,
    ) -> None:
        self.id = seq_id
        self.prompt = prompt
        self.params = params
        self.on_output = on_output
        self.tail = tail
        self.max_total = max_total  # prompt + generated tokens at most
        self.generator: torch.Generator | None = None
        if params.temperature > 0:
            self.generator = torch.Generator().manual_seed(
                params.seed if params.seed is not None else random.getrandbits(63)
            )

    @property
    def length(self) -> int:
        return len(self.prompt) + len(self.tail.ids)


class Engine:
    """Continuous batching over ``model`` (a ``transformers`` causal LM in eval mode) and its ``tokenizer``."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        config: SchedulerConfig,
        max_model_len: int,
        eos_ids: Sequence[int],
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.max_model_len = max_model_len
        self.eos_ids = frozenset(eos_ids)
        self.special_ids = frozenset(getattr(tokenizer, "all_special_ids", ()))
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        # a fast tokenizer's ``tokenizers.Tokenizer``: each sequence's text is then decoded by its DecodeStream (one
        # call into Rust per token; ``TextTail``), not by ``tokenizer.decode`` (two calls through Python)
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self._backend = backend if type(backend).__module__.startswith("tokenizers") else None
        self.device = next(model.parameters()).device
        self.stats = EngineStats()
        self._scheduler = Scheduler(config)
        self._rows: _Rows | None = None  # the running batch and its cache (engine thread only)
        # called on the engine's thread after each pass's outputs were handed out, and when the engine falls idle
        # (worker.py sends them on, with the counters, as one message)
        self.after_pass: Callable[[], None] | None = None
        self._seqs: dict[int, _Seq] = {}
        self._ids = itertools.count(1)
        self._inbox: list[_Seq] = []
        self._aborts: list[int] = []
        self._wake = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None
        # transformers 5 names the cache argument ``cache``; 4.x ``past_key_values``
        forward = inspect.signature(type(model).forward).parameters
        self._cache_arg = "cache" if "cache" in forward else "past_key_values"
        self._keep_arg = "logits_to_keep" in forward

    # -- any thread ------------------------------------------------------------------------------------
    def start(self) -> None:
        tune_for_serving()
        self._thread = threading.Thread(target=self._run, name="kubeinfer-llm-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)
            gc.unfreeze()

    def add(self, prompt: Sequence[int], params: SamplingParams, on_output: Callable[[Output], None]) -> int:
        """Queue a sequence; returns its id (for :meth:`abort`). The caller checked the prompt's length
        (:meth:`check_length`)."""
        seq_id = next(self._ids)
        decode: Callable[[Sequence[int]], str] = self._decode
        max_total = min(self.max_model_len, len(prompt) + params.max_tokens)
        seq = _Seq(seq_id, list(prompt), params, on_output, TextTail(decode, params.stop, self._backend), max_total)
        with self._wake:
            self._inbox.append(seq)
            self._wake.notify()
        return seq_id

    def abort(self, seq_id: int) -> None:
        """Stop a sequence (its client went away): it leaves the batch before the next step and its cache is freed."""
        with self._wake:
            self._aborts.append(seq_id)
            self._wake.notify()

    @property
    def num_waiting(self) -> int:
        return self._scheduler.num_waiting + len(self._inbox)

    @property
    def num_running(self) -> int:
        return self._scheduler.num_running

    @property
    def kv_cache_tokens(self) -> int:
        """Token positions the running batch's KV cache holds, the rows' left padding included (what it costs)."""
        rows = self._rows
        return 0 if rows is None else len(rows.seqs) * rows.width

    @property
    def kv_cache_capacity(self) -> int:
        """Token positions the cache can grow to: ``maxNumSeqs`` rows of the context length."""
        return self.config.max_num_seqs * self.max_model_len

    def _decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    # -- the engine's thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        torch.set_grad_enabled(False)
        while True:
            with self._wake:
                while not self._stopped and not self._inbox and not self._aborts and not self._seqs:
                    self._wake.wait()
                if self._stopped:
                    return
            try:
                self.step()
            except Exception as e:  # a bug or an out-of-memory: end every sequence of the step, keep serving
                log.exception("generation step failed")
                self._fail_all(f"{type(e).__name__}: {e}")
            if not self._seqs:
                self._rows = None  # idle now: the last batch's cache goes (it was held until the next request)
                if self.after_pass is not None:
                    self.after_pass()  # the last sequences ended or were aborted: say so once

    def _intake(self, aborts: bool) -> bool:
        """Hand the sequences added since the last call to the scheduler (and, with ``aborts``, drop the aborted
        ones: only between steps, when no pass holds their rows); whether any was added."""
        with self._wake:
            inbox, self._inbox = self._inbox, []
            if aborts:
                dropped, self._aborts = self._aborts, []
        for seq in inbox:
            self._seqs[seq.id] = seq
            self._scheduler.add(seq.id, len(seq.prompt))
            self.stats.prompt_tokens += len(seq.prompt)
        if aborts:
            for seq_id in dropped:
                if self._scheduler.abort(seq_id):
                    self._seqs.pop(seq_id, None)
        return bool(inbox)

    def step(self) -> None:
        """One step of continuous batching: take the sequences added and aborted since the last step, drop the rows
        that ended, prefill the joining sequences (their first tokens go out at once), prefill those that arrived
        meanwhile (once; ``Scheduler.join``), decode one token of every running row, then add the joined ones as
        rows. The engine's thread calls it in a loop; on an engine that was not started, a caller may."""
        self._intake(aborts=True)
        plan = self._scheduler.schedule()
        self._drop_ended()
        if plan.empty:
            return
        joined: _Rows | None = None
        if plan.prefill:
            joined = self._prefill(plan.prefill)
            # requests that arrived during that pass join this step too: their first tokens also go out before
            # the decode pass, instead of after it and the next step's prefill
            late = self._scheduler.join() if self._intake(aborts=False) else ()
            if late:
                joined = joined.merge(self._prefill(late))
        rows = self._rows
        if rows is not None and plan.decode:
            width = rows.width
            input_ids = torch.tensor([[s.tail.ids[-1]] for s in rows.seqs], dtype=torch.long)
            pads = torch.tensor(rows.pads, dtype=torch.long).unsqueeze(1)
            # row r: its pads[r] padding columns masked, then its cache and the new token (at position width - pad)
            mask = (torch.arange(width + 1).unsqueeze(0) >= pads).long()
            logits, rows.cache = self._forward(input_ids, mask, width - pads, rows.cache)
            self._deliver(self._sample(rows.seqs, logits))
        if joined is not None:
            self._rows = joined if rows is None else rows.merge(joined)
        self.stats.steps += 1

    def _prefill(self, ids: Sequence[int]) -> _Rows:
        """The prompts of sequences ``ids`` in one pass (left-padded to the longest, no cache); their first tokens are
        delivered at once. Returns their rows, to join the batch after the step's decode pass."""
        seqs = [self._seqs[i] for i in ids]
        n = max(len(s.prompt) for s in seqs)
        # left-padded prompts: row r's prompt ends at the last column, its padding is masked
        pads = [n - len(s.prompt) for s in seqs]
        input_ids = torch.full((len(seqs), n), self.pad_id, dtype=torch.long)
        mask = torch.ones((len(seqs), n), dtype=torch.long)
        positions = torch.zeros((len(seqs), n), dtype=torch.long)
        for r, (seq, pad) in enumerate(zip(seqs, pads, strict=True)):
            input_ids[r, pad:] = torch.tensor(seq.prompt, dtype=torch.long)
            mask[r, :pad] = 0
            positions[r, pad:] = torch.arange(len(seq.prompt))
        logits, cache = self._forward(input_ids, mask, positions, None)
        # a joining sequence's first token goes out before the decode pass: time to first token is one prefill, not
        # a prefill and a decode of the whole batch
        self._deliver(self._sample(seqs, logits))
        return _Rows(seqs, cache, pads, self.model.config)

    def _drop_ended(self) -> None:
        """Rows whose sequence finished or was aborted leave the batch cache (and its common padding is cut)."""
        rows = self._rows
        if rows is None:
            return
        keep = [r for r, seq in enumerate(rows.seqs) if seq.id in self._seqs]
        if len(keep) < len(rows.seqs):
            self._rows = rows.select(keep) if keep else None

    def _deliver(self, outputs: list[tuple[_Seq, Output]]) -> None:
        self.stats.generated(time.monotonic(), len(outputs))
        for seq, out in outputs:
            if out.finish_reason is not None:
                self._scheduler.finish(seq.id)
                del self._seqs[seq.id]
            seq.on_output(out)
        if self.after_pass is not None:
            self.after_pass()

    def _fail_all(self, why: str) -> None:
        for seq in list(self._seqs.values()):
            self._scheduler.abort(seq.id)
            seq.on_output(Output((), "", f"error: {why}", len(seq.prompt), len(seq.tail.ids)))
        self._seqs.clear()
        self._rows = None
        if self.after_pass is not None:
            self.after_pass()

    def _forward(
        self, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any | None
    ) -> tuple[torch.Tensor, Any]:
        """One forward pass over a left-padded batch on top of the batch cache ``cache`` (a ``DynamicCache``; None:
        no past, a new one is made); returns the logits of each row's last token (``[rows, vocab]``, on the CPU) and
        the grown cache (the same object: the model appends to it in place)."""
        if cache is None:
            cache = _cache(self.model.config, ())
        kwargs: dict[str, Any] = {self._cache_arg: cache}
        if self._keep_arg:
            kwargs["logits_to_keep"] = 1
        device = self.device
        out = self.model(
            input_ids=input_ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            use_cache=True,
            **kwargs,
        )
        grown = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
        # sampling runs on the CPU, where each sequence's seeded generator lives
        logits: torch.Tensor = out.logits[:, -1, :].float().cpu()
        return logits, grown

    def _sample(self, seqs: list[_Seq], logits: torch.Tensor) -> list[tuple[_Seq, Output]]:
        outputs = []
        greedy = logits.argmax(dim=-1).tolist()  # one call for every row; sampled rows draw below
        for r, seq in enumerate(seqs):
            token = greedy[r] if seq.generator is None else _pick(logits[r], seq.params, seq.generator)
            text, stopped = seq.tail.push(token, special=token in self.special_ids)
            finish: FinishReason | None = None
            if stopped or (token in self.eos_ids and not seq.params.ignore_eos):
                finish = "stop"
            elif seq.length >= seq.max_total:
                finish = "length"
            if finish is not None and not stopped:
                text += seq.tail.flush()
            outputs.append((seq, Output((token,), text, finish, len(seq.prompt), len(seq.tail.ids))))
        return outputs


_KV = tuple[torch.Tensor, torch.Tensor]
"""One layer's keys and values, ``[rows, kv_heads, width, head_dim]``."""


def _cache(config: Any, kv: Sequence[_KV]) -> Any:
    """A ``DynamicCache`` over ``kv`` (one entry per layer; empty: a cache the model fills)."""
    from transformers import DynamicCache

    cache = DynamicCache(config=config)
    for layer, (keys, values) in enumerate(kv):
        cache.update(keys, values, layer)
    return cache


class _Rows:
    """The running batch: its sequences in row order and the batch cache (a ``DynamicCache``, left-padded: row ``r``
    has ``pads[r]`` masked columns, then its own cache). The same cache object goes from one decode pass to the next
    (the model appends the new column to it) while no row joins or leaves; :meth:`select` and :meth:`merge` make a
    new one."""

    __slots__ = ("cache", "config", "pads", "seqs")

    def __init__(self, seqs: list[_Seq], cache: Any, pads: list[int], config: Any) -> None:
        self.seqs = seqs
        self.cache = cache
        self.pads = pads
        self.config = config  # the model's, for the caches select and merge make

    @property
    def kv(self) -> list[_KV]:
        return [(layer.keys, layer.values) for layer in self.cache.layers]

    @property
    def width(self) -> int:
        return int(self.cache.layers[0].keys.shape[2])

    def select(self, keep: list[int]) -> _Rows:
        """Only rows ``keep``; the padding every remaining row has is cut off."""
        kv = self.kv
        index = torch.tensor(keep, dtype=torch.long, device=kv[0][0].device)
        cut = min(self.pads[r] for r in keep)
        kept = [(k.index_select(0, index)[:, :, cut:], v.index_select(0, index)[:, :, cut:]) for k, v in kv]
        return _Rows(
            [self.seqs[r] for r in keep], _cache(self.config, kept), [self.pads[r] - cut for r in keep], self.config
        )

    def merge(self, other: _Rows) -> _Rows:
        """These rows and ``other``'s, both padded on the left to the wider of the two."""
        width = max(self.width, other.width)
        mine, theirs = width - self.width, width - other.width
        kv = [
            (
                torch.cat([_left_pad(k1, mine), _left_pad(k2, theirs)]),
                torch.cat([_left_pad(v1, mine), _left_pad(v2, theirs)]),
            )
            for (k1, v1), (k2, v2) in zip(self.kv, other.kv, strict=True)
        ]
        pads = [p + mine for p in self.pads] + [p + theirs for p in other.pads]
        return _Rows(self.seqs + other.seqs, _cache(self.config, kv), pads, self.config)


def _left_pad(t: torch.Tensor, missing: int) -> torch.Tensor:
    """``[rows, heads, len, dim]`` with ``missing`` zero columns added on the left."""
    if missing == 0:
        return t
    return torch.nn.functional.pad(t, (0, 0, missing, 0))


def _pick(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> int:
    """The next token: the most likely one at temperature 0, else sampled from the top-p nucleus."""
    if params.temperature <= 0 or generator is None:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        # keep the smallest prefix whose mass reaches top_p (at least the most likely token)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < params.top_p
        keep[0] = True
        sorted_probs = torch.where(keep, sorted_probs, torch.zeros_like(sorted_probs))
        choice = torch.multinomial(sorted_probs, 1, generator=generator)
        return int(order[choice])
    return int(torch.multinomial(probs, 1, generator=generator))
