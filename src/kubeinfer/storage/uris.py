"""What a ``model.uri`` names: a local path, or an object in a store that :func:`kubeinfer.storage.fetch` downloads.

Pure: parsing only, no I/O. The schemes follow the conventions of the tools users already have (``aws s3``,
``gsutil``, ``azcopy``/adlfs, ``huggingface-cli``): ``s3://BUCKET/KEY`` for any S3-compatible store (AWS, GCS in
interoperability mode, MinIO, Ceph), ``gs://BUCKET/KEY``, ``az://CONTAINER/PATH`` or
``abfs[s]://CONTAINER@ACCOUNT.dfs.core.windows.net/PATH``, ``http[s]://HOST/PATH`` and ``hf://ORG/REPO[@REVISION][/PATH]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "OBJECT_SCHEMES",
    "REMOTE_SCHEMES",
    "HfRef",
    "is_remote",
    "model_basename",
    "parse_hf",
    "scheme_of",
    "uri_problem",
]

OBJECT_SCHEMES = frozenset({"s3", "s3a", "gs", "gcs", "az", "azure", "abfs", "abfss", "http", "https"})
REMOTE_SCHEMES = OBJECT_SCHEMES | {"hf"}


def scheme_of(uri: str) -> str:
    """The scheme of ``uri`` in lower case; ``""`` for a local path (a one-letter scheme is a Windows drive)."""
    scheme = urlsplit(uri).scheme.lower()
    return "" if len(scheme) <= 1 else scheme


def is_remote(uri: str) -> bool:
    """Whether ``uri`` names something to download (any scheme but ``file``)."""
    return scheme_of(uri) not in ("", "file")


def uri_problem(uri: str) -> str | None:
    """Why ``uri`` cannot be read, or None: an unknown scheme, or a remote URI without a bucket/host or object."""
    scheme = scheme_of(uri)
    if scheme in ("", "file"):
        return None
    if scheme not in REMOTE_SCHEMES:
        known = ", ".join(f"{s}://" for s in sorted(REMOTE_SCHEMES | {"file"}))
        return f"{scheme}:// is not a storage kubeinfer reads; give a local path, or one of {known}"
    parts = urlsplit(uri)
    if not parts.netloc:
        return f"{scheme}:// needs a {'repository' if scheme == 'hf' else 'bucket or host'} after the scheme"
    if scheme == "hf":
        ref = parse_hf(uri)
        if "/" not in ref.repo_id and not ref.repo_id:
            return "hf:// needs ORG/REPO"
    elif scheme not in ("http", "https") and not parts.path.strip("/"):
        return f"{scheme}:// needs a path after the bucket (the model file or folder)"
    return None


@dataclass(frozen=True, slots=True)
class HfRef:
    """``hf://ORG/REPO[@REVISION][/PATH]``: a Hugging Face hub model repository, a revision and a file or folder."""

    repo_id: str
    revision: str | None
    subpath: str


def parse_hf(uri: str) -> HfRef:
    """Split an ``hf://`` URI. ``hf://bert-base-uncased`` (no org) is a repository too, as on the hub."""
    rest = uri.split("://", 1)[1].strip("/")
    parts = rest.split("/")
    # ORG/REPO[@REV]/PATH...; a single-segment repository (legacy names) has no org
    n = 2 if len(parts) >= 2 else 1
    repo, subpath = "/".join(parts[:n]), "/".join(parts[n:])
    repo, _, revision = repo.partition("@")
    return HfRef(repo, revision or None, subpath)


def model_basename(uri: str) -> str:
    """The name the model keeps once downloaded: the last segment of its path (``s3://b/m/iris.onnx`` -> ``iris.onnx``,
    ``hf://org/repo`` -> ``repo``)."""
    if scheme_of(uri) == "hf":
        ref = parse_hf(uri)
        return (
            ref.subpath.rstrip("/").rsplit("/", 1)[-1] if ref.subpath else ref.repo_id.rsplit("/", 1)[-1]
        ) or "model"
    path = urlsplit(uri).path.rstrip("/")
    return path.rsplit("/", 1)[-1] or urlsplit(uri).netloc or "model"
