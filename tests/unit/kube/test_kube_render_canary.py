"""spec.rollout.canary on Kubernetes: the stable/canary Services and the Gateway API HTTPRoute with weighted
backendRefs, schema-checked (built-in kinds against the Kubernetes schemas, the HTTPRoute against the subset of its
CRD schema in data/crd-schemas/httproute-v1.yaml)."""

from __future__ import annotations

from typing import Any

import kube_schemas
import pytest

from conftest import make_svc
from kubeinfer.kube.render import TRACK_LABEL, RenderOptions, http_route, render, render_all

CANARY = {"canary": {"steps": [10, 50], "gateway": "infra/public"}}


def named(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (obj,) = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


@pytest.mark.parametrize("version", ["1.30", "1.35"])
def test_a_canary_spec_renders_valid_services_and_an_httproute(version: str) -> None:
    objs = render(make_svc(rollout=CANARY), RenderOptions(target_version=version))
    for o in objs:
        assert kube_schemas.errors(o, version) == []
    route = named(objs, "HTTPRoute", "svc")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public", "namespace": "infra"}
    ]
    *pins, default = route["spec"]["rules"]
    assert [(r["backendRefs"][0]["name"], w["value"]) for r in pins for w in r["matches"][0]["headers"]] == [
        ("svc-canary", "canary"),
        ("svc-stable", "stable"),
    ]
    assert [(b["name"], b["port"], b["weight"]) for b in default["backendRefs"]] == [
        ("svc-stable", 8080, 100),
        ("svc-canary", 8080, 0),
    ]
    stable, canary = named(objs, "Service", "svc-stable"), named(objs, "Service", "svc-canary")
    assert stable["spec"]["selector"][TRACK_LABEL] == "stable" and canary["spec"]["selector"][TRACK_LABEL] == "canary"
    deploy = named(objs, "Deployment", "svc")
    assert deploy["spec"]["template"]["metadata"]["labels"][TRACK_LABEL] == "stable"
    assert TRACK_LABEL not in deploy["spec"]["selector"]["matchLabels"]  # the selector is immutable
    assert TRACK_LABEL not in deploy["metadata"]["labels"]


def test_the_weights_sum_to_100_and_a_wrong_weight_fails_the_schema() -> None:
    route = http_route(make_svc(rollout=CANARY), RenderOptions(), canary_weight=30)
    weights = [b["weight"] for b in route["spec"]["rules"][-1]["backendRefs"]]
    assert weights == [70, 30]
    route["spec"]["rules"][-1]["backendRefs"][0]["weight"] = -1
    assert any("weight" in e for e in kube_schemas.errors(route, "1.35"))


def test_without_a_canary_nothing_of_it_is_rendered() -> None:
    r = render_all(make_svc())
    assert not [o for o in r.objects if o["kind"] == "HTTPRoute" or o["metadata"]["name"].endswith("-canary")]
    assert TRACK_LABEL not in named(r.objects, "Deployment", "svc")["spec"]["template"]["metadata"]["labels"]


def test_a_bad_gateway_name_is_refused_by_the_spec() -> None:
    with pytest.raises(Exception, match="gateway"):
        make_svc(rollout={"canary": {"steps": [10], "gateway": "Not A Name"}})
