"""The operator's reconcile, status and kpa/predictive scaling, driven against the in-memory API."""

from __future__ import annotations

from typing import Any

import pytest

from kubeinfer.kube.api import KubeError
from kubeinfer.kube.operator import (
    ScalerState,
    autoscale_step,
    autoscaler_status,
    build_observation,
    parse_metrics,
    reconcile,
)
from kubeinfer.spec import validate_spec
from kubeinfer.testing.kube import FakeKubeApi

NOW = "2025-01-01T00:00:00Z"
LATER = "2025-01-01T00:05:00Z"


def cr(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubeinfer.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "svc", "namespace": "ml", "uid": "cr-uid", "generation": 1},
        "spec": {"model": {"format": "sklearn", "uri": "./model.joblib"}, **spec},
    }


def cond(status: dict[str, Any], ctype: str) -> dict[str, Any]:
    [c] = [c for c in status["conditions"] if c["type"] == ctype]
    return c


def test_children_are_applied_with_owner_references_by_the_operator() -> None:
    api = FakeKubeApi()
    result = reconcile(cr(), api, NOW)
    assert {c.field_manager for c in api.applies} == {"kubeinfer-operator"}
    for call in api.applies:
        [ref] = call.obj["metadata"]["ownerReferences"]
        assert (ref["uid"], ref["controller"], ref["kind"]) == ("cr-uid", True, "InferenceService")
    assert "Deployment/svc" in result.applied
    assert result.status["url"] == "http://svc.ml.svc.cluster.local:8080"
    assert result.status["grpcAddress"] == "svc.ml.svc.cluster.local:8081"


def test_status_progressing_then_ready_with_stable_transition_times() -> None:
    api = FakeKubeApi()
    body = cr()
    first = reconcile(body, api, NOW)
    assert cond(first.status, "Progressing")["status"] == "True"
    assert cond(first.status, "Ready")["status"] == "False"
    dep = api.objects[("apps/v1", "Deployment", "ml", "svc")]
    dep["status"] = {
        "observedGeneration": 1,
        "replicas": 1,
        "updatedReplicas": 1,
        "readyReplicas": 1,
        "availableReplicas": 1,
    }
    body["status"] = first.status
    second = reconcile(body, api, LATER)
    ready = cond(second.status, "Ready")
    assert (ready["status"], ready["reason"], ready["lastTransitionTime"]) == ("True", "Available", LATER)
    assert cond(second.status, "Degraded")["lastTransitionTime"] == NOW  # unchanged status keeps its time
    assert second.status["readyReplicas"] == 1


def test_degraded_with_reason_when_pods_crash() -> None:
    api = FakeKubeApi()
    reconcile(cr(), api, NOW)
    api.objects[("apps/v1", "Deployment", "ml", "svc")]["status"] = {
        "observedGeneration": 1,
        "replicas": 1,
        "updatedReplicas": 1,
    }
    api.add(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "svc-1",
                "namespace": "ml",
                "labels": {"app.kubernetes.io/name": "svc", "app.kubernetes.io/instance": "svc"},
            },
            "status": {
                "containerStatuses": [
                    {
                        "name": "server",
                        "restartCount": 5,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}},
                    }
                ]
            },
        }
    )
    status = reconcile(cr(), api, NOW).status
    degraded = cond(status, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "OOMKilled")


def test_invalid_spec_is_reported_not_applied() -> None:
    api = FakeKubeApi()
    result = reconcile(cr(batching={"maxBatchSize": 0}), api, NOW)
    degraded = cond(result.status, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "InvalidSpec")
    assert "spec.batching.maxBatchSize" in degraded["message"]
    assert not api.applies


def test_owned_children_the_spec_drops_are_pruned() -> None:
    api = FakeKubeApi()
    reconcile(cr(autoscaling={"metric": "concurrency", "target": 4, "maxReplicas": 3}), api, NOW)
    result = reconcile(cr(autoscaling={"policy": "none"}, replicas=2), api, NOW)
    assert result.pruned == ["HorizontalPodAutoscaler/svc"]


def test_device_plugin_config_is_left_to_the_admin() -> None:
    api = FakeKubeApi()
    result = reconcile(cr(resources={"gpu": {"sharing": "time-slicing", "fraction": 0.5}}), api, NOW)
    assert all(c.obj["metadata"]["namespace"] == "ml" for c in api.applies)
    assert any("cluster-level" in n for n in result.notes)


METRICS = """# HELP kubeinfer_requests_in_flight Requests inside the server.
# TYPE kubeinfer_requests_in_flight gauge
kubeinfer_requests_in_flight {in_flight}
# HELP kubeinfer_requests Requests by model, protocol and status code.
# TYPE kubeinfer_requests counter
kubeinfer_requests_total{{model="m",protocol="rest",code="200"}} {ok}
kubeinfer_requests_total{{model="m",protocol="grpc",code="200"}} 10
"""


