"""How a large object's bytes move: ranged GETs in parallel, reassembled in order and hashed in order; a part cut
midway resumed from the byte it reached; a part that keeps failing fails the download with nothing left behind; and
with ``model.sha256`` given, one hash (SHA-256) instead of two (the ETag's MD5 is not computed). A single stream starts
with a GET without a range (an empty object is that one GET) and resumes with an open range; a failure says how far the
stream or the part got."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeinfer.storage import StorageError, fetch
from kubeinfer.storage.fetch import _download_checked
from kubeinfer.storage.transfer import PART_SIZE
from storage_servers import HttpFiles, S3Server, as_s3_object, http_server, s3_server

pytestmark = pytest.mark.integration

SIZE = 2 * PART_SIZE + 12345  # three parts, the last one short


@pytest.fixture
def files(tmp_path: Path) -> Iterator[HttpFiles]:
    (tmp_path / "served").mkdir()
    with http_server(tmp_path / "served") as server:
        yield server


def serve_as_s3(files: HttpFiles, name: str, data: bytes, etag: str | None = None) -> None:
    (files.root / name).write_bytes(data)
    files.etags[f"/{name}"] = '"' + (etag or hashlib.md5(data).hexdigest()) + '"'


def no_report(done: int) -> None:
    pass


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


def test_a_large_s3_object_is_fetched_in_ranged_parts_and_reassembled(s3: S3Server, tmp_path: Path) -> None:
    """From a real S3-compatible server: the parts land where they belong, and the MD5 (ETag) and SHA-256, fed the
    parts in order, match; progress ends at the size."""
    data = os.urandom(SIZE)
    uri = s3.put("big/weights.bin", data)
    seen: list[tuple[int, int]] = []
    path = fetch(uri, tmp_path, env=s3.env(), concurrency=3, progress=lambda d, t: seen.append((d, t)))
    assert path.read_bytes() == data and path.samefile(tmp_path / "blobs" / "sha256" / hashlib.sha256(data).hexdigest())
    assert seen[-1] == (SIZE, SIZE) and len(seen) == 3  # one report per part, in order
    assert not any((tmp_path / "tmp").iterdir())


def test_the_parts_are_ranged_gets_and_concurrency_one_is_a_single_stream(files: HttpFiles, tmp_path: Path) -> None:
    data = os.urandom(SIZE)
    serve_as_s3(files, "m.bin", data)
    opened, obj, cache = as_s3_object(files, "m.bin", tmp_path / "cache")
    digest = _download_checked("s3://test/m.bin", opened, obj, cache, None, no_report, 0, 0.01, 4)
    assert digest == hashlib.sha256(data).hexdigest()
    assert sorted(r or "" for r in files.ranges) == [
        f"bytes=0-{PART_SIZE - 1}",
        f"bytes={2 * PART_SIZE}-{SIZE - 1}",
        f"bytes={PART_SIZE}-{2 * PART_SIZE - 1}",
    ]
    files.ranges.clear()
    _download_checked("s3://test/m.bin", opened, obj, cache, None, no_report, 0, 0.01, 1)
    assert files.ranges == [None]


def test_a_part_cut_midway_is_resumed_from_the_byte_it_reached(files: HttpFiles, tmp_path: Path) -> None:
    # every part at least 4 MiB: cut in half, each has delivered a whole 1 MiB chunk before the cut
    data = os.urandom(2 * PART_SIZE + PART_SIZE // 2)
    serve_as_s3(files, "m.bin", data)
    files.truncate["/m.bin"] = 1  # the first GET to arrive ends halfway through its part
    opened, obj, cache = as_s3_object(files, "m.bin", tmp_path / "cache")
    digest = _download_checked("s3://test/m.bin", opened, obj, cache, None, no_report, 2, 0.01, 3)
    blob = tmp_path / "cache" / "blobs" / "sha256" / digest
    assert blob.read_bytes() == data and len(files.gets) == 4  # three parts and one resumed
    starts = {int((r or "bytes=0-")[6:].split("-")[0]) for r in files.ranges}
    assert len(starts - {0, PART_SIZE, 2 * PART_SIZE}) == 1  # the resumed GET starts inside a part


def test_a_part_that_keeps_being_cut_fails_the_download_and_leaves_nothing(files: HttpFiles, tmp_path: Path) -> None:
    serve_as_s3(files, "m.bin", os.urandom(SIZE))
    files.truncate["/m.bin"] = -1
    opened, obj, cache = as_s3_object(files, "m.bin", tmp_path / "cache")
    with pytest.raises(StorageError) as e:
        _download_checked("s3://test/m.bin", opened, obj, cache, None, no_report, 2, 0.01, 3)
    assert str(e.value).startswith("s3://test/m.bin: download failed after 3 tries") and "truncated" in str(e.value)
    assert not any((tmp_path / "cache" / "tmp").iterdir())
    assert not [p for p in (tmp_path / "cache" / "blobs").rglob("*") if p.is_file()]


def test_with_model_sha256_the_etag_md5_is_not_computed_and_a_mismatch_is_still_caught(
    files: HttpFiles, tmp_path: Path
) -> None:
    """An ETag that is not the MD5 costs a second download without model.sha256 (to tell corruption from an
    encrypted object); with it, the MD5 is not computed at all: one download, SHA-256 only."""
    data = os.urandom(3 << 20)
    serve_as_s3(files, "m.bin", data, etag="0" * 32)
    opened, obj, cache = as_s3_object(files, "m.bin", tmp_path / "cache")
    good = hashlib.sha256(data).hexdigest()
    assert _download_checked("s3://test/m.bin", opened, obj, cache, good, no_report, 0, 0.01, 1) == good
    assert files.gets == ["/m.bin"]
    files.gets.clear()
    with pytest.raises(StorageError, match=r"^s3://test/m.bin: checksum mismatch: model.sha256 is 1{64}"):
        _download_checked("s3://test/m.bin", opened, obj, cache, "1" * 64, no_report, 0, 0.01, 1)
    assert files.gets == ["/m.bin"] and not any((tmp_path / "cache" / "tmp").iterdir())


def test_a_parallel_download_with_a_wrong_sha256_leaves_nothing(s3: S3Server, tmp_path: Path) -> None:
    uri = s3.put("big/other.bin", os.urandom(SIZE))
    with pytest.raises(StorageError, match=r"checksum mismatch: model.sha256 is 2{64}"):
        fetch(uri, tmp_path, env=s3.env(), concurrency=3, sha256="2" * 64)
    assert not any((tmp_path / "tmp").iterdir()) and not any((tmp_path / "refs").iterdir())


def test_an_empty_object_is_one_get_without_a_range(files: HttpFiles, tmp_path: Path) -> None:
    serve_as_s3(files, "empty.bin", b"")
    opened, obj, cache = as_s3_object(files, "empty.bin", tmp_path / "cache")
    digest = _download_checked("s3://test/empty.bin", opened, obj, cache, None, no_report, 2, 0.01, 4)
    assert digest == hashlib.sha256(b"").hexdigest() and files.ranges == [None]


def test_a_cut_stream_starts_without_a_range_and_resumes_with_an_open_one(files: HttpFiles, tmp_path: Path) -> None:
    # cut at 2 MiB: a whole 1 MiB chunk has arrived before the cut, so the resume is a ranged GET
    data = os.urandom(4 << 20)
    serve_as_s3(files, "m.bin", data)
    files.truncate["/m.bin"] = 1
    opened, obj, cache = as_s3_object(files, "m.bin", tmp_path / "cache")
    digest = _download_checked("s3://test/m.bin", opened, obj, cache, None, no_report, 2, 0.01, 1)
    assert digest == hashlib.sha256(data).hexdigest()
    first, resumed = files.ranges
    assert first is None and resumed is not None and resumed.endswith("-")
    assert 0 < int(resumed[len("bytes=") : -1]) <= 2 << 20


@pytest.mark.parametrize(
    ("concurrency", "where"),
    [(1, rf"\d+ of {SIZE} bytes received"), (3, r"\d+ of the \d+ bytes at \d+-\d+ received")],
    ids=["stream", "parts"],
)
def test_a_failed_download_says_how_far_the_stream_or_the_part_got(
    files: HttpFiles, tmp_path: Path, concurrency: int, where: str
) -> None:
    serve_as_s3(files, "m.bin", os.urandom(SIZE))
    files.truncate["/m.bin"] = -1
    opened, obj, cache = as_s3_object(files, "m.bin", tmp_path / "cache")
    with pytest.raises(StorageError, match=rf"^s3://test/m.bin: download failed after 2 tries, {where} \(truncated"):
        _download_checked("s3://test/m.bin", opened, obj, cache, None, no_report, 1, 0.01, concurrency)
