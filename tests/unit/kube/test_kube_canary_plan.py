"""The operator's canary, its pure parts: template hashes, the canary's objects, the stored state and the counters
read off the replicas' /metrics (the steps against a real control plane: tests/cluster/test_canary_operator.py)."""

from __future__ import annotations

import copy

import pytest

from kubeinfer.kube import canary
from kubeinfer.kube.render import RenderOptions, render_all
from kubeinfer.lifecycle.canary import CanaryState, Counters, Measured, latency_bucket, quantile
from kubeinfer.spec import validate_spec
from kubeinfer.testing.kube import FakeKubeApi


def _svc(uri: str = "./m.joblib", **canary_spec: object) -> object:
    return validate_spec(
        {
            "apiVersion": "kubeinfer.io/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": "svc"},
            "spec": {
                "model": {"format": "sklearn", "uri": uri},
                "replicas": 4,
                "rollout": {"canary": {"steps": [10, 50], **canary_spec}},
            },
        },
        "test",
    )


def _objects(uri: str = "./m.joblib") -> dict[str, dict]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in render_all(_svc(uri), RenderOptions()).objects}


def test_the_template_hash_follows_the_model_not_the_track_label() -> None:
    a, b = _objects()["Deployment/svc"], _objects("./other.joblib")["Deployment/svc"]
    assert canary.template_hash(a) != canary.template_hash(b)
    relabelled = copy.deepcopy(a)
    relabelled["spec"]["template"]["metadata"]["labels"]["kubeinfer.io/track"] = "canary"
    assert canary.template_hash(relabelled) == canary.template_hash(a)


def test_the_canary_objects_select_their_own_pods_and_mount_their_own_spec() -> None:
    objs = _objects()
    cm, dep = canary.canary_objects(objs["ConfigMap/svc-spec"], objs["Deployment/svc"], 3)
    assert cm["metadata"]["name"] == "svc-canary-spec" and dep["metadata"]["name"] == "svc-canary"
    assert dep["spec"]["replicas"] == 3
    assert dep["spec"]["selector"]["matchLabels"]["kubeinfer.io/track"] == "canary"
    assert dep["spec"]["template"]["metadata"]["labels"]["kubeinfer.io/track"] == "canary"
    mounts = [v["configMap"]["name"] for v in dep["spec"]["template"]["spec"]["volumes"] if "configMap" in v]
    assert mounts == ["svc-canary-spec"]
    assert objs["Deployment/svc"]["spec"]["template"]["metadata"]["labels"]["kubeinfer.io/track"] == "stable"


def test_without_gates_the_analysis_is_off_and_steps_pass_on_time() -> None:
    cfg = canary.canary_config(_svc(maxErrorPercent=None))  # type: ignore[arg-type]
    assert cfg.min_requests == 0
    assert canary.canary_config(_svc()).min_requests == 20  # type: ignore[arg-type]


def test_the_stored_state_round_trips_through_status() -> None:
    state = CanaryState(
        1, 2, 1, 10, 1_800_000_000.5, 1_800_000_010.25, Counters(5, 1, (0, 2, 3)), Measured(7, 0, 3.0, 1.5)
    )
    stored = canary.Stored(state, (10, 50), "Analyzing", "aaa", "bbb", "step 2/2")
    doc = stored.to_json()
    assert doc["step"] == 2 and doc["stableRevision"] == 1 and doc["canaryRevision"] == 2 and doc["weight"] == 10
    back = canary.Stored.from_json(doc)
    assert back is not None and back.state.baseline == state.baseline and back.state.step == 1
    assert back.state.window_start == pytest.approx(state.window_start) and back.phase == "Analyzing"
    assert stored.condition_message() == "revision 2 gets 10% of the traffic (step 2/2, analyzing)"


def test_a_status_the_operator_did_not_write_is_not_resumed() -> None:
    assert canary.Stored.from_json({"weight": 10}) is None


