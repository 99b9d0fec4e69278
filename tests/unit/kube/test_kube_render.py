"""Rendering: every example x Kubernetes version x cloud preset is schema-valid, and each spec field lands where
Kubernetes expects it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import kube_schemas
import pytest
import yaml

from conftest import EXAMPLES, make_svc
from kubeinfer.kube.names import MODEL_DIR
from kubeinfer.kube.render import (
    SUPPORTED_VERSIONS,
    RenderOptions,
    dump_yaml,
    render,
    render_all,
    termination_grace_seconds,
)
from kubeinfer.spec import load_spec, loads_spec

CLOUDS = [None, "gke", "eks", "aks"]
GPU_VARIANTS: dict[str, dict[str, Any]] = {
    "whole": {"count": 2},
    "mig": {"sharing": "mig", "migProfile": "1g.10gb"},
    "time-slicing": {"sharing": "time-slicing", "fraction": 0.25},
    "mps": {"sharing": "mps", "fraction": 0.5},
    "amd": {"count": 1, "vendor": "amd"},
    "gaudi": {"count": 1, "vendor": "intel"},
}


def by_kind(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [o] = [o for o in objs if o["kind"] == kind]
    return o


def container(objs: list[dict[str, Any]]) -> dict[str, Any]:
    return by_kind(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def assert_valid(objs: list[dict[str, Any]], version: str) -> None:
    problems = [e for o in objs for e in kube_schemas.errors(o, version)]
    assert not problems, "\n".join(problems)


def test_kubernetes_validate_ships_every_supported_version() -> None:
    """1.30 to 1.35 are all shipped offline by kubernetes-validate (no fallback to an older schema)."""
    assert set(SUPPORTED_VERSIONS) <= set(kube_schemas.shipped_versions())


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.parent.name)
def test_every_example_is_schema_valid_on_every_cloud(example: Path, version: str) -> None:
    svc = load_spec(example)
    for cloud in CLOUDS:
        for keda in (False, True):
            assert_valid(render(svc, RenderOptions(target_version=version, cloud=cloud, keda=keda)), version)


@pytest.mark.parametrize("version", ["1.30", "1.35"])
@pytest.mark.parametrize("variant", GPU_VARIANTS)
def test_gpu_variants_are_schema_valid(variant: str, version: str) -> None:
    svc = make_svc(resources={"gpu": GPU_VARIANTS[variant]}, autoscaling={"vertical": {"updateMode": "Initial"}})
    for cloud in CLOUDS:
        assert_valid(render(svc, RenderOptions(target_version=version, cloud=cloud)), version)


def test_agrees_with_kubernetes_validate_entry_point(iris: Any) -> None:
    """Our cached validators and the library's own validate() agree (strict mode)."""
    for o in render(iris):
        if (o["apiVersion"], o["kind"]) not in kube_schemas.CRD_FILES:
            kube_schemas.validate_with_kubernetes_validate(o, "1.30")


def test_validators_reject_unknown_and_mistyped_fields(iris: Any) -> None:
    objs = render(iris)
    dep = by_kind(objs, "Deployment")
    dep["spec"]["template"]["spec"]["containers"][0]["startupProbes"] = {}
    dep["spec"]["replicas"] = "three"
    assert len(kube_schemas.errors(dep, "1.35")) == 2
    sm = by_kind(objs, "ServiceMonitor")
    sm["spec"]["endpoints"][0]["interval"] = "15 seconds"
    assert kube_schemas.errors(sm, "1.35")


def test_probes_map_to_the_server_endpoints() -> None:
    svc = make_svc(
        probes={"startup": {"periodSeconds": 1.5, "failureThreshold": 90}, "liveness": {"timeoutSeconds": 3}}
    )
    c = container(render(svc))
    assert c["startupProbe"]["httpGet"] == {"path": "/startupz", "port": "http", "scheme": "HTTP"}
    assert (c["startupProbe"]["periodSeconds"], c["startupProbe"]["failureThreshold"]) == (2, 90)
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["livenessProbe"]["timeoutSeconds"] == 3


