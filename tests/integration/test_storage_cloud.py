"""Models fetched from Azure Blob Storage and Google Cloud Storage, as emulated by Azurite and fake-gcs-server on
127.0.0.1 (``cloud_servers.py``): ``az://``, ``abfs://`` and ``gs://`` URIs through the endpoint and credential
variables a user sets, verified, cached by content, and every failure one clear error naming the URI with nothing
half-written in the cache; ``kubeinfer serve`` and ``kubeinfer prepare`` with such a URI."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_servers import (
    Azurite,
    CuttingProxy,
    FakeGcs,
    azurite,
    azurite_missing,
    cutting_proxy,
    fake_gcs,
    fake_gcs_missing,
)
from kubeinfer.storage import StorageError, fetch
from storage_servers import cache_files

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def az() -> Iterator[Azurite]:
    problem = azurite_missing()
    if problem:
        pytest.skip(problem)
    with azurite() as server:
        yield server


@pytest.fixture(scope="module")
def gcs() -> Iterator[FakeGcs]:
    problem = fake_gcs_missing()
    if problem:
        pytest.skip(problem)
    with fake_gcs() as server:
        yield server


def service(tmp_path: Path, name: str, uri: str) -> Path:
    spec = tmp_path / "service.yaml"
    spec.write_text(
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\n"
        f"metadata: {{name: {name}}}\nspec:\n  model: {{format: onnx, uri: '{uri}'}}\n"
    )
    return spec


def kubeinfer(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubeinfer", *args], env=os.environ | env, capture_output=True, text=True, timeout=60
    )


def serve_ready(spec: Path, name: str, env: dict[str, str]) -> str:
    """Start ``kubeinfer serve`` on the spec, check that the model is ready, and return the replica's log."""
    from kubeinfer.testing import ServerProcess

    replica = ServerProcess(spec, ["--port", "0", "--no-grpc"], env=env).start()
    try:
        assert replica.get(f"/v2/models/{name}/ready")[0] == 200
        return replica.log()
    finally:
        replica.kill()


