"""The burst signal on a cluster: a predictive spec's replicas are told the SLO's window
(``KUBEINFER_PEAK_WINDOW_SECONDS``), and the operator sums their ``kubeinfer_arrivals_peak`` into its load sample."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import SCRAPE, predictive_service_with_a_ready_pod, server_env
from kubeinfer.kube.operator import ScalerState, autoscale_step, build_observation, parse_metrics
from kubeinfer.kube.render import PEAK_HORIZON_ENV, PEAK_WINDOW_ENV
from kubeinfer.server import metrics as server_metrics
from kubeinfer.testing.kube import FakeKubeApi

METRICS = SCRAPE  # one replica's /metrics: SCRAPE.format(ok=...)
PEAK = """# HELP kubeinfer_arrivals_peak Most requests arrived within any 0.1 s.
# TYPE kubeinfer_arrivals_peak gauge
kubeinfer_arrivals_peak {peak}
"""


def test_a_predictive_spec_tells_its_replicas_the_slos_window() -> None:
    env = server_env({"policy": "predictive", "predictive": {"capacityRps": 10, "sloLatencyMs": 250}})
    assert env["KUBEINFER_PEAK_WINDOW_SECONDS"] == "0.25"
    assert server_metrics.peak_window_from_env(env) == 0.25  # what the replica reads back
    # the look-back is the operator's predictive sync period (5 s by default): each burst in one of its samples
    assert env["KUBEINFER_PEAK_HORIZON_SECONDS"] == "5"
    assert server_metrics.peak_horizon_from_env(env) == 5


def test_the_look_back_follows_the_predictive_sync_period() -> None:
    predictive = {"capacityRps": 10, "syncPeriodSeconds": 2.5}
    env = server_env({"policy": "predictive", "predictive": predictive})
    assert env["KUBEINFER_PEAK_HORIZON_SECONDS"] == "3"  # whole seconds, rounded up: no burst between two reads


@pytest.mark.parametrize("policy", ["hpa", "kpa", "none"])
def test_other_policies_render_no_window(policy: str) -> None:
    env = server_env({"policy": policy})
    assert "KUBEINFER_PEAK_WINDOW_SECONDS" not in env and "KUBEINFER_PEAK_HORIZON_SECONDS" not in env


def test_render_and_the_server_name_the_same_variable() -> None:
    assert PEAK_WINDOW_ENV == server_metrics.PEAK_WINDOW_ENV
    assert PEAK_HORIZON_ENV == server_metrics.PEAK_HORIZON_ENV


def test_the_load_sample_carries_the_pods_summed_peak_and_the_window() -> None:
    pods = [
        parse_metrics("a", METRICS.format(ok=10) + PEAK.format(peak=7)),
        parse_metrics("b", METRICS.format(ok=10) + PEAK.format(peak=4)),
        parse_metrics("c", METRICS.format(ok=10)),  # an image without the gauge adds nothing
    ]
    assert [p.arrivals_peak for p in pods] == [7.0, 4.0, None]
    obs, _ = build_observation(3, 3, pods, ScalerState(), 10.0, peak_window=0.1)
    assert (obs.load[0].peak, obs.load[0].peak_window) == (11.0, 0.1)
    # no window (not predictive), or no pod exporting the gauge: no peak, as before
    assert build_observation(3, 3, pods, ScalerState(), 10.0)[0].load[0].peak is None
    assert build_observation(1, 1, pods[2:], ScalerState(), 10.0, peak_window=0.1)[0].load[0].peak is None


def test_the_predictive_policy_learns_from_the_scraped_peak() -> None:
    api = FakeKubeApi()
    svc = predictive_service_with_a_ready_pod(api)
    total = 0

    def scrape(pod: dict[str, Any]) -> str:
        return METRICS.format(ok=total) + PEAK.format(peak=40)  # 40 requests within 100 ms

    state = ScalerState()
    for t in (0.0, 5.0, 10.0):
        total += 50  # 10 req/s
        _, state = autoscale_step(svc, api, scrape, state, t, 1)
    samples = state.policy_state.arrivals
    assert samples, "the predictive policy kept no load samples"
    _, rps, peak_rate, window, late = samples[-1]
    assert late != late  # nan: these replicas export no late counter
    assert window == pytest.approx(0.1)
    assert rps == pytest.approx(10.0) and peak_rate > 100.0  # the burst's rate, which 10 req/s hides
