"""Models fetched from a real S3-compatible server (moto, authentication on) and a real HTTP server on 127.0.0.1:
verified, cached by content, not downloaded twice, resumed after a cut, and every failure a clear error naming the
URI with nothing half-written in the cache."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeinfer.storage import StorageError, fetch
from storage_servers import HttpFiles, S3Server, as_s3_object, cache_files, http_server, s3_server

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


@pytest.fixture
def files(tmp_path: Path) -> Iterator[HttpFiles]:
    (tmp_path / "served").mkdir()
    with http_server(tmp_path / "served") as server:
        yield server


def put(s3: S3Server, key: str, data: bytes) -> str:
    return s3.put(key, data)


def test_an_s3_object_is_downloaded_verified_and_cached_by_content(s3: S3Server, tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    uri = put(s3, "iris/model.onnx", data)
    seen: list[tuple[int, int]] = []
    path = fetch(uri, tmp_path / "cache", env=s3.env(), progress=lambda d, t: seen.append((d, t)))
    assert path.name == "model.onnx" and path.read_bytes() == data
    digest = hashlib.sha256(data).hexdigest()
    assert (tmp_path / "cache" / "blobs" / "sha256" / digest).samefile(path)  # a hard link to the content
    assert seen[-1] == (len(data), len(data))
    assert not any((tmp_path / "cache" / "tmp").iterdir())
    # the same bytes under another name share the blob
    again = fetch(put(s3, "copy/model.onnx", data), tmp_path / "cache", env=s3.env())
    assert again.samefile(path)


def test_an_s3_folder_is_fetched_whole_with_its_layout(s3: S3Server, tmp_path: Path) -> None:
    put(s3, "minilm/config.json", b"{}")
    put(s3, "minilm/onnx/model.onnx", b"graph")
    path = fetch(f"s3://{s3.bucket}/minilm", tmp_path, env=s3.env())
    assert (path / "config.json").read_bytes() == b"{}" and (path / "onnx" / "model.onnx").read_bytes() == b"graph"


def test_a_model_sha256_is_checked(s3: S3Server, tmp_path: Path) -> None:
    data = b"weights" * 1000
    uri = put(s3, "sha/model.bin", data)
    good = hashlib.sha256(data).hexdigest()
    assert fetch(uri, tmp_path, env=s3.env(), sha256=good).read_bytes() == data
    with pytest.raises(StorageError) as e:
        fetch(put(s3, "sha/other.bin", data + b"!"), tmp_path, env=s3.env(), sha256=good)
    assert str(e.value).startswith(f"s3://{s3.bucket}/sha/other.bin: checksum mismatch")
    assert not any((tmp_path / "tmp").iterdir())
    assert not (tmp_path / "refs" / f"{hashlib.sha256(b's3://models/sha/other.bin').hexdigest()}.json").exists()


def test_wrong_credentials_are_refused_with_the_uri_and_where_credentials_come_from(
    s3: S3Server, tmp_path: Path
) -> None:
    uri = put(s3, "auth/model.onnx", b"x")
    with pytest.raises(StorageError) as e:
        fetch(uri, tmp_path, env=s3.env(secret="wrong"))
    message = str(e.value)
    assert message.startswith(f"{uri}: access denied") and "AWS_ACCESS_KEY_ID" in message
    assert cache_files(tmp_path) == set()


def test_a_missing_object_is_an_error_naming_the_uri(s3: S3Server, tmp_path: Path) -> None:
    uri = f"s3://{s3.bucket}/no/such/model.onnx"
    with pytest.raises(StorageError, match=r"^s3://models/no/such/model.onnx: not found"):
        fetch(uri, tmp_path, env=s3.env())
    assert cache_files(tmp_path) == set()


def test_the_cli_fetches_into_a_folder_and_fails_in_one_line(s3: S3Server, tmp_path: Path) -> None:
    uri = put(s3, "cli/iris.onnx", b"onnx-bytes")
    env = os.environ | s3.env() | {"KUBEINFER_MODEL_CACHE": str(tmp_path / "cache")}
    run = [sys.executable, "-m", "kubeinfer", "fetch", "--no-progress"]
    done = subprocess.run([*run, uri, "--to", str(tmp_path / "models")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "models" / "iris.onnx").read_bytes() == b"onnx-bytes"
    bad = subprocess.run([*run, f"s3://{s3.bucket}/cli/nope.onnx"], env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "s3://models/cli/nope.onnx: not found" in " ".join(bad.stderr.split())


def test_an_http_model_is_cached_and_not_downloaded_again(files: HttpFiles, tmp_path: Path) -> None:
    data = os.urandom(1 << 20)
    (files.root / "model.onnx").write_bytes(data)
    uri = f"{files.url}/model.onnx"
    first = fetch(uri, tmp_path / "cache")
    second = fetch(uri, tmp_path / "cache")
    assert first == second and second.read_bytes() == data
    assert files.gets == ["/model.onnx"]  # the second fetch only asked for the size (HEAD)


def test_replicas_fetching_at_once_download_once(files: HttpFiles, tmp_path: Path) -> None:
    (files.root / "model.onnx").write_bytes(os.urandom(4 << 20))
    uri = f"{files.url}/model.onnx"
    paths: list[Path] = []
    threads = [threading.Thread(target=lambda: paths.append(fetch(uri, tmp_path / "cache"))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(paths)) == 1 and files.gets == ["/model.onnx"]


def test_a_cut_download_is_resumed_from_where_it_stopped(files: HttpFiles, tmp_path: Path) -> None:
    data = os.urandom(2 << 20)
    (files.root / "model.onnx").write_bytes(data)
    files.truncate["/model.onnx"] = 1  # the first response ends halfway
    path = fetch(f"{files.url}/model.onnx", tmp_path / "cache", backoff=0.01)
    assert path.read_bytes() == data and len(files.gets) == 2


def test_a_download_that_keeps_being_cut_fails_and_leaves_nothing(files: HttpFiles, tmp_path: Path) -> None:
    (files.root / "model.onnx").write_bytes(os.urandom(1 << 20))
    files.truncate["/model.onnx"] = -1
    uri = f"{files.url}/model.onnx"
    with pytest.raises(StorageError) as e:
        fetch(uri, tmp_path / "cache", retries=2, backoff=0.01)
    assert str(e.value).startswith(f"{uri}: download failed after 3 tries") and "truncated" in str(e.value)
    assert cache_files(tmp_path / "cache") == set()


def test_an_http_404_and_a_checksum_mismatch_are_clear(files: HttpFiles, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"nope\.onnx: not found"):
        fetch(f"{files.url}/nope.onnx", tmp_path / "cache")
    (files.root / "m.bin").write_bytes(b"abc")
    with pytest.raises(StorageError, match=r"m.bin: checksum mismatch: model.sha256 is 0{64}"):
        fetch(f"{files.url}/m.bin", tmp_path / "cache", sha256="0" * 64)
    assert cache_files(tmp_path / "cache") == set()


def test_an_unreachable_store_falls_back_to_the_cached_copy(tmp_path: Path) -> None:
    root = tmp_path / "served"
    root.mkdir()
    (root / "m.bin").write_bytes(b"cached")
    with http_server(root) as files:
        uri = f"{files.url}/m.bin"
        path = fetch(uri, tmp_path / "cache")
    assert fetch(uri, tmp_path / "cache", retries=0) == path  # the server is gone


def test_a_local_path_is_returned_as_it_is_and_checked(tmp_path: Path) -> None:
    (tmp_path / "m.bin").write_bytes(b"abc")
    assert fetch("m.bin", tmp_path / "cache", base_dir=tmp_path) == tmp_path / "m.bin"
    assert fetch(f"file://{tmp_path}/m.bin", sha256=hashlib.sha256(b"abc").hexdigest()) == tmp_path / "m.bin"
    with pytest.raises(StorageError, match="checksum mismatch"):
        fetch(str(tmp_path / "m.bin"), sha256="1" * 64)
    with pytest.raises(StorageError, match="ftp:// is not a storage kubeinfer reads"):
        fetch("ftp://h/m.bin")


def test_a_replica_serves_a_model_from_s3_and_a_second_one_starts_from_the_cache(
    s3: S3Server, tmp_path: Path, examples: Path
) -> None:
    from kubeinfer.testing import ServerProcess

    uri = put(s3, "replica/model.onnx", (examples / "onnx" / "model.onnx").read_bytes())
    spec = tmp_path / "service.yaml"
    spec.write_text(
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: remote}\n"
        f"spec:\n  model: {{format: onnx, uri: '{uri}'}}\n"
    )
    env = s3.env() | {"KUBEINFER_MODEL_CACHE": str(tmp_path / "cache")}
    first = ServerProcess(spec, ["--port", "0", "--no-grpc"], env=env).start()
    try:
        assert first.get("/v2/models/remote/ready")[0] == 200
        assert "s3://models/replica/model.onnx: " in first.log() and " bytes in " in first.log()
    finally:
        first.kill()
    second = ServerProcess(spec, ["--port", "0", "--no-grpc"], env=env).start()
    try:
        assert second.get("/v2/models/remote/ready")[0] == 200
        assert "in the cache" in second.log() and " bytes in " not in second.log()
    finally:
        second.kill()


def test_build_bakes_a_remote_model_into_the_image_context(
    files: HttpFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    from kubeinfer.kube.build import build_context
    from kubeinfer.kube.names import MODEL_DIR
    from kubeinfer.spec import validate_spec

    monkeypatch.setenv("KUBEINFER_MODEL_CACHE", str(tmp_path / "cache"))
    (files.root / "iris.onnx").write_bytes(b"graph")
    doc = {
        "apiVersion": "kubeinfer.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "baked"},
        "spec": {"model": {"format": "onnx", "uri": f"{files.url}/iris.onnx"}},
    }
    ctx = build_context(validate_spec(doc), tmp_path, tmp_path / "ctx")
    assert (ctx.path / "model" / "iris.onnx").read_bytes() == b"graph"
    baked = yaml.safe_load((ctx.path / "service.yaml").read_text())
    assert baked["spec"]["model"]["uri"] == f"{MODEL_DIR}/iris.onnx"


def test_prepare_fetches_and_loads_a_model_from_s3(s3: S3Server, tmp_path: Path, examples: Path) -> None:
    uri = put(s3, "prepare/model.onnx", (examples / "onnx" / "model.onnx").read_bytes())
    spec = tmp_path / "service.yaml"
    spec.write_text(
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: prepared}\n"
        f"spec:\n  model: {{format: onnx, uri: '{uri}'}}\n"
    )
    env = os.environ | s3.env() | {"KUBEINFER_MODEL_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-m", "kubeinfer", "prepare", str(spec)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0 and "prepared: loaded" in done.stdout, done.stderr
    spec.write_text(spec.read_text().replace("prepare/model.onnx", "prepare/absent.onnx"))
    bad = subprocess.run(
        [sys.executable, "-m", "kubeinfer", "prepare", str(spec)], env=env, capture_output=True, text=True
    )
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "spec.model.uri: s3://models/prepare/absent.onnx: not found" in " ".join(bad.stderr.split())


def test_credentials_from_an_aws_shared_profile(s3: S3Server, tmp_path: Path) -> None:
    """Without keys in the environment, AWS_PROFILE's section of ~/.aws/credentials is used, as the AWS CLI does."""
    uri = put(s3, "profile/model.onnx", b"from a profile")
    (tmp_path / "home" / ".aws").mkdir(parents=True)
    (tmp_path / "home" / ".aws" / "credentials").write_text(
        f"[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n"
        f"[models]\naws_access_key_id = {s3.key}\naws_secret_access_key = {s3.secret}\n"
    )
    (tmp_path / "home" / ".aws" / "config").write_text(
        f"[profile models]\nregion = us-east-1\nendpoint_url = {s3.endpoint}\n"
    )
    env = {"HOME": str(tmp_path / "home"), "AWS_PROFILE": "models"}
    assert fetch(uri, tmp_path / "cache", env=env).read_bytes() == b"from a profile"
    with pytest.raises(StorageError, match="access denied"):
        fetch(uri, tmp_path / "cache2", env=env | {"AWS_PROFILE": "default", "AWS_ENDPOINT_URL": s3.endpoint})


