"""MIG layouts: every layout produced is one a real GPU accepts, checked exhaustively per GPU."""

from __future__ import annotations

from collections import Counter

import pytest

from kubeinfer.placement import CATALOGUE
from kubeinfer.placement.mig import (
    MIG_PROFILES,
    MigInstance,
    enumerate_layouts,
    maximal_layouts,
    mig_profiles,
    named_layouts,
    place_layout,
    resource_name,
    validate_layout,
)

GPUS = sorted(MIG_PROFILES)


def _oracle_layouts(gpu: str) -> set[tuple[tuple[str, int], ...]]:
    """Every multiset realisable by some set of (profile, start) instances that validate_layout accepts."""
    cands = [MigInstance(p.name, s) for p in mig_profiles(gpu) for s in p.starts]
    found: set[tuple[tuple[str, int], ...]] = set()

    def rec(i: int, chosen: list[MigInstance]) -> None:
        if i == len(cands):
            if chosen:
                found.add(tuple(sorted(Counter(c.profile for c in chosen).items())))
            return
        rec(i + 1, chosen)
        chosen.append(cands[i])
        if not validate_layout(gpu, chosen):  # validity is closed under removal, so pruning is exact
            rec(i + 1, chosen)
        chosen.pop()

    rec(0, [])
    return found


@pytest.mark.parametrize("gpu", GPUS)
def test_enumerated_layouts_are_exactly_the_valid_ones(gpu: str) -> None:
    assert set(enumerate_layouts(gpu)) == _oracle_layouts(gpu)


@pytest.mark.parametrize("gpu", GPUS)
def test_every_layout_has_a_placement_the_rules_accept(gpu: str) -> None:
    for lay in enumerate_layouts(gpu):
        placed = place_layout(gpu, dict(lay))
        assert placed is not None, lay
        assert validate_layout(gpu, placed) == [], lay
        assert Counter(i.profile for i in placed) == Counter(dict(lay))


@pytest.mark.parametrize("gpu", GPUS)
def test_maximal_layouts_cannot_take_another_instance(gpu: str) -> None:
    for lay in maximal_layouts(gpu):
        for p in mig_profiles(gpu):
            counts = Counter(dict(lay))
            counts[p.name] += 1
            assert place_layout(gpu, counts) is None


@pytest.mark.parametrize(
    ("gpu", "counts", "ok"),
    [
        ("A100-80GB", {"1g.10gb": 7}, True),
        ("A100-80GB", {"1g.10gb": 8}, False),
        ("A100-80GB", {"1g.20gb": 4}, True),
        ("A100-80GB", {"2g.20gb": 3}, True),
        ("A100-80GB", {"2g.20gb": 3, "1g.10gb": 1}, True),
        ("A100-80GB", {"3g.40gb": 2}, True),
        ("A100-80GB", {"3g.40gb": 2, "1g.10gb": 1}, False),  # 7 compute, but no memory slice left
        ("A100-80GB", {"4g.40gb": 1, "3g.40gb": 1}, True),
        ("A100-80GB", {"4g.40gb": 2}, False),
        ("A100-80GB", {"7g.80gb": 1, "1g.10gb": 1}, False),
        ("A100-80GB", {"1g.10gb+me": 2}, False),
        ("H100-80GB", {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1}, True),
        ("A100-40GB", {"1g.5gb": 7}, True),
        ("A100-40GB", {"4g.20gb": 1, "2g.10gb": 1, "1g.5gb": 1}, True),
        ("A100-40GB", {"3g.20gb": 1, "1g.5gb": 4}, True),
        ("A100-40GB", {"3g.20gb": 1, "1g.10gb": 2}, True),
        ("H200-141GB", {"1g.18gb": 7}, True),
        ("H200-141GB", {"3g.71gb": 2}, True),
        ("H200-141GB", {"7g.141gb": 1}, True),
    ],
)
def test_known_layouts_are_accepted_or_rejected_as_on_the_gpu(gpu: str, counts: dict[str, int], ok: bool) -> None:
    assert (place_layout(gpu, counts) is not None) is ok


@pytest.mark.parametrize(
    ("instances", "fragment"),
    [
        ([MigInstance("1g.10gb", 7)], "may not start"),
        ([MigInstance("3g.40gb", 2)], "may not start"),
        ([MigInstance("4g.40gb", 0), MigInstance("2g.20gb", 2)], "overlaps"),
        ([MigInstance("1g.10gb+me", 0), MigInstance("1g.10gb+me", 1)], "exceeds its maximum"),
        ([MigInstance("9g.90gb", 0)], "does not exist"),
    ],
)
def test_invalid_placements_are_reported_with_the_rule_broken(instances: list[MigInstance], fragment: str) -> None:
    errors = validate_layout("A100-80GB", instances)
    assert any(fragment in e for e in errors), errors


