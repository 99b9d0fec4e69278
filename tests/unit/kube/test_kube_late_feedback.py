"""The SLO feedback on a cluster: a predictive spec's replicas are told the SLO (``KUBEINFER_SLO_SECONDS``), and the
operator turns the deltas of their ``kubeinfer_requests_late_total`` into its load sample's ``late`` rate."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import SCRAPE, predictive_service_with_a_ready_pod, server_env
from kubeinfer.kube.operator import ScalerState, autoscale_step, build_observation, parse_metrics
from kubeinfer.kube.render import SLO_ENV
from kubeinfer.server import metrics as server_metrics
from kubeinfer.testing.kube import FakeKubeApi

METRICS = SCRAPE  # one replica's /metrics: SCRAPE.format(ok=...)
LATE = """# HELP kubeinfer_requests_late Requests that took longer than 0.1 s.
# TYPE kubeinfer_requests_late counter
kubeinfer_requests_late_total {late}
"""


def test_a_predictive_spec_tells_its_replicas_the_slo() -> None:
    assert SLO_ENV == server_metrics.SLO_ENV
    env = server_env({"policy": "predictive", "predictive": {"capacityRps": 10, "sloLatencyMs": 250}})
    assert env[SLO_ENV] == "0.25"
    assert server_metrics.slo_from_env(env) == 0.25  # what the replica reads back


@pytest.mark.parametrize("policy", ["hpa", "kpa", "none"])
def test_other_policies_render_no_slo(policy: str) -> None:
    assert SLO_ENV not in server_env({"policy": policy})


def test_the_load_sample_carries_the_rate_of_late_requests() -> None:
    first = [parse_metrics(p, METRICS.format(ok=100) + LATE.format(late=n)) for p, n in (("a", 3), ("b", 5))]
    assert [p.late_total for p in first] == [3.0, 5.0]
    obs, totals = build_observation(2, 2, first, ScalerState(), 10.0)
    assert obs.load[0].late is None  # nothing to take a difference from yet
    state = ScalerState(last_time=10.0, last_totals=totals, last_late=(("a", 3.0), ("b", 5.0)))
    # 4 s later: a missed 6 more, b restarted (its counter went down) and has missed 2 since
    later = [parse_metrics(p, METRICS.format(ok=150) + LATE.format(late=n)) for p, n in (("a", 9), ("b", 2))]
    obs, _ = build_observation(2, 2, later, state, 14.0)
    assert obs.load[0].late == pytest.approx((6 + 2) / 4)
    # a pod without the counter (an older image), or one not seen at the last tick: no feedback this tick
    older = [*later, parse_metrics("c", METRICS.format(ok=10))]
    assert build_observation(3, 3, older, state, 14.0)[0].load[0].late is None
    new = [*later, parse_metrics("d", METRICS.format(ok=10) + LATE.format(late=1))]
    assert build_observation(3, 3, new, state, 14.0)[0].load[0].late is None


def test_the_predictive_policy_reads_the_scraped_misses() -> None:
    api = FakeKubeApi()
    svc = predictive_service_with_a_ready_pod(api)
    total = late = 0

    def scrape(pod: dict[str, Any]) -> str:
        return METRICS.format(ok=total) + LATE.format(late=late)

    state = ScalerState()
    for t in (0.0, 5.0, 10.0):
        total, late = total + 50, late + 2  # 10 req/s, 0.4 of them late
        _, state = autoscale_step(svc, api, scrape, state, t, 1)
    *_, missed = state.policy_state.arrivals[-1]
    assert missed == pytest.approx(0.4)