def test_counters_from_metrics_sum_pods_count_5xx_but_503_and_keep_latency() -> None:
    def pod(ok: int, e500: int, e503: int) -> str:
        n = ok + e500 + e503
        return (
            f'kubeinfer_requests_total{{code="200"}} {ok}\n'
            f'kubeinfer_requests_total{{code="500"}} {e500}\n'
            f'kubeinfer_requests_total{{code="503"}} {e503}\n'
            f'kubeinfer_request_duration_seconds_bucket{{model="m",le="0.01"}} {n - 1}\n'
            f'kubeinfer_request_duration_seconds_bucket{{model="m",le="1.0"}} {n}\n'
            f'kubeinfer_request_duration_seconds_bucket{{model="m",le="+Inf"}} {n}\n'
        )

    c = canary.counters_from_metrics([pod(90, 5, 5), pod(100, 0, 0)])
    assert c.requests == 200 and c.errors == 5
    assert sum(c.latency) == 200 and c.latency[latency_bucket(1.0)] == 2
    p50 = quantile(c.latency, 0.5)
    assert p50 is not None and p50 <= 0.0125  # within the analysis bucket holding 10 ms


def _body(uri: str, generation: int, status: dict | None = None, annotations: dict | None = None) -> dict:
    svc = _svc(uri)
    return {
        "apiVersion": "kubeinfer.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {
            "name": "svc",
            "namespace": "default",
            "uid": "u1",
            "generation": generation,
            "annotations": annotations or {},
        },
        "spec": svc.model_dump(mode="json", exclude_unset=True)["spec"],  # type: ignore[attr-defined]
        "status": status or {},
    }


def _live(api: FakeKubeApi, uri: str, ready: int) -> None:
    """A stable Deployment the operator applied from ``uri``'s spec, with ``ready`` ready replicas."""
    from kubeinfer.kube.operator import reconcile

    reconcile(_body(uri, 1), api, "2026-01-01T00:00:00Z")
    dep = api.get("apps/v1", "Deployment", "svc", "default")
    assert dep is not None
    dep["status"] = {"readyReplicas": ready, "replicas": 4, "updatedReplicas": 4, "observedGeneration": 1}
    api.add(dep)


def _plan(api: FakeKubeApi, body: dict) -> canary.CanaryPlan:
    from kubeinfer.kube.operator import children, spec_of

    svc = spec_of(body)
    objs, _ = children(svc, body, RenderOptions())
    return canary.plan(svc, body, objs, api, 1_800_000_000.0)


def test_a_new_template_over_a_serving_stable_starts_a_canary_and_keeps_the_stable_objects() -> None:
    api = FakeKubeApi()
    _live(api, "./v1.joblib", 4)
    p = _plan(api, _body("./v2.joblib", 2))
    names = {f"{o['kind']}/{o['metadata']['name']}" for o in p.objects}
    assert "Deployment/svc" not in names and "ConfigMap/svc-spec" not in names
    assert {"Deployment/svc-canary", "ConfigMap/svc-canary-spec"} <= names
    assert p.keep == [("Deployment", "svc"), ("ConfigMap", "svc-spec")]
    assert p.stored is not None and p.stored.phase == "Waiting" and p.stored.state.canary == 2


def test_a_stable_with_no_ready_replica_takes_the_new_template_at_once() -> None:
    api = FakeKubeApi()
    _live(api, "./v1.joblib", 0)
    p = _plan(api, _body("./v2.joblib", 2))
    assert p.stored is None and any(o["metadata"]["name"] == "svc" and o["kind"] == "Deployment" for o in p.objects)


def test_a_rolled_back_template_is_held_even_when_the_stable_stops_serving() -> None:
    api = FakeKubeApi()
    _live(api, "./v1.joblib", 4)
    aborted = _plan(api, _body("./v2.joblib", 2, annotations={canary.ABORT_ANNOTATION: "true"}))
    assert aborted.stored is not None and aborted.stored.phase == "Aborted"
    _live(api, "./v1.joblib", 0)
    p = _plan(api, _body("./v2.joblib", 2, status={"canary": aborted.stored.to_json()}))
    assert p.stored is not None and p.stored.phase == "Aborted"
    assert not any(o["kind"] == "Deployment" for o in p.objects)  # neither the canary nor the stable is applied