@pytest.mark.parametrize(
    ("gpu", "name", "layout"),
    [
        ("A100-40GB", "all-1g.5gb", (("1g.5gb", 7),)),
        ("A100-40GB", "all-balanced", (("1g.5gb", 2), ("2g.10gb", 1), ("3g.20gb", 1))),
        ("A100-80GB", "all-1g.10gb", (("1g.10gb", 7),)),
        ("A100-80GB", "all-2g.20gb", (("2g.20gb", 3),)),
        ("A100-80GB", "all-balanced", (("1g.10gb", 2), ("2g.20gb", 1), ("3g.40gb", 1))),
        ("H100-80GB", "all-7g.80gb", (("7g.80gb", 1),)),
        ("H100-80GB", "all-1g.10gb.me", (("1g.10gb+me", 1),)),
        ("H200-141GB", "all-1g.18gb", (("1g.18gb", 7),)),
        ("H200-141GB", "all-balanced", (("1g.18gb", 2), ("2g.35gb", 1), ("3g.71gb", 1))),
        ("A100-80GB", "all-disabled", ()),
    ],
)
def test_layouts_carry_mig_parted_names(gpu: str, name: str, layout: tuple[tuple[str, int], ...]) -> None:
    assert named_layouts(gpu)[name] == layout


@pytest.mark.parametrize(
    ("acc", "mode", "kwargs", "expected"),
    [
        ("A100-80GB", "exclusive", {}, "nvidia.com/gpu"),
        ("A100-80GB", "mig", {"mig_profile": "1g.10gb"}, "nvidia.com/mig-1g.10gb"),
        ("A100-80GB", "mig", {"mig_profile": "1g.10gb+me"}, "nvidia.com/mig-1g.10gb.me"),
        ("A100-80GB", "mig", {"mig_profile": "3g.40gb", "mig_strategy": "single"}, "nvidia.com/gpu"),
        ("T4", "time-slicing", {}, "nvidia.com/gpu"),
        ("T4", "time-slicing", {"rename_by_default": True}, "nvidia.com/gpu.shared"),
        ("L4", "mps", {"rename_by_default": True}, "nvidia.com/gpu.shared"),
        (
            "A100-40GB",
            "time-slicing",
            {"mig_profile": "1g.5gb", "rename_by_default": True},
            "nvidia.com/mig-1g.5gb.shared",
        ),
        ("MI300X", "exclusive", {}, "amd.com/gpu"),
        ("Gaudi2", "exclusive", {}, "habana.ai/gaudi"),
    ],
)
def test_resource_names_match_the_device_plugins(acc: str, mode: str, kwargs: dict[str, object], expected: str) -> None:
    assert resource_name(acc, mode, **kwargs) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("acc", "mode", "kwargs"),
    [
        ("MI300X", "time-slicing", {}),
        ("Gaudi2", "mig", {"mig_profile": "1g.10gb"}),
        ("T4", "mig", {"mig_profile": "1g.10gb"}),
        ("A100-80GB", "mig", {"mig_profile": "1g.5gb"}),
        ("A100-80GB", "mig", {}),
    ],
)
def test_impossible_sharing_modes_are_rejected(acc: str, mode: str, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        resource_name(acc, mode, **kwargs)  # type: ignore[arg-type]


def test_catalogue_has_the_documented_devices_and_only_nvidia_shares() -> None:
    expected = {"T4", "L4", "A10G", "A100-40GB", "A100-80GB", "H100-80GB", "H200-141GB", "MI300X", "Gaudi2"}
    assert set(CATALOGUE.names()) == expected
    for acc in CATALOGUE:
        assert acc.memory_gib > 0 and acc.relative_throughput > 0 and acc.example_prices
        if acc.vendor != "nvidia":
            assert not (acc.mig_capable or acc.time_slicing or acc.mps)
        assert acc.mig_capable == bool(mig_profiles(acc))
    assert CATALOGUE["A100-40GB"].relative_throughput == 1.0


def test_catalogue_prices_can_be_overridden_without_mutation() -> None:
    cheap = CATALOGUE.with_prices("aws", {"T4": 0.2})
    assert cheap["T4"].price("aws") == 0.2
    assert CATALOGUE["T4"].price("aws") != 0.2
    with pytest.raises(KeyError, match="no example price"):
        CATALOGUE["L4"].price("oracle")
