"""The OpenAPI 3.0 document of a replica's HTTP API, written by hand off the request path.

It describes the routes ``app.py`` serves, the request bodies it accepts and every status it can answer; a test
runs schemathesis against the served document to keep the two in step (no 5xx, documented statuses and schemas).
"""

from __future__ import annotations

from typing import Any

from kubeinfer import __version__

__all__ = ["openapi_document"]

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


def _get(
    summary: str,
    schema: str,
    params: list[dict[str, Any]] | None = None,
    not_ready: bool = False,
    not_found: bool = False,
) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {
            "description": "OK",
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
        },
    }
    if not_ready:
        responses["503"] = {
            "description": "Not ready",
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
        }
    if not_found:
        responses["404"] = _COMMON_ERRORS["404"]
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if params:
        op["parameters"] = params
    return {"get": op}


def _post(
    summary: str, body_schema: str, resp_schema: str, params: list[dict[str, Any]] | None = None, binary: bool = False
) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{body_schema}"}}}
    resp_content: dict[str, Any] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{resp_schema}"}}}
    if binary:
        resp_content["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}
    op: dict[str, Any] = {
        "summary": summary,
        "requestBody": {"required": True, "content": content},
        "responses": {"200": {"description": "OK", "content": resp_content}, **_COMMON_ERRORS},
    }
    if params:
        op["parameters"] = params
    return {"post": op}


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
    tensor_in = {
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
    schemas: dict[str, Any] = {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
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
                "inputs": {"type": "array", "minItems": 1, "items": tensor_in},
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
        "RepositoryIndex": {"type": "array", "items": {"type": "object"}},
        "ModelStats": {"type": "object"},
    }
    paths: dict[str, Any] = {
        "/v2": _get("Server metadata", "ServerMetadata"),
        "/v2/health/live": _get("Server liveness", "Live"),
        "/v2/health/ready": _get("Server readiness", "Ready", not_ready=True),
        "/v2/models/{model_name}": _get("Model metadata", "ModelMetadata", [name_param], not_found=True),
        "/v2/models/{model_name}/ready": _get(
            "Model readiness", "ModelReady", [name_param], not_ready=True, not_found=True
        ),
        "/v2/models/{model_name}/stats": _get("Model statistics", "ModelStats", [name_param], not_found=True),
        "/v2/models/{model_name}/versions/{model_version}": _get(
            "Model version metadata", "ModelMetadata", [name_param, version_param], not_found=True
        ),
        "/v2/models/{model_name}/versions/{model_version}/ready": _get(
            "Model version readiness", "ModelReady", [name_param, version_param], not_ready=True, not_found=True
        ),
        "/v2/models/{model_name}/infer": _post(
            "Inference (Open Inference Protocol v2)", "InferRequest", "InferResponse", [name_param], binary=True
        ),
        "/v2/models/{model_name}/versions/{model_version}/infer": _post(
            "Inference on a model version", "InferRequest", "InferResponse", [name_param, version_param], binary=True
        ),
        "/v1/models": _get("Models served (OpenAI's list, with KServe v1's names)", "V1Models"),
        "/v1/models/{model_name}": _get(
            "Model readiness (KServe v1)", "ModelReady", [name_param], not_ready=True, not_found=True
        ),
        "/v1/models/{model_name}:predict": _post(
            "Prediction (KServe v1)", "V1PredictRequest", "V1PredictResponse", [name_param]
        ),
        "/v1/embeddings": _post("Embeddings (OpenAI-style)", "EmbeddingsRequest", "EmbeddingsResponse"),
        "/healthz": _get("Liveness probe", "Live"),
        "/readyz": _get("Readiness probe", "Ready", not_ready=True),
        "/startupz": _get("Startup probe", "Started", not_ready=True),
    }
    paths["/v2/repository/index"] = {
        "post": {
            "summary": "Model repository index",
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RepositoryIndex"}}},
                }
            },
        }
    }
    paths["/metrics"] = {
        "get": {
            "summary": "Prometheus metrics",
            "responses": {
                "200": {
                    "description": "Prometheus text format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "kubeinfer replica",
            "version": __version__,
            "description": "Open Inference Protocol v2, KServe v1 and OpenAI-style embeddings.",
        },
        "paths": paths,
        "components": {"schemas": schemas},
    }
