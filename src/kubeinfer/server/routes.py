"""The replica's HTTP routes, in one table: the ASGI dispatcher (``app.py``), the direct infer path (``http.py``) and
the OpenAPI document (``openapi.py``) are all derived from :data:`ROUTES`, so a route cannot be served without being
documented, or documented without being served.

A route's path is its OpenAPI template. A segment is a literal, a parameter (``{model_name}``) or a parameter with a
literal suffix (``{model_name}:predict``, KServe v1's verb form). Matching is by the path alone; the method is checked
after (405 with ``Allow``), and a route that names a model looks the model up before that (404 for an unknown one), as
the protocols' reference servers do. GET routes answer HEAD too. Why not a framework's router: see ``app.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["ROUTES", "TABLE", "Route", "RouteTable"]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    """``GET`` (which answers ``HEAD`` too) or ``POST``."""
    path: str
    """The OpenAPI path template."""
    handler: str
    """The name of the :class:`~kubeinfer.server.app.InferenceApp` method that answers it."""
    summary: str
    response: str | None
    """The OpenAPI schema of the answer (``components/schemas``); ``None``: Prometheus text."""
    protocol: str = ""
    """The ``protocol`` label of ``kubeinfer_requests_total``; ``""``: not counted (probes, metadata, metrics)."""
    request: str | None = None
    """The OpenAPI schema of a POST body; ``None`` for a POST: no body, and only a 200 answer is documented."""
    not_ready: bool = False
    """Answers 503 (with the same schema) while not ready."""
    binary: bool = False
    """May answer ``application/octet-stream`` (the binary tensor extension)."""
    slash: bool = False
    """Also answers with one trailing ``/``."""
    documented: bool = True
    """In the OpenAPI document (a probe's aliases are not)."""
    refuse: str = ""
    """The 405 message for another method (GET routes: a generic one)."""
    served: bool = True
    """``{model_name}`` names a served model, looked up before the handler (404 otherwise); False for the repository
    extension's load and unload, whose model may not be loaded."""

    @property
    def public(self) -> bool:
        """Served without an API key when ``server.auth.apiKeysFile`` is set: the probes and ``/metrics``."""
        return self.handler in _PUBLIC

    @property
    def params(self) -> tuple[str, ...]:
        """The path parameters, in order."""
        return tuple(seg[1:].split("}")[0] for seg in self.path.split("/") if seg.startswith("{"))

    def allow(self) -> str:
        return "GET, HEAD" if self.method == "GET" else self.method

    def accepts(self, method: str) -> bool:
        return method == self.method or (method == "HEAD" and self.method == "GET")


# The handlers of the routes that Kubernetes probes and Prometheus call without credentials (server/auth.py).
_PUBLIC = frozenset({"live", "ready", "started", "metrics"})
_V2_MODEL = "/v2/models/{model_name}"
_V2_VERSION = "/v2/models/{model_name}/versions/{model_version}"
_INFER_405 = "use POST for inference"

ROUTES: tuple[Route, ...] = (
    # Open Inference Protocol v2
    Route("GET", "/v2", "server_metadata", "Server metadata", "ServerMetadata", slash=True),
    Route("GET", "/v2/health/live", "live", "Server liveness", "Live"),
    Route("GET", "/v2/health/ready", "ready", "Server readiness", "Ready", not_ready=True),
    Route("GET", _V2_MODEL, "model_metadata", "Model metadata", "ModelMetadata", slash=True),
    Route("GET", f"{_V2_MODEL}/ready", "model_ready", "Model readiness", "ModelReady", not_ready=True),
    Route("GET", f"{_V2_MODEL}/stats", "model_stats", "Model statistics", "ModelStats"),
    Route("GET", _V2_VERSION, "model_metadata", "Model version metadata", "ModelMetadata", slash=True),
    Route("GET", f"{_V2_VERSION}/ready", "model_ready", "Model version readiness", "ModelReady", not_ready=True),
    Route("GET", f"{_V2_VERSION}/stats", "model_stats", "Model version statistics", "ModelStats"),
    Route(
        "POST",
        f"{_V2_MODEL}/infer",
        "infer_v2",
        "Inference (Open Inference Protocol v2)",
        "InferResponse",
        protocol="v2",
        request="InferRequest",
        binary=True,
        refuse=_INFER_405,
    ),
    Route(
        "POST",
        f"{_V2_VERSION}/infer",
        "infer_v2",
        "Inference on a model version",
        "InferResponse",
        protocol="v2",
        request="InferRequest",
        binary=True,
        refuse=_INFER_405,
    ),
    Route(
        "POST",
        "/v2/repository/index",
        "repository_index",
        "Model repository index",
        "RepositoryIndex",
        request="RepositoryIndexRequest",
        refuse="use POST for /v2/repository/index",
    ),
    Route(
        "POST",
        "/v2/repository/models/{model_name}/load",
        "repository_load",
        "Load or reload a model (repository extension)",
        "RepositoryAction",
        request="RepositoryModelRequest",
        refuse="use POST to load a model",
        served=False,
    ),
    Route(
        "POST",
        "/v2/repository/models/{model_name}/unload",
        "repository_unload",
        "Unload a model (repository extension)",
        "RepositoryAction",
        request="RepositoryModelRequest",
        refuse="use POST to unload a model",
        served=False,
    ),
    # KServe v1 and OpenAI
    Route("GET", "/v1/models", "model_list", "Models served (OpenAI's list, with KServe v1's names)", "V1Models"),
    Route("GET", "/v1/models/{model_name}", "model_ready", "Model readiness (KServe v1)", "ModelReady", not_ready=True),
    Route(
        "POST",
        "/v1/models/{model_name}:predict",
        "predict_v1",
        "Prediction (KServe v1)",
        "V1PredictResponse",
        protocol="v1",
        request="V1PredictRequest",
        refuse="use POST for :predict",
    ),
    Route(
        "POST",
        "/v1/embeddings",
        "embeddings",
        "Embeddings (OpenAI-style)",
        "EmbeddingsResponse",
        protocol="openai",
        request="EmbeddingsRequest",
        refuse="use POST for /v1/embeddings",
    ),
    # Text generation (server/openai_generate.py): OpenAI's completions and the OIP generate extension
    Route(
        "POST",
        "/v1/completions",
        "generate.completions",
        "Text completion (OpenAI); stream: server-sent events",
        "CompletionResponse",
        protocol="openai",
        request="CompletionRequest",
        refuse="use POST for /v1/completions",
    ),
    Route(
        "POST",
        "/v1/chat/completions",
        "generate.chat_completions",
        "Chat completion (OpenAI); stream: server-sent events",
        "ChatCompletionResponse",
        protocol="openai",
        request="ChatCompletionRequest",
        refuse="use POST for /v1/chat/completions",
    ),
    Route(
        "POST",
        f"{_V2_MODEL}/generate",
        "generate.generate",
        "Generate (Open Inference Protocol generate extension)",
        "GenerateResponse",
        protocol="v2",
        request="GenerateRequest",
        refuse="use POST for generate",
    ),
    Route(
        "POST",
        f"{_V2_MODEL}/generate_stream",
        "generate.generate_stream",
        "Generate, streamed as server-sent events (generate extension)",
        "GenerateResponse",
        protocol="v2",
        request="GenerateRequest",
        refuse="use POST for generate_stream",
    ),
    # Kubernetes probes (and their other common names), metrics, this document
    Route("GET", "/healthz", "live", "Liveness probe", "Live"),
    Route("GET", "/livez", "live", "Liveness probe", "Live", documented=False),
    Route("GET", "/health/live", "live", "Liveness probe", "Live", documented=False),
    Route("GET", "/readyz", "ready", "Readiness probe", "Ready", not_ready=True),
    Route("GET", "/health/ready", "ready", "Readiness probe", "Ready", not_ready=True, documented=False),
    Route("GET", "/startupz", "started", "Startup probe", "Started", not_ready=True),
    Route("GET", "/health/startup", "started", "Startup probe", "Started", not_ready=True, documented=False),
    Route("GET", "/metrics", "metrics", "Prometheus metrics", None),
    Route("GET", "/openapi.json", "openapi", "This document", None, documented=False),
)

_NO_PARAMS: Mapping[str, str] = MappingProxyType({})
# Template matches are remembered (the few paths a replica serves repeat on every request); bounded, since a client
# can send any number of distinct paths.
_CACHED_PATHS = 1024


@dataclass(frozen=True, slots=True)
class _Pattern:
    route: Route
    literals: tuple[tuple[int, str], ...]
    params: tuple[tuple[int, str, str], ...]  # index, name, literal suffix ("" for none)


def _compile(route: Route, slash: bool) -> _Pattern:
    segments = route.path.split("/") + ([""] if slash else [])
    literals: list[tuple[int, str]] = []
    params: list[tuple[int, str, str]] = []
    for i, seg in enumerate(segments):
        if seg.startswith("{"):
            name, _, suffix = seg[1:].partition("}")
            params.append((i, name, suffix))
        elif i:
            literals.append((i, seg))
    return _Pattern(route, tuple(literals), tuple(params))


class RouteTable:
    """Finds the route of a path: literal paths by one dict lookup, templates by segment count then segments (and
    then from a bounded cache)."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = tuple(routes)
        self._exact: dict[str, Route] = {}
        self._templates: dict[int, list[_Pattern]] = {}
        for route in self.routes:
            for slash in (False, True) if route.slash else (False,):
                if not route.params:
                    self._exact[route.path + ("/" if slash else "")] = route
                    continue
                pattern = _compile(route, slash)
                n = len(route.path.split("/")) + slash
                self._templates.setdefault(n, []).append(pattern)
        for patterns in self._templates.values():
            # A parameter with a suffix ({name}:predict) is tried before a bare one ({name}) of the same place, and
            # inference routes before the others (the request path's common case tries one pattern).
            patterns.sort(key=lambda p: (-sum(1 for _, _, suffix in p.params if suffix), p.route.protocol == ""))
        self._template_match = functools.lru_cache(maxsize=_CACHED_PATHS)(self._match_template)

    def match(self, path: str) -> tuple[Route, Mapping[str, str]] | None:
        """The route serving ``path`` and its parameters (read-only), or ``None``."""
        route = self._exact.get(path)
        if route is not None:
            return route, _NO_PARAMS
        return self._template_match(path)

    def _match_template(self, path: str) -> tuple[Route, Mapping[str, str]] | None:
        parts = path.split("/")
        for pattern in self._templates.get(len(parts), ()):
            params = _match(pattern, parts)
            if params is not None:
                return pattern.route, params
        return None

    def handlers(self) -> set[str]:
        return {r.handler for r in self.routes}


def _match(pattern: _Pattern, parts: list[str]) -> Mapping[str, str] | None:
    for i, literal in pattern.literals:
        if parts[i] != literal:
            return None
    params: dict[str, str] = {}
    for i, name, suffix in pattern.params:
        value = parts[i]
        if suffix:
            if not value.endswith(suffix):
                return None
            value = value[: -len(suffix)]
        params[name] = value
    return MappingProxyType(params)


TABLE = RouteTable(ROUTES)
