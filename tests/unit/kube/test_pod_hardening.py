"""Every container and init container of every Deployment kubeinfer renders, and of the operator's own manifests,
runs hardened: non-root, read-only root filesystem, no privilege escalation, all capabilities dropped, seccomp
RuntimeDefault. Settings a container leaves out are taken from the pod, as the kubelet does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import EXAMPLES, make_svc
from kubeinfer.kube.render import SUPPORTED_VERSIONS, RenderOptions, render_all
from kubeinfer.spec import InferenceService, load_spec

ROOT = Path(__file__).resolve().parents[3]

GPU = [
    {},
    {"gpu": {"count": 1}},
    {"gpu": {"sharing": "mig", "migProfile": "1g.10gb"}},
    {"gpu": {"sharing": "time-slicing", "fraction": 0.25}},
    {"gpu": {"count": 1, "vendor": "amd"}},
]
MODELS = [
    {"format": "sklearn", "uri": "./model.joblib"},
    {"format": "sklearn", "uri": "s3://bucket/iris/model.joblib", "storageSecret": "s3-creds"},
    {"format": "onnx", "uri": "gs://bucket/model.onnx", "cacheClaim": "model-cache"},
    {"format": "sentence-transformers", "uri": "hf://sentence-transformers/all-MiniLM-L6-v2"},
]
OPTIONS = [
    RenderOptions(),
    RenderOptions(cloud="gke", keda=True),
    RenderOptions(cloud="eks", target_version=SUPPORTED_VERSIONS[0]),
    RenderOptions(cloud="aks", model_in_image=True),
]


def family() -> list[tuple[str, InferenceService, RenderOptions]]:
    out = [(p.parent.name, load_spec(p), opts) for p in EXAMPLES for opts in OPTIONS]
    for i, model in enumerate(MODELS):
        for j, gpu in enumerate(GPU):
            spec: dict[str, Any] = {"model": model, "resources": gpu, "server": {"processes": 1 + (i + j) % 3}}
            out += [(f"model{i}-gpu{j}", make_svc(**spec), opts) for opts in OPTIONS]
    return out


def pod_specs(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The pod templates of the workloads among ``objects``."""
    return [
        (f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"])
        for o in objects
        if o.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job")
    ]


def problems(where: str, pod: dict[str, Any]) -> list[str]:
    """What is missing from the hardening of each container of ``pod``."""
    pod_sc = pod.get("securityContext") or {}
    found = []
    containers = [*pod.get("initContainers", []), *pod["containers"]]
    assert containers, where
    for c in containers:
        sc = c.get("securityContext") or {}

        def effective(key: str, sc: dict[str, Any] = sc) -> Any:
            return sc[key] if key in sc else pod_sc.get(key)

        checks = {
            "runAsNonRoot": effective("runAsNonRoot") is True,
            "readOnlyRootFilesystem": sc.get("readOnlyRootFilesystem") is True,
            "allowPrivilegeEscalation false": sc.get("allowPrivilegeEscalation") is False,
            "capabilities drop ALL": (sc.get("capabilities") or {}).get("drop") == ["ALL"]
            and not (sc.get("capabilities") or {}).get("add"),
            "seccompProfile RuntimeDefault": effective("seccompProfile") == {"type": "RuntimeDefault"},
            "not privileged": not sc.get("privileged", False),
            "no runAsUser 0": effective("runAsUser") != 0,
        }
        found += [f"{where} container {c['name']}: {name}" for name, ok in checks.items() if not ok]
    if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
        found.append(f"{where}: shares a host namespace")
    return found


@pytest.mark.parametrize(("name", "svc", "opts"), family(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_rendered_container_is_hardened(name: str, svc: InferenceService, opts: RenderOptions) -> None:
    pods = pod_specs(render_all(svc, opts).objects)
    assert pods, f"{name}: no workload rendered"
    assert [p for where, pod in pods for p in problems(where, pod)] == []


def test_the_family_covers_init_containers() -> None:
    inits = sum(
        len(pod.get("initContainers", []))
        for _, svc, opts in family()
        for _, pod in pod_specs(render_all(svc, opts).objects)
    )
    assert inits > 0  # a remote model renders the model-fetch init container, checked above like the server


@pytest.mark.parametrize(
    "path", sorted((ROOT / "deploy" / "kustomize").rglob("*.yaml")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_operator_manifests_are_hardened(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    pods = pod_specs(docs)
    assert [p for where, pod in pods for p in problems(f"{path.name} {where}", pod)] == []


def test_the_check_catches_a_weakened_container() -> None:
    [(where, pod)] = pod_specs(render_all(make_svc(), RenderOptions()).objects)
    assert problems(where, pod) == []
    pod["containers"][0]["securityContext"]["capabilities"] = {"drop": ["ALL"], "add": ["NET_ADMIN"]}
    pod["containers"][0]["securityContext"]["runAsNonRoot"] = False
    del pod["securityContext"]["seccompProfile"]
    pod["containers"][0]["securityContext"].pop("seccompProfile")
    assert {p.split(": ", 1)[1] for p in problems(where, pod)} == {
        "capabilities drop ALL",
        "runAsNonRoot",
        "seccompProfile RuntimeDefault",
    }
