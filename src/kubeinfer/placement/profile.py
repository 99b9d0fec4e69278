"""Performance profiles: what ``kubeinfer profile`` writes and the planner reads.

A profile says how fast one replica of a model is on each accelerator *slice* it was measured (or estimated) on.
The runner (``kubeinfer profile``, in ``bench/``) sweeps batch size and client concurrency against one real
replica and writes one point per (slice, batch size, concurrency). Numbers measured elsewhere (e.g. on a rented
GPU) can be written by hand in the same format, so planning for GPUs works from a laptop.

File format (YAML or JSON; this is the ``Profile.to_dict`` / ``profile_from_dict`` shape)::

    apiVersion: kubeinfer.io/v1alpha1
    kind: Profile
    model: bert-base                 # free text, usually metadata.name of the InferenceService
    hostCpu: "2"                     # CPU a replica requests on the node (Kubernetes quantity), default "1"
    hostMemory: 4Gi                  # node memory a replica requests, default "1Gi"
    machine: {cpus: 8, memory: 32Gi} # optional, free-form: where the points were measured (kept, not used)
    points:
      - slice: A100-80GB             # a catalogue name: one whole device
        batchSize: 32
        concurrency: 64
        throughputRps: 2100.0        # completed requests per second
        latencyMs: {p50: 12.1, p90: 18.0, p95: 21.3, p99: 30.2}
        peakMemory: 6Gi              # accelerator memory (host memory for slice 'cpu'), Kubernetes quantity
        cpuCores: 1.2                # optional: host CPU the replica used
      - slice: A100-80GB/mig-1g.10gb # a MIG instance of that GPU
        ...
      - slice: T4/share-4            # one of 4 time-slicing (or MPS) replicas of a T4
        ...
      - slice: cpu                   # no accelerator
        ...

Slice grammar: ``cpu`` | ``<accelerator>`` | ``<accelerator>/mig-<profile>`` | ``<accelerator>/share-<n>``.
The planner needs, for each slice, the highest throughput whose latency percentile stays within the SLO
(``Profile.throughput_at_slo``) and the peak memory. Slices not measured can be estimated from the whole-device
point (``estimate_slice``): a MIG instance gets ``compute_slices/7`` of the throughput, a time-slice share ``1/n``;
this is a prior, and a measured point always replaces it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from kubeinfer.placement.mig import mig_profiles
from kubeinfer.spec.quantity import format_memory, parse_quantity

__all__ = [
    "Percentile",
    "Profile",
    "ProfilePoint",
    "SliceRef",
    "parse_slice",
    "profile_from_dict",
]

Percentile = Literal["p50", "p90", "p95", "p99"]
_SLICE = re.compile(r"^(?P<acc>[A-Za-z0-9.\-]+)(/(?P<kind>mig|share)-(?P<arg>[0-9a-z.+]+))?$")


@dataclass(frozen=True, order=True)
class SliceRef:
    """A unit a replica can be given: a whole accelerator, a MIG instance, a 1/n share, or CPU only."""

    accelerator: str
    """Catalogue name, or ``"cpu"``."""
    kind: Literal["cpu", "whole", "mig", "share"]
    mig_profile: str = ""
    share: int = 1

    def __str__(self) -> str:
        if self.kind == "cpu":
            return "cpu"
        if self.kind == "whole":
            return self.accelerator
        if self.kind == "mig":
            return f"{self.accelerator}/mig-{self.mig_profile}"
        return f"{self.accelerator}/share-{self.share}"


CPU_SLICE = SliceRef("cpu", "cpu")


def parse_slice(text: str) -> SliceRef:
    """Parse the slice grammar above; errors say what is allowed."""
    if text == "cpu":
        return CPU_SLICE
    m = _SLICE.match(text)
    if not m:
        raise ValueError(
            f"slice {text!r} is not 'cpu', '<accelerator>', '<accelerator>/mig-<profile>' or "
            "'<accelerator>/share-<n>' (e.g. 'A100-80GB/mig-1g.10gb', 'T4/share-4')"
        )
    acc, kind, arg = m["acc"], m["kind"], m["arg"]
    if kind is None:
        return SliceRef(acc, "whole")
    if kind == "mig":
        if arg not in {p.name for p in mig_profiles(acc)}:
            raise ValueError(f"slice {text!r}: {arg!r} is not a MIG profile of {acc!r}")
        return SliceRef(acc, "mig", mig_profile=arg)
    if not arg.isdigit() or int(arg) < 2:
        raise ValueError(f"slice {text!r}: share count must be an integer >= 2")
    return SliceRef(acc, "share", share=int(arg))


@dataclass(frozen=True)
class ProfilePoint:
    slice: SliceRef
    batch_size: int
    concurrency: int
    throughput_rps: float
    latency_ms: Mapping[str, float]
    """Percentiles ``p50``, ``p90``, ``p95``, ``p99`` (any subset) in milliseconds."""
    peak_memory_bytes: int
    cpu_cores: float | None = None


@dataclass(frozen=True)
class Profile:
    model: str
    points: tuple[ProfilePoint, ...]
    host_cpu: float = 1.0
    """CPU cores a replica requests on its node."""
    host_memory_bytes: int = 1024**3
    extra: Mapping[str, Any] = field(default_factory=dict)

    def slices(self) -> tuple[SliceRef, ...]:
        return tuple(sorted({p.slice for p in self.points}))

    def throughput_at_slo(self, slice_: SliceRef, slo_ms: float, percentile: Percentile = "p99") -> float:
        """Highest measured throughput on ``slice_`` whose latency percentile is within ``slo_ms`` (0 if none)."""
        best = 0.0
        for p in self.points:
            if p.slice == slice_ and p.latency_ms.get(percentile, float("inf")) <= slo_ms:
                best = max(best, p.throughput_rps)
        return best

    def peak_memory(self, slice_: SliceRef) -> int:
        """Largest peak memory seen on ``slice_`` (what must fit in the slice)."""
        mems = [p.peak_memory_bytes for p in self.points if p.slice == slice_]
        if not mems:
            raise KeyError(f"profile of {self.model!r} has no point on slice {slice_}")
        return max(mems)

    def to_dict(self) -> dict[str, Any]:
        return {
            "apiVersion": "kubeinfer.io/v1alpha1",
            "kind": "Profile",
            "model": self.model,
            "hostCpu": _fmt_cpu(self.host_cpu),
            "hostMemory": format_memory(self.host_memory_bytes),
            **({"machine": dict(self.extra["machine"])} if "machine" in self.extra else {}),
            "points": [
                {
                    "slice": str(p.slice),
                    "batchSize": p.batch_size,
                    "concurrency": p.concurrency,
                    "throughputRps": p.throughput_rps,
                    "latencyMs": dict(p.latency_ms),
                    "peakMemory": format_memory(p.peak_memory_bytes),
                    **({} if p.cpu_cores is None else {"cpuCores": p.cpu_cores}),
                }
                for p in self.points
            ],
        }


def _fmt_cpu(cores: float) -> str:
    milli = round(cores * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def _num(raw: Any, where: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw < 0:
        raise ValueError(f"{where} is {raw!r}; must be a number >= 0")
    return float(raw)


def profile_from_dict(raw: Mapping[str, Any]) -> Profile:
    """Validate a parsed profile file. Errors name the field (``points[2].latencyMs.p99``) and what is allowed."""
    if raw.get("kind", "Profile") != "Profile":
        raise ValueError(f"kind is {raw.get('kind')!r}; must be 'Profile'")
    allowed = {"apiVersion", "kind", "model", "hostCpu", "hostMemory", "machine", "points"}
    unknown = set(raw) - allowed
    if unknown:
        raise ValueError(f"unknown profile fields {sorted(unknown)}; allowed: {sorted(allowed)}")
    points = []
    for i, rp in enumerate(raw.get("points") or []):
        where = f"points[{i}]"
        try:
            sl = parse_slice(str(rp["slice"]))
            lat = {str(k): _num(v, f"{where}.latencyMs.{k}") for k, v in dict(rp["latencyMs"]).items()}
            bad = set(lat) - {"p50", "p90", "p95", "p99"}
            if bad:
                raise ValueError(f"{where}.latencyMs has {sorted(bad)}; allowed p50, p90, p95, p99")
            points.append(
                ProfilePoint(
                    slice=sl,
                    batch_size=int(rp.get("batchSize", 1)),
                    concurrency=int(rp.get("concurrency", 1)),
                    throughput_rps=_num(rp["throughputRps"], f"{where}.throughputRps"),
                    latency_ms=lat,
                    peak_memory_bytes=parse_quantity(rp.get("peakMemory", 0)).int_value,
                    cpu_cores=None if rp.get("cpuCores") is None else _num(rp["cpuCores"], f"{where}.cpuCores"),
                )
            )
        except KeyError as e:
            raise ValueError(f"{where} needs field {e.args[0]!r}") from None
    if not points:
        raise ValueError("points is empty; a profile needs at least one measured point")
    return Profile(
        model=str(raw.get("model", "")),
        points=tuple(points),
        host_cpu=float(parse_quantity(raw.get("hostCpu", "1"))),
        host_memory_bytes=parse_quantity(raw.get("hostMemory", "1Gi")).int_value,
        extra={"machine": dict(raw["machine"])} if isinstance(raw.get("machine"), Mapping) else {},
    )
