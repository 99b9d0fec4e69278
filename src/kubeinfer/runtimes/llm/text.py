"""Sampling parameters, prompts into tokens, and the text of a sequence as it grows: incremental detokenization and
stop strings.

Decoding token by token cannot just decode each new token alone: a byte-level BPE token may hold half of a UTF-8
character, and a word's leading space depends on its neighbours. A window of the last tokens is decoded at each step
(:class:`TextTail`) and only the new, settled part is emitted: text that ends in an incomplete character (U+FFFD)
waits for the next token, and so does a tail that could still become a stop string, so a stop string never reaches a
streaming client even in part (OpenAI's behaviour: the stop string is not part of the output).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["FinishReason", "SamplingParams", "TextTail", "fast_encoder", "wrapper_tokens"]

log = logging.getLogger("kubeinfer.llm")

FinishReason = str  # "stop" (end of sequence or a stop string), "length" (max_tokens or the context), "abort"

_REPLACEMENT = "\ufffd"


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How one sequence is generated. ``temperature`` 0 is greedy (the most likely token at every step)."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False


class TextTail:
    """The generated tokens of one sequence, their settled text and the part of it already emitted.

    Decoding is incremental, as Hugging Face's text-generation-inference does it: only the tokens from
    ``prefix_offset`` on are decoded, and the text they add beyond the already-read ones (``prefix_offset`` to
    ``read_offset``) is the new text. A window that starts a few tokens back keeps the joins right (a word's leading
    space, a character split over tokens); decoding the whole output at every token would cost its length each time.

    With ``backend``, the ``tokenizers`` library's tokenizer behind a fast ``transformers`` tokenizer, each token goes
    through its ``DecodeStream`` instead: the same algorithm in one call into Rust, where ``decode`` (two calls through
    ``transformers``' Python per token) costs about eight times as much; the text is the same (special tokens skipped,
    as ``decode`` must skip them). ``decode`` still decodes what :meth:`flush` gives out at the end.
    """

    __slots__ = ("_backend", "_decode", "_emitted", "_prefix", "_read", "_stop", "_stream", "_text", "ids")

    def __init__(self, decode: Callable[[Sequence[int]], str], stop: Sequence[str], backend: Any | None = None) -> None:
        self._decode = decode
        self._backend = backend
        self._stream = _decode_stream() if backend is not None else None
        self._stop = tuple(s for s in stop if s)
        self.ids: list[int] = []
        self._text = ""  # settled text (no incomplete character at its end)
        self._emitted = 0
        self._prefix = 0
        self._read = 0

    def push(self, token: int, special: bool = False) -> tuple[str, bool]:
        """Add a token; returns the newly emitted text and whether a stop string ended the sequence (the text up to
        it is then all emitted, the stop string and what follows are not). ``special`` tokens add no text."""
        self.ids.append(token)
        added = self._step(token, special)
        if not added:
            return "", False
        self._text += added
        self._prefix, self._read = self._read, len(self.ids)
        text = self._text
        if self._stop:
            start = max(0, self._emitted - max(len(s) for s in self._stop) + 1)
            cut = min((i for i in (text.find(s, start) for s in self._stop) if i >= 0), default=-1)
            if cut >= 0:
                new = text[self._emitted : cut] if cut > self._emitted else ""
                self._emitted = max(self._emitted, cut)
                return new, True
        end = len(text) - _held_back(text, self._stop)
        if end <= self._emitted:
            return "", False
        new = text[self._emitted : end]
        self._emitted = end
        return new, False

    def _step(self, token: int, special: bool) -> str:
        """The text ``token`` (the last of ``ids``) settles; empty while there is none yet."""
        if self._stream is not None:
            # the stream sees every token (a special one adds nothing); its window moves as ``_prefix`` and ``_read``
            try:
                added = self._stream.step(self._backend, token)
            except Exception:  # the window's text does not start with the text before it (a decoder that strips)
                added = None
            else:
                if added:
                    return str(added)
            # No text, or an error: the windows say the same in all but odd cases (a decoder that strips the
            # window's leading space, where the stream compares lengths in bytes and fails), where they decide, from
            # here on, so that the text is always theirs.
            added = self._windows(special)
            if added:
                self._stream = None
            return added
        return self._windows(special)

    def _windows(self, special: bool) -> str:
        if special:
            return ""
        read_text = self._decode(self.ids[self._prefix : self._read])
        window = self._decode(self.ids[self._prefix :])
        if len(window) <= len(read_text) or window.endswith(_REPLACEMENT):
            return ""  # nothing new yet, or a character still incomplete: wait for the next token
        return window[len(read_text) :]

    def flush(self) -> str:
        """At the end (not by a stop string): the text still held back, an incomplete last character included."""
        rest = self._decode(self.ids[self._prefix :])[len(self._decode(self.ids[self._prefix : self._read])) :]
        self._text += rest
        self._prefix = self._read = len(self.ids)
        new = self._text[self._emitted :]
        self._emitted = len(self._text)
        return new


def _decode_stream() -> Any | None:
    """A ``tokenizers`` ``DecodeStream`` that skips special tokens (None before tokenizers 0.21, which has none)."""
    try:
        from tokenizers.decoders import DecodeStream
    except ImportError:
        return None
    return DecodeStream(skip_special_tokens=True)


def _held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest tail of ``text`` that is the start of a stop string (it may yet become one)."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best


PROBES = (
    "Hello",
    " two  spaces,\ttab and\nnew lines\n\n",
    "héllo wörld, 你好, こんにちは, привет 🙂",
    "def f(x):\n    return x ** 2  # 1234567890",
)


def wrapper_tokens(tokenizer: Any, text: str, special: bool) -> list[int]:
    """``text``'s token ids through the transformers tokenizer (with its special tokens where ``special``)."""
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def fast_encoder(tokenizer: Any) -> Callable[[str, bool], list[int]] | None:
    """A fast tokenizer's Rust backend (``tokenizers.Tokenizer.encode``) called directly, where that is all the
    transformers wrapper would run: about 35 us for a short prompt instead of 80 (the wrapper's argument handling),
    spent on the server's event loop for every request, before the request reaches the engine.

    None -- the wrapper stays -- for a tokenizer without a backend, one whose class encodes its own way (a model's
    custom code overriding ``_encode_plus``), or one whose backend disagrees with the wrapper on any probe text
    (spaces, tabs, new lines, accents, CJK and Cyrillic, emoji, code, and the special tokens themselves), with and
    without special tokens."""
    backend = getattr(tokenizer, "_tokenizer", None)
    if backend is None or not getattr(tokenizer, "is_fast", False) or not hasattr(backend, "encode"):
        return None
    owner = next((c for c in type(tokenizer).__mro__ if "_encode_plus" in vars(c)), None)
    if owner is None or not owner.__module__.startswith("transformers.tokenization_utils"):
        return None

    def encode(text: str, special: bool) -> list[int]:
        return list(backend.encode(text, add_special_tokens=special).ids)

    specials = [t for t in (tokenizer.bos_token, tokenizer.eos_token) if isinstance(t, str) and t]
    probes = (*PROBES, *specials, "".join(f"{t} x " for t in specials))
    try:
        for text in probes:
            for special in (True, False):
                if encode(text, special) != wrapper_tokens(tokenizer, text, special):
                    log.info(
                        "tokenizer of %s: the wrapper differs from its backend; tokenizing through it",
                        type(tokenizer).__name__,
                    )
                    return None
    except Exception:  # a backend that cannot take these arguments: the wrapper knows how to call it
        return None
    return encode
