"""API keys and TLS on a cluster: ``server.auth.apiKeysSecret`` and ``server.tls.secretName`` become read-only Secret
volumes whose files the server reads (and reloads when the kubelet swaps in a rotated Secret), probes and scrapes
over HTTPS, Service ports named for what they speak."""

from __future__ import annotations

import os
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID
from test_kube_render import assert_valid, by_kind, container

from certs import self_signed_pem
from conftest import make_svc
from kubeinfer.kube.render import SUPPORTED_VERSIONS, RenderOptions, render, render_all
from kubeinfer.server import auth as server_auth
from kubeinfer.server import tls as server_tls
from kubeinfer.server.auth import ApiKeys
from kubeinfer.server.errors import Unauthorized
from kubeinfer.server.runner import api_keys, cert_files
from kubeinfer.spec import loads_spec
from kubeinfer.spec.load import SpecError
from kubeinfer.spec.service import SECRET_MOUNT

SECURED: dict[str, Any] = {
    "server": {"tls": {"secretName": "svc-tls"}, "auth": {"apiKeysSecret": {"name": "svc-keys", "key": "keys.txt"}}}
}


def pod(objs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = by_kind(objs, "Deployment")["spec"]["template"]["spec"]
    return spec


def served_spec(objs: list[dict[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(by_kind(objs, "ConfigMap")["data"]["service.yaml"])
    return doc


def mounted_files(objs: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """Path in the container -> (Secret, key), from the Deployment's Secret volumes and the server's mounts."""
    mounts = {m["name"]: m for m in container(objs)["volumeMounts"]}
    out: dict[str, tuple[str, str]] = {}
    for v in pod(objs)["volumes"]:
        if "secret" in v:
            m = mounts[v["name"]]
            assert m["readOnly"] is True and "subPath" not in m  # a subPath mount is never updated by the kubelet
            for item in v["secret"]["items"]:
                out[f"{m['mountPath']}/{item['path']}"] = (v["secret"]["secretName"], item["key"])
    return out


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_secrets_become_read_only_volumes_the_served_spec_points_at(version: str) -> None:
    objs = render(make_svc(**SECURED), RenderOptions(target_version=version))
    assert_valid(objs, version)
    files = mounted_files(objs)
    server = served_spec(objs)["spec"]["server"]
    assert server["tls"] == {"certFile": f"{SECRET_MOUNT}/tls/tls.crt", "keyFile": f"{SECRET_MOUNT}/tls/tls.key"}
    assert server["auth"] == {"apiKeysFile": f"{SECRET_MOUNT}/auth/api-keys"}
    assert files == {
        server["tls"]["certFile"]: ("svc-tls", "tls.crt"),
        server["tls"]["keyFile"]: ("svc-tls", "tls.key"),
        server["auth"]["apiKeysFile"]: ("svc-keys", "keys.txt"),
    }
    for v in pod(objs)["volumes"]:
        if "secret" in v:
            assert v["secret"]["defaultMode"] == 0o440  # the pod's fsGroup (the server's group) reads, others do not
    assert pod(objs)["securityContext"]["fsGroup"] == container(objs)["securityContext"]["runAsGroup"]


def test_without_secrets_nothing_is_mounted_and_probes_stay_http() -> None:
    objs = render(make_svc())
    assert not mounted_files(objs)
    c = container(objs)
    assert {c[p]["httpGet"]["scheme"] for p in ("startupProbe", "readinessProbe", "livenessProbe")} == {"HTTP"}
    assert "prometheus.io/scheme" not in by_kind(objs, "Deployment")["spec"]["template"]["metadata"]["annotations"]


@pytest.mark.parametrize(
    "tls",
    [{"secretName": "svc-tls"}, {"certFile": "/etc/certs/tls.crt", "keyFile": "/etc/certs/tls.key"}],
    ids=["secret", "files"],
)
def test_with_tls_probes_scrapes_and_service_ports_say_https(tls: dict[str, str]) -> None:
    objs = render(make_svc(server={"tls": tls}))
    assert_valid(objs, SUPPORTED_VERSIONS[-1])
    c = container(objs)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["scheme"] == "HTTPS", probe
        assert "grpc" not in c[probe]  # the kubelet's gRPC probe has no TLS: the probes stay HTTP(S) GETs
    ports = by_kind(objs, "Service")["spec"]["ports"]
    assert [(p["name"], p["targetPort"], p["appProtocol"]) for p in ports] == [
        ("https", "http", "https"),
        ("grpc-tls", "grpc", "https"),  # not kubernetes.io/h2c: that is cleartext HTTP/2
    ]
    [endpoint] = by_kind(objs, "ServiceMonitor")["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["scheme"]) == ("https", "https")
    assert endpoint["tlsConfig"] == {"insecureSkipVerify": True}
    annotations = by_kind(objs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scheme"] == "https"
    # The container ports keep their names: the probes and the NetworkPolicy refer to them.
    assert [p["name"] for p in c["ports"]] == ["http", "grpc"]
    assert [p["port"] for p in by_kind(objs, "NetworkPolicy")["spec"]["ingress"][0]["ports"]] == ["http", "grpc"]


def test_tls_without_grpc_has_one_https_port() -> None:
    objs = render(make_svc(server={"grpcPort": None, "tls": {"secretName": "svc-tls"}}))
    assert [p["name"] for p in by_kind(objs, "Service")["spec"]["ports"]] == ["https"]


def test_files_and_policies_that_need_more_are_noted() -> None:
    r = render_all(
        make_svc(
            server={"tls": {"certFile": "c.crt", "keyFile": "c.key"}, "auth": {"apiKeysFile": "keys.txt"}},
            autoscaling={"policy": "kpa", "maxReplicas": 3},
        )
    )
    text = "\n".join(r.notes)
    assert "server.tls.certFile 'c.crt'" in text and "server.tls.secretName" in text
    assert "server.auth.apiKeysFile 'keys.txt'" in text and "server.auth.apiKeysSecret" in text
    assert "policy kpa" in text and "plain HTTP" in text
    assert not [n for n in render_all(make_svc(**SECURED)).notes if "server." in n]


def test_a_new_secret_name_rolls_the_pods() -> None:
    def template(**kw: Any) -> dict[str, Any]:
        t: dict[str, Any] = by_kind(render(make_svc(**kw)), "Deployment")["spec"]["template"]
        return t

    assert template(server={"tls": {"secretName": "a"}}) != template(server={"tls": {"secretName": "b"}})
    assert template(server={"tls": {"secretName": "a"}}) != template()


@pytest.mark.parametrize(
    ("server", "field", "words"),
    [
        (
            {"tls": {"certFile": "a.crt", "keyFile": "a.key", "secretName": "t"}},
            "spec.server.tls",
            "certFile/keyFile and secretName both set",
        ),
        (
            {"auth": {"apiKeysFile": "k", "apiKeysSecret": {"name": "k"}}},
            "spec.server.auth",
            "apiKeysFile and apiKeysSecret both set",
        ),
        ({"tls": {"secretName": "Not_A_Name"}}, "spec.server.tls.secretName", "should match pattern"),
        ({"auth": {"apiKeysSecret": {"key": "k"}}}, "spec.server.auth.apiKeysSecret.name", "required"),
        ({"auth": {"apiKeysSecret": {"name": "k", "key": "a/b"}}}, "spec.server.auth.apiKeysSecret.key", "pattern"),
    ],
)
def test_bad_combinations_name_the_field(server: dict[str, Any], field: str, words: str) -> None:
    text = yaml.safe_dump(
        {
            "apiVersion": "kubeinfer.io/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": "svc"},
            "spec": {"model": {"format": "sklearn", "uri": "./m.joblib"}, "server": server},
        }
    )
    with pytest.raises(SpecError) as e:
        loads_spec(text, "svc.yaml")
    message = str(e.value)
    assert f"{field}:" in message and words in message, message


# ---------------------------------------------------------------------------------------------------------------
# A rotated Secret reaches the server. The kubelet writes a Secret volume as its AtomicWriter does: the data in a
# timestamped folder, ``..data`` a symlink to it, each file a symlink through ``..data``; an update writes a new
# folder and renames a new ``..data`` over the old one (one atomic step). Done here on a temporary folder, the
# server's own loaders read the paths the rendered spec gives them.


def served_name(context: ssl.SSLContext) -> str:
    """The common name of the certificate a TLS handshake with ``context`` presents (over a socket pair)."""
    server_end, client_end = socket.socketpair()
    client = ssl.create_default_context()
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    done = threading.Thread(target=lambda: context.wrap_socket(server_end, server_side=True).close())
    done.start()
    with client.wrap_socket(client_end) as c:
        der = c.getpeercert(binary_form=True)
    done.join(timeout=10)
    assert der is not None
    [cn] = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cn.value)


class SecretVolume:
    """One Secret volume as the kubelet writes it (``items`` given: each key at its path)."""

    def __init__(self, folder: Path, items: list[dict[str, str]]) -> None:
        self.folder, self.items, self.version = folder, items, 0
        folder.mkdir(parents=True)

    def write(self, data: dict[str, bytes]) -> None:
        self.version += 1
        stamp = f"..2026_12_05_00_00_{self.version:02d}.{self.version}"
        (self.folder / stamp).mkdir()
        for item in self.items:
            (self.folder / stamp / item["path"]).write_bytes(data[item["key"]])
        old = (self.folder / "..data").resolve() if (self.folder / "..data").exists() else None
        os.symlink(stamp, self.folder / "..data_tmp")
        os.rename(self.folder / "..data_tmp", self.folder / "..data")
        for item in self.items:
            link = self.folder / item["path"]
            if not link.is_symlink():
                os.symlink(f"..data/{item['path']}", link)
        if old is not None:
            for f in old.iterdir():
                f.unlink()
            old.rmdir()


def test_a_rotated_secret_is_picked_up_by_the_server_s_reload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    objs = render(make_svc(**SECURED))
    root = tmp_path / "pod"
    # The served spec and the mounts, with the container's SECRET_MOUNT moved under tmp_path.
    spec_text = by_kind(objs, "ConfigMap")["data"]["service.yaml"].replace(SECRET_MOUNT, f"{root}{SECRET_MOUNT}")
    svc = loads_spec(spec_text)
    mounts = {m["name"]: m["mountPath"] for m in container(objs)["volumeMounts"]}
    volumes: dict[str, SecretVolume] = {}
    for v in pod(objs)["volumes"]:
        if "secret" in v:
            volumes[v["secret"]["secretName"]] = SecretVolume(Path(f"{root}{mounts[v['name']]}"), v["secret"]["items"])

    first, second = self_signed_pem("first"), self_signed_pem("second")
    volumes["svc-tls"].write({"tls.crt": first[0], "tls.key": first[1]})
    volumes["svc-keys"].write({"keys.txt": b"old-key\n"})

    certs = cert_files(svc, None)
    keys = api_keys(svc, None)
    assert certs is not None and isinstance(keys, ApiKeys)
    keys.check(b"Bearer old-key")

    volumes["svc-tls"].write({"tls.crt": second[0], "tls.key": second[1]})
    volumes["svc-keys"].write({"keys.txt": b"new-key 5\n"})
    monkeypatch.setattr(server_tls, "RECHECK_SECONDS", 0.0)
    assert served_name(certs.context) == "first"
    assert certs.reload()  # the files behind the same paths changed: the new pair is served
    assert served_name(certs.context) == "second"
    monkeypatch.setattr(server_auth, "RECHECK_SECONDS", 0.0)
    keys.check(b"Bearer new-key")
    with pytest.raises(Unauthorized):
        keys.check(b"Bearer old-key")


def test_secrets_alone_on_this_machine_serve_in_the_clear_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    # The Secrets are mounted only by Kubernetes; kubeinfer serve / up say so instead of silently dropping them.
    svc = make_svc(**SECURED)
    with caplog.at_level("WARNING", logger="kubeinfer.server"):
        assert cert_files(svc, None) is None
        assert api_keys(svc, None) is None
    text = caplog.text
    assert "spec.server.tls.secretName 'svc-tls' is mounted only on Kubernetes" in text
    assert "spec.server.auth.apiKeysSecret is mounted only on Kubernetes" in text
