"""Field ownership under server-side apply, against the real API server: `kubeinfer deploy` reports a field another
field manager owns (a `kubectl scale`, another tool's server-side apply) instead of overwriting it or failing with
a traceback, takes it over only with `--force-conflicts`, and never touches replicas an autoscaler owns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from controlplane_kit import Kube, wait_for
from typer.testing import CliRunner

pytestmark = [pytest.mark.controlplane, pytest.mark.timeout(300)]

IMAGE = "kubeinfer/test:never-pulled"


def _write(path: Path, name: str, body: str) -> Path:
    path.write_text(
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\n"
        f"metadata: {{name: {name}}}\nspec:\n  model: {{format: sklearn, uri: ./model.joblib}}\n" + body
    )
    return path


def _deploy(spec: Path, namespace: str, *flags: str) -> Any:
    from kubeinfer.cli.app import app

    args = ["deploy", str(spec), "-n", namespace, "--image", IMAGE, "--no-wait", *flags]
    return CliRunner().invoke(app, args)


def _owners(kube: Kube, name: str, namespace: str, field: str) -> set[str]:
    """The field managers whose managedFields entry holds ``spec.<field>`` of the Deployment."""
    dep = kube.apps.read_namespaced_deployment(name, namespace)
    return {
        m.manager for m in dep.metadata.managed_fields or [] if f"f:{field}" in (m.fields_v1 or {}).get("f:spec", {})
    }


def test_a_field_another_manager_owns_is_reported_and_taken_over_only_when_forced(
    kube: Kube, namespace: str, tmp_path: Path
) -> None:
    spec = _write(tmp_path / "web.yaml", "web", "  replicas: 2\n  autoscaling: {policy: none}\n")
    first = _deploy(spec, namespace)
    assert first.exit_code == 0, first.output
    assert _owners(kube, "web", namespace, "replicas") == {"kubeinfer"}

    # `kubectl scale` (an update through the scale subresource) and another tool's forced server-side apply of the
    # container image: both take the fields over from kubeinfer, as the API server's ownership rules say.
    kube.apps.patch_namespaced_deployment_scale(
        "web", namespace, {"spec": {"replicas": 5}}, field_manager="kubectl-scale"
    )
    from kubernetes import dynamic

    deployments = dynamic.DynamicClient(kube.api_client).resources.get(api_version="apps/v1", kind="Deployment")
    other = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"template": {"spec": {"containers": [{"name": "server", "image": "example.com/patched:1"}]}}},
    }
    deployments.server_side_apply(
        body=other, name="web", namespace=namespace, field_manager="kubectl", force_conflicts=True
    )

    again = _deploy(spec, namespace)
    assert again.exit_code == 1, again.output
    message = " ".join(again.output.split())  # rich wraps long lines
    assert isinstance(again.exception, SystemExit), again.exception  # a message, not a traceback
    assert "Deployment " + namespace + "/web" in message, message
    assert ".spec.replicas owned by 'kubectl-scale'" in message, message
    assert ".spec.template.spec.containers[name=\"server\"].image owned by 'kubectl'" in message, message
    assert "--force-conflicts" in message, message
    dep = kube.apps.read_namespaced_deployment("web", namespace)
    assert dep.spec.replicas == 5 and dep.spec.template.spec.containers[0].image == "example.com/patched:1"

    # The server-side dry run reports the same conflict and changes nothing.
    dry = _deploy(spec, namespace, "--dry-run", "--context", _context())
    assert dry.exit_code == 1 and "kubectl-scale" in dry.output, dry.output

    forced = _deploy(spec, namespace, "--force-conflicts")
    assert forced.exit_code == 0, forced.output
    dep = kube.apps.read_namespaced_deployment("web", namespace)
    assert dep.spec.replicas == 2 and dep.spec.template.spec.containers[0].image == IMAGE
    assert _owners(kube, "web", namespace, "replicas") == {"kubeinfer"}


def _context() -> str:
    import os

    import yaml

    with open(os.environ["KUBECONFIG"]) as f:
        return str(yaml.safe_load(f)["current-context"])


@pytest.mark.slow  # ~10-25 s; the default run stays under 15 minutes
def test_replicas_an_autoscaler_owns_are_left_to_it(kube: Kube, namespace: str, tmp_path: Path) -> None:
    """With an HPA, render leaves ``replicas`` out of the Deployment: the real HPA controller raises them to its
    minReplicas through the scale subresource, and a later deploy of a changed spec neither conflicts nor resets
    them."""
    body = "  autoscaling: {policy: hpa, metric: cpu, target: 70, minReplicas: 2, maxReplicas: 4}\n"
    spec = _write(tmp_path / "auto.yaml", "auto", body)
    assert (r := _deploy(spec, namespace)).exit_code == 0, r.output
    wait_for(
        "the HPA controller to raise replicas to minReplicas",
        lambda: kube.apps.read_namespaced_deployment("auto", namespace).spec.replicas == 2,
    )
    assert "kubeinfer" not in _owners(kube, "auto", namespace, "replicas")

    spec = _write(tmp_path / "auto.yaml", "auto", body + "  env: {LOG_LEVEL: debug}\n")
    assert (r := _deploy(spec, namespace)).exit_code == 0, r.output
    dep = kube.apps.read_namespaced_deployment("auto", namespace)
    assert dep.metadata.generation == 3  # created, scaled by the HPA, the new pod template
    assert dep.spec.replicas == 2


def test_switching_from_fixed_replicas_to_an_autoscaler_keeps_the_replica_count(
    kube: Kube, namespace: str, tmp_path: Path
) -> None:
    """Dropping ``replicas`` from an apply would let the API server reset it to 1 (kubeinfer was its only owner);
    deploy hands the field over first (Kubernetes' documented migration to an HPA), so three replicas stay three; and
    takes it back when the spec sets replicas again."""
    spec = _write(tmp_path / "m.yaml", "m", "  replicas: 3\n  autoscaling: {policy: none}\n")
    assert (r := _deploy(spec, namespace)).exit_code == 0, r.output
    spec = _write(
        tmp_path / "m.yaml", "m", "  autoscaling: {policy: kpa, metric: concurrency, target: 4, maxReplicas: 6}\n"
    )
    assert (r := _deploy(spec, namespace)).exit_code == 0, r.output
    dep = kube.apps.read_namespaced_deployment("m", namespace)
    assert dep.spec.replicas == 3
    assert "kubeinfer" not in _owners(kube, "m", namespace, "replicas")

    # Back to fixed replicas before any autoscaler changed the count: only the hand-over holds it, deploy takes it back.
    spec = _write(tmp_path / "m.yaml", "m", "  replicas: 2\n  autoscaling: {policy: none}\n")
    assert (r := _deploy(spec, namespace)).exit_code == 0, r.output
    assert kube.apps.read_namespaced_deployment("m", namespace).spec.replicas == 2
    assert "kubeinfer" in _owners(kube, "m", namespace, "replicas")
