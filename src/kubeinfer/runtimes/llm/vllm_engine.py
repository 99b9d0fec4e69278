"""The ``vllm`` engine of format ``llm``: vLLM's asynchronous engine behind the interface of ``engine.py``'s.

vLLM (GPUs; ``pip install 'kubeinfer[vllm]'``, which brings vLLM's own CUDA build of PyTorch) schedules, batches
(continuous batching over a paged KV cache, chunked prefill, prefix caching), samples and detokenizes. kubeinfer keeps
everything around the engine, the same for both engines: the OpenAI and Open Inference Protocol routes
(``server/openai_generate.py``), prompts and chat templates from the model's folder, the generation metrics the
autoscalers and the router read, probes, draining and the process's lifecycle.

vLLM is driven through ``AsyncLLM.generate`` only, the part of its engine API that its own OpenAI server is built on
and that has kept its shape across releases: one task per sequence on an event loop of the engine's own thread reads
the sequence's outputs in ``DELTA`` mode (only what is new) and hands each on as an
:class:`~kubeinfer.runtimes.llm.engine.Output`, on that thread, as the transformers engine does from its. Cancelling
the task aborts the request inside vLLM (``generate`` aborts on cancellation), which is how :meth:`VLLMEngine.abort`
frees a disconnected client's slot and KV blocks. vLLM runs its engine core in a process of its own; a model whose
weights do not load, or a GPU that does not fit them, fails :meth:`VLLMEngine.start` with vLLM's message.

Counters: ``num_waiting`` is the sequences sent to vLLM that have no token yet (queued or in prefill), ``num_running``
those that have one and have not ended; tokens are counted as outputs arrive. vLLM does not report its steps through
``generate``, so ``kubeinfer_generation_steps`` stays 0 for this engine.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubeinfer.runtimes.llm.engine import EngineStats, Output
from kubeinfer.runtimes.llm.scheduler import SchedulerConfig
from kubeinfer.runtimes.llm.text import SamplingParams

__all__ = ["VLLMEngine", "VLLMSettings"]

log = logging.getLogger("kubeinfer.llm")

START_TIMEOUT = 1800.0  # seconds: loading a large model's weights (and vLLM's CUDA graph capture) takes minutes


@dataclass(frozen=True, slots=True)
class VLLMSettings:
    """What the spec's ``model.args`` set for vLLM (``None``: vLLM's default)."""

    max_num_seqs: int
    max_num_batched_tokens: int | None = None
    max_model_len: int | None = None
    dtype: str | None = None
    gpu_memory_utilization: float | None = None
    tensor_parallel_size: int | None = None
    enforce_eager: bool | None = None

    def engine_args(self, path: Path) -> dict[str, Any]:
        """The keyword arguments of vLLM's ``AsyncEngineArgs`` (its CLI's flags, in snake case)."""
        args: dict[str, Any] = {
            "model": str(path),
            "tokenizer": str(path),
            "max_num_seqs": self.max_num_seqs,
            "dtype": self.dtype or "auto",
            # kubeinfer's metrics are the ones read; vLLM's periodic stats logging would only add log lines
            "disable_log_stats": True,
        }
        optional = {
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "max_model_len": self.max_model_len,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "tensor_parallel_size": self.tensor_parallel_size,
            "enforce_eager": self.enforce_eager,
        }
        args.update({k: v for k, v in optional.items() if v is not None})
        return args


class VLLMEngine:
    """vLLM's ``AsyncLLM`` on a thread of its own, with :class:`~kubeinfer.runtimes.llm.engine.Engine`'s interface:
    :meth:`start`, :meth:`stop`, :meth:`add`, :meth:`abort`, ``num_waiting``, ``num_running``, ``stats``, ``config``
    and ``max_model_len``."""

    def __init__(self, path: Path, settings: VLLMSettings) -> None:
        self.path = path
        self.settings = settings
        self.stats = EngineStats()
        self.max_model_len = 0
        # Prompts longer than one step's token budget are prefilled in chunks by vLLM, so the only bound on a prompt
        # is the context; ``config`` keeps the interface's shape for the server's length checks.
        self.config = SchedulerConfig(max_num_seqs=settings.max_num_seqs, max_num_batched_tokens=settings.max_num_seqs)
        self._llm: Any = None
        self._vllm: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ids = itertools.count(1)
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._waiting: set[int] = set()
        self._running: set[int] = set()
        self._lock = threading.Lock()
        self._held = 0  # tokens of the running sequences

    # -- any thread ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the engine's thread and loop and create vLLM's engine there (loads the weights; blocks until done)."""
        import vllm  # the caller checked that it imports

        self._vllm = vllm
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="kubeinfer-vllm-engine", daemon=True)
        self._thread.start()
        created: Future[Any] = asyncio.run_coroutine_threadsafe(self._create(), loop)
        try:
            self._llm = created.result(timeout=START_TIMEOUT)
        except BaseException:
            self._halt()
            raise
        model_config = getattr(self._llm, "model_config", None)
        self.max_model_len = int(getattr(model_config, "max_model_len", 0) or self.settings.max_model_len or 0)
        batched = self.settings.max_num_batched_tokens or max(self.settings.max_num_seqs, self.max_model_len)
        self.config = SchedulerConfig(
            max_num_seqs=self.settings.max_num_seqs, max_num_batched_tokens=max(batched, self.settings.max_num_seqs)
        )

    async def _create(self) -> Any:
        vllm = self._vllm
        engine_args = vllm.AsyncEngineArgs(**self.settings.engine_args(self.path))
        return _async_llm_class(vllm).from_engine_args(engine_args)

    def stop(self) -> None:
        """End every sequence where it is and shut vLLM's engine (and its engine-core process) down."""
        loop = self._loop
        if loop is None:
            return
        if self._llm is not None and loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=60)
            except Exception as e:  # a dead engine core: still stop the thread
                log.warning("vLLM engine shutdown: %s", e)
        self._halt()

    async def _shutdown(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        llm, self._llm = self._llm, None
        llm.shutdown()

    def _halt(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=10)
        if loop is not None and not loop.is_running():
            loop.close()
        self._loop = self._thread = None

    def add(self, prompt: Sequence[int], params: SamplingParams, on_output: Callable[[Output], None]) -> int:
        """Send a sequence to vLLM; returns its id (for :meth:`abort`). The caller checked the prompt's length."""
        loop = self._loop
        if loop is None or self._llm is None:
            raise RuntimeError("the vLLM engine is not running")
        seq_id = next(self._ids)
        with self._lock:
            self._waiting.add(seq_id)
        loop.call_soon_threadsafe(self._spawn, seq_id, list(prompt), params, on_output)
        return seq_id

    def abort(self, seq_id: int) -> None:
        """Stop a sequence (its client went away): vLLM drops it and frees its KV blocks."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._cancel, seq_id)

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def num_running(self) -> int:
        return len(self._running)

    @property
    def kv_cache_tokens(self) -> int:
        """Tokens of the running sequences (prompt and output so far): an upper bound of what vLLM's cache holds for
        them (prefix caching shares blocks between sequences with a common prefix)."""
        return self._held

    @property
    def kv_cache_capacity(self) -> int | None:
        """Tokens vLLM's KV cache holds at most (its GPU blocks times the block size), once the engine started."""
        cache = getattr(getattr(self._llm, "vllm_config", None), "cache_config", None)
        blocks, size = getattr(cache, "num_gpu_blocks", None), getattr(cache, "block_size", None)
        return blocks * size if isinstance(blocks, int) and isinstance(size, int) else None

    # -- the engine's loop -------------------------------------------------------------------------------
    def _spawn(
        self, seq_id: int, prompt: list[int], params: SamplingParams, on_output: Callable[[Output], None]
    ) -> None:
        task = asyncio.get_running_loop().create_task(self._sequence(seq_id, prompt, params, on_output))
        self._tasks[seq_id] = task

    def _cancel(self, seq_id: int) -> None:
        task = self._tasks.get(seq_id)
        if task is not None:
            task.cancel()

    def sampling_params(self, params: SamplingParams) -> Any:
        """kubeinfer's sampling parameters as vLLM's (outputs in ``DELTA`` mode: only what is new each time)."""
        vllm = self._vllm
        from vllm.sampling_params import RequestOutputKind

        return vllm.SamplingParams(
            n=1,
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            seed=params.seed,
            stop=list(params.stop),
            ignore_eos=params.ignore_eos,
            skip_special_tokens=True,
            output_kind=RequestOutputKind.DELTA,
        )

    async def _sequence(
        self, seq_id: int, prompt: list[int], params: SamplingParams, on_output: Callable[[Output], None]
    ) -> None:
        completion = 0
        finished = False
        try:
            sampling = self.sampling_params(params)
            request = {"prompt_token_ids": prompt}  # vLLM's TokensPrompt: the server tokenized the prompt
            async for result in self._llm.generate(request, sampling, f"kubeinfer-{seq_id}"):
                if not result.outputs:
                    continue
                out = result.outputs[0]
                ids = tuple(out.token_ids)
                now = time.monotonic()
                with self._lock:
                    if seq_id in self._waiting:
                        self._waiting.discard(seq_id)
                        self._running.add(seq_id)
                        self.stats.prompt_tokens += len(prompt)
                        self._held += len(prompt)
                    self.stats.generated(now, len(ids))
                    self._held += len(ids)
                completion += len(ids)
                finished = bool(result.finished)
                finish = (out.finish_reason or "stop") if finished else None
                on_output(Output(ids, out.text, _finish(finish), len(prompt), completion))
            # (the stream is read to its end: leaving it early would make vLLM abort a request that already ended)
            if not finished:  # it ended without a finished output: vLLM aborted it on its side
                on_output(Output((), "", "abort", len(prompt), completion))
        except asyncio.CancelledError:
            return  # aborted by kubeinfer: the client is gone, nothing to deliver
        except Exception as e:
            log.warning("vLLM sequence %d failed: %s: %s", seq_id, type(e).__name__, e)
            on_output(Output((), "", f"error: {type(e).__name__}: {e}", len(prompt), completion))
        finally:
            with self._lock:
                self._waiting.discard(seq_id)
                if seq_id in self._running:
                    self._running.discard(seq_id)
                    self._held -= len(prompt) + completion
            self._tasks.pop(seq_id, None)


def _finish(reason: str | None) -> str | None:
    """vLLM's finish reasons are OpenAI's (``stop``, ``length``, ``abort``); anything else is reported as an error."""
    if reason is None or reason in ("stop", "length", "abort"):
        return reason
    return f"error: vLLM ended the sequence with {reason!r}"


def _async_llm_class(vllm: Any) -> Any:
    """vLLM's asynchronous engine: ``vllm.v1.engine.async_llm.AsyncLLM`` (``vllm.AsyncLLMEngine`` is its alias in
    recent releases and the older engine before them)."""
    try:
        from vllm.v1.engine.async_llm import AsyncLLM

        return AsyncLLM
    except ImportError:
        return vllm.AsyncLLMEngine


def settings_from_args(args: Mapping[str, Any], max_num_seqs: int) -> VLLMSettings:
    """The vLLM settings of ``model.args`` (already validated by :class:`~kubeinfer.runtimes.llm.model.LLMModel`)."""
    return VLLMSettings(
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=args.get("maxNumBatchedTokens"),
        max_model_len=args.get("maxModelLen"),
        dtype=args.get("dtype"),
        gpu_memory_utilization=args.get("gpuMemoryUtilization"),
        tensor_parallel_size=args.get("tensorParallelSize"),
        enforce_eager=args.get("enforceEager"),
    )
