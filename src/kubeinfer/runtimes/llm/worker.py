"""The engine in a process of its own (``model.args.engineProcess: true``), behind the same interface as in-process.

Why: the engine's thread runs Python between the model's kernels (for a small model, most of a step), and in the server's
process it shares the interpreter lock with the event loop that parses requests and sends tokens. In a child process
the two no longer wait for each other. The child loads the model and runs :class:`~kubeinfer.runtimes.llm.engine.Engine`;
the server keeps only the tokenizer (prompts are tokenized, and checked, where they arrive).

Over one ``multiprocessing`` pipe: the server sends ``("add", id, prompt, params)``, ``("abort", id)`` and ``("stop",)``;
the child answers ``("ready", max_model_len, max_num_seqs, max_num_batched_tokens)`` or ``("error", message)`` once,
then one message per forward pass: the pass's outputs by id and the engine's counters (the metrics read them). A
reader thread in the server hands each output to its sequence's callback. If the child dies, every open sequence
ends with an error and the engine reports it. ``spawn``, not ``fork``: the server has threads (and maybe CUDA).
"""

from __future__ import annotations

import gc
import itertools
import logging
import multiprocessing
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from kubeinfer.runtimes.base import ModelError
from kubeinfer.runtimes.llm.engine import EngineStats, Output, tune_for_serving
from kubeinfer.runtimes.llm.scheduler import SchedulerConfig
from kubeinfer.runtimes.llm.text import SamplingParams

__all__ = ["EngineProcess"]

log = logging.getLogger("kubeinfer.llm")


class EngineProcess:
    """An engine in a child process: ``add``, ``abort``, ``stop``, ``stats``, ``num_waiting``, ``num_running``, the
    KV-cache gauges and ``config`` as :class:`~kubeinfer.runtimes.llm.engine.Engine` has them. Starting it loads the model (blocking)."""

    def __init__(self, name: str, version: str, path: Path, args: Mapping[str, Any]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_child, args=(child, name, version, str(path), dict(args)), name="kubeinfer-llm-engine", daemon=True
        )
        self._proc.start()
        child.close()
        try:
            msg = self._conn.recv()
        except EOFError:
            self._proc.join(5)
            raise ModelError(f"the engine process exited while loading (exit code {self._proc.exitcode})") from None
        if msg[0] == "error":
            self._proc.join(5)
            raise ModelError(msg[1])
        _, self.max_model_len, max_num_seqs, max_batched = msg
        self.config = SchedulerConfig(max_num_seqs=max_num_seqs, max_num_batched_tokens=max_batched)
        self.stats = EngineStats()
        self._waiting = 0
        self._running = 0
        self.kv_cache_tokens = 0  # as the engine's last report gave it
        self._callbacks: dict[int, Callable[[Output], None]] = {}
        self._ids = itertools.count(1)
        self._send_lock = threading.Lock()
        # The reader thread below runs Python beside the event loop whenever a pass's outputs come in: the same
        # tuning as an in-process engine's thread. Without it, writing a request to the pipe (a system call, which
        # gives the GIL up) could leave the event loop waiting up to the default 5 ms for the GIL to come back from
        # the reader (bench/llm/RESULTS.md: a burst of 16 requests, traced and profiled).
        tune_for_serving()
        self._reader = threading.Thread(target=self._read, name="kubeinfer-llm-engine-reader", daemon=True)
        self._reader.start()

    @property
    def num_waiting(self) -> int:
        return self._waiting

    @property
    def num_running(self) -> int:
        return self._running

    @property
    def kv_cache_capacity(self) -> int:
        return int(self.config.max_num_seqs * self.max_model_len)

    def add(self, prompt: Sequence[int], params: SamplingParams, on_output: Callable[[Output], None]) -> int:
        seq_id = next(self._ids)
        self._callbacks[seq_id] = on_output
        self._waiting += 1  # until the engine's next report says otherwise
        self._send(("add", seq_id, list(prompt), params))
        return seq_id

    def abort(self, seq_id: int) -> None:
        if self._callbacks.pop(seq_id, None) is not None:
            self._send(("abort", seq_id))

    def stop(self) -> None:
        self._send(("stop",))
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)
        self._conn.close()
        gc.unfreeze()  # what tune_for_serving froze: a model unloaded later can be collected

    def _send(self, msg: tuple[Any, ...]) -> None:
        with self._send_lock:
            try:
                self._conn.send(msg)
            except (OSError, ValueError):  # the child is gone: the reader ends the open sequences
                pass

    def _read(self) -> None:
        stats = self.stats
        while True:
            try:
                outputs, counters = self._conn.recv()
            except (EOFError, OSError):
                break
            (
                self._waiting,
                self._running,
                stats.prompt_tokens,
                stats.generated_tokens,
                stats.steps,
                recent,
                self.kv_cache_tokens,
            ) = counters
            stats.recent = deque((list(r) for r in recent), maxlen=stats.recent.maxlen)
            for seq_id, out in outputs:
                callback = self._callbacks.get(seq_id)
                if callback is None:
                    continue  # aborted meanwhile
                if out.finish_reason is not None:
                    del self._callbacks[seq_id]
                callback(out)
        if self._callbacks:
            log.error("the engine process exited (exit code %s); ending its sequences", self._proc.exitcode)
        for seq_id, callback in list(self._callbacks.items()):
            callback(Output((), "", "error: the engine process exited", 0, 0))
            self._callbacks.pop(seq_id, None)
        self._waiting = self._running = self.kv_cache_tokens = 0


def _child(conn: Connection, name: str, version: str, path: str, args: dict[str, Any]) -> None:
    """The engine process: load, report ready, then take requests until told to stop (or the server is gone)."""
    from kubeinfer.runtimes.llm.model import LLMModel

    try:
        model = LLMModel(name, version, Path(path), args)
        engine = model.build_engine()
    except Exception as e:
        conn.send(("error", str(e) if isinstance(e, ModelError) else f"{type(e).__name__}: {e}"))
        return
    ids: dict[int, int] = {}  # the server's id -> the engine's
    batch: list[tuple[int, Output]] = []

    def collect(seq_id: int) -> Callable[[Output], None]:
        def on_output(out: Output) -> None:
            batch.append((seq_id, out))
            if out.finish_reason is not None:
                ids.pop(seq_id, None)

        return on_output

    def flush() -> None:  # on the engine's thread, after each pass and when it falls idle
        items = batch.copy()
        batch.clear()
        s = engine.stats
        counters = (
            engine.num_waiting,
            engine.num_running,
            s.prompt_tokens,
            s.generated_tokens,
            s.steps,
            list(s.recent),
            engine.kv_cache_tokens,
        )
        try:
            conn.send((items, counters))
        except OSError:
            pass  # the server is gone; the main loop below sees it too

    engine.after_pass = flush
    engine.start()
    config = engine.config
    conn.send(("ready", model.max_model_len, config.max_num_seqs, config.max_num_batched_tokens))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break
        if msg[0] == "add":
            _, seq_id, prompt, params = msg
            ids[seq_id] = engine.add(prompt, params, collect(seq_id))
        elif msg[0] == "abort":
            engine_id = ids.pop(msg[1], None)
            if engine_id is not None:
                engine.abort(engine_id)
        else:
            break
    engine.stop()
