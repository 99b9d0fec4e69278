"""The token signals of a generative model in the simulator: ``tokens`` and ``sequences-waiting`` per pod, as
``kubeinfer up`` gives them to an hpa, and the error for a trace without generated tokens."""

from __future__ import annotations

import numpy as np
import pytest

from kubeinfer.autoscale import Decision, Observation
from kubeinfer.sim import EngineConfig, ServiceModel, SimOptions, TraceError, compare, generate, simulate_policy
from kubeinfer.sim.engine import TOKENS_WINDOW
from kubeinfer.spec.service import ServiceSpec


class _Recorder:
    min_replicas = 1
    max_replicas = 10

    def __init__(self, replicas: int) -> None:
        self.replicas = replicas
        self.seen: list[tuple[float, Observation]] = []

    def initial_state(self) -> None:
        return None

    def decide(self, observation: Observation, state: None, now: float) -> tuple[Decision, None]:
        self.seen.append((now, observation))
        return Decision(self.replicas, "Fixed"), None


def test_each_request_s_tokens_are_spread_over_the_seconds_it_is_served() -> None:
    # 100 tokens served over [0.5, 2.5): 25 + 50 + 25; 7 tokens inside second 3; the third waits behind the second
    # (one slot): served over [3.5, 4.5), 10 tokens split 5 + 5. A dropped request generates nothing.
    arrivals = np.array([0.5, 3.2, 3.3, 5.0, 5.1])
    service = np.array([2.0, 0.3, 1.0, 8.0, 1.0])
    tokens = np.array([100.0, 7.0, 10.0, 40.0, 99.0])
    cfg = EngineConfig(initial_replicas=1, tick=1e6, pod_metrics=True, request_timeout=2.0)
    run = simulate_policy(arrivals, service, 16.0, _Recorder(1), cfg, tokens=tokens)
    assert run.dropped.tolist() == [False, False, False, False, True]
    expected = np.zeros(16)
    expected[:5] = [25, 50, 25, 7 + 5, 5]
    expected[5:13] = 5  # 40 tokens over [5, 13)
    np.testing.assert_allclose(run.timeline["tokens"], expected, atol=1e-9)
    assert run.timeline["tokens"].sum() == pytest.approx(tokens[:4].sum())


def test_pods_report_tokens_per_second_over_the_gauge_window_and_sequences_waiting_per_ready_replica() -> None:
    # Two replicas of one slot; a request of 20 tokens every 0.5 s, served in 0.4 s: 40 tokens/s in all.
    arrivals = np.arange(0.0, 60.0, 0.5)
    service = np.full(len(arrivals), 0.4)
    tokens = np.full(len(arrivals), 20.0)
    rec = _Recorder(2)
    cfg = EngineConfig(initial_replicas=2, tick=15.0, pod_metrics=True, pod_metric_scrape=15.0)
    simulate_policy(arrivals, service, 60.0, rec, cfg, tokens=tokens)
    now, obs = rec.seen[1]  # at 30 s: the scrape at 30 s, window [20, 30)
    assert now == 30.0 and TOKENS_WINDOW == 10
    assert obs.external["tokens"] == pytest.approx(40.0)
    assert obs.external["sequences-waiting"] == pytest.approx(0.0)
    assert [p.metrics["tokens"] for p in obs.pods] == pytest.approx([20.0, 20.0])

    # One replica of one slot, ten 100 s requests at once: one in service, nine waiting.
    rec = _Recorder(1)
    cfg = EngineConfig(initial_replicas=1, tick=15.0, pod_metrics=True, request_timeout=1e4)
    simulate_policy(np.zeros(10), np.full(10, 100.0), 60.0, rec, cfg, tokens=np.full(10, 500.0))
    _, obs = rec.seen[1]
    (pod,) = obs.pods
    assert pod.metrics["sequences-waiting"] == pytest.approx(9.0)
    assert pod.metrics["tokens"] == pytest.approx(5.0)  # 500 tokens over 100 s
    assert obs.external["sequences-waiting"] == pytest.approx(9.0)


def _llm_spec(metric: str, target: float) -> ServiceSpec:
    return ServiceSpec.model_validate(
        {
            "model": {"format": "llm", "uri": "./tiny-llm", "version": "1"},
            "server": {"workers": 8, "limits": {"requestTimeoutMs": 120000}},
            "autoscaling": {
                "policy": "hpa",
                "metric": metric,
                "target": target,
                "minReplicas": 1,
                "maxReplicas": 40,
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}},
                "predictive": {"sloLatencyMs": 1000, "startupSeconds": 30},
            },
        }
    )


OPTS = SimOptions(
    service=ServiceModel(fixed_ms=150, cost_ms={"GeneratedTokens": 20}), slo_ms=1000, slo_basis="wait", references=False
)


def test_an_hpa_on_tokens_scales_up_under_a_token_heavy_surge_and_down_after_it() -> None:
    surge = {"base": 0.5, "high": 6, "at": 300, "length": 600, "duration": 1500}
    trace = generate("spike", surge, seed=3, tokens="conv")
    result = compare(_llm_spec("tokens", 280.0), trace, ["hpa"], OPTS)
    timeline = result.runs["hpa"].timeline
    ready = timeline["ready"]
    before, during, after = ready[250:300].max(), ready[800:900].min(), ready[1400:].max()
    need = np.ceil(timeline["tokens"][600:900].mean() / 280.0)  # the replicas the surge's tokens/s ask for
    assert need >= 4 and during >= need - 1 and during >= 3 * before
    assert after <= 2 and after < during
    reasons = [r for _, _, r in result.runs["hpa"].decisions]
    assert not any("FailedGetMetrics" in r for r in reasons)


def test_an_hpa_on_tokens_needs_the_generated_tokens_column() -> None:
    trace = generate("step", {"base": 0.5, "high": 3, "duration": 300}, seed=1)
    with pytest.raises(TraceError, match=r"'tokens'.*'GeneratedTokens'"):
        compare(_llm_spec("tokens", 280.0), trace, ["hpa"], OPTS)
    # sequences-waiting counts queued requests: any trace has them.
    plain = SimOptions(slo_ms=1000, slo_basis="wait", references=False)
    result = compare(_llm_spec("sequences-waiting", 1.0), trace, ["hpa", "kpa"], plain)
    assert [s.policy for s in result.summaries] == ["hpa", "kpa"]
