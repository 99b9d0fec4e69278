"""Hypothesis strategies shared by the tests (autoscale first; other packages may append their own)."""

from __future__ import annotations

from hypothesis import strategies as st

from kubeinfer.autoscale.base import PodSample
from kubeinfer.autoscale.hpa import Behavior, ScalingPolicy, ScalingRules

# -- autoscale ------------------------------------------------------------------------------------------------


@st.composite
def replica_bounds(draw: st.DrawFn, allow_zero: bool = False) -> tuple[int, int]:
    lo = draw(st.integers(0 if allow_zero else 1, 10))
    hi = draw(st.integers(max(lo, 1), 30))
    return lo, hi


@st.composite
def cpu_pod_sets(draw: st.DrawFn, n: int) -> tuple[PodSample, ...]:
    """``n`` pods with cpu usage in cores, some unready or without metrics."""
    pods = []
    for i in range(n):
        kind = draw(st.sampled_from(["ok", "ok", "ok", "missing", "unready", "pending"]))
        usage = draw(st.floats(0.0, 4.0, allow_nan=False))
        pods.append(
            PodSample(
                f"p{i}",
                metrics={} if kind == "missing" else {"cpu": round(usage, 3), "concurrency": round(usage * 5, 2)},
                requests={"cpu": 1.0},
                ready=kind != "unready",
                phase="Pending" if kind == "pending" else "Running",
                started_at=0.0,
                ready_changed_at=0.0,
            )
        )
    return tuple(pods)


scaling_policies = st.builds(
    ScalingPolicy,
    type=st.sampled_from(["Pods", "Percent"]),
    value=st.integers(1, 200),
    period_seconds=st.integers(1, 120),
)

scaling_rules = st.builds(
    ScalingRules,
    stabilization_window_seconds=st.integers(0, 600),
    select_policy=st.sampled_from(["Max", "Min", "Disabled"]),
    policies=st.lists(scaling_policies, min_size=1, max_size=3).map(tuple),
    tolerance=st.one_of(st.none(), st.floats(0.0, 0.5)),
)

behaviors = st.one_of(st.none(), st.builds(Behavior, scale_up=scaling_rules, scale_down=scaling_rules))

concurrency_series = st.lists(st.floats(0.0, 300.0, allow_nan=False), min_size=1, max_size=40)
"""Per-tick service-wide concurrency levels (each held for one tick)."""