def test_an_etag_that_is_not_the_md5_is_accepted_when_two_downloads_agree(files: HttpFiles, tmp_path: Path) -> None:
    """As an SSE-KMS object's ETag: the bytes are downloaded twice, and kept when both have the same SHA-256."""
    from kubeinfer.storage.fetch import _download_checked

    (files.root / "kms.bin").write_bytes(b"encrypted at rest")
    files.etags["/kms.bin"] = '"' + "0" * 32 + '"'
    opened, obj, cache = as_s3_object(files, "kms.bin", tmp_path / "cache")
    digest = _download_checked("s3://test/kms.bin", opened, obj, cache, None, lambda _: None, 0, 0.01)  # type: ignore[arg-type]
    assert digest == hashlib.sha256(b"encrypted at rest").hexdigest() and files.gets == ["/kms.bin"] * 2


def test_a_transfer_that_does_not_match_the_md5_twice_differently_is_refused(files: HttpFiles, tmp_path: Path) -> None:
    from kubeinfer.storage.fetch import _download_checked

    data = b"weights" * 100
    (files.root / "m.bin").write_bytes(data)
    files.etags["/m.bin"] = '"' + hashlib.md5(data).hexdigest() + '"'
    files.corrupt.add("/m.bin")  # the first GET's bytes are damaged, the second's are right: that one is kept
    opened, obj, cache = as_s3_object(files, "m.bin", tmp_path / "cache")
    digest = _download_checked("s3://test/m.bin", opened, obj, cache, None, lambda _: None, 0, 0.01)  # type: ignore[arg-type]
    assert digest == hashlib.sha256(data).hexdigest()
    files.etags["/m.bin"] = '"' + "1" * 32 + '"'  # now neither download matches, and they differ
    files.gets.clear()
    opened, obj, cache = as_s3_object(files, "m.bin", tmp_path / "cache")
    with pytest.raises(
        StorageError, match=r"checksum mismatch: the store's MD5 \(ETag\) is 1{32}.*two downloads differ"
    ):
        _download_checked("s3://test/m.bin", opened, obj, cache, None, lambda _: None, 0, 0.01)  # type: ignore[arg-type]
    assert not any((tmp_path / "cache" / "tmp").iterdir())


