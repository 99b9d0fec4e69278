"""A tiny causal language model built offline, for tests, benchmarks and the ``examples/tiny-llm`` service.

A Llama configuration small enough to run a decode step in about a millisecond on one CPU core, with seeded random
weights, and a real byte-level BPE tokenizer trained here on a few sentences (so any text round-trips) with a chat
template. Everything is written with ``save_pretrained``, in the Hugging Face layout that ``format: llm`` loads; nothing
is fetched from a hub. The weights are random: the model speaks nonsense, deterministically.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CHAT_TEMPLATE", "build_tiny_llm"]

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A model server answers requests for predictions, embeddings and generated text.",
    "Continuous batching lets sequences join and leave the running batch at every step.",
    "Kubernetes schedules pods onto nodes; a replica serves one model.",
    "Hello, world! How are you today? I am fine, thank you.",
    "Once upon a time there was a tiny language model that spoke nonsense.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000.",
]
_SPECIAL = ["<|pad|>", "<|bos|>", "<|end|>"]


def build_tiny_llm(path: Path, seed: int = 0, layers: int = 2, hidden: int = 64) -> Path:
    """Write a tiny Llama model and its tokenizer to ``path`` (created); returns ``path``. Same seed, same model."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    path.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384,
        special_tokens=_SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS, trainer=trainer)
    pad, bos, eos = _SPECIAL
    tok = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=bpe, pad_token=pad, bos_token=bos, eos_token=eos, model_max_length=512
    )
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(path)

    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        initializer_range=0.2,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(path)
    return path
