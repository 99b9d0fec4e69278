"""Format ``llm``: a causal language model from a Hugging Face folder, served by the continuous-batching engine.

``model.uri`` is a local folder in the Hugging Face layout (``config.json``, weights, ``tokenizer.json`` or the
tokenizer files, and for chat a chat template). ``args``:

==========================  ==========================================================================================
``engine``                  ``transformers`` (default): ``engine.py`` over ``AutoModelForCausalLM``, CPU or GPU;
                            ``vllm``: vLLM's engine (``vllm_engine.py``; GPUs, ``pip install 'kubeinfer[vllm]'``)
``maxNumSeqs``              sequences decoded together at most (default 64; vLLM's ``max_num_seqs``)
``maxNumBatchedTokens``     tokens computed in one step at most, prompts included (default: the larger of 2048 and the
                            context length; vLLM's ``max_num_batched_tokens``); a longer prompt is refused
``maxModelLen``             context length, prompt plus output (default and upper bound: the model's
                            ``max_position_embeddings``)
``dtype``                   ``float32`` (default on CPU), ``bfloat16``, ``float16`` (default on a GPU)
``device``                  ``cpu`` or ``cuda`` (default: ``cuda`` when a GPU is visible)
``intraOpThreads``          PyTorch threads (else PyTorch's default)
``maxTokens``               tokens an Open Inference Protocol ``infer`` generates (default 16; greedy)
``engineProcess``           ``true``: the engine runs in a process of its own (``worker.py``), not on a thread of the
                            server's; ``auto`` (default): so when the replica has two CPUs or more
                            (:func:`engine_process_auto`); transformers only: vLLM always runs its engine core apart
``gpuMemoryUtilization``    vllm only: the share of each GPU's memory vLLM takes for weights and KV cache (its default
                            0.9); lower it when replicas share a GPU
``tensorParallelSize``      vllm only: GPUs one replica's model is split over (its default 1; at most the GPUs the
                            replica asks for in ``resources.gpu``)
``enforceEager``            vllm only: ``true`` skips CUDA graph capture (starts faster, decodes slower)
==========================  ==========================================================================================

With ``vllm``, ``maxNumBatchedTokens`` is one step's token budget and prompts longer than it are prefilled in chunks,
so a prompt is bounded by the context only; ``dtype`` defaults to the model's (vLLM's ``auto``) and ``device`` and
``intraOpThreads`` do not apply.

The OpenAI routes (``/v1/completions``, ``/v1/chat/completions``) and the Open Inference Protocol generate extension
(``server/openai_generate.py``) drive the engine directly, streaming. For ``/v2/models/NAME/infer`` the model is also
an ordinary :class:`~kubeinfer.runtimes.base.Model`: BYTES ``text_input`` rows in, ``text_output`` rows out (greedy).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kubeinfer.runtimes.base import ModelError, ModelInfo, TensorSpec
from kubeinfer.runtimes.cpus import CGROUP_CPU_MAX, replica_cpus
from kubeinfer.runtimes.llm.scheduler import SchedulerConfig
from kubeinfer.runtimes.llm.text import SamplingParams, fast_encoder, wrapper_tokens

__all__ = ["ARGS", "ENGINES", "LLMModel", "engine_process_auto"]

log = logging.getLogger("kubeinfer.llm")

ENGINES = ("transformers", "vllm")
ARGS = frozenset(
    {
        "engine",
        "engineProcess",
        "maxNumSeqs",
        "maxNumBatchedTokens",
        "maxModelLen",
        "dtype",
        "device",
        "intraOpThreads",
        "maxTokens",
        "gpuMemoryUtilization",
        "tensorParallelSize",
        "enforceEager",
    }
)
VLLM_ONLY = ("gpuMemoryUtilization", "tensorParallelSize", "enforceEager")
TRANSFORMERS_ONLY = ("engineProcess", "device", "intraOpThreads")
DTYPES = ("float32", "bfloat16", "float16")
INPUT, OUTPUT = "text_input", "text_output"


def engine_process_auto(env: Mapping[str, str] | None = None) -> bool:
    """``engineProcess: auto``: the engine in a process of its own when the replica has two CPUs or more (the
    engine's and the server's: apart they do not take turns on one interpreter lock, as vLLM keeps its engine core
    apart from its API server); on one CPU the two would only take turns on it. The CPUs:
    :func:`~kubeinfer.runtimes.cpus.replica_cpus`, capped by the cgroup's CPU quota."""
    return replica_cpus(env, CGROUP_CPU_MAX) >= 2


