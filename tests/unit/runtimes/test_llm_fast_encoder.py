"""The tokenizer's backend called directly where it gives what the transformers wrapper gives, and only there."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm import tiny_llm_dir

transformers = pytest.importorskip("transformers")

from kubeinfer.runtimes.llm.text import fast_encoder  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return transformers.AutoTokenizer.from_pretrained(tiny_llm_dir())


@pytest.fixture(scope="module")
def encode(tokenizer: Any) -> Any:
    found = fast_encoder(tokenizer)
    assert found is not None  # the example model's tokenizer takes the fast path
    return found


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=200), special=st.booleans())
def test_the_fast_path_tokenizes_any_text_as_the_wrapper_does(
    tokenizer: Any, encode: Any, text: str, special: bool
) -> None:
    assert encode(text, special) == list(tokenizer(text, add_special_tokens=special)["input_ids"])


def test_special_tokens_in_the_text_are_tokens_as_through_the_wrapper(tokenizer: Any, encode: Any) -> None:
    text = f"{tokenizer.bos_token}Hi{tokenizer.eos_token} there"
    assert encode(text, True) == list(tokenizer(text)["input_ids"])
    assert tokenizer.eos_token_id in encode(text, False)


class _OffByOne:
    """A backend whose ``encode`` (the fast path's call) gives every id plus one, while everything the wrapper calls
    (``encode_batch``, truncation and padding) goes to the real backend."""

    def __init__(self, inner: Any) -> None:
        object.__setattr__(self, "inner", inner)

    def encode(self, text: str, add_special_tokens: bool = True) -> Any:
        out = self.inner.encode(text, add_special_tokens=add_special_tokens)
        return type("Encoding", (), {"ids": [i + 1 for i in out.ids]})()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.inner, name, value)


def test_a_backend_that_disagrees_with_the_wrapper_is_not_used() -> None:
    wrong = transformers.AutoTokenizer.from_pretrained(tiny_llm_dir())
    wrong._tokenizer = _OffByOne(wrong._tokenizer)
    assert (
        wrong("Hello")["input_ids"] == transformers.AutoTokenizer.from_pretrained(tiny_llm_dir())("Hello")["input_ids"]
    )
    assert fast_encoder(wrong) is None


def test_a_tokenizer_class_with_its_own_encoding_keeps_the_wrapper() -> None:
    base = type(transformers.AutoTokenizer.from_pretrained(tiny_llm_dir()))

    class Custom(base):  # type: ignore[misc, valid-type]
        def _encode_plus(self, *args: Any, **kwargs: Any) -> Any:  # a model's remote code, say
            return super()._encode_plus(*args, **kwargs)

    Custom.__module__ = "transformers_modules.some_model.tokenization"
    custom = Custom.from_pretrained(tiny_llm_dir())
    assert fast_encoder(custom) is None
    assert fast_encoder(object()) is None  # no backend at all
