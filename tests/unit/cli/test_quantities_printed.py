"""Amounts people read (describe's VPA bounds, the machine a profile was measured on) are Kubernetes quantities."""

from __future__ import annotations

import re

from kubeinfer.bench.profile import machine_info
from kubeinfer.cli.local import _cpu, _memory
from kubeinfer.spec.quantity import parse_quantity

QUANTITY = re.compile(r"^\d+(m|Mi|Gi)?$")


def test_the_profiles_machine_memory_is_a_quantity() -> None:
    memory = machine_info()["memory"]
    assert QUANTITY.match(memory) and memory.endswith(("Mi", "Gi"))
    assert parse_quantity(memory).value >= 2**20


def test_describe_prints_vpa_bounds_as_quantities() -> None:
    assert (_cpu(0.025), _cpu(2.0), _cpu(float("inf"))) == ("25m", "2", "inf")
    assert (_memory(250 * 2**20), _memory(2**31), _memory(float("inf"))) == ("250Mi", "2Gi", "inf")
