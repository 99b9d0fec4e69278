"""A stand-in for vLLM's Python API, for tests on machines without a GPU (vLLM's engine needs one).

It copies the surface kubeinfer's ``vllm`` engine drives, as vLLM documents and ships it (``vllm.AsyncEngineArgs``,
``vllm.SamplingParams``, ``vllm.sampling_params.RequestOutputKind``, ``vllm.v1.engine.async_llm.AsyncLLM`` with
``from_engine_args``, ``generate`` as an async generator of ``RequestOutput`` and ``shutdown``), and its semantics
where kubeinfer relies on them: ``DELTA`` outputs carry only the new tokens and text; text ending in an incomplete
UTF-8 character waits; a stop string ends the sequence and is not part of the text; ``finish_reason`` is ``stop`` or
``length``; cancelling ``generate`` aborts the request. Generation is greedy (or seeded sampling) over the real
transformers model in the folder, one sequence at a time: correct tokens, none of vLLM's speed.
The opt-in ``gpu`` tests run kubeinfer against the real vLLM.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vllm.sampling_params import RequestOutputKind, SamplingParams

__all__ = ["AsyncEngineArgs", "RequestOutputKind", "SamplingParams"]

FAKE = True


@dataclass
class AsyncEngineArgs:
    model: str
    tokenizer: str | None = None
    dtype: str = "auto"
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    gpu_memory_utilization: float = 0.9
    tensor_parallel_size: int = 1
    enforce_eager: bool = False
    disable_log_stats: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
