"""The input files of ``kubeinfer plan solve``: services (what must be served) and node groups (what can be bought).

Parsed from already-loaded YAML/JSON (this module reads no files: a profile given as a path is loaded by the
``load_profile`` callback the caller passes). Errors name the field (``services[2].peakRps``) and what is allowed.

Services file::

    services:
      - name: bert-intent
        profile: bert-base.profile.yaml   # a profile file (relative to this file) or an inline Profile mapping
        sloMs: 100                        # latency objective; the planner uses the highest throughput within it
        percentile: p99                   # p50 | p90 | p95 | p99 (default p99)
        peakRps: 300                      # the replicas must sustain this
        meanRps: 90                       # for cost per million requests (default: peakRps)
        minReplicas: 2                    # default 1
        estimate: true                    # derive unmeasured MIG / time-slice points from whole-GPU ones

Node groups file::

    nodeGroups:
      - name: l4
        instanceType: g6.xlarge
        accelerator: L4                   # a catalogue name; omit or null for CPU-only nodes
        gpus: 1                           # devices per node
        cpu: "4"                          # allocatable CPU per node (Kubernetes quantity)
        memory: 16Gi                      # allocatable memory per node
        pricePerHour: 0.805
        minNodes: 0
        maxNodes: 20
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from kubeinfer.placement.catalogue import CATALOGUE, Catalogue
from kubeinfer.placement.planner import NodeGroup, ServiceDemand
from kubeinfer.placement.profile import Profile, profile_from_dict
from kubeinfer.spec.quantity import QuantityError, parse_quantity

__all__ = ["node_groups_from_dict", "services_from_dict"]

_SERVICE_FIELDS = frozenset({"name", "profile", "sloMs", "percentile", "peakRps", "meanRps", "minReplicas", "estimate"})
_GROUP_FIELDS = frozenset(
    {"name", "instanceType", "accelerator", "gpus", "cpu", "memory", "pricePerHour", "minNodes", "maxNodes"}
)


def _items(raw: Any, key: str) -> list[Any]:
    if isinstance(raw, Mapping):
        raw = raw.get(key)
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{key} must be a non-empty list (a top-level list, or a mapping with key {key!r})")
    return raw


def _number(item: Mapping[str, Any], key: str, where: str, default: float | None = None, *, lo: float = 0) -> float:
    if key not in item:
        if default is None:
            raise ValueError(f"{where} needs field {key!r}")
        return default
    v = item[key]
    if isinstance(v, bool) or not isinstance(v, int | float) or v < lo:
        raise ValueError(f"{where}.{key} is {v!r}; must be a number >= {lo:g}")
    return float(v)


def _int(item: Mapping[str, Any], key: str, where: str, default: int) -> int:
    v = item.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"{where}.{key} is {v!r}; must be an integer >= 0")
    return v


def _named_items(
    raw: Any, key: str, fields: frozenset[str], needs: str, what: str
) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    """``(where, name, item)`` for each entry of ``raw[key]``: a mapping of known fields with a distinct name."""
    names: set[str] = set()
    for i, item in enumerate(_items(raw, key)):
        where = f"{key}[{i}]"
        if not isinstance(item, Mapping):
            raise ValueError(f"{where} must be a mapping with {needs}")
        unknown = set(item) - fields
        if unknown:
            raise ValueError(f"{where} has unknown fields {sorted(unknown)}; allowed: {sorted(fields)}")
        name = str(item.get("name") or "")
        if not name or name in names:
            raise ValueError(f"{where}.name is {name!r}; every {what} needs a distinct name")
        names.add(name)
        yield where, name, item


def services_from_dict(raw: Any, load_profile: Callable[[str], Mapping[str, Any]]) -> list[ServiceDemand]:
    """Services with their capacities at the SLO; ``load_profile(path)`` returns a parsed profile file."""
    out = []
    for where, name, item in _named_items(raw, "services", _SERVICE_FIELDS, "name, profile, sloMs, peakRps", "service"):
        prof_raw = item.get("profile")
        try:
            if isinstance(prof_raw, str):
                prof: Profile = profile_from_dict(load_profile(prof_raw))
            elif isinstance(prof_raw, Mapping):
                prof = profile_from_dict(prof_raw)
            else:
                raise ValueError("must be a profile file path or an inline profile mapping")
        except (ValueError, KeyError, OSError) as e:
            raise ValueError(f"{where}.profile: {e}") from None
        pct = str(item.get("percentile", "p99"))
        if pct not in ("p50", "p90", "p95", "p99"):
            raise ValueError(f"{where}.percentile is {pct!r}; allowed p50, p90, p95, p99")
        peak = _number(item, "peakRps", where)
        svc = ServiceDemand.from_profile(
            name,
            prof,
            slo_ms=_number(item, "sloMs", where, lo=1e-9),
            peak_rps=peak,
            mean_rps=_number(item, "meanRps", where, peak),
            percentile=pct,  # type: ignore[arg-type]
            estimate=bool(item.get("estimate", True)),
            min_replicas=_int(item, "minReplicas", where, 1),
        )
        if not any(v > 0 for v in svc.capacity.values()):
            raise ValueError(
                f"{where}: no point of profile {prof.model!r} meets sloMs {item['sloMs']} at {pct}; "
                "relax the SLO or profile lower batch sizes/concurrency"
            )
        out.append(svc)
    return out


def node_groups_from_dict(raw: Any, catalogue: Catalogue = CATALOGUE) -> list[NodeGroup]:
    out = []
    for where, name, item in _named_items(
        raw, "nodeGroups", _GROUP_FIELDS, "name, cpu, memory, pricePerHour", "node group"
    ):
        acc = item.get("accelerator")
        if acc is not None and str(acc) not in catalogue:
            raise ValueError(f"{where}.accelerator is {acc!r}; known: {', '.join(sorted(catalogue.names()))}")
        gpus = _int(item, "gpus", where, 1 if acc else 0)
        if acc and gpus < 1:
            raise ValueError(f"{where}.gpus is {gpus}; a group with an accelerator needs gpus >= 1")
        try:
            cpu = float(parse_quantity(item["cpu"]))
            mem = parse_quantity(item["memory"]).int_value
        except KeyError as e:
            raise ValueError(f"{where} needs field {e.args[0]!r}") from None
        except QuantityError as e:
            raise ValueError(f"{where}: {e}") from None
        lo, hi = _int(item, "minNodes", where, 0), _int(item, "maxNodes", where, 10)
        if hi < lo:
            raise ValueError(f"{where}: maxNodes {hi} is below minNodes {lo}")
        out.append(
            NodeGroup(
                name=name,
                instance_type=str(item.get("instanceType", name)),
                accelerator=None if acc is None else str(acc),
                gpus=gpus if acc else 0,
                cpu=cpu,
                memory_bytes=mem,
                price_per_hour=_number(item, "pricePerHour", where),
                min_nodes=lo,
                max_nodes=hi,
            )
        )
    return out
