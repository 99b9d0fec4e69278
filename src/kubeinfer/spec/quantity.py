"""Kubernetes resource quantities (``500m``, ``1Gi``, ``2.5``, ``1e3``), parsed exactly as the API server does.

Reference: k8s.io/apimachinery/pkg/api/resource/quantity.go. The grammar is::

    <quantity>        ::= <signedNumber><suffix>
    <suffix>          ::= <binarySI> | <decimalExponent> | <decimalSI>
    <binarySI>        ::= Ki | Mi | Gi | Ti | Pi | Ei
    <decimalSI>       ::= n | u | m | "" | k | M | G | T | P | E
    <decimalExponent> ::= "e" <signedNumber> | "E" <signedNumber>

Values are kept as exact fractions (no float rounding); ``milli_value`` rounds up as ``MilliValue()`` does,
and ``canonical`` writes the form the API server would store (``1500m`` -> ``1500m``, ``1000m`` -> ``1``,
``1024Mi`` -> ``1Gi``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

__all__ = ["Quantity", "QuantityError", "format_cpu", "format_memory", "parse_quantity"]

Format = Literal["BinarySI", "DecimalSI", "DecimalExponent"]

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
_NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_RE = re.compile(rf"^(?P<num>{_NUMBER})(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?[0-9]+|[numkMGTPE]?)$")


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


@dataclass(frozen=True, slots=True)
class Quantity:
    """An exact resource amount and the suffix family it was written in."""

    value: Fraction
    format: Format = "DecimalSI"

    @property
    def milli_value(self) -> int:
        """Thousandths, rounded up (Kubernetes ``MilliValue``): ``0.1m`` -> 1."""
        return math.ceil(self.value * 1000)

    @property
    def int_value(self) -> int:
        """Whole units, rounded up (Kubernetes ``Value``): ``1.5`` -> 2, ``100m`` -> 1."""
        return math.ceil(self.value)

    def __float__(self) -> float:
        return float(self.value)

    @property
    def canonical(self) -> str:
        """The canonical string the API server writes back for this quantity."""
        v = self.value
        if v == 0:
            return "0"
        sign = "-" if v < 0 else ""
        v = abs(v)
        if self.format == "BinarySI" and v.denominator == 1:
            n = v.numerator
            for suffix, size in sorted(_BINARY.items(), key=lambda kv: -kv[1]):
                if n % size == 0:
                    return f"{sign}{n // size}{suffix}"
            if n < 1024:
                return f"{sign}{n}"
            # Kubernetes falls back to decimal SI when a binary amount is not a multiple of 1Ki.
        # Decimal: the largest suffix for which the amount is a whole number; below nano it rounds up.
        for suffix in ("E", "P", "T", "G", "M", "k", "", "m", "u", "n"):
            scaled = v / _DECIMAL[suffix]
            if scaled.denominator == 1 and (scaled.numerator >= 1):
                if self.format == "DecimalExponent":
                    exp = {"E": 18, "P": 15, "T": 12, "G": 9, "M": 6, "k": 3, "": 0, "m": -3, "u": -6, "n": -9}
                    e = exp[suffix]
                    return f"{sign}{scaled.numerator}" + (f"e{e}" if e else "")
                return f"{sign}{scaled.numerator}{suffix}"
        return f"{sign}{math.ceil(v * 10**9)}n"

    def __str__(self) -> str:
        return self.canonical


def parse_quantity(raw: str | int | float) -> Quantity:
    """Parse a Kubernetes quantity; YAML numbers (``cpu: 2``, ``cpu: 0.5``) are accepted as decimal SI."""
    if isinstance(raw, bool):
        raise QuantityError(f"{raw!r} is not a quantity: use a number or a string such as '500m' or '1Gi'")
    if isinstance(raw, int):
        return Quantity(Fraction(raw), "DecimalSI")
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise QuantityError(f"{raw!r} is not a quantity: it must be finite")
        return Quantity(Fraction(str(raw)), "DecimalSI")
    text = raw.strip()
    m = _RE.match(text)
    if m is None:
        raise QuantityError(
            f"{raw!r} is not a quantity: write a number with an optional suffix, "
            "e.g. '500m', '2', '1.5', '512Mi', '1Gi', '1e3' (suffixes: n u m k M G T P E Ki Mi Gi Ti Pi Ei)"
        )
    number = Fraction(m.group("num"))
    suffix = m.group("suffix")
    if suffix in _BINARY:
        return Quantity(number * _BINARY[suffix], "BinarySI")
    if suffix[:1] in ("e", "E"):
        exp = int(suffix[1:])
        if abs(exp) > 30:
            raise QuantityError(f"{raw!r} is not a quantity: exponent {exp} is out of range")
        return Quantity(number * Fraction(10) ** exp, "DecimalExponent")
    return Quantity(number * _DECIMAL[suffix], "DecimalSI")


def format_cpu(cores: float) -> str:
    """CPU cores as a quantity, rounded up to a millicore: ``2`` -> ``"2"``, ``0.0251`` -> ``"26m"``."""
    milli = math.ceil(cores * 1000 - 1e-6)  # float noise (0.1 * 3) is not another millicore
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def format_memory(nbytes: float) -> str:
    """Bytes as a quantity in whole ``Mi`` (rounded up, never below the amount) or ``Gi`` when exact; under 1Mi,
    the bytes as they are: ``25276071936`` -> ``"24106Mi"``, ``2**30`` -> ``"1Gi"``."""
    n = math.ceil(nbytes)
    mi = -(-n // 2**20)
    if n < 2**20 and mi * 2**20 != n:
        return str(n)
    return f"{mi // 1024}Gi" if mi % 1024 == 0 else f"{mi}Mi"
