"""compare(): every policy from one spec, the oracle as the floor, JSON and plots."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeinfer.sim import ServiceModel, SimOptions, compare, generate
from kubeinfer.spec.service import ServiceSpec

SPEC = ServiceSpec.model_validate(
    {
        "model": {"format": "python", "className": "m:C"},
        "server": {"workers": 2},
        "autoscaling": {"policy": "hpa", "metric": "concurrency", "target": 1, "maxReplicas": 30},
    }
)


@pytest.fixture(scope="module")
def result():
    tr = generate("step", {"base": 20, "high": 150, "at": 300, "duration": 900}, seed=1)
    opts = SimOptions(service=ServiceModel(fixed_ms=25, distribution="lognormal", cv=0.5), slo_ms=100)
    return compare(SPEC, tr, ["hpa", "kpa", "predictive", "none"], opts)


def test_every_policy_is_reported_against_an_oracle_that_costs_less(result) -> None:
    names = [s.policy for s in result.summaries]
    assert names == ["hpa", "kpa", "predictive", "none"]
    for s in result.summaries:
        assert s.requests == len(result.trace)
        if s.policy != "none":
            assert s.vs_oracle >= 1.0
            assert s.scaling_events >= 1
    fixed = result.summaries[-1]
    assert fixed.scaling_events == 0 and fixed.slo_attainment < 0.9  # one replica cannot take the step


def test_scaled_policies_follow_the_step_within_startup_and_a_few_ticks(result) -> None:
    for name in ("hpa", "kpa", "predictive"):
        ready = result.runs[name].timeline["ready"]
        assert ready[:290].max() <= 2
        assert ready[300 + 60] >= result.oracle.need[400] - 1


def test_json_report_and_plots(result, tmp_path: Path) -> None:
    from kubeinfer.sim.plot import plot_png, write_html

    doc = result.to_json()
    assert doc["oracle"]["replica_seconds"] > 0 and len(doc["policies"]) == 4
    assert plot_png(result, tmp_path / "p.png").stat().st_size > 10_000
    assert "data:image/png;base64" in write_html(result, tmp_path / "p.html").read_text()
