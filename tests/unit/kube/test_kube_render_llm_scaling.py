"""Autoscaling a generative service (format llm) on its token signals: ``tokens`` (generated tokens per second) and
``sequences-waiting`` become an HPA Pods metric under the Prometheus adapter's names, or a KEDA ScaledObject whose
PromQL reads the replicas' ``kubeinfer_generation_*`` gauges; ``autoscaling.keda`` asks for KEDA from the spec."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from test_kube_render import assert_valid, by_kind

from conftest import ROOT
from kubeinfer.kube.names import METRIC_GENERATION_TOKENS_PER_SECOND, METRIC_GENERATION_WAITING
from kubeinfer.kube.render import SUPPORTED_VERSIONS, RenderOptions, render, render_all
from kubeinfer.spec import load_spec, validate_spec
from kubeinfer.spec.load import SpecError
from kubeinfer.spec.service import DEFAULT_PROMETHEUS, InferenceService

ADAPTER = ROOT / "deploy" / "prometheus-adapter" / "values.yaml"


def llm(autoscaling: dict[str, Any], fmt: str = "llm") -> InferenceService:
    return validate_spec(
        {
            "apiVersion": "kubeinfer.io/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": "chat", "namespace": "ml"},
            "spec": {"model": {"format": fmt, "uri": "./model"}, "autoscaling": autoscaling},
        }
    )


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_token_metrics_become_hpa_pods_metrics(version: str) -> None:
    svc = llm(
        {
            "maxReplicas": 8,
            "metrics": [{"type": "sequences-waiting", "target": 4}, {"type": "tokens", "target": 400}],
        }
    )
    objs = render(svc, RenderOptions(target_version=version))
    assert_valid(objs, version)
    hpa = by_kind(objs, "HorizontalPodAutoscaler")["spec"]
    assert hpa["metrics"] == [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": METRIC_GENERATION_WAITING},
                "target": {"type": "AverageValue", "averageValue": "4"},
            },
        },
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": METRIC_GENERATION_TOKENS_PER_SECOND},
                "target": {"type": "AverageValue", "averageValue": "400"},
            },
        },
    ]


def test_the_adapter_serves_the_names_the_hpa_asks_for() -> None:
    """deploy/prometheus-adapter has a rule per token metric: each gauge, per pod, as scraped."""
    rules = {r["name"]["as"]: r for r in yaml.safe_load(ADAPTER.read_text())["rules"]["custom"]}
    for name in (METRIC_GENERATION_WAITING, METRIC_GENERATION_TOKENS_PER_SECOND):
        assert name in rules, name
        assert rules[name]["seriesQuery"].startswith(f"{name}{{")
        assert rules[name]["resources"]["overrides"]["pod"] == {"resource": "pod"}


@pytest.mark.parametrize("version", ["1.30", "1.35"])
def test_keda_from_the_spec_queries_the_generation_gauges(version: str) -> None:
    svc = llm(
        {
            "minReplicas": 0,
            "maxReplicas": 6,
            "metrics": [{"type": "sequences-waiting", "target": 2}, {"type": "tokens", "target": 250.5}],
            "keda": {"serverAddress": "http://prometheus.obs.svc:9090", "authenticationRef": "prom-creds"},
        }
    )
    r = render_all(svc, RenderOptions(target_version=version))  # no --keda: the spec asks for it
    assert_valid(r.objects, version)  # the ScaledObject against KEDA's CRD schema (data/crd-schemas)
    assert not [o for o in r.objects if o["kind"] == "HorizontalPodAutoscaler"]
    so = by_kind(r.objects, "ScaledObject")["spec"]
    assert (so["minReplicaCount"], so["maxReplicaCount"]) == (0, 6)
    waiting, tokens = so["triggers"]
    sel = 'namespace="ml",service="chat"'
    assert waiting["metadata"]["query"] == f"sum({METRIC_GENERATION_WAITING}{{{sel}}})"
    assert tokens["metadata"]["query"] == f"sum({METRIC_GENERATION_TOKENS_PER_SECOND}{{{sel}}})"
    assert tokens["metadata"]["threshold"] == "250500m"
    for t in (waiting, tokens):
        assert t["type"] == "prometheus" and t["metricType"] == "AverageValue"  # the query's sum / replicas
        assert t["metadata"]["serverAddress"] == "http://prometheus.obs.svc:9090"
        assert t["authenticationRef"] == {"name": "prom-creds"}
    assert any("scale from zero" in n for n in r.notes)  # no replica reports a gauge at zero


def test_keda_option_and_spec_agree_and_the_spec_s_address_wins() -> None:
    plain = llm({"metric": "sequences-waiting", "target": 3, "maxReplicas": 4})
    with_option = by_kind(render(plain, RenderOptions(keda=True)), "ScaledObject")
    from_spec = by_kind(
        render(llm({"metric": "sequences-waiting", "target": 3, "maxReplicas": 4, "keda": {}})), "ScaledObject"
    )
    assert with_option == from_spec
    assert from_spec["spec"]["triggers"][0]["metadata"]["serverAddress"] == DEFAULT_PROMETHEUS
    assert "authenticationRef" not in from_spec["spec"]["triggers"][0]
    custom = llm({"metric": "tokens", "target": 100, "maxReplicas": 4, "keda": {"serverAddress": "https://p:9091"}})
    so = by_kind(render(custom, RenderOptions(keda=True, prometheus_url="http://ignored:9090")), "ScaledObject")
    assert so["spec"]["triggers"][0]["metadata"]["serverAddress"] == "https://p:9091"


def test_the_tiny_llm_example_scales_on_tokens() -> None:
    """examples/tiny-llm with a token metric renders schema-valid objects, with and without KEDA."""
    base = load_spec(ROOT / "examples" / "tiny-llm" / "service.yaml")
    doc = base.model_dump(mode="json", exclude_unset=True)
    doc["spec"]["autoscaling"] = {"metric": "tokens", "target": 200, "maxReplicas": 3}
    svc = validate_spec(doc)
    for keda in (False, True):
        assert_valid(render(svc, RenderOptions(keda=keda)), SUPPORTED_VERSIONS[-1])


@pytest.mark.parametrize(
    ("autoscaling", "fmt", "field", "words"),
    [
        ({"metric": "tokens", "target": 10}, "onnx", "spec:", "needs a model of format llm"),
        (
            {"metrics": [{"type": "sequences-waiting", "target": 2}]},
            "sklearn",
            "spec:",
            "'sequences-waiting' (autoscaling.metric or metrics[].type)",
        ),
        ({"policy": "kpa", "keda": {}}, "llm", "spec.autoscaling:", "keda needs policy hpa"),
        ({"keda": {"serverAddress": "prometheus:9090"}}, "llm", "spec.autoscaling.keda.serverAddress:", "pattern"),
    ],
)
def test_bad_autoscaling_names_the_field(autoscaling: dict[str, Any], fmt: str, field: str, words: str) -> None:
    with pytest.raises(SpecError) as e:
        llm(autoscaling, fmt)
    message = str(e.value)
    assert field in message and words in message, message


def test_token_metrics_allow_keda_scale_to_zero_and_the_hpa_clamps_it() -> None:
    svc = llm({"minReplicas": 0, "maxReplicas": 2, "metric": "sequences-waiting", "target": 1})
    r = render_all(svc)
    assert by_kind(r.objects, "HorizontalPodAutoscaler")["spec"]["minReplicas"] == 1
    assert any("--keda" in n for n in r.notes)
