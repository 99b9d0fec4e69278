"""The OpenAPI 3.0 document of a replica's HTTP API, built off the request path.

Its paths come from the route table (``routes.py``) that the server dispatches on, so the two cannot drift apart; the
schemas of the bodies are written here. A test runs schemathesis against the served document to keep the schemas in
step with behaviour (no 5xx, documented statuses and schemas).
"""

from __future__ import annotations

import copy
from typing import Any

from kubeinfer import __version__
from kubeinfer.server.openai_generate import SCHEMAS as GENERATE_SCHEMAS
from kubeinfer.server.routes import ROUTES, Route

__all__ = ["SCHEMAS", "openapi_document"]

_DATATYPES = [
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]


def _err(desc: str) -> dict[str, Any]:
    return {"description": desc, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


_COMMON_ERRORS = {
    "400": _err("The request is malformed or does not fit the model's inputs."),
    "408": _err("The request did not arrive within the server's header or body timeout."),
    "404": _err("Unknown model or version."),
    "405": _err("Method not allowed on this route."),
    "413": _err("Body larger than the server's limit."),
    "415": _err("Unsupported content type or encoding."),
    "431": _err("Request head larger than the server's limits."),
    "429": _err("Concurrency limit reached; retry after Retry-After seconds."),
    "500": _err("The model raised on this request."),
    "503": _err("Model not ready or queue full; retry after Retry-After seconds."),
    "504": _err("The request's deadline passed."),
    "507": _err("The server ran out of memory on this request; retry later or send less."),
}


# The repository extension's bodies may be left out (Triton's clients send them, curl -X POST does not).
_OPTIONAL_BODIES = frozenset({"RepositoryIndexRequest", "RepositoryModelRequest"})


def _schema(name: str) -> dict[str, Any]:
    return {"schema": {"$ref": f"#/components/schemas/{name}"}}


def _operation(route: Route, params: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The OpenAPI operation of one route: its summary, parameters, body and answers."""
    if route.response is None:  # Prometheus text
        ok: dict[str, Any] = {
            "description": "Prometheus text format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    else:
        ok = {"description": "OK", "content": {"application/json": _schema(route.response)}}
        if route.binary:
            ok["content"]["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}
    responses: dict[str, Any] = {"200": ok}
    op: dict[str, Any] = {"summary": route.summary}
    if route.method == "POST" and route.request is not None:
        required = route.request not in _OPTIONAL_BODIES
        op["requestBody"] = {"required": required, "content": {"application/json": _schema(route.request)}}
        responses.update(_COMMON_ERRORS)
    elif route.method == "GET":
        if route.not_ready and route.response is not None:
            responses["503"] = {"description": "Not ready", "content": {"application/json": _schema(route.response)}}
        if "model_name" in route.params:
            responses["404"] = _COMMON_ERRORS["404"]
    op["responses"] = responses
    if route.params:
        op["parameters"] = [params[p] for p in route.params]
    return op


_TENSOR_IN: dict[str, Any] = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "enum": _DATATYPES},
        "parameters": {"type": "object"},
        "data": {"description": "Row-major data, flat or nested; strings for BYTES."},
    },
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "description": "The message; the OpenAI routes answer OpenAI's error object instead.",
        "properties": {"error": {"oneOf": [{"type": "string"}, {"$ref": "#/components/schemas/OpenAIError"}]}},
    },
    "Live": {"type": "object", "properties": {"live": {"type": "boolean"}}},
    "Ready": {
        "type": "object",
        "properties": {
            "ready": {"type": "boolean"},
            "reason": {"type": "string", "description": "Why not ready (only when ready is false)."},
        },
    },
    "Started": {
        "type": "object",
        "properties": {
            "started": {"type": "boolean"},
            "reason": {"type": "string", "description": "Why not started (only when started is false)."},
        },
    },
    "ModelReady": {"type": "object", "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}}},
    "ServerMetadata": {
        "type": "object",
        "required": ["name", "version", "extensions"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}},
        },
    },
    "TensorMetadata": {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
        },
    },
    "ModelMetadata": {
        "type": "object",
        "required": ["name", "platform", "inputs", "outputs"],
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/TensorMetadata"}},
            "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/TensorMetadata"}},
        },
    },
    "InferRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "inputs": {"type": "array", "minItems": 1, "items": _TENSOR_IN},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
                },
            },
        },
    },
    "InferResponse": {
        "type": "object",
        "required": ["model_name", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {"type": "array", "items": {"type": "object"}},
        },
    },
    "V1PredictRequest": {
        "type": "object",
        "required": ["instances"],
        "properties": {"instances": {"type": "array"}},
    },
    "V1PredictResponse": {
        "type": "object",
        "required": ["predictions"],
        "properties": {"predictions": {"type": "array"}},
    },
    "V1Models": {
        "type": "object",
        "description": "OpenAI's model list (object, data) with KServe v1's list of names (models) beside it.",
        "required": ["object", "data", "models"],
        "properties": {
            "object": {"type": "string", "enum": ["list"]},
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/OpenAIModel"}},
            "models": {"type": "array", "items": {"type": "string"}, "description": "KServe v1: the names."},
        },
    },
    "OpenAIModel": {
        "type": "object",
        "required": ["id", "object", "created", "owned_by"],
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string", "enum": ["model"]},
            "created": {"type": "integer", "description": "When the model was added, in Unix seconds."},
            "owned_by": {"type": "string"},
        },
    },
    "EmbeddingsRequest": {
        "type": "object",
        "required": ["input"],
        "properties": {
            "model": {"type": "string"},
            "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
            "encoding_format": {"type": "string", "enum": ["float", "base64"]},
        },
    },
    "EmbeddingsResponse": {
        "type": "object",
        "required": ["object", "data", "model"],
        "properties": {
            "object": {"type": "string"},
            "model": {"type": "string"},
            "usage": {"type": "object"},
            "data": {"type": "array", "items": {"type": "object"}},
        },
    },
    "RepositoryIndexRequest": {
        "type": "object",
        "description": "May be empty.",
        "properties": {
            "repository_name": {"type": "string", "description": "Ignored: a replica has one repository."},
            "ready": {"type": "boolean", "description": "Only the models ready for inference."},
        },
    },
    "RepositoryIndex": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "state": {"type": "string", "enum": ["READY", "LOADING", "UNAVAILABLE"]},
                "reason": {"type": "string"},
            },
        },
    },
    "RepositoryModelRequest": {
        "type": "object",
        "description": "May be empty. Triton's config and file: parameters are refused (400).",
        "properties": {"parameters": {"type": "object"}},
    },
    "RepositoryAction": {"type": "object", "description": "Empty: the load or unload is done."},
    "ModelStats": {"type": "object"},
    **GENERATE_SCHEMAS,
}


def openapi_document(served: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """The document; ``served`` (name, version) pairs become the path parameters' examples."""
    name, version = (served or [("model", "1")])[0]
    name_param = {"name": "model_name", "in": "path", "required": True, "schema": {"type": "string", "example": name}}
    version_param = {
        "name": "model_version",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "example": version},
    }
    params = {"model_name": name_param, "model_version": version_param}
    paths: dict[str, Any] = {}
    for route in ROUTES:
        if route.documented:
            paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, params)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "kubeinfer replica",
            "version": __version__,
            "description": "Open Inference Protocol v2 (with the generate extension), KServe v1, and OpenAI-style embeddings and "
            "completions.",
        },
        "paths": paths,
        "components": {"schemas": copy.deepcopy(SCHEMAS)},
    }
