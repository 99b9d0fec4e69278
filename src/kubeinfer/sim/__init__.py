"""The trace-driven autoscaling simulator: the same policies as every backend, on a virtual clock.

- :mod:`~kubeinfer.sim.traces` -- request traces: timestamp CSVs (the Azure LLM trace as is), per-interval counts,
  generators (Poisson at a constant, diurnal, step, spike or on/off rate).
- :mod:`~kubeinfer.sim.service` -- service time per request (fixed + per-column costs, noise) and slots per replica.
- :mod:`~kubeinfer.sim.engine` -- the discrete-event core (router queue, replicas, start-up, drain, policy ticks).
- :mod:`~kubeinfer.sim.oracle` -- the cost lower bound: fewest replicas meeting the SLO, knowing the future.
- :mod:`~kubeinfer.sim.report` -- attainment, latency, drops, replica-seconds, cost, scaling events.
- :mod:`~kubeinfer.sim.scenario` -- :func:`compare`: several policies and the oracle on one trace.
- :mod:`~kubeinfer.sim.plot` -- PNG and self-contained HTML of load, replicas and latency (matplotlib, lazily).
"""

from kubeinfer.sim.engine import EngineConfig, RunResult, simulate_policy
from kubeinfer.sim.oracle import OracleResult, capacity, capacity_table, erlang_c, oracle
from kubeinfer.sim.report import CostModel, OracleSummary, PerReplicaHour, PolicySummary
from kubeinfer.sim.scenario import POLICIES, Comparison, SimOptions, compare
from kubeinfer.sim.service import ServiceModel
from kubeinfer.sim.traces import Trace, TraceError, generate, load_trace, parse_generator, poisson_arrivals

__all__ = [
    "POLICIES",
    "Comparison",
    "CostModel",
    "EngineConfig",
    "OracleResult",
    "OracleSummary",
    "PerReplicaHour",
    "PolicySummary",
    "RunResult",
    "ServiceModel",
    "SimOptions",
    "Trace",
    "TraceError",
    "capacity",
    "capacity_table",
    "compare",
    "erlang_c",
    "generate",
    "load_trace",
    "oracle",
    "parse_generator",
    "poisson_arrivals",
    "simulate_policy",
]
