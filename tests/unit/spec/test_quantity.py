"""Kubernetes quantities parse and print exactly as the API server does (apimachinery quantity_test.go cases)."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubeinfer.spec import QuantityError, parse_quantity
from kubeinfer.spec.quantity import format_cpu, format_memory


@pytest.mark.parametrize(
    ("raw", "value", "canonical"),
    [
        ("0", 0, "0"),
        ("500m", Fraction(1, 2), "500m"),
        ("1500m", Fraction(3, 2), "1500m"),
        ("1000m", 1, "1"),
        ("2", 2, "2"),
        ("2.5", Fraction(5, 2), "2500m"),
        (".5", Fraction(1, 2), "500m"),
        ("1.", 1, "1"),
        ("1Ki", 1024, "1Ki"),
        ("1024Mi", 2**30, "1Gi"),
        ("1.5Gi", 3 * 2**29, "1536Mi"),
        ("1k", 1000, "1k"),
        ("1M", 10**6, "1M"),
        ("1e3", 1000, "1e3"),
        ("1E3", 1000, "1e3"),
        ("12e-3", Fraction(12, 1000), "12e-3"),
        ("100n", Fraction(1, 10**7), "100n"),
        ("1u", Fraction(1, 10**6), "1u"),
        ("-1", -1, "-1"),
        ("+2", 2, "2"),
        (2, 2, "2"),
        (0.25, Fraction(1, 4), "250m"),
    ],
)
def test_parses_and_prints_like_kubernetes(raw: str | float, value: Fraction, canonical: str) -> None:
    q = parse_quantity(raw)
    assert q.value == value
    assert q.canonical == canonical


@pytest.mark.parametrize(("raw", "milli"), [("0.1m", 1), ("1", 1000), ("1.0001", 1001), ("250m", 250)])
def test_milli_value_rounds_up(raw: str, milli: int) -> None:
    assert parse_quantity(raw).milli_value == milli


@pytest.mark.parametrize("raw", ["", "1.2.3", "1Gb", "1 Gi", "Gi", "1iB", "abc", "1e", "--1", "1e99999", "0x10"])
def test_rejects_what_kubernetes_rejects(raw: str) -> None:
    with pytest.raises(QuantityError, match="not a quantity"):
        parse_quantity(raw)


def test_rejects_booleans_from_yaml() -> None:
    with pytest.raises(QuantityError):
        parse_quantity(True)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=2**50), st.sampled_from(["", "m", "k", "M", "Ki", "Mi", "Gi"]))
def test_canonical_form_parses_back_to_the_same_amount(n: int, suffix: str) -> None:
    q = parse_quantity(f"{n}{suffix}")
    assert parse_quantity(q.canonical).value == q.value


@pytest.mark.parametrize(
    ("cores", "text"),
    [(2, "2"), (0.5, "500m"), (0.0251, "26m"), (49.581, "49581m"), (0.001, "1m"), (1.000000000001, "1")],
)
def test_format_cpu_rounds_up_to_a_millicore(cores: float, text: str) -> None:
    assert format_cpu(cores) == text
    assert parse_quantity(text).value * 1000 >= int(cores * 1000)


@pytest.mark.parametrize(
    ("nbytes", "text"),
    [(2**30, "1Gi"), (25_276_071_936, "24106Mi"), (250 * 2**20, "250Mi"), (2**20 + 1, "2Mi"), (1000, "1000")],
)
def test_format_memory_never_below_the_amount(nbytes: int, text: str) -> None:
    assert format_memory(nbytes) == text
    assert parse_quantity(text).value >= nbytes


@given(st.floats(min_value=0, max_value=1e15, allow_nan=False))
def test_format_memory_parses_back_to_at_least_the_amount(nbytes: float) -> None:
    assert parse_quantity(format_memory(nbytes)).value >= nbytes
