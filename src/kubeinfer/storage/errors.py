"""The one error of :mod:`kubeinfer.storage` (every message starts with the URI and says what to do), and which of
obstore's errors retrying cannot fix."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["StorageError", "explain", "is_fatal", "is_not_found"]


class StorageError(Exception):
    """A model could not be fetched: not found, refused, truncated, or its checksum did not match."""


def _errors() -> Any:
    import obstore.exceptions

    return obstore.exceptions


def explain(uri: str, e: BaseException) -> StorageError:
    """One line naming the URI and what to do, for the obstore errors that retrying cannot fix."""
    ex = _errors()
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if is_not_found(e):
        return StorageError(f"{uri}: not found in the store (check the bucket and path): {first}")
    if isinstance(e, ex.PermissionDeniedError | ex.UnauthenticatedError) or re.search(
        r"InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied|\b40[13]\b", str(e)
    ):
        return StorageError(
            f"{uri}: access denied: the credentials were refused; kubeinfer reads them from the environment "
            f"(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, GOOGLE_APPLICATION_CREDENTIALS, "
            f"AZURE_STORAGE_*) or, on Kubernetes, the Secret named by spec.model.storageSecret: {first}"
        )
    return StorageError(f"{uri}: {first}")


_MISSING_CONTAINER = re.compile(
    r"NoSuchBucket|ContainerNotFound|specified (bucket|container) does not exist|no bucket named|"
    r"list request.*status code: 404"
)
"""A missing bucket or container: obstore reports it as a generic error (the folder check's list request fails)."""


def is_not_found(e: BaseException) -> bool:
    # obstore raises FileNotFoundError (with NotFoundError for older releases) for a 404 on an object
    return isinstance(e, FileNotFoundError | _errors().NotFoundError) or bool(_MISSING_CONTAINER.search(str(e)))


def is_fatal(e: BaseException) -> bool:
    ex = _errors()
    return (
        is_not_found(e)
        or isinstance(e, ex.PermissionDeniedError | ex.UnauthenticatedError | ex.PreconditionError)
        or bool(re.search(r"InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied|NoSuchBucket|\b40[0-4]\b", str(e)))
    )
