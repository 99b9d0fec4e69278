"""The Grafana dashboard reads only metrics that docs/metrics.md documents (and the integration test checks the
documentation against a real scrape), and it is a dashboard Grafana can import."""

from __future__ import annotations

import json

from metrics_doc import DASHBOARD, METRICS_MD, ROOT, dashboard_exprs, dashboard_names, documented, sample_names


def test_every_metric_the_dashboard_queries_is_documented() -> None:
    docs = documented()
    known = set().union(*(sample_names(f) for f in docs.values()))
    used = dashboard_names()
    assert used, "the dashboard's PromQL names no kubeinfer_* metric"
    assert used <= known, f"not in docs/metrics.md: {sorted(used - known)}"


def test_the_dashboard_covers_traffic_errors_latency_queue_batches_and_replicas() -> None:
    exprs = " ".join(dashboard_exprs())
    for needed in (
        "sum by (model, version, code) (rate(kubeinfer_requests_total",
        'code!~"2..|0"',
        "histogram_quantile(0.5, sum by (le, model, version) (rate(kubeinfer_request_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (le, model, version) (rate(kubeinfer_request_duration_seconds_bucket",
        "kubeinfer_queue_depth",
        "kubeinfer_batch_size_bucket",
        "kubeinfer_model_ready",
    ):
        assert needed in exprs, needed


def test_the_dashboard_is_well_formed() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] and doc["title"] and doc["schemaVersion"] >= 36
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    names = {v["name"] for v in doc["templating"]["list"]}
    assert {"datasource", "model"} <= names
    for p in doc["panels"]:
        assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        assert all(set(p["gridPos"]) == {"h", "w", "x", "y"} for p in doc["panels"])


def test_the_metrics_page_is_linked_from_the_readme() -> None:
    assert "(docs/metrics.md)" in (ROOT / "README.md").read_text()
    assert METRICS_MD.exists()
