"""``hf://ORG/REPO[@REVISION][/PATH]``: a Hugging Face hub repository, through ``huggingface_hub`` and its own cache.

The hub client already does what :mod:`kubeinfer.storage.fetch` does for object stores (a content-addressed cache
under ``HF_HOME``, resumable downloads, ETag/SHA-256 checks, ``HF_TOKEN`` for private repositories), so this only
maps the URI and its errors. ``HF_HUB_OFFLINE=1`` is honoured: the cached snapshot is used, nothing is requested.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from kubeinfer.storage.errors import StorageError
from kubeinfer.storage.uris import parse_hf

__all__ = ["fetch_hf"]


def fetch_hf(uri: str, env: Mapping[str, str]) -> Path:
    """The local path of the repository folder (or the file/folder under it) that ``uri`` names."""
    try:
        import huggingface_hub
        from huggingface_hub import errors
    except ImportError:
        raise StorageError(f"{uri}: hf:// needs the storage extra: pip install 'kubeinfer[storage]'") from None
    ref = parse_hf(uri)
    patterns = [ref.subpath, f"{ref.subpath}/*"] if ref.subpath else None
    try:
        root = Path(
            huggingface_hub.snapshot_download(
                ref.repo_id, revision=ref.revision, allow_patterns=patterns, token=env.get("HF_TOKEN") or None
            )
        )
    except errors.LocalEntryNotFoundError as e:
        raise StorageError(
            f"{uri}: not in the Hugging Face cache and the hub cannot be reached (offline mode, HF_HUB_OFFLINE, or no "
            f"network): download it once with the hub reachable, or point HF_HOME at a cache that has it ({e})"
        ) from e
    except errors.RepositoryNotFoundError as e:
        raise StorageError(f"{uri}: no such repository on the hub, or it is private and HF_TOKEN is not set") from e
    except errors.RevisionNotFoundError as e:
        raise StorageError(f"{uri}: no revision {ref.revision!r} in {ref.repo_id}") from e
    except errors.HfHubHTTPError as e:
        raise StorageError(f"{uri}: {str(e).splitlines()[0]}") from e
    path = root / ref.subpath if ref.subpath else root
    if not path.exists():
        raise StorageError(f"{uri}: {ref.repo_id} has no {ref.subpath!r}")
    return path