def test_termination_grace_covers_prestop_and_drain() -> None:
    svc = make_svc(server={"limits": {"drainTimeoutSeconds": 42.5}})
    objs = render(svc, RenderOptions(prestop_seconds=7))
    pod = by_kind(objs, "Deployment")["spec"]["template"]["spec"]
    assert pod["containers"][0]["lifecycle"]["preStop"] == {"sleep": {"seconds": 7}}
    assert pod["terminationGracePeriodSeconds"] == termination_grace_seconds(svc, RenderOptions(prestop_seconds=7))
    assert pod["terminationGracePeriodSeconds"] > 7 + 42.5


def test_hardened_security_context(iris: Any) -> None:
    pod = by_kind(render(iris), "Deployment")["spec"]["template"]["spec"]
    sc = pod["containers"][0]["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"name": "tmp", "mountPath": "/tmp"} in pod["containers"][0]["volumeMounts"]
    assert pod["automountServiceAccountToken"] is False


def test_container_runs_serve_on_the_mounted_spec_that_points_into_the_image(iris: Any) -> None:
    objs = render(iris)
    c = container(objs)
    assert c["command"] == ["kubeinfer"]
    assert c["args"][:2] == ["serve", "/etc/kubeinfer/service.yaml"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 8080, "grpc": 8081}
    text = by_kind(objs, "ConfigMap")["data"]["service.yaml"]
    mounted = loads_spec(text)  # the container's spec is itself a valid spec
    assert mounted.spec.model.uri == f"{MODEL_DIR}/model.joblib"
    assert mounted.spec.server.host == "0.0.0.0"


def test_spec_change_rolls_pods_through_the_template_hash() -> None:
    a = by_kind(render(make_svc(batching={"maxBatchSize": 8})), "Deployment")
    b = by_kind(render(make_svc(batching={"maxBatchSize": 16})), "Deployment")
    ha = a["spec"]["template"]["metadata"]["annotations"]["kubeinfer.io/spec-hash"]
    assert ha != b["spec"]["template"]["metadata"]["annotations"]["kubeinfer.io/spec-hash"]


def test_rolling_update_topology_and_labels(iris: Any) -> None:
    dep = by_kind(render(iris), "Deployment")
    assert dep["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    keys = [t["topologyKey"] for t in dep["spec"]["template"]["spec"]["topologySpreadConstraints"]]
    assert keys == ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
    labels = dep["metadata"]["labels"]
    for k in ("name", "instance", "component", "part-of", "managed-by", "version"):
        assert f"app.kubernetes.io/{k}" in labels
    assert dep["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "iris",
        "app.kubernetes.io/instance": "iris",
    }


def test_replicas_left_to_the_autoscaler_and_fixed_without_one(iris: Any) -> None:
    assert "replicas" not in by_kind(render(iris), "Deployment")["spec"]
    fixed = make_svc(replicas=3, autoscaling={"policy": "none"})
    objs = render(fixed)
    assert by_kind(objs, "Deployment")["spec"]["replicas"] == 3
    assert not [o for o in objs if o["kind"] == "HorizontalPodAutoscaler"]


def test_hpa_metrics_and_behavior() -> None:
    svc = make_svc(
        autoscaling={
            "minReplicas": 2,
            "maxReplicas": 10,
            "metrics": [
                {"type": "cpu", "target": 70},
                {"type": "concurrency", "target": 4},
                {"type": "rps", "target": 2.5},
            ],
            "behavior": {
                "scaleDown": {
                    "stabilizationWindowSeconds": 120,
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
                }
            },
        }
    )
    hpa = by_kind(render(svc), "HorizontalPodAutoscaler")["spec"]
    assert hpa["metrics"][0] == {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
    }
    assert hpa["metrics"][1]["pods"]["metric"]["name"] == "kubeinfer_requests_in_flight"
    assert hpa["metrics"][2]["pods"]["target"] == {"type": "AverageValue", "averageValue": "2500m"}
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 120
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)


def test_tolerance_only_where_kubernetes_has_it() -> None:
    svc = make_svc(autoscaling={"metric": "concurrency", "target": 4, "maxReplicas": 3, "tolerance": 0.05})
    new = render_all(svc, RenderOptions(target_version="1.33"))
    assert by_kind(new.objects, "HorizontalPodAutoscaler")["spec"]["behavior"]["scaleUp"]["tolerance"] == "50m"
    old = render_all(svc, RenderOptions(target_version="1.32"))
    assert "behavior" not in by_kind(old.objects, "HorizontalPodAutoscaler")["spec"]
    assert any("1.33" in n for n in old.notes)


def test_scale_to_zero_needs_keda() -> None:
    svc = make_svc(autoscaling={"minReplicas": 0, "maxReplicas": 5, "metric": "rps", "target": 10})
    hpa = render_all(svc)
    assert by_kind(hpa.objects, "HorizontalPodAutoscaler")["spec"]["minReplicas"] == 1
    assert any("--keda" in n for n in hpa.notes)
    so = by_kind(render(svc, RenderOptions(keda=True)), "ScaledObject")["spec"]
    assert so["minReplicaCount"] == 0
    trigger = so["triggers"][0]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["query"] == 'sum(rate(kubeinfer_requests_total{namespace="ml",service="svc"}[1m]))'
    assert trigger["metadata"]["threshold"] == "10"


def test_kpa_and_predictive_render_no_hpa_and_say_the_operator_scales() -> None:
    for policy in ("kpa", "predictive"):
        r = render_all(make_svc(autoscaling={"policy": policy, "maxReplicas": 4}))
        assert not [o for o in r.objects if o["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")]
        assert "replicas" not in by_kind(r.objects, "Deployment")["spec"]
        assert any("operator" in n for n in r.notes)


def test_vpa_update_mode_and_bounds() -> None:
    svc = make_svc(autoscaling={"vertical": {"updateMode": "InPlaceOrRecreate", "maxAllowed": {"memory": "8Gi"}}})
    vpa = by_kind(render(svc), "VerticalPodAutoscaler")["spec"]
    assert vpa["updatePolicy"] == {"updateMode": "InPlaceOrRecreate"}
    assert vpa["resourcePolicy"]["containerPolicies"][0]["maxAllowed"] == {"memory": "8Gi"}
    assert not [o for o in render(make_svc()) if o["kind"] == "VerticalPodAutoscaler"]


@pytest.mark.parametrize(
    ("variant", "resource", "units"),
    [
        ("whole", "nvidia.com/gpu", "2"),
        ("mig", "nvidia.com/mig-1g.10gb", "1"),
        ("time-slicing", "nvidia.com/gpu", "1"),
        ("amd", "amd.com/gpu", "1"),
        ("gaudi", "habana.ai/gaudi", "1"),
    ],
)
def test_accelerator_resources(variant: str, resource: str, units: str) -> None:
    r = container(render(make_svc(resources={"gpu": GPU_VARIANTS[variant]})))["resources"]
    assert r["limits"][resource] == units
    assert r["requests"][resource] == units


def test_time_slicing_renders_device_plugin_config_and_pins_nodes() -> None:
    r = render_all(make_svc(resources={"gpu": GPU_VARIANTS["time-slicing"]}), RenderOptions(cloud="eks"))
    dp = [o for o in r.objects if o["metadata"]["name"] == "kubeinfer-gpu-sharing"]
    assert len(dp) == 1
    cfg = yaml.safe_load(dp[0]["data"]["time-slicing-4"])
    assert cfg["sharing"]["timeSlicing"]["resources"] == [{"name": "nvidia.com/gpu", "replicas": 4}]
    pod = by_kind(r.objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["nodeSelector"]["nvidia.com/device-plugin.config"] == "time-slicing-4"
    gke = render(make_svc(resources={"gpu": GPU_VARIANTS["time-slicing"]}), RenderOptions(cloud="gke"))
    assert not [o for o in gke if o["metadata"]["name"] == "kubeinfer-gpu-sharing"]
    sel = by_kind(gke, "Deployment")["spec"]["template"]["spec"]["nodeSelector"]
    assert sel["cloud.google.com/gke-gpu-sharing-strategy"] == "time-sharing"
    assert sel["cloud.google.com/gke-max-shared-clients-per-gpu"] == "4"


def test_cloud_specifics_only_under_presets() -> None:
    svc = make_svc(resources={"gpu": {"count": 1}})
    plain = dump_yaml(render(svc))
    for marker in ("cloud.google.com", "amazonaws.com", "karpenter", "azure", "sku"):
        assert marker not in plain
    assert "cloud.google.com/gke-accelerator" in dump_yaml(render(svc, RenderOptions(cloud="gke")))
    assert "karpenter.k8s.aws" in dump_yaml(render(svc, RenderOptions(cloud="eks")))
    aks = by_kind(render(svc, RenderOptions(cloud="aks")), "Deployment")["spec"]["template"]["spec"]
    assert aks["nodeSelector"] == {"accelerator": "nvidia"}
    assert {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"} in aks["tolerations"]
    mig = by_kind(render(make_svc(resources={"gpu": GPU_VARIANTS["mig"]}), RenderOptions(cloud="gke")), "Deployment")
    assert mig["spec"]["template"]["spec"]["nodeSelector"]["cloud.google.com/gke-gpu-partition-size"] == "1g.10gb"


def test_service_ports_and_network_policy(iris: Any) -> None:
    objs = render(iris)
    ports = by_kind(objs, "Service")["spec"]["ports"]
    assert [(p["name"], p["appProtocol"]) for p in ports] == [("http", "http"), ("grpc", "kubernetes.io/h2c")]
    np = by_kind(objs, "NetworkPolicy")["spec"]
    assert np["policyTypes"] == ["Ingress"]
    assert [p["port"] for p in np["ingress"][0]["ports"]] == ["http", "grpc"]
    pdb = by_kind(objs, "PodDisruptionBudget")["spec"]
    assert pdb["maxUnavailable"] == 1


def test_bad_options_are_named() -> None:
    with pytest.raises(ValueError, match=r"target version '1\.29'.*1\.30"):
        RenderOptions(target_version="1.29")
    with pytest.raises(ValueError, match="cloud 'azure'"):
        RenderOptions(cloud="azure")  # type: ignore[arg-type]


GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize(
    ("name", "opts"), [("iris", RenderOptions()), ("iris-keda-gke", RenderOptions(keda=True, cloud="gke"))]
)
def test_golden(iris: Any, name: str, opts: RenderOptions) -> None:
    """The full render of examples/iris; regenerate with KUBEINFER_UPDATE_GOLDEN=1 after an intended change."""
    text = dump_yaml(render(iris, opts))
    path = GOLDEN / f"{name}.yaml"
    if os.environ.get("KUBEINFER_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text()
    assert "&id" not in text  # no YAML anchors: kubectl users read this


def test_node_failure_seconds_become_noexecute_tolerations() -> None:
    def tolerations(**spec: object) -> list[dict[str, Any]]:
        return by_kind(render(make_svc(**spec), RenderOptions()), "Deployment")["spec"]["template"]["spec"].get(
            "tolerations", []
        )

    assert tolerations() == []  # Kubernetes' own default (300 s, added by admission) applies
    got = tolerations(rollout={"nodeFailureSeconds": 20})
    assert {t["key"] for t in got} == {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}
    assert all(t["effect"] == "NoExecute" and t["tolerationSeconds"] == 20 for t in got)
    gpu = tolerations(rollout={"nodeFailureSeconds": 20}, resources={"gpu": {"count": 1}})
    assert len(gpu) >= 2 and all(t in gpu for t in got)  # added to what the GPU placement tolerates
    for version in SUPPORTED_VERSIONS:
        assert_valid(
            render(make_svc(rollout={"nodeFailureSeconds": 20}), RenderOptions(target_version=version)), version
        )


def test_a_new_replica_count_or_autoscaling_bound_does_not_roll_pods() -> None:
    """Only what the server reads is in the template hash: replicas and autoscaling scale, they do not roll."""

    def spec_hash(**kw: Any) -> str:
        dep = by_kind(render(make_svc(**kw)), "Deployment")
        return str(dep["spec"]["template"]["metadata"]["annotations"]["kubeinfer.io/spec-hash"])

    base = spec_hash(autoscaling={"policy": "none"}, replicas=2)
    assert spec_hash(autoscaling={"policy": "none"}, replicas=5) == base
    assert spec_hash(autoscaling={"metric": "concurrency", "target": 4, "maxReplicas": 9}) == base
    assert spec_hash(autoscaling={"policy": "none"}, replicas=2, batching={"maxBatchSize": 16}) != base
