"""The classifier the predictive policy's unit tests size for: 25 ms requests, 2 slots a replica, a 100 ms SLO."""

from __future__ import annotations

from dataclasses import replace

from kubeinfer.autoscale import Decision, LoadSample, Observation, Predictive, PredictiveConfig, PredictiveState

SERVICE = 0.025  # seconds a request
WINDOW = 0.1  # the SLO: the peak's window
CURVE = (1.2, 3.15, 5.13, 7.12, 9.11, 11.1, 13.1, 15.1, 17.1, 19.1)  # Erlangs n pooled replicas sustain


def classifier_config(**kw: object) -> PredictiveConfig:
    """Predictive for that classifier (1-50 replicas, 10 s start-up, 5 s sync, no headroom or trend), with ``kw``
    replaced."""
    base = PredictiveConfig(
        1,
        50,
        capacity_rps=48.0,
        capacity_work=CURVE[0],
        work_curve=CURVE,
        startup_seconds=10.0,
        sync_period=5.0,
        headroom=1.0,
        trend=False,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def run_policy(cfg: PredictiveConfig, samples: list[LoadSample]) -> list[tuple[float, Decision, PredictiveState]]:
    """Predictive fed ``samples`` five at a time (a 5 s sync), its count followed: each decision with its state."""
    policy = Predictive(cfg)
    state = policy.initial_state()
    out, current = [], 1
    for i in range(0, len(samples), 5):
        chunk = tuple(samples[i : i + 5])
        d, state = policy.decide(Observation(current, load=chunk), state, chunk[-1].time)
        current = d.replicas
        out.append((chunk[-1].time, d, state))
    return out