def assert_cut_downloads_resume(
    uri: str, data: bytes, env: dict[str, str], proxy: CuttingProxy, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One stream cut 8 times, then 3 ranged GETs in parallel cut 16 times among them: more than obstore's own
    retries of a body (3 a request as configured, so 12 for 3 parts), so kubeinfer's resume from the byte reached (a
    ranged GET pinned to the store's ETag with If-Match) is used too, and the bytes are the object's."""
    for concurrency, cuts in ((1, 8), (4, 16)):
        proxy.cuts, proxy.done = cuts, 0
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="kubeinfer.storage"):
            path = fetch(uri, cache / str(concurrency), env=env, concurrency=concurrency, retries=20, backoff=0.01)
        assert proxy.done == cuts and "resuming" in caplog.text, (concurrency, caplog.text)
        assert path.read_bytes() == data


# Azure Blob Storage (Azurite)


def test_an_az_blob_is_downloaded_verified_cached_and_not_downloaded_again(
    az: Azurite, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = os.urandom(3 << 20)
    uri = az.put("iris/model.onnx", data)
    seen: list[tuple[int, int]] = []
    path = fetch(uri, tmp_path, env=az.env(), progress=lambda d, t: seen.append((d, t)))
    assert path.name == "model.onnx" and path.read_bytes() == data
    assert (tmp_path / "blobs" / "sha256" / hashlib.sha256(data).hexdigest()).samefile(path)
    assert seen[-1] == (len(data), len(data))
    assert not any((tmp_path / "tmp").iterdir())
    with caplog.at_level(logging.INFO, logger="kubeinfer.storage"):
        assert fetch(uri, tmp_path, env=az.env()) == path
    assert "in the cache" in caplog.text and " bytes in " not in caplog.text
    # a blob replaced in the store is downloaded again
    az.put("iris/model.onnx", data[::-1])
    assert fetch(uri, tmp_path, env=az.env()).read_bytes() == data[::-1]


def test_an_abfs_folder_names_its_account_and_is_fetched_whole(az: Azurite, tmp_path: Path) -> None:
    """abfs://CONTAINER@ACCOUNT.dfs.core.windows.net/PATH takes the account from the URI, not the environment."""
    az.put("minilm/config.json", b"{}")
    az.put("minilm/onnx/model.onnx", b"graph")
    env = az.env() | {"AZURE_STORAGE_ACCOUNT_NAME": "someoneelse"}
    path = fetch(f"abfs://{az.container}@devstoreaccount1.dfs.core.windows.net/minilm", tmp_path, env=env)
    assert (path / "config.json").read_bytes() == b"{}" and (path / "onnx" / "model.onnx").read_bytes() == b"graph"


def test_a_wrong_azure_key_is_refused_with_the_uri_and_where_credentials_come_from(az: Azurite, tmp_path: Path) -> None:
    uri = az.put("auth/model.onnx", b"x")
    wrong = "A" * 86 + "=="  # a well-formed key that is not the account's
    with pytest.raises(StorageError) as e:
        fetch(uri, tmp_path, env=az.env(key=wrong))
    assert str(e.value).startswith(f"{uri}: access denied") and "AZURE_STORAGE_" in str(e.value)
    assert cache_files(tmp_path) == set()
    with pytest.raises(StorageError, match=rf"^{uri}: the store's settings in the environment were refused: .*Key"):
        fetch(uri, tmp_path, env=az.env(key="not a key"))


def test_a_missing_az_blob_is_an_error_naming_the_uri(az: Azurite, tmp_path: Path) -> None:
    uri = f"az://{az.container}/no/such/model.onnx"
    with pytest.raises(StorageError, match=rf"^{uri}: not found in the store"):
        fetch(uri, tmp_path, env=az.env())
    assert cache_files(tmp_path) == set()


def test_a_missing_az_container_is_not_found_naming_the_uri(az: Azurite, tmp_path: Path) -> None:
    uri = "az://nocontainer/model.onnx"
    with pytest.raises(StorageError, match=rf"^{uri}: not found in the store"):
        fetch(uri, tmp_path, env=az.env())
    assert cache_files(tmp_path) == set()


def test_an_az_sha256_mismatch_leaves_nothing_in_the_cache(az: Azurite, tmp_path: Path) -> None:
    data = b"weights" * 1000
    uri = az.put("sha/model.bin", data)
    with pytest.raises(StorageError, match=rf"^{uri}: checksum mismatch: model.sha256 is 0{{64}}"):
        fetch(uri, tmp_path, env=az.env(), sha256="0" * 64)
    assert cache_files(tmp_path) == set()
    good = hashlib.sha256(data).hexdigest()
    assert fetch(uri, tmp_path, env=az.env(), sha256=good).read_bytes() == data


def test_a_cut_az_download_is_resumed_against_the_blob_etag(
    az: Azurite, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = os.urandom(20 << 20)
    uri = az.put("cut/model.bin", data)
    with cutting_proxy(az.url) as proxy:
        env = az.env() | {"AZURE_STORAGE_ENDPOINT": f"{proxy.url}/devstoreaccount1"}
        assert_cut_downloads_resume(uri, data, env, proxy, tmp_path, caplog)


def test_an_az_blob_replaced_during_a_cut_download_is_refused_not_stitched(az: Azurite, tmp_path: Path) -> None:
    """The resumed GET is pinned to the ETag listed first: Azure answers 412 for the replaced blob, and the download
    fails naming the URI, leaving nothing in the cache, rather than joining the old blob's head to the new one's tail.
    (fake-gcs-server ignores If-Match, so this is tested against Azurite only.)"""
    uri = az.put("replaced/model.bin", os.urandom(20 << 20))
    with cutting_proxy(az.url) as proxy:
        proxy.cuts = 1
        proxy.on_cut = lambda: az.put("replaced/model.bin", os.urandom(20 << 20))
        env = az.env() | {"AZURE_STORAGE_ENDPOINT": f"{proxy.url}/devstoreaccount1"}
        for concurrency in (1, 4):
            proxy.cuts, proxy.done = 1, 0
            with pytest.raises(StorageError, match=rf"^{uri}: .*[Pp]recondition"):
                fetch(uri, tmp_path, env=env, concurrency=concurrency, backoff=0.01)
            assert proxy.done == 1
            assert cache_files(tmp_path) == set()
            uri = az.put("replaced/model.bin", os.urandom(20 << 20))


def test_serve_and_prepare_an_az_model_through_the_emulator_variables(
    az: Azurite, tmp_path: Path, examples: Path
) -> None:
    """AZURE_STORAGE_USE_EMULATOR with AZURITE_BLOB_STORAGE_URL, as Azure's tools take them: a replica serves the
    model, prepare loads it, and a missing blob is one line naming the field and the URI."""
    uri = az.put("served/model.onnx", (examples / "onnx" / "model.onnx").read_bytes())
    spec = service(tmp_path, "azure", uri)
    env = az.emulator_env() | {"KUBEINFER_MODEL_CACHE": str(tmp_path / "cache")}
    log = serve_ready(spec, "azure", env)
    assert f"{uri}: " in log and " bytes in " in log
    done = kubeinfer("prepare", str(spec), env=env)
    assert done.returncode == 0 and "azure: loaded" in done.stdout, done.stderr
    spec.write_text(spec.read_text().replace("served/model.onnx", "served/absent.onnx"))
    bad = kubeinfer("prepare", str(spec), env=env)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert f"spec.model.uri: az://{az.container}/served/absent.onnx: not found" in " ".join(bad.stderr.split())
    # a key the client cannot even use is one line too, not a traceback
    refused = kubeinfer("fetch", "--no-progress", uri, env=env | {"AZURE_STORAGE_ACCOUNT_KEY": "not a key"})
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"{uri}: the store's settings in the environment were refused" in " ".join(refused.stderr.split())


# Google Cloud Storage (fake-gcs-server)


def test_a_gs_object_is_downloaded_verified_cached_and_not_downloaded_again(
    gcs: FakeGcs, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = os.urandom(3 << 20)
    uri = gcs.put("iris/model.onnx", data)
    seen: list[tuple[int, int]] = []
    path = fetch(uri, tmp_path, env=gcs.env(), progress=lambda d, t: seen.append((d, t)))
    assert path.name == "model.onnx" and path.read_bytes() == data
    assert (tmp_path / "blobs" / "sha256" / hashlib.sha256(data).hexdigest()).samefile(path)
    assert seen[-1] == (len(data), len(data))
    assert not any((tmp_path / "tmp").iterdir())
    with caplog.at_level(logging.INFO, logger="kubeinfer.storage"):
        assert fetch(uri, tmp_path, env=gcs.env()) == path
    assert "in the cache" in caplog.text and " bytes in " not in caplog.text
    gcs.put("iris/model.onnx", data[::-1])
    assert fetch(uri, tmp_path, env=gcs.env()).read_bytes() == data[::-1]


def test_a_gs_folder_is_fetched_whole_with_a_service_account_file(gcs: FakeGcs, tmp_path: Path) -> None:
    """GOOGLE_SERVICE_ACCOUNT (a credentials file) with GOOGLE_BASE_URL, no STORAGE_EMULATOR_HOST."""
    gcs.put("minilm/config.json", b"{}")
    gcs.put("minilm/onnx/model.onnx", b"graph")
    env = gcs.service_account(tmp_path / "account.json")
    path = fetch(f"gs://{gcs.bucket}/minilm", tmp_path / "cache", env=env)
    assert (path / "config.json").read_bytes() == b"{}" and (path / "onnx" / "model.onnx").read_bytes() == b"graph"


def test_storage_emulator_host_without_a_scheme_is_plain_http(gcs: FakeGcs, tmp_path: Path) -> None:
    """HOST:PORT, as google-cloud-storage and gcloud also take STORAGE_EMULATOR_HOST."""
    uri = gcs.put("bare/model.bin", b"bare host")
    env = {"STORAGE_EMULATOR_HOST": gcs.url.removeprefix("http://")}
    assert fetch(uri, tmp_path, env=env).read_bytes() == b"bare host"


def test_a_broken_google_service_account_is_an_error_naming_the_uri(gcs: FakeGcs, tmp_path: Path) -> None:
    """fake-gcs-server checks no credentials, so what is tested is the client side: a service account file that is
    not one (or is missing) fails before any request, naming the URI and the file's problem."""
    uri = gcs.put("auth/model.onnx", b"x")
    (tmp_path / "account.json").write_text("not json")
    refused = rf"^{uri}: the store's settings in the environment were refused: .*service account file"
    with pytest.raises(StorageError, match=refused):
        fetch(uri, tmp_path / "cache", env={"GOOGLE_SERVICE_ACCOUNT": str(tmp_path / "account.json")})
    with pytest.raises(StorageError, match=refused):
        fetch(uri, tmp_path / "cache", env={"GOOGLE_SERVICE_ACCOUNT": str(tmp_path / "absent.json")})
    assert cache_files(tmp_path / "cache") == set()


def test_a_missing_gs_object_is_an_error_naming_the_uri(gcs: FakeGcs, tmp_path: Path) -> None:
    uri = f"gs://{gcs.bucket}/no/such/model.onnx"
    with pytest.raises(StorageError, match=rf"^{uri}: not found in the store"):
        fetch(uri, tmp_path, env=gcs.env())
    assert cache_files(tmp_path) == set()


def test_a_missing_gs_bucket_is_an_error_naming_the_uri(gcs: FakeGcs, tmp_path: Path) -> None:
    uri = "gs://nobucket/model.onnx"
    with pytest.raises(StorageError, match=rf"^{uri}: (not found in the store|.*no such bucket)"):
        fetch(uri, tmp_path, env=gcs.env())
    assert cache_files(tmp_path) == set()


def test_a_gs_sha256_mismatch_leaves_nothing_in_the_cache(gcs: FakeGcs, tmp_path: Path) -> None:
    data = b"weights" * 1000
    uri = gcs.put("sha/model.bin", data)
    with pytest.raises(StorageError, match=rf"^{uri}: checksum mismatch: model.sha256 is 0{{64}}"):
        fetch(uri, tmp_path, env=gcs.env(), sha256="0" * 64)
    assert cache_files(tmp_path) == set()
    good = hashlib.sha256(data).hexdigest()
    assert fetch(uri, tmp_path, env=gcs.env(), sha256=good).read_bytes() == data


def test_a_cut_gs_download_is_resumed(gcs: FakeGcs, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = os.urandom(20 << 20)
    uri = gcs.put("cut/model.bin", data)
    with cutting_proxy(gcs.url) as proxy:
        assert_cut_downloads_resume(uri, data, {"STORAGE_EMULATOR_HOST": proxy.url}, proxy, tmp_path, caplog)


def test_serve_and_prepare_a_gs_model_through_storage_emulator_host(
    gcs: FakeGcs, tmp_path: Path, examples: Path
) -> None:
    uri = gcs.put("served/model.onnx", (examples / "onnx" / "model.onnx").read_bytes())
    spec = service(tmp_path, "google", uri)
    env = gcs.env() | {"KUBEINFER_MODEL_CACHE": str(tmp_path / "cache")}
    log = serve_ready(spec, "google", env)
    assert f"{uri}: " in log and " bytes in " in log
    done = kubeinfer("prepare", str(spec), env=env)
    assert done.returncode == 0 and "google: loaded" in done.stdout, done.stderr
    spec.write_text(spec.read_text().replace("served/model.onnx", "served/absent.onnx"))
    bad = kubeinfer("prepare", str(spec), env=env)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert f"spec.model.uri: gs://{gcs.bucket}/served/absent.onnx: not found" in " ".join(bad.stderr.split())
