"""Generative text models (format ``llm``): a continuous-batching engine and the interface the generate routes use.

- ``scheduler.py``: which sequences run in each step (pure: no torch, no clock).
- ``text.py``: sampling parameters, incremental detokenization and stop strings.
- ``engine.py``: the engine over a ``transformers`` causal LM, on a thread of its own.
- ``vllm_engine.py``: vLLM's engine behind the same interface (GPUs; the ``vllm`` extra).
- ``model.py``: the ``Model`` of format ``llm`` (loading, chat template, context checks).

Nothing here imports torch until a model loads; the server types against :class:`TextGenerator`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from kubeinfer.runtimes.llm.scheduler import Plan, Scheduler, SchedulerConfig
from kubeinfer.runtimes.llm.text import SamplingParams, TextTail

if TYPE_CHECKING:
    from kubeinfer.runtimes.llm.engine import EngineStats, Output

__all__ = ["Plan", "SamplingParams", "Scheduler", "SchedulerConfig", "TextGenerator", "TextTail", "generator_of"]


class EngineHandle(Protocol):
    stats: EngineStats

    def add(self, prompt: Sequence[int], params: SamplingParams, on_output: Callable[[Output], None]) -> int: ...

    def abort(self, seq_id: int) -> None: ...

    @property
    def num_waiting(self) -> int: ...

    @property
    def num_running(self) -> int: ...


@runtime_checkable
class TextGenerator(Protocol):
    """What a generative runtime offers the server's generate routes (``LLMModel`` is one)."""

    name: str
    engine: EngineHandle
    tokenizer: Any
    max_model_len: int

    def encode(self, text: str) -> list[int]: ...

    def chat_prompt(self, messages: Sequence[Mapping[str, Any]]) -> list[int]: ...

    def check_length(self, prompt_tokens: int, max_tokens: int | None) -> int: ...


def generator_of(model: object) -> TextGenerator | None:
    """The text generator behind a served model (through a declared-tensors wrapper too), or None."""
    gen = getattr(model, "text_generator", None)
    return gen if isinstance(gen, TextGenerator) else None
