"""Models fetched from two more S3-compatible servers beside moto (``storage_servers.py``): s3rver (Node.js) and
SeaweedFS (Go): one stream and ranged GETs in parallel, verified by the ETag's MD5, cached by content and not
downloaded again; a missing object, a missing bucket, an unknown access key and (SeaweedFS, which checks V4
signatures) a wrong secret are one clear error naming the URI with nothing left in the cache."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeinfer.storage import StorageError, fetch, transfer
from storage_servers import WEED_KEY, S3Server, cache_files, s3rver, s3rver_missing, seaweedfs, seaweedfs_missing

pytestmark = pytest.mark.integration


SERVERS = {"s3rver": (s3rver, s3rver_missing), "seaweedfs": (seaweedfs, seaweedfs_missing)}


@pytest.fixture(scope="module", params=sorted(SERVERS))
def s3(request: pytest.FixtureRequest) -> Iterator[S3Server]:
    start, missing = SERVERS[request.param]
    problem = missing()
    if problem:
        pytest.skip(problem)
    with start() as server:
        yield server


@pytest.mark.parametrize("concurrency", [1, 4])
def test_an_object_is_fetched_verified_by_its_etag_md5_and_cached(
    s3: S3Server, tmp_path: Path, caplog: pytest.LogCaptureFixture, concurrency: int
) -> None:
    import obstore

    from kubeinfer.storage.stores import open_store

    # three parts and a short last one when fetched in parallel
    data = os.urandom(2 * transfer.PART_SIZE + 12345)
    uri = s3.put(f"ranged-{concurrency}/model.bin", data)
    opened = open_store(uri, s3.env())
    assert obstore.head(opened.store, opened.path)["e_tag"] == f'"{hashlib.md5(data).hexdigest()}"'
    ranged = obstore.get(opened.store, opened.path, options={"range": (5, 70000)})
    assert bytes(ranged.bytes()) == data[5:70000]  # the server answers a range with that range

    cache = tmp_path / "cache"
    with caplog.at_level(logging.INFO, logger="kubeinfer.storage"):
        path = fetch(uri, cache, env=s3.env(), concurrency=concurrency)
        assert path.read_bytes() == data
        assert (cache / "blobs" / "sha256" / hashlib.sha256(data).hexdigest()).samefile(path)
        assert not any((cache / "tmp").iterdir())
        caplog.clear()
        assert fetch(uri, cache, env=s3.env(), concurrency=concurrency).samefile(path)
    assert any("in the cache" in r.getMessage() for r in caplog.records)
    assert not any(" bytes in " in r.getMessage() for r in caplog.records)  # not downloaded again


def test_a_model_sha256_mismatch_is_refused_and_leaves_nothing(s3: S3Server, tmp_path: Path) -> None:
    data = b"weights" * 1000
    uri = s3.put("sha/model.bin", data)
    with pytest.raises(StorageError, match=r"^s3://models/sha/model.bin: checksum mismatch: model.sha256 is 0+,"):
        fetch(uri, tmp_path, env=s3.env(), sha256="0" * 64)
    assert cache_files(tmp_path) == set()


def test_a_missing_object_and_a_missing_bucket_are_not_found_naming_the_uri(s3: S3Server, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"^s3://models/no/such/model.bin: not found"):
        fetch(f"s3://{s3.bucket}/no/such/model.bin", tmp_path, env=s3.env())
    with pytest.raises(StorageError, match=r"^s3://no-such-bucket/model.bin: not found"):
        fetch("s3://no-such-bucket/model.bin", tmp_path, env=s3.env())
    assert cache_files(tmp_path) == set()


def test_an_unknown_access_key_is_refused_naming_the_uri(s3: S3Server, tmp_path: Path) -> None:
    uri = s3.put("auth/model.bin", b"x")
    with pytest.raises(StorageError) as e:
        fetch(uri, tmp_path, env=s3.env(key="NOBODY"))
    assert str(e.value).startswith(f"{uri}: access denied") and "AWS_ACCESS_KEY_ID" in str(e.value)
    assert cache_files(tmp_path) == set()


def test_a_wrong_secret_is_refused_naming_the_uri(s3: S3Server, tmp_path: Path) -> None:
    if s3.key != WEED_KEY:
        pytest.skip("s3rver checks the access key only, not the signature")
    uri = s3.put("signed/model.bin", b"x")
    with pytest.raises(StorageError) as e:
        fetch(uri, tmp_path, env=s3.env(secret="not-the-secret"))
    assert str(e.value).startswith(f"{uri}: access denied"), e.value
    assert cache_files(tmp_path) == set()