def _infer_zeros(server: object, name: str) -> int:
    """One request of zeros shaped as the model's first input says; the status."""
    import json

    meta = json.loads(server.get(f"/v2/models/{name}")[1])  # type: ignore[attr-defined]
    first = meta["inputs"][0]
    width = first["shape"][-1]
    body = {
        "inputs": [{"name": first["name"], "shape": [1, width], "datatype": first["datatype"], "data": [0] * width}]
    }
    status, _, out = server.post(f"/v2/models/{name}/infer", json.dumps(body).encode())  # type: ignore[attr-defined]
    assert status == 200, out
    return int(status)


def test_every_entry_of_spec_models_is_fetched_from_s3_and_served(s3: S3Server, tmp_path: Path, examples: Path) -> None:
    """spec.models with two s3:// entries (a file with sha256, a folder of versions): both fetched into the cache and
    served; a load fetches again and serves a version added to the store; a missing object in the second entry stops
    serve, up and prepare with an error naming spec.models[1].uri."""
    from kubeinfer.testing import ServerProcess

    iris = (examples / "iris" / "model.joblib").read_bytes()
    iris_uri = put(s3, "multi/iris/model.joblib", iris)
    onnx = (examples / "onnx" / "model.onnx").read_bytes()
    put(s3, "multi/tab/1/model.onnx", onnx)  # a folder of versions
    tab_uri = "s3://models/multi/tab"
    spec = tmp_path / "service.yaml"
    spec.write_text(
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: multi}\nspec:\n  models:\n"
        f"  - {{name: iris, format: sklearn, uri: '{iris_uri}', sha256: {hashlib.sha256(iris).hexdigest()}}}\n"
        f"  - {{name: tab, format: onnx, uri: '{tab_uri}'}}\n"
    )
    env = s3.env() | {"KUBEINFER_MODEL_CACHE": str(tmp_path / "cache")}
    server = ServerProcess(spec, ["--port", "0", "--no-grpc"], env=env).start()
    try:
        assert _infer_zeros(server, "iris") == 200 and _infer_zeros(server, "tab") == 200
        log = server.log()
        assert "s3://models/multi/iris/model.joblib: " in log and "s3://models/multi/tab: " in log
        assert server.get("/v2/models/tab/versions/2/ready")[0] != 200
        put(s3, "multi/tab/2/model.onnx", onnx)  # a new version in the store: a load fetches it and serves it
        status, _, body = server.post("/v2/repository/models/tab/load", b"")
        assert status == 200, body
        assert server.get("/v2/models/tab/versions/2/ready")[0] == 200 and _infer_zeros(server, "tab") == 200
    finally:
        server.kill()
    assert {p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()} >= {"model.joblib", "model.onnx"}

    spec.write_text(spec.read_text().replace("multi/tab'", "multi/absent.onnx'"))
    want = "spec.models[1].uri: s3://models/multi/absent.onnx: not found"
    for command in (["serve", str(spec), "--port", "0", "--no-grpc"], ["up", str(spec)], ["prepare", str(spec)]):
        done = subprocess.run(
            [sys.executable, "-m", "kubeinfer", *command],
            env=os.environ | env | {"KUBEINFER_HOME": str(tmp_path / "home")},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode != 0 and "Traceback" not in done.stderr, (command, done.stderr)
        assert want in " ".join(done.stderr.split()), (command, done.stderr)
