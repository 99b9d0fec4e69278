"""The server's exception tree, mapped to HTTP and gRPC status codes in one table each.

::

    ServerError                      base; ``str(e)`` is the message clients see
    ├── InvalidInput        400      the request is malformed or does not fit the model's inputs
    ├── ModelNotFound       404      unknown model name or version
    ├── Unauthorized        401      no API key, or one not valid (server.auth.apiKeysFile)
    ├── RouteNotFound       404      no such endpoint
    ├── MethodNotAllowed    405
    ├── PayloadTooLarge     413      body (or decompressed body) larger than limits.maxBodySize
    ├── UnsupportedMedia    415      content type or encoding the server cannot read
    ├── TooManyRequests     429      limits.maxConcurrency or an API key's rate reached; retry later
    ├── ModelFailed         500      the model raised on this request's rows
    ├── Unavailable         503      queue full, model not ready, or draining; retry later / elsewhere
    ├── DeadlineExceeded    504      limits.requestTimeoutMs passed before a result
    └── OutOfMemory         507      the replica ran out of memory on this request; retry later or send less
"""

from __future__ import annotations

from http import HTTPStatus

import grpc

__all__ = ["GRPC_CODES", "HTTP_STATUS", "OutOfMemory", "ServerError", "grpc_code", "http_status"]


class ServerError(Exception):
    retry_after: float | None = None


class InvalidInput(ServerError):
    pass


class ModelNotFound(ServerError):
    pass


class Unauthorized(ServerError):
    pass


class RouteNotFound(ServerError):
    pass


class MethodNotAllowed(ServerError):
    def __init__(self, message: str, allow: str = "GET, HEAD") -> None:
        super().__init__(message)
        self.allow = allow


class PayloadTooLarge(ServerError):
    pass


class UnsupportedMedia(ServerError):
    pass


class TooManyRequests(ServerError):
    retry_after = 1.0


class ModelFailed(ServerError):
    pass


class Unavailable(ServerError):
    retry_after = 1.0


class DeadlineExceeded(ServerError):
    pass


class OutOfMemory(ServerError):
    """A MemoryError while decoding or running a request: the server stays up (the request's memory is freed) and
    says so, instead of a 400 or a 500 that would read as the client's fault or a bug."""

    retry_after = 1.0

    @classmethod
    def of(cls, what: str) -> OutOfMemory:
        return cls(
            f"the server ran out of memory {what}: retry later, or send smaller requests "
            "(server.limits.maxBodySize, resources.limits.memory)"
        )


HTTP_STATUS: dict[type[ServerError], HTTPStatus] = {
    InvalidInput: HTTPStatus.BAD_REQUEST,
    Unauthorized: HTTPStatus.UNAUTHORIZED,
    ModelNotFound: HTTPStatus.NOT_FOUND,
    RouteNotFound: HTTPStatus.NOT_FOUND,
    MethodNotAllowed: HTTPStatus.METHOD_NOT_ALLOWED,
    PayloadTooLarge: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    UnsupportedMedia: HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
    TooManyRequests: HTTPStatus.TOO_MANY_REQUESTS,
    ModelFailed: HTTPStatus.INTERNAL_SERVER_ERROR,
    Unavailable: HTTPStatus.SERVICE_UNAVAILABLE,
    DeadlineExceeded: HTTPStatus.GATEWAY_TIMEOUT,
    OutOfMemory: HTTPStatus.INSUFFICIENT_STORAGE,
}

GRPC_CODES: dict[type[ServerError], grpc.StatusCode] = {
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    Unauthorized: grpc.StatusCode.UNAUTHENTICATED,
    ModelNotFound: grpc.StatusCode.NOT_FOUND,
    RouteNotFound: grpc.StatusCode.UNIMPLEMENTED,
    MethodNotAllowed: grpc.StatusCode.UNIMPLEMENTED,
    PayloadTooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    UnsupportedMedia: grpc.StatusCode.INVALID_ARGUMENT,
    TooManyRequests: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ModelFailed: grpc.StatusCode.INTERNAL,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    OutOfMemory: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def internal_error(e: BaseException) -> str:
    """The message a client gets for a bug (HTTP 500, gRPC INTERNAL): what was raised, so it can be reported."""
    return f"internal error: {type(e).__name__}: {e}"


def http_status(e: ServerError) -> HTTPStatus:
    return HTTP_STATUS.get(type(e), HTTPStatus.INTERNAL_SERVER_ERROR)


def grpc_code(e: ServerError) -> grpc.StatusCode:
    return GRPC_CODES.get(type(e), grpc.StatusCode.INTERNAL)
