"""A real Kubernetes control plane for the ``controlplane`` tests, and a kwok-style driver for what it lacks.

The session fixture ``control_plane`` uses the cluster in ``KUBECONFIG`` when one is set; otherwise it starts
``../shared/k8s/control-plane.sh`` (the real kube-apiserver, kube-controller-manager and kube-scheduler on
127.0.0.1, about 10 s) in a state folder and on ports of its own, so a developer's running control plane and a CI
run never collide, and stops it (``--clean``) at the end. Without either, the tests are skipped with that reason.

There is no kubelet: :class:`PodDriver` plays its part the way kwok does for large-scale tests -- it creates Node
objects with the capacity, labels and taints a test asks for, and marks the pods the real scheduler bound to them
Running and Ready through the status subresource.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from controlplane_kit import Kube, PodDriver, served, wait_for

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT.parent / "shared" / "k8s" / "control-plane.sh"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def control_plane() -> Iterator[str]:
    """The kubeconfig path of a real control plane (see the module docstring)."""
    if os.environ.get("KUBECONFIG"):
        yield os.environ["KUBECONFIG"]
        return
    if not SCRIPT.exists():
        pytest.skip(f"no KUBECONFIG and no {SCRIPT} to start a control plane with")
    home = Path(tempfile.mkdtemp(prefix="kubeinfer-k8s-"))
    env = {
        **os.environ,
        "KUBEINFER_K8S_HOME": str(home),
        "K8S_API_PORT": str(_free_port()),
        "K8S_ETCD_PORT": str(_free_port()),
        "K8S_KCM_PORT": str(_free_port()),
        "K8S_SCHED_PORT": str(_free_port()),
    }
    # The binaries are unpacked once per state folder (~15 s): share the default folder's when it has them.
    default_bin = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kubeinfer-k8s" / "bin"
    if default_bin.is_dir():
        (home / "bin").symlink_to(default_bin)
    try:
        out = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.fail("the control plane did not start within 300 s")
    if out.returncode != 0:
        pytest.fail(f"control-plane.sh start failed ({out.returncode}):\n{out.stderr[-3000:]}")
    kubeconfig = next(line.split("=", 1)[1] for line in out.stdout.splitlines() if line.startswith("KUBECONFIG="))
    try:
        yield kubeconfig
    finally:
        # SIGKILL, not the script's graceful stop (9-14 s, the API server draining): the state folder goes with it
        for pid_file in (home / "run").glob("*.pid"):
            with contextlib.suppress(ValueError, OSError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(autouse=True)
def _kubeconfig(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """KUBECONFIG for the control-plane tests only (for the code under test: ``connect()``, subprocesses); the rest
    of the session -- unit tests that expect no cluster -- never sees it."""
    if request.node.get_closest_marker("controlplane") is not None:
        monkeypatch.setenv("KUBECONFIG", request.getfixturevalue("control_plane"))


@pytest.fixture(scope="session")
def kube(control_plane: str) -> Kube:
    from kubernetes import client, config

    c = config.new_client_from_config(control_plane)
    return Kube(
        c,
        client.CoreV1Api(c),
        client.AppsV1Api(c),
        client.ApiextensionsV1Api(c),
        client.RbacAuthorizationV1Api(c),
        client.CustomObjectsApi(c),
        client.CoordinationV1Api(c),
    )


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    ns = f"ki-{uuid.uuid4().hex[:8]}"
    kube.core.create_namespace({"metadata": {"name": ns}})
    try:
        yield ns
    finally:
        with contextlib.suppress(Exception):
            kube.core.delete_namespace(ns)


@pytest.fixture(scope="session")
def crd_installed(kube: Kube) -> str:
    """The InferenceService CRD, installed (or updated) and Established; its name."""
    from kubernetes import client

    from kubeinfer.kube.crd import crd

    doc = crd()
    name = doc["metadata"]["name"]
    try:
        kube.ext.create_custom_resource_definition(doc)
    except client.ApiException as e:
        if e.status != 409:
            raise
        current = kube.ext.read_custom_resource_definition(name)
        doc["metadata"]["resourceVersion"] = current.metadata.resource_version
        kube.ext.replace_custom_resource_definition(name, doc)
    wait_for(
        "the CRD to be established",
        lambda: any(
            c.type == "Established" and c.status == "True"
            for c in (kube.ext.read_custom_resource_definition(name).status.conditions or [])
        ),
    )
    # Established can precede the resource being served for a moment.
    wait_for(
        "the CRD's resource to be served",
        lambda: served(kube),
    )
    return name


@pytest.fixture
def pods(kube: Kube) -> Iterator[PodDriver]:
    driver = PodDriver(kube)
    try:
        yield driver
    finally:
        driver.cleanup()
