"""kubeinfer.placement: where replicas run and what it costs. Pure code: no I/O beyond the CSV loaders.

- ``catalogue``: accelerators as data (memory, relative throughput, example prices to override).
- ``mig``: MIG profiles, valid layouts (mig-parted names), time-slicing/MPS, device-plugin resource names.
- ``profile``: the performance-profile format ``kubeinfer profile`` writes and the planner reads.
- ``planner``: cost-optimal slice, replicas and packing (MILP through HiGHS, heuristic with its gap).
- ``autoscaler``: a pure Cluster Autoscaler model (expanders, scale-down of underused nodes).
- ``fragmentation``: GPU-sharing placement policies (first-fit, best-fit, FGD, kubeinfer) and the trace replay.
"""

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
    load_nodes_csv,
    load_pods_csv,
    replay,
    replay_files,
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
    "load_nodes_csv",
    "load_pods_csv",
    "maximal_layouts",
    "mig_profiles",
    "naive_plan",
    "named_layouts",
    "parse_slice",
    "place_layout",
    "plan",
    "profile_from_dict",
    "replay",
    "replay_files",
    "resource_name",
    "validate_layout",
]
