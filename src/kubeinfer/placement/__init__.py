"""kubeinfer.placement: where replicas run and what it costs. Pure code: no I/O beyond the CSV loaders.

- ``catalogue``: accelerators as data (memory, relative throughput, example prices to override).
- ``mig``: MIG profiles, valid layouts (mig-parted names), time-slicing/MPS, device-plugin resource names.
- ``profile``: the performance-profile format ``kubeinfer profile`` writes and the planner reads.
- ``planner``: cost-optimal slice, replicas and packing (MILP through HiGHS, heuristic with its gap).
- ``autoscaler``: a pure Cluster Autoscaler model (expanders, scale-down of underused nodes).
- ``fragmentation``: GPU-sharing placement policies (first-fit, best-fit, FGD, kubeinfer) and the trace replay.
"""

from typing import TYPE_CHECKING

from kubeinfer._lazy import lazy_exports

if TYPE_CHECKING:
    from kubeinfer.placement.autoscaler import (
        AutoscalerConfig,
        Bind,
        ClusterAutoscaler,
        ClusterState,
        DeleteNode,
        Node,
        NodeGroupSpec,
        Pod,
        ScaleUp,
    )
    from kubeinfer.placement.catalogue import CATALOGUE, Accelerator, Catalogue, accelerator_from_dict
    from kubeinfer.placement.fragmentation import (
        POLICIES,
        Cluster,
        ReplayResult,
        Workload,
        replay,
    )
    from kubeinfer.placement.mig import (
        MigInstance,
        MigProfile,
        enumerate_layouts,
        maximal_layouts,
        mig_profiles,
        named_layouts,
        place_layout,
        resource_name,
        validate_layout,
    )
    from kubeinfer.placement.planner import (
        InfeasiblePlan,
        NodeGroup,
        Plan,
        PlannerOptions,
        ServiceDemand,
        ServicePlacement,
        naive_plan,
        plan,
    )
    from kubeinfer.placement.profile import Profile, ProfilePoint, SliceRef, parse_slice, profile_from_dict

# Exports load on first use (PEP 562), so that importing one submodule, or the CLI, does not import all.
_EXPORTS = {
    "Accelerator": "kubeinfer.placement.catalogue",
    "AutoscalerConfig": "kubeinfer.placement.autoscaler",
    "Bind": "kubeinfer.placement.autoscaler",
    "CATALOGUE": "kubeinfer.placement.catalogue",
    "Catalogue": "kubeinfer.placement.catalogue",
    "Cluster": "kubeinfer.placement.fragmentation",
    "ClusterAutoscaler": "kubeinfer.placement.autoscaler",
    "ClusterState": "kubeinfer.placement.autoscaler",
    "DeleteNode": "kubeinfer.placement.autoscaler",
    "InfeasiblePlan": "kubeinfer.placement.planner",
    "MigInstance": "kubeinfer.placement.mig",
    "MigProfile": "kubeinfer.placement.mig",
    "Node": "kubeinfer.placement.autoscaler",
    "NodeGroup": "kubeinfer.placement.planner",
    "NodeGroupSpec": "kubeinfer.placement.autoscaler",
    "POLICIES": "kubeinfer.placement.fragmentation",
    "Plan": "kubeinfer.placement.planner",
    "PlannerOptions": "kubeinfer.placement.planner",
    "Pod": "kubeinfer.placement.autoscaler",
    "Profile": "kubeinfer.placement.profile",
    "ProfilePoint": "kubeinfer.placement.profile",
    "ReplayResult": "kubeinfer.placement.fragmentation",
    "ScaleUp": "kubeinfer.placement.autoscaler",
    "ServiceDemand": "kubeinfer.placement.planner",
    "ServicePlacement": "kubeinfer.placement.planner",
    "SliceRef": "kubeinfer.placement.profile",
    "Workload": "kubeinfer.placement.fragmentation",
    "accelerator_from_dict": "kubeinfer.placement.catalogue",
    "enumerate_layouts": "kubeinfer.placement.mig",
    "maximal_layouts": "kubeinfer.placement.mig",
    "mig_profiles": "kubeinfer.placement.mig",
    "naive_plan": "kubeinfer.placement.planner",
    "named_layouts": "kubeinfer.placement.mig",
    "parse_slice": "kubeinfer.placement.profile",
    "place_layout": "kubeinfer.placement.mig",
    "plan": "kubeinfer.placement.planner",
    "profile_from_dict": "kubeinfer.placement.profile",
    "replay": "kubeinfer.placement.fragmentation",
    "resource_name": "kubeinfer.placement.mig",
    "validate_layout": "kubeinfer.placement.mig",
}


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())


__all__ = [
    "CATALOGUE",
    "POLICIES",
    "Accelerator",
    "AutoscalerConfig",
    "Bind",
    "Catalogue",
    "Cluster",
    "ClusterAutoscaler",
    "ClusterState",
    "DeleteNode",
    "InfeasiblePlan",
    "MigInstance",
    "MigProfile",
    "Node",
    "NodeGroup",
    "NodeGroupSpec",
    "Plan",
    "PlannerOptions",
    "Pod",
    "Profile",
    "ProfilePoint",
    "ReplayResult",
    "ScaleUp",
    "ServiceDemand",
    "ServicePlacement",
    "SliceRef",
    "Workload",
    "accelerator_from_dict",
    "enumerate_layouts",
    "maximal_layouts",
    "mig_profiles",
    "naive_plan",
    "named_layouts",
    "parse_slice",
    "place_layout",
    "plan",
    "profile_from_dict",
    "replay",
    "resource_name",
    "validate_layout",
]
