"""The cluster dashboard's packaging: the Kustomize component adds a hardened, read-only second container to the
operator's pods with a Service and the RBAC it needs (rendered by a real kubectl, schema-valid), the Helm chart has
the same rules and keeps the dashboard off by default (and renders it when helm is installed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kube_schemas
import pytest
import yaml
from test_kube_packaging import CHART, KUSTOMIZE, kubectl
from test_pod_hardening import pod_specs, problems

from kubeinfer.kube.dashboard_source import READS
from kubeinfer.kube.render import SUPPORTED_VERSIONS

COMPONENT = KUSTOMIZE / "components" / "dashboard"


def _rules_of(text: str) -> list[dict[str, Any]]:
    doc = next(d for d in yaml.safe_load_all(text) if d and d.get("kind") == "ClusterRole")
    return list(doc["rules"])


def _expected_reads() -> set[tuple[str, str]]:
    return set(READS)


def _kustomize_with_dashboard(tmp_path: Path) -> list[dict[str, Any]]:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{os.path.relpath(KUSTOMIZE / 'base', overlay)}]\n"
        f"components: [{os.path.relpath(COMPONENT, overlay)}]\n"
        "images: [{name: kubeinfer/operator, newTag: 0.2.0}]\n"
    )
    out = subprocess.run(
        [kubectl(), "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [o for o in yaml.safe_load_all(out.stdout) if o]


def test_the_kustomize_component_adds_a_hardened_dashboard_container_a_service_and_read_only_rbac(
    tmp_path: Path,
) -> None:
    objs = _kustomize_with_dashboard(tmp_path)
    for version in (SUPPORTED_VERSIONS[0], SUPPORTED_VERSIONS[-1]):
        assert [e for o in objs for e in kube_schemas.errors(o, version)] == []
    dep = next(o for o in objs if o["kind"] == "Deployment")
    containers = {c["name"]: c for c in dep["spec"]["template"]["spec"]["containers"]}
    assert set(containers) == {"operator", "dashboard"}
    dash = containers["dashboard"]
    assert dash["args"][:3] == ["dashboard", "--host", "0.0.0.0"] and "--all-namespaces" in dash["args"]
    # the overlay's images entry tags both containers
    assert dash["image"] == containers["operator"]["image"] == "kubeinfer/operator:0.2.0"
    # the probe says Host: localhost, as the dashboard answers a loopback Host only
    assert dash["readinessProbe"]["httpGet"]["httpHeaders"] == [{"name": "Host", "value": "localhost"}]
    assert [p for where, pod in pod_specs([dep]) for p in problems(where, pod)] == []
    svc = next(o for o in objs if o["kind"] == "Service" and o["metadata"]["name"] == "kubeinfer-operator-dashboard")
    assert svc["metadata"]["namespace"] == dep["metadata"]["namespace"] == "kubeinfer-system"
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert svc["spec"]["ports"][0]["targetPort"] == "dashboard"
    role = next(o for o in objs if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "kubeinfer-dashboard")
    binding = next(
        o for o in objs if o["kind"] == "ClusterRoleBinding" and o["metadata"]["name"] == "kubeinfer-dashboard"
    )
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "kubeinfer-operator", "namespace": "kubeinfer-system"}
    ]
    granted = set()
    for r in role["rules"]:
        assert r["verbs"] == ["get", "list", "watch"], r  # read-only
        granted |= {(g, res) for g in r["apiGroups"] for res in r["resources"]}
    assert granted == _expected_reads()


def test_the_helm_chart_has_the_components_rules_and_keeps_the_dashboard_off_by_default() -> None:
    helm_rules = _rules_of(
        "\n".join(
            line
            for line in (CHART / "templates" / "dashboard.yaml").read_text().splitlines()
            if "{{" not in line  # the rules are plain YAML; the template lines around them are not
        )
    )
    assert helm_rules == _rules_of((COMPONENT / "rbac.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["dashboard"]["enabled"] is False
    readme = (CHART / "README.md").read_text()
    for key in values["dashboard"]:
        assert f"`dashboard.{key}`" in readme, f"dashboard.{key} is not documented"


@pytest.mark.parametrize("namespace", ["", "ml"])
def test_helm_template_renders_the_dashboard_when_enabled(namespace: str) -> None:
    helm = shutil.which("helm")
    if helm is None:
        pytest.skip("helm is not on PATH (not available from the package registries): install helm to run this check")

    def render(*sets: str) -> list[dict[str, Any]]:
        args = [helm, "template", "kubeinfer", str(CHART), "-n", "kubeinfer-system"]
        for s in sets:
            args += ["--set", s]
        out = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True)
        return [o for o in yaml.safe_load_all(out.stdout) if o]

    off = render()
    assert not any("dashboard" in o["metadata"]["name"] for o in off)
    on = render("dashboard.enabled=true", f"dashboard.namespace={namespace}")
    for o in on:
        assert kube_schemas.errors(o, SUPPORTED_VERSIONS[-1]) == []
    dep = next(o for o in on if o["kind"] == "Deployment")
    names = [c["name"] for c in dep["spec"]["template"]["spec"]["containers"]]
    assert names == ["operator", "dashboard"]
    assert [p for where, pod in pod_specs([dep]) for p in problems(where, pod)] == []
    kinds = {o["kind"] for o in on if "dashboard" in o["metadata"]["name"]}
    assert kinds == {"Service", "ClusterRole", "RoleBinding" if namespace else "ClusterRoleBinding"}
