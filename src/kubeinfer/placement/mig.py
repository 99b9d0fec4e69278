"""GPU sharing: MIG profiles and their valid layouts, time-slicing, MPS, and the resource names pods request.

MIG model (NVIDIA Multi-Instance GPU user guide, "Supported MIG Profiles"): a MIG-capable GPU has 8 memory slices
and 7 compute slices. A GPU instance of a profile occupies ``memory_slices`` consecutive memory slices starting at
one of the profile's allowed start slices, uses ``compute_slices`` compute slices, and a profile may appear at most
``max_count`` times. Instances may not overlap, and their compute slices sum to at most 7. Those rules are what
``nvidia-smi mig -cgi`` enforces (``nvmlDeviceGetGpuInstancePossiblePlacements`` returns the start/size pairs
tabulated below), so a layout that passes ``validate_layout`` is one a real GPU accepts.

Placements (start slices, size) per profile family, identical on A100-40GB, A100-80GB, H100-80GB and H200-141GB:
``1g`` small: starts 0..6, size 1 (slice 7 is never used by it); ``1g`` double memory: starts 0,2,4,6, size 2;
``2g``: starts 0,2,4, size 2; ``3g``: starts 0,4, size 4; ``4g``: start 0, size 4; ``7g``: start 0, size 8.
``+me`` (media extensions) profiles place like the small ``1g`` and exist once per GPU.

Layout names follow NVIDIA mig-parted's example ``config.yaml``: ``all-disabled`` (MIG off: one whole GPU),
``all-<profile>`` (as many of one profile as fit, e.g. ``all-1g.10gb`` = 7 instances), ``all-<profile>.me`` for the
media-extension profile, ``all-balanced`` (A100-40GB: 2x1g.5gb + 1x2g.10gb + 1x3g.20gb; 80 GB parts: 2x1g.10gb +
1x2g.20gb + 1x3g.40gb; H200: 2x1g.18gb + 1x2g.35gb + 1x3g.71gb). Other valid layouts are named
``custom-<n>x<profile>-...`` in decreasing profile size.

Time-slicing and MPS (NVIDIA k8s-device-plugin ``sharing.timeSlicing`` / ``sharing.mps``): the plugin advertises
each device ``replicas`` times. Time-slicing gives no memory or fault isolation, so the replicas' memory must
still fit in the device (we check the sum); MPS splits memory and compute into equal shares of 1/replicas.
Resource names: ``nvidia.com/gpu`` for whole GPUs and for shared replicas by default, ``nvidia.com/gpu.shared``
when ``renameByDefault: true``; MIG under the ``single`` strategy advertises ``nvidia.com/gpu``, under ``mixed``
``nvidia.com/mig-<profile>`` (``+me`` becomes ``.me``), and shared MIG devices with ``renameByDefault`` get a
``.shared`` suffix. AMD and Intel Gaudi advertise whole devices only (``amd.com/gpu``, ``habana.ai/gaudi``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Literal

from kubeinfer.placement.catalogue import CATALOGUE, Accelerator

__all__ = [
    "MAX_COMPUTE_SLICES",
    "MEMORY_SLICES",
    "MIG_PROFILES",
    "MigInstance",
    "MigLayout",
    "MigProfile",
    "MigStrategy",
    "SharingMode",
    "enumerate_layouts",
    "maximal_layouts",
    "mig_profiles",
    "named_layouts",
    "place_layout",
    "resource_name",
    "validate_layout",
]

MEMORY_SLICES = 8
MAX_COMPUTE_SLICES = 7

SharingMode = Literal["exclusive", "mig", "time-slicing", "mps"]
MigStrategy = Literal["single", "mixed"]


@dataclass(frozen=True, order=True)
class MigProfile:
    """One GPU-instance profile of one GPU model."""

    name: str
    """As ``nvidia-smi`` prints it, e.g. ``"1g.10gb"`` or ``"1g.10gb+me"``."""
    compute_slices: int
    memory_slices: int
    memory_gib: float
    max_count: int
    starts: tuple[int, ...]
    """Memory slices where an instance may start; it then spans ``memory_slices`` slices."""

    @property
    def media_extensions(self) -> bool:
        return self.name.endswith("+me")


def _family(mem_small: float, mem_total: float, *, h200: bool = False) -> tuple[MigProfile, ...]:
    """The seven profiles of one MIG GPU, named after its memory sizes (all four parts share the geometry)."""

    def gb(x: float) -> str:
        return f"{round(x)}gb"

    small = mem_small
    two = 2 * mem_small if not h200 else 35
    four = 4 * mem_small if not h200 else 71
    return (
        MigProfile(f"1g.{gb(small)}", 1, 1, small, 7, (0, 1, 2, 3, 4, 5, 6)),
        MigProfile(f"1g.{gb(small)}+me", 1, 1, small, 1, (0, 1, 2, 3, 4, 5, 6)),
        MigProfile(f"1g.{gb(two)}", 1, 2, two, 4, (0, 2, 4, 6)),
        MigProfile(f"2g.{gb(two)}", 2, 2, two, 3, (0, 2, 4)),
        MigProfile(f"3g.{gb(four)}", 3, 4, four, 2, (0, 4)),
        MigProfile(f"4g.{gb(four)}", 4, 4, four, 1, (0,)),
        MigProfile(f"7g.{gb(mem_total)}", 7, 8, mem_total, 1, (0,)),
    )


MIG_PROFILES: Mapping[str, tuple[MigProfile, ...]] = {
    "A100-40GB": _family(5, 40),
    "A100-80GB": _family(10, 80),
    "H100-80GB": _family(10, 80),
    "H200-141GB": _family(18, 141, h200=True),
}

_BALANCED = {
    "A100-40GB": {"1g.5gb": 2, "2g.10gb": 1, "3g.20gb": 1},
    "A100-80GB": {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1},
    "H100-80GB": {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1},
    "H200-141GB": {"1g.18gb": 2, "2g.35gb": 1, "3g.71gb": 1},
}


def mig_profiles(gpu: str | Accelerator) -> tuple[MigProfile, ...]:
    """The MIG profiles of a GPU model; empty for a GPU without MIG."""
    name = gpu.name if isinstance(gpu, Accelerator) else gpu
    return MIG_PROFILES.get(name, ())


def _profile_map(gpu: str) -> dict[str, MigProfile]:
    profiles = mig_profiles(gpu)
    if not profiles:
        raise ValueError(f"{gpu!r} has no MIG profiles; MIG-capable: {sorted(MIG_PROFILES)}")
    return {p.name: p for p in profiles}


@dataclass(frozen=True)
class MigInstance:
    profile: str
    start: int


MigLayout = tuple[tuple[str, int], ...]
"""A layout as a sorted tuple of ``(profile name, count)`` pairs; counts > 0."""


def _as_layout(counts: Mapping[str, int]) -> MigLayout:
    return tuple(sorted((p, n) for p, n in counts.items() if n > 0))


def place_layout(gpu: str, counts: Mapping[str, int]) -> tuple[MigInstance, ...] | None:
    """Concrete placements realising ``counts`` on one GPU, or ``None`` when the GPU would reject the layout.

    Larger instances are placed first, each trying its allowed starts in order (what mig-parted does); with
    backtracking this finds a placement whenever one exists.
    """
    pmap = _profile_map(gpu)
    for name, n in counts.items():
        if name not in pmap:
            raise ValueError(f"profile {name!r} does not exist on {gpu!r}; profiles: {sorted(pmap)}")
        if n < 0:
            raise ValueError(f"count of {name!r} is {n}; must be >= 0")
        if n > pmap[name].max_count:
            return None
    if sum(pmap[p].compute_slices * n for p, n in counts.items()) > MAX_COMPUTE_SLICES:
        return None
    items = sorted(
        (pmap[p] for p, n in counts.items() for _ in range(n)),
        key=lambda p: (-p.memory_slices, -p.compute_slices, p.name),
    )
    used = [False] * MEMORY_SLICES
    out: list[MigInstance] = []

    def rec(i: int) -> bool:
        if i == len(items):
            return True
        prof = items[i]
        prev_start = out[-1].start if out and out[-1].profile == prof.name else -1
        for s in prof.starts:
            if s <= prev_start:  # identical instances: only increasing starts (avoids symmetric search)
                continue
            span = range(s, s + prof.memory_slices)
            if span.stop > MEMORY_SLICES or any(used[k] for k in span):
                continue
            for k in span:
                used[k] = True
            out.append(MigInstance(prof.name, s))
            if rec(i + 1):
                return True
            out.pop()
            for k in span:
                used[k] = False
        return False

    return tuple(out) if rec(0) else None


def validate_layout(gpu: str, instances: Iterable[MigInstance]) -> list[str]:
    """Every rule a concrete set of instances breaks (empty list: the GPU accepts it)."""
    pmap = _profile_map(gpu)
    errors: list[str] = []
    used: dict[int, MigInstance] = {}
    counts: Counter[str] = Counter()
    compute = 0
    for inst in instances:
        prof = pmap.get(inst.profile)
        if prof is None:
            errors.append(f"profile {inst.profile!r} does not exist on {gpu}")
            continue
        counts[inst.profile] += 1
        compute += prof.compute_slices
        if inst.start not in prof.starts:
            errors.append(f"{inst.profile} may not start at memory slice {inst.start}; allowed {prof.starts}")
        for k in range(inst.start, inst.start + prof.memory_slices):
            if k >= MEMORY_SLICES:
                errors.append(f"{inst.profile} at {inst.start} runs past memory slice {MEMORY_SLICES - 1}")
                break
            if k in used:
                errors.append(f"{inst.profile} at {inst.start} overlaps {used[k].profile} at {used[k].start}")
                break
            used[k] = inst
    for name, n in counts.items():
        if n > pmap[name].max_count:
            errors.append(f"{n} x {name} exceeds its maximum of {pmap[name].max_count}")
    me = sum(n for name, n in counts.items() if pmap[name].media_extensions)
    if me > 1:
        errors.append(f"{me} media-extension instances; at most one per GPU")
    if compute > MAX_COMPUTE_SLICES:
        errors.append(f"{compute} compute slices used; at most {MAX_COMPUTE_SLICES}")
    return errors


@cache
def enumerate_layouts(gpu: str) -> tuple[MigLayout, ...]:
    """Every non-empty multiset of profiles the GPU accepts, found by exhaustive search over placements."""
    profiles = mig_profiles(gpu)
    if not profiles:
        raise ValueError(f"{gpu!r} has no MIG profiles; MIG-capable: {sorted(MIG_PROFILES)}")
    found: set[MigLayout] = set()

    def rec(slot: int, counts: Counter[str], compute: int) -> None:
        if slot >= MEMORY_SLICES:
            if counts:
                found.add(_as_layout(counts))
            return
        rec(slot + 1, counts, compute)  # leave this memory slice empty
        for p in profiles:
            if (
                slot in p.starts
                and slot + p.memory_slices <= MEMORY_SLICES
                and counts[p.name] < p.max_count
                and compute + p.compute_slices <= MAX_COMPUTE_SLICES
                and not (p.media_extensions and any(_is_me(q) for q in counts if counts[q]))
            ):
                counts[p.name] += 1
                rec(slot + p.memory_slices, counts, compute + p.compute_slices)
                counts[p.name] -= 1

    rec(0, Counter(), 0)
    return tuple(sorted(found))


def _is_me(name: str) -> bool:
    return name.endswith("+me")


@cache
def maximal_layouts(gpu: str) -> tuple[MigLayout, ...]:
    """Valid layouts to which no further instance can be added: the only ones a cost planner needs."""
    layouts = set(enumerate_layouts(gpu))
    out = []
    for lay in layouts:
        counts = dict(lay)
        extendable = any(
            _as_layout({**counts, p.name: counts.get(p.name, 0) + 1}) in layouts for p in mig_profiles(gpu)
        )
        if not extendable:
            out.append(lay)
    return tuple(sorted(out))


def _layout_name(gpu: str, lay: MigLayout) -> str:
    pmap = _profile_map(gpu)
    if len(lay) == 1:
        name, n = lay[0]
        full = _as_layout({name: n}) in maximal_layouts(gpu) or n == pmap[name].max_count
        if full:
            return "all-" + name.replace("+me", ".me")
    if dict(lay) == _BALANCED.get(gpu):
        return "all-balanced"
    parts = sorted(lay, key=lambda pn: (-pmap[pn[0]].compute_slices, -pmap[pn[0]].memory_slices, pn[0]))
    return "custom-" + "-".join(f"{n}x{p.replace('+me', '.me')}" for p, n in parts)


@cache
def named_layouts(gpu: str) -> Mapping[str, MigLayout]:
    """mig-parted-style names for every valid layout of ``gpu`` (``all-disabled`` maps to the empty layout)."""
    out: dict[str, MigLayout] = {"all-disabled": ()}
    for lay in enumerate_layouts(gpu):
        out[_layout_name(gpu, lay)] = lay
    return out


def resource_name(
    acc: Accelerator | str,
    mode: SharingMode = "exclusive",
    *,
    mig_profile: str | None = None,
    mig_strategy: MigStrategy = "mixed",
    rename_by_default: bool = False,
) -> str:
    """The extended resource a pod requests for one unit of ``acc`` under a sharing mode."""
    a = CATALOGUE[acc] if isinstance(acc, str) else acc
    if a.vendor != "nvidia":
        if mode != "exclusive":
            raise ValueError(f"{a.name} ({a.vendor}) supports whole devices only; mode {mode!r} is not allowed")
        return a.resource_name
    if mode == "exclusive":
        return "nvidia.com/gpu"
    if mode in ("time-slicing", "mps"):
        base = "nvidia.com/gpu" if mig_profile is None else _mig_resource(mig_profile, mig_strategy)
        return base + ".shared" if rename_by_default else base
    if not a.mig_capable:
        raise ValueError(f"{a.name} is not MIG-capable; MIG-capable: {sorted(MIG_PROFILES)}")
    if mig_profile is None:
        raise ValueError("mode 'mig' needs mig_profile, e.g. '1g.10gb'")
    _profile_map(a.name)[mig_profile] if mig_profile in _profile_map(a.name) else _unknown(a.name, mig_profile)
    return _mig_resource(mig_profile, mig_strategy)


def _unknown(gpu: str, profile: str) -> None:
    raise ValueError(f"profile {profile!r} does not exist on {gpu}; profiles: {sorted(_profile_map(gpu))}")


def _mig_resource(profile: str, strategy: MigStrategy) -> str:
    if strategy == "single":
        return "nvidia.com/gpu"
    return "nvidia.com/mig-" + profile.replace("+me", ".me")