def _int_arg(args: Mapping[str, Any], key: str, default: int | None) -> int | None:
    value = args.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelError(f"model.args.{key} must be an integer >= 1, not {value!r}")
    return value


class LLMModel:
    """A causal LM and its engine (module docstring); ``text_generator`` is what the generate routes use."""

    def __init__(self, name: str, version: str, path: Path, args: Mapping[str, Any]) -> None:
        self.name = name
        self.version = version
        self.path = path
        unknown = sorted(set(args) - ARGS)
        if unknown:
            raise ModelError(f"model.args: unknown {', '.join(map(repr, unknown))}; format 'llm' takes {sorted(ARGS)}")
        engine = args.get("engine", "transformers")
        if engine not in ENGINES:
            raise ModelError(f"model.args.engine {engine!r} is not supported: use one of {', '.join(ENGINES)}")
        self.engine_name: str = engine
        only = VLLM_ONLY if engine == "transformers" else TRANSFORMERS_ONLY
        misplaced = [k for k in only if k in args]
        if misplaced:
            other = "vllm" if engine == "transformers" else "transformers"
            raise ModelError(
                f"model.args.{misplaced[0]} applies to engine {other!r} only, and this model's engine is {engine!r}: "
                f"remove it or set model.args.engine: {other}"
            )
        gpu_share = args.get("gpuMemoryUtilization")
        if gpu_share is not None and (
            isinstance(gpu_share, bool) or not isinstance(gpu_share, (int, float)) or not 0 < gpu_share <= 1
        ):
            raise ModelError(f"model.args.gpuMemoryUtilization must be a number in (0, 1], not {gpu_share!r}")
        eager = args.get("enforceEager")
        if eager is not None and not isinstance(eager, bool):
            raise ModelError(f"model.args.enforceEager must be true or false, not {eager!r}")
        _int_arg(args, "tensorParallelSize", None)
        dtype = args.get("dtype")
        if dtype is not None and dtype not in DTYPES:
            raise ModelError(f"model.args.dtype {dtype!r} is not supported: use one of {', '.join(DTYPES)}")
        device = args.get("device")
        if device is not None and device not in ("cpu", "cuda"):
            raise ModelError(f"model.args.device {device!r} is not supported: use 'cpu' or 'cuda'")
        self._dtype: str | None = dtype
        self._device: str | None = device
        self._max_num_seqs = _int_arg(args, "maxNumSeqs", 64) or 64
        self._max_batched = _int_arg(args, "maxNumBatchedTokens", None)
        self._max_model_len = _int_arg(args, "maxModelLen", None)
        self._threads = _int_arg(args, "intraOpThreads", None)
        self._max_tokens = _int_arg(args, "maxTokens", 16) or 16
        process = args.get("engineProcess", "auto")
        if process == "auto":
            process = engine_process_auto()
        elif not isinstance(process, bool):
            raise ModelError(f"model.args.engineProcess must be true, false or auto, not {process!r}")
        self._process = process
        self._args = {k: v for k, v in args.items() if k != "engineProcess"}
        self.engine: Any = None
        self.tokenizer: Any = None
        self._tokens: Callable[[str, bool], list[int]] = _not_loaded
        self.max_model_len = 0

    # -- Model -----------------------------------------------------------------------------------------
    def load(self) -> ModelInfo:
        if not self.path.is_dir():
            raise ModelError(f"format 'llm' needs model.uri to be a folder in the Hugging Face layout: {self.path}")
        if self.engine_name == "vllm":
            return self._load_vllm()
        if self._process:
            from kubeinfer.runtimes.llm.worker import EngineProcess

            process = EngineProcess(self.name, self.version, self.path, self._args)
            self.engine = process
            self.max_model_len = process.max_model_len
            import transformers

            self._set_tokenizer(transformers.AutoTokenizer.from_pretrained(self.path))
            return self._info()
        engine = self.build_engine()
        engine.start()
        return self._info()

    def _load_vllm(self) -> ModelInfo:
        # vLLM reports usage to its project unless told not to; a model server should not call out on its own
        os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
        try:
            import transformers
            import vllm  # noqa: F401
        except ImportError as e:
            raise ModelError(
                f"model.args.engine 'vllm' needs vLLM ({e.name} is missing): pip install 'kubeinfer[vllm]' on a machine "
                "with a GPU vLLM supports, or use engine: transformers"
            ) from None
        from kubeinfer.runtimes.llm.vllm_engine import VLLMEngine, settings_from_args

        try:
            self._set_tokenizer(transformers.AutoTokenizer.from_pretrained(self.path))
        except (OSError, ValueError, KeyError) as e:
            raise ModelError(f"cannot load the tokenizer of {self.path}: {e}") from e
        engine = VLLMEngine(self.path, settings_from_args(self._args, self._max_num_seqs))
        try:
            engine.start()
        except Exception as e:
            raise ModelError(f"vLLM could not start model {self.path}: {type(e).__name__}: {e}") from e
        self.engine = engine
        self.max_model_len = engine.max_model_len
        log.info("llm %s on vLLM: context %d, maxNumSeqs %d", self.path.name, self.max_model_len, self._max_num_seqs)
        return self._info()

    def _info(self) -> ModelInfo:
        return ModelInfo(
            platform="vllm" if self.engine_name == "vllm" else "transformers",
            inputs=[TensorSpec(INPUT, "BYTES", (-1,))],
            outputs=[TensorSpec(OUTPUT, "BYTES", (-1,))],
            extra={"generative": True, "max_model_len": self.max_model_len},
        )

    def build_engine(self) -> Any:
        """Load the model and tokenizer and make the engine (not started): in this process, or in the engine's own
        (``worker.py``)."""
        try:
            import torch
            import transformers
        except ImportError as e:
            raise ModelError(
                f"format 'llm' needs PyTorch and transformers ({e.name} is missing): pip install 'kubeinfer[llm]'"
            ) from None
        from kubeinfer.runtimes.llm.engine import Engine

        transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        if self._threads:
            torch.set_num_threads(self._threads)
        device = self._device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device == "cuda" and not torch.cuda.is_available():
            raise ModelError("model.args.device is 'cuda' but PyTorch sees no GPU")
        dtype = getattr(torch, self._dtype or ("float16" if device == "cuda" else "float32"))
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(self.path)
            model: Any = transformers.AutoModelForCausalLM.from_pretrained(
                self.path, dtype=dtype, attn_implementation="eager"
            )
        except (OSError, ValueError, KeyError) as e:
            raise ModelError(f"cannot load a causal language model from {self.path}: {e}") from e
        model = model.to(device).eval()
        limit = int(getattr(model.config, "max_position_embeddings", 0) or 2048)
        if self._max_model_len is not None and self._max_model_len > limit:
            raise ModelError(f"model.args.maxModelLen {self._max_model_len} exceeds the model's context of {limit}")
        self.max_model_len = self._max_model_len or limit
        batched = self._max_batched or max(2048, self.max_model_len)
        try:
            config = SchedulerConfig(max_num_seqs=self._max_num_seqs, max_num_batched_tokens=batched)
        except ValueError as e:
            raise ModelError(f"model.args: {e}") from None
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = tokenizer.eos_token_id
        eos_ids = [eos] if isinstance(eos, int) else list(eos or ())
        self._set_tokenizer(tokenizer)
        self.engine = Engine(model, tokenizer, config, self.max_model_len, eos_ids)
        log.info(
            "llm %s on %s (%s): context %d, maxNumSeqs %d, maxNumBatchedTokens %d",
            self.path.name,
            device,
            str(dtype).removeprefix("torch."),
            self.max_model_len,
            config.max_num_seqs,
            config.max_num_batched_tokens,
        )
        return self.engine

    def predict(
        self, inputs: Mapping[str, np.ndarray[Any, Any]], outputs: frozenset[str] | None = None
    ) -> dict[str, np.ndarray[Any, Any]]:
        """Greedy generation of ``maxTokens`` for each row of ``text_input`` (blocks this worker thread)."""
        rows = inputs[INPUT].reshape(-1)
        texts = [r.decode("utf-8", "replace") if isinstance(r, bytes) else str(r) for r in rows]
        params = SamplingParams(max_tokens=self._max_tokens, temperature=0.0)
        results = [self.generate_blocking(self.encode(t), params) for t in texts]
        out = np.empty(len(results), dtype=object)
        out[:] = [r.encode() for r in results]
        return {OUTPUT: out}

    def close(self) -> None:
        """Stop the engine (its thread, or its process; its sequences end where they are) and let its memory go."""
        if self.engine is not None:
            self.engine.stop()
            self.engine = None

    # -- the generate routes' interface --------------------------------------------------------------------
    @property
    def text_generator(self) -> LLMModel:
        return self

    def _set_tokenizer(self, tokenizer: Any) -> None:
        """The tokenizer, and how prompts are tokenized from now on: its backend where :func:`fast_encoder` allows."""
        self.tokenizer = tokenizer
        self._tokens = fast_encoder(tokenizer) or functools.partial(wrapper_tokens, tokenizer)

    def encode(self, text: str) -> list[int]:
        return self._tokens(text, True)

    def chat_prompt(self, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        """The prompt tokens of a conversation, through the tokenizer's chat template (a ``ValueError`` when the
        model has none or the messages do not fit it)."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"model {self.name!r} has no chat template: use /v1/completions")
        text = self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
        return self._tokens(text, False)

    def check_length(self, prompt_tokens: int, max_tokens: int | None) -> int:
        """``max_tokens`` within the context (None: all that is left); a ``ValueError`` saying what fits."""
        limit = self.max_model_len
        budget = self.engine.config.max_num_batched_tokens
        if prompt_tokens == 0:
            raise ValueError("the prompt is empty")
        # vLLM prefills a long prompt in chunks: only the context bounds it
        if self.engine_name != "vllm" and prompt_tokens > budget:
            raise ValueError(
                f"the prompt has {prompt_tokens} tokens; this server takes at most {budget} (maxNumBatchedTokens)"
            )
        if prompt_tokens >= limit:
            raise ValueError(f"this model's maximum context length is {limit} tokens; the prompt has {prompt_tokens}")
        if max_tokens is None:
            return limit - prompt_tokens
        if prompt_tokens + max_tokens > limit:
            raise ValueError(
                f"this model's maximum context length is {limit} tokens; the prompt has {prompt_tokens} and "
                f"max_tokens asks for {max_tokens} more (at most {limit - prompt_tokens})"
            )
        return max_tokens

    def generate_blocking(self, prompt: list[int], params: SamplingParams) -> str:
        """Generate to the end on the calling thread's behalf (the OIP ``infer`` path and the warm-up)."""
        max_tokens = min(params.max_tokens, max(1, self.max_model_len - len(prompt)))
        if len(prompt) >= self.max_model_len:
            raise ModelError(f"the prompt has {len(prompt)} tokens; the model's context is {self.max_model_len}")
        done = threading.Event()
        parts: list[str] = []
        reason: list[str] = []

        def collect(out: Any) -> None:
            parts.append(out.text)
            if out.finish_reason is not None:
                reason.append(out.finish_reason)
                done.set()

        from dataclasses import replace

        self.engine.add(prompt, replace(params, max_tokens=max_tokens), collect)
        done.wait()
        if reason and reason[0].startswith("error"):
            raise ModelError(f"generation failed: {reason[0]}")
        return "".join(parts)


def _not_loaded(text: str, special: bool) -> list[int]:
    raise ModelError("the model is not loaded: it has no tokenizer yet")