def test_parse_metrics_reads_in_flight_and_total() -> None:
    m = parse_metrics("p", METRICS.format(in_flight=3, ok=90))
    assert (m.in_flight, m.requests_total) == (3.0, 100.0)


def test_observation_rps_from_counter_deltas_and_restarts() -> None:
    a = [parse_metrics("a", METRICS.format(in_flight=1, ok=90)), parse_metrics("b", METRICS.format(in_flight=2, ok=40))]
    obs, totals = build_observation(2, 2, a, ScalerState(), 10.0)
    assert obs.load[0].concurrency == 3 and obs.load[0].rps == 0
    b = [parse_metrics("a", METRICS.format(in_flight=1, ok=110)), parse_metrics("b", METRICS.format(in_flight=0, ok=0))]
    obs, _ = build_observation(2, 2, b, ScalerState(last_time=10.0, last_totals=totals), 12.0)
    # a: +20; b restarted (50 -> 10): counts 10 from zero
    assert obs.load[0].rps == pytest.approx(15.0)


def running_pod(name: str, ip: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "ml",
            "labels": {"app.kubernetes.io/name": "svc", "app.kubernetes.io/instance": "svc"},
        },
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]},
    }


def test_kpa_scales_the_deployment_from_scraped_concurrency() -> None:
    body = cr(autoscaling={"policy": "kpa", "metric": "concurrency", "target": 2, "maxReplicas": 10})
    api = FakeKubeApi()
    result = reconcile(body, api, NOW)
    assert result.svc is not None
    svc = result.svc
    api.add(running_pod("svc-a", "10.0.0.1"))
    load = {"10.0.0.1": 12}

    def scrape(pod: dict[str, Any]) -> str:
        return METRICS.format(in_flight=load[pod["status"]["podIP"]], ok=0)

    state = ScalerState()
    decision = None
    for t in range(0, 12, 2):
        decision, state = autoscale_step(svc, api, scrape, state, float(t), 1)
    assert decision is not None and decision.replicas > 1
    assert api.scales and api.scales[-1][3] == "kubeinfer-autoscaler"
    assert api.objects[("apps/v1", "Deployment", "ml", "svc")]["spec"]["replicas"] == decision.replicas
    # the operator's applies never carry replicas, so they do not undo the autoscaler
    reconcile(body, api, NOW)
    assert api.objects[("apps/v1", "Deployment", "ml", "svc")]["spec"]["replicas"] == decision.replicas


def test_predictive_policy_runs_and_hpa_policy_is_left_to_kubernetes() -> None:
    api = FakeKubeApi()
    pred = reconcile(
        cr(autoscaling={"policy": "predictive", "maxReplicas": 5, "predictive": {"capacityRps": 10}}), api, NOW
    ).svc
    assert pred is not None
    api.add(running_pod("svc-a", "10.0.0.1"))
    decision, _ = autoscale_step(pred, api, lambda p: METRICS.format(in_flight=0, ok=0), ScalerState(), 0.0)
    assert decision is not None and 0 <= decision.replicas <= 5
    hpa = validate_spec({**cr(), "metadata": {"name": "svc", "namespace": "ml"}})
    assert autoscale_step(hpa, api, lambda p: None, ScalerState(), 0.0)[0] is None


def test_a_failed_scale_call_is_reported_not_taken_as_done() -> None:
    body = cr(autoscaling={"policy": "kpa", "metric": "concurrency", "target": 2, "maxReplicas": 10})
    api = FakeKubeApi()
    svc = reconcile(body, api, NOW).svc
    assert svc is not None
    api.add(running_pod("svc-a", "10.0.0.1"))

    def refuse(*args: Any, **kw: Any) -> None:
        raise KubeError("deployments.apps/scale is forbidden")

    api.scale = refuse  # type: ignore[method-assign]
    state = ScalerState()
    for t in range(0, 12, 2):
        decision, state = autoscale_step(svc, api, lambda p: METRICS.format(in_flight=12, ok=0), state, float(t), 1)
    assert decision is not None and decision.replicas > 1
    assert state.scale_error is not None and "forbidden" in state.scale_error
    assert api.objects[("apps/v1", "Deployment", "ml", "svc")]["spec"].get("replicas", 1) == 1


