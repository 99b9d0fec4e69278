"""Incremental detokenization through ``tokenizers``' DecodeStream gives, token by token, the text that decoding
windows through ``transformers``' ``decode`` gives: on three tokenizer families (byte-level BPE, WordPiece, and a
SentencePiece-style one with byte fallback), random tokens (special ones and parts of characters among them) and
real text, with and without a stop string, to the end (``flush``)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from llm import tiny_llm_dir

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from kubeinfer.runtimes.llm.text import TextTail  # noqa: E402

TEXTS = ["héllo wörld: naïve café", "日本語のテキスト 🙂 ok", "The quick brown fox, it's 42!", "x = 1;  y = 2 🙂🙂"]
WORDS = ["the", "quick", "brown", "fox", "hello", "world", "café", "é", "!", ",", "x", "=", "1", "2"]


def _byte_level_bpe() -> Any:
    return transformers.AutoTokenizer.from_pretrained(tiny_llm_dir())


def _wordpiece() -> Any:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS, *(f"##{w}" for w in WORDS)])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )


def _sentencepiece_byte_fallback() -> Any:
    """Llama 2's layout: pieces with ``▁`` for spaces, unknown characters as ``<0xNN>`` byte tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    pieces = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256))]
    pieces += [f"▁{w}" for w in WORDS] + WORDS + ["▁"]
    tok = Tokenizer(models.BPE({p: i for i, p in enumerate(pieces)}, [], unk_token="<unk>", byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )


@pytest.mark.parametrize("make", [_byte_level_bpe, _wordpiece, _sentencepiece_byte_fallback])
def test_the_decode_stream_emits_what_decoding_windows_emits(make: Callable[[], Any]) -> None:
    tok = make()
    backend = tok.backend_tokenizer
    special = set(tok.all_special_ids)

    def decode(ids: Any) -> str:
        return str(tok.decode(ids, skip_special_tokens=True))

    rng = random.Random(0)
    partial = 0
    for trial in range(300):
        ids = [rng.randrange(len(tok)) for _ in range(rng.randint(1, 30))]
        if trial % 2:
            ids = tok(rng.choice(TEXTS), add_special_tokens=False)["input_ids"] + ids[:4]
        stop = (rng.choice(["e", "o w", "🙂", "##"]),) if trial % 3 == 0 else ()
        windows, stream = TextTail(decode, stop), TextTail(decode, stop, backend)
        for token in ids:
            a = windows.push(token, special=token in special)
            b = stream.push(token, special=token in special)
            assert a == b, (ids, token)
            partial += a == ("", False)
            if a[1]:
                break
        else:
            assert windows.flush() == stream.flush()
    assert partial > 0  # tokens that added no text yet were among them
