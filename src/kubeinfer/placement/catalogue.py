"""Accelerator catalogue: the devices kubeinfer plans for, as plain editable data.

Why a Python data module rather than YAML: the entries are typed (mypy checks every field) and the module is
importable by pure code without file I/O. A user who wants other prices or another device builds their own
``Catalogue`` (``Catalogue.with_prices`` / ``Catalogue.add``) or passes a mapping parsed from their own file to
``accelerator_from_dict``.

Sources (checked 2024-2025; re-check before relying on them):
- memory: vendor data sheets (NVIDIA T4, L4, A10G = A10 with 24 GB, A100 40/80 GB, H100 SXM 80 GB, H200 141 GB;
  AMD Instinct MI300X 192 GB HBM3; Intel Gaudi 2 96 GB HBM2E).
- ``relative_throughput``: dense FP16/BF16 tensor TFLOPS from the same data sheets, normalised to A100 = 1.0
  (T4 65, L4 121, A10G ~70, A100 312, H100 SXM 989, H200 989, MI300X 1307, Gaudi 2 ~432). It is a rough prior for
  planning when a device has not been profiled; measured profiles always win.
- ``mig_capable``: NVIDIA MIG user guide, "Supported GPUs" (A100, A30, H100, H200; not T4/L4/A10G).
- ``sharing``: the NVIDIA device plugin supports time-slicing and MPS; the AMD and Intel Gaudi device plugins
  expose whole devices only (``amd.com/gpu``, ``habana.ai/gaudi``).
- ``example_prices``: **EXAMPLES ONLY, override them.** On-demand list prices per device-hour, derived from the
  public price pages of AWS (us-east-1: g4dn, g6, g5, p4d, p4de, p5, p5e), GCP (us-central1) and Azure (East US)
  for the smallest instance carrying the device, divided by its device count. Prices change often and differ
  by region, commitment and spot; they exist so that the examples and tests have plausible numbers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

__all__ = [
    "CATALOGUE",
    "Accelerator",
    "Catalogue",
    "Vendor",
    "accelerator_from_dict",
]

Vendor = Literal["nvidia", "amd", "intel"]
GIB = 1024**3


@dataclass(frozen=True)
class Accelerator:
    """One accelerator model (a whole device)."""

    name: str
    """Catalogue key, e.g. ``"A100-80GB"``; MIG profile tables are keyed by it."""
    vendor: Vendor
    memory_gib: float
    """Device memory in GiB as the data sheet states it (GB on the sheet is treated as GiB; close enough)."""
    relative_throughput: float
    """Dense FP16 tensor throughput relative to an A100 (= 1.0): a prior when no profile was measured."""
    mig_capable: bool = False
    time_slicing: bool = False
    """The vendor's Kubernetes device plugin can advertise one device several times (time-slicing)."""
    mps: bool = False
    """The device plugin can share the device through CUDA MPS with equal memory/compute limits."""
    resource_name: str = "nvidia.com/gpu"
    """Extended resource a pod requests for one whole device."""
    example_prices: Mapping[str, float] = field(default_factory=dict)
    """EXAMPLE on-demand $/device-hour per cloud (``aws``, ``gcp``, ``azure``, ...). Override before use."""

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gib * GIB)

    def price(self, cloud: str) -> float:
        try:
            return self.example_prices[cloud]
        except KeyError:
            raise KeyError(
                f"no example price for {self.name!r} on cloud {cloud!r}; known: {sorted(self.example_prices)}"
            ) from None


def _nvidia(name: str, mem: float, rel: float, mig: bool, prices: Mapping[str, float]) -> Accelerator:
    return Accelerator(
        name=name,
        vendor="nvidia",
        memory_gib=mem,
        relative_throughput=rel,
        mig_capable=mig,
        time_slicing=True,
        mps=True,
        example_prices=dict(prices),
    )


_ENTRIES: tuple[Accelerator, ...] = (
    _nvidia("T4", 16, 65 / 312, False, {"aws": 0.526, "gcp": 0.54, "azure": 0.526}),
    _nvidia("L4", 24, 121 / 312, False, {"aws": 0.805, "gcp": 0.71}),
    _nvidia("A10G", 24, 70 / 312, False, {"aws": 1.006}),
    _nvidia("A100-40GB", 40, 1.0, True, {"aws": 32.77 / 8, "gcp": 3.67, "azure": 27.20 / 8}),
    _nvidia("A100-80GB", 80, 1.0, True, {"aws": 40.97 / 8, "gcp": 5.07, "azure": 32.77 / 8}),
    _nvidia("H100-80GB", 80, 989 / 312, True, {"aws": 98.32 / 8, "gcp": 88.49 / 8, "azure": 98.32 / 8}),
    _nvidia("H200-141GB", 141, 989 / 312, True, {"aws": 124.0 / 8, "gcp": 84.81 / 8}),
    Accelerator(
        name="MI300X",
        vendor="amd",
        memory_gib=192,
        relative_throughput=1307 / 312,
        resource_name="amd.com/gpu",
        example_prices={"azure": 48.0 / 8},
    ),
    Accelerator(
        name="Gaudi2",
        vendor="intel",
        memory_gib=96,
        relative_throughput=432 / 312,
        resource_name="habana.ai/gaudi",
        example_prices={"aws": 13.11 / 8},
    ),
)


@dataclass(frozen=True)
class Catalogue:
    """An immutable name -> ``Accelerator`` table."""

    entries: Mapping[str, Accelerator]

    def __getitem__(self, name: str) -> Accelerator:
        try:
            return self.entries[name]
        except KeyError:
            raise KeyError(f"unknown accelerator {name!r}; known: {sorted(self.entries)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __iter__(self) -> Iterator[Accelerator]:
        return iter(self.entries.values())

    def names(self) -> tuple[str, ...]:
        return tuple(self.entries)

    def add(self, acc: Accelerator) -> Catalogue:
        return Catalogue({**self.entries, acc.name: acc})

    def with_prices(self, cloud: str, prices: Mapping[str, float]) -> Catalogue:
        """A copy where ``prices[name]`` replaces the example price of each named device on ``cloud``."""
        out = dict(self.entries)
        for name, price in prices.items():
            acc = self[name]
            if price < 0:
                raise ValueError(f"price of {name!r} on {cloud!r} is {price}; must be >= 0")
            out[name] = replace(acc, example_prices={**acc.example_prices, cloud: float(price)})
        return Catalogue(out)


CATALOGUE = Catalogue({a.name: a for a in _ENTRIES})


def accelerator_from_dict(raw: Mapping[str, Any]) -> Accelerator:
    """Build an ``Accelerator`` from a mapping with the field names above (e.g. parsed YAML)."""
    known = set(Accelerator.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown accelerator fields {sorted(unknown)}; allowed: {sorted(known)}")
    for req in ("name", "vendor", "memory_gib", "relative_throughput"):
        if req not in raw:
            raise ValueError(f"accelerator entry needs {req!r}")
    if raw["vendor"] not in ("nvidia", "amd", "intel"):
        raise ValueError(f"vendor {raw['vendor']!r} is not one of 'nvidia', 'amd', 'intel'")
    if raw["vendor"] != "nvidia" and (raw.get("mig_capable") or raw.get("time_slicing") or raw.get("mps")):
        raise ValueError(f"vendor {raw['vendor']!r} exposes whole devices only: no MIG, time-slicing or MPS")
    return Accelerator(**dict(raw))