def test_the_autoscaler_status_is_written_from_what_the_api_server_accepted() -> None:
    """desiredReplicas and lastScaleTime move only with an accepted scale call; a refused one keeps them and says why."""
    body = cr(autoscaling={"policy": "kpa", "metric": "concurrency", "target": 2, "maxReplicas": 10})
    api = FakeKubeApi()
    svc = reconcile(body, api, NOW).svc
    assert svc is not None
    api.add(running_pod("svc-a", "10.0.0.1"))

    def busy(pod: Any) -> str:
        return METRICS.format(in_flight=12, ok=0)

    state, status, scaled_at = ScalerState(), None, None
    for t in range(0, 12, 2):
        decision, state = autoscale_step(svc, api, busy, state, float(t), 1)
        assert decision is not None
        status = autoscaler_status(status, decision, state, f"t{t}")
        if state.scaled:
            scaled_at = f"t{t}"
    assert scaled_at is not None and status is not None
    replicas = api.objects[("apps/v1", "Deployment", "ml", "svc")]["spec"]["replicas"]
    assert status == {
        "desiredReplicas": replicas,
        "reason": decision.reason,
        "details": decision.shown_details(),
        "lastScaleTime": scaled_at,
    }
    assert status["details"]["stable_average"] > 0  # kpa's numbers behind the count, finite only

    # the same count again: no scale call, the time of the last one stays
    decision, state = autoscale_step(svc, api, busy, state, 12.0, 1)
    assert decision is not None and decision.replicas == replicas and not state.scaled
    status = autoscaler_status(status, decision, state, "t12")
    assert status["lastScaleTime"] == scaled_at and status["desiredReplicas"] == replicas

    def refuse(*args: Any, **kw: Any) -> None:
        raise KubeError("deployments.apps/scale is forbidden")

    api.scale = refuse  # type: ignore[method-assign]

    def idle(pod: Any) -> str:
        return METRICS.format(in_flight=0, ok=0)

    for t in range(14, 200, 2):
        decision, state = autoscale_step(svc, api, idle, state, float(t), 1)
        assert decision is not None
        status = autoscaler_status(status, decision, state, f"t{t}")
        if state.scale_error is not None:
            break
    assert state.scale_error is not None and not state.scaled
    assert status["desiredReplicas"] == replicas and status["lastScaleTime"] == scaled_at
    assert status["reason"].startswith("ScaleFailed: scaling to ") and "forbidden" in status["reason"]


def test_unreachable_pods_are_left_out() -> None:
    body = cr(autoscaling={"policy": "kpa", "maxReplicas": 4})
    api = FakeKubeApi()
    svc = reconcile(body, api, NOW).svc
    assert svc is not None
    api.add(running_pod("svc-a", "10.0.0.1"))
    decision, state = autoscale_step(svc, api, lambda p: None, ScalerState(), 0.0)
    assert decision is not None
    assert state.last_totals == ()


def test_kopf_shell_registers_its_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    """`kubeinfer operator` wires create/update/resume, a timer and delete for InferenceService, standalone."""
    kopf = pytest.importorskip("kopf")
    from kubeinfer.kube import operator_kopf
    from kubeinfer.kube.render import RenderOptions

    calls: dict[str, Any] = {}
    monkeypatch.setattr(operator_kopf, "connect", lambda context=None: FakeKubeApi())
    monkeypatch.setattr(kopf, "run", lambda **kw: calls.update(kw))
    registry = kopf.OperatorRegistry()
    monkeypatch.setattr(kopf._core.intents.registries, "_default_registry", registry)
    operator_kopf.run(["ml"], RenderOptions(), None, 5.0)
    assert calls == {"standalone": True, "namespaces": ["ml"], "clusterwide": False}
    kinds = {type(h).__name__ for h in registry._spawning.get_all_handlers()} | {
        type(h).__name__ for h in registry._changing.get_all_handlers()
    }
    assert {"TimerHandler", "ChangingHandler"} <= kinds


COMPUTE = """# TYPE kubeinfer_compute_duration_seconds histogram
kubeinfer_compute_duration_seconds_bucket{{model="m",le="+Inf"}} 5
kubeinfer_compute_duration_seconds_count{{model="m"}} 5
kubeinfer_compute_duration_seconds_sum{{model="m"}} {busy}
"""


def test_observation_work_is_the_rate_of_the_pods_compute_seconds() -> None:
    """Busy seconds per second from the compute-duration sums; none on the first scrape or from a pod without it."""
    a = [parse_metrics(p, METRICS.format(in_flight=1, ok=10) + COMPUTE.format(busy=b)) for p, b in (("a", 4), ("b", 9))]
    assert a[0].compute_seconds == 4.0
    obs, totals = build_observation(2, 2, a, ScalerState(), 10.0)
    assert obs.load[0].work is None
    state = ScalerState(last_time=10.0, last_totals=totals, last_compute=(("a", 4.0), ("b", 9.0)))
    b = [parse_metrics(p, METRICS.format(in_flight=1, ok=10) + COMPUTE.format(busy=x)) for p, x in (("a", 7), ("b", 2))]
    obs, _ = build_observation(2, 2, b, state, 12.0)
    assert obs.load[0].work == pytest.approx((3.0 + 2.0) / 2.0)  # b restarted: counts 2 from zero
    c = [b[0], parse_metrics("b", METRICS.format(in_flight=1, ok=10))]
    assert build_observation(2, 2, c, state, 12.0)[0].load[0].work is None
