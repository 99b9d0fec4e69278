"""Autoscaling policies: pure decision code over frozen values (no I/O, no clock; time is a parameter).

- :mod:`~kubeinfer.autoscale.hpa` -- the Kubernetes HorizontalPodAutoscaler (``autoscaling/v2``).
- :mod:`~kubeinfer.autoscale.kpa` -- the Knative Pod Autoscaler (stable/panic windows, scale to zero).
- :mod:`~kubeinfer.autoscale.predictive` -- kubeinfer's forecast-driven policy.
- :mod:`~kubeinfer.autoscale.vpa` -- the Vertical Pod Autoscaler recommender.

Build a horizontal policy from a spec with :func:`policy_from_spec`, run it every :func:`sync_period` and keep the
counts a controller sets itself :func:`bounded`; every backend does the same (:mod:`~kubeinfer.autoscale.cadence`).
"""

from kubeinfer.autoscale.base import Decision, LoadSample, Observation, PodSample, Policy
from kubeinfer.autoscale.cadence import KPA_TICK_SECONDS, bounded, sync_period
from kubeinfer.autoscale.factory import FixedReplicas, policy_from_spec
from kubeinfer.autoscale.hpa import HPA, HpaConfig, HpaState
from kubeinfer.autoscale.kpa import KPA, KpaConfig, KpaState
from kubeinfer.autoscale.predictive import Predictive, PredictiveConfig, PredictiveState
from kubeinfer.autoscale.vpa import VPA, Resources, VpaConfig, VpaDecision, VpaObservation, VpaState

__all__ = [
    "HPA",
    "KPA",
    "KPA_TICK_SECONDS",
    "VPA",
    "Decision",
    "FixedReplicas",
    "HpaConfig",
    "HpaState",
    "KpaConfig",
    "KpaState",
    "LoadSample",
    "Observation",
    "PodSample",
    "Policy",
    "Predictive",
    "PredictiveConfig",
    "PredictiveState",
    "Resources",
    "VpaConfig",
    "VpaDecision",
    "VpaObservation",
    "VpaState",
    "bounded",
    "policy_from_spec",
    "sync_period",
]
