"""The one error of :mod:`kubeinfer.storage`: every message starts with the URI and says what to do."""

from __future__ import annotations

__all__ = ["StorageError"]


class StorageError(Exception):
    """A model could not be fetched: not found, refused, truncated, or its checksum did not match."""
