"""The route table (server/routes.py): what it matches, and that the dispatcher and the OpenAPI document are both
derived from it."""

from __future__ import annotations

import operator

import pytest

from kubeinfer.server.app import InferenceApp
from kubeinfer.server.openapi import openapi_document
from kubeinfer.server.routes import ROUTES, TABLE

CASES = [
    ("/v2", "server_metadata", {}),
    ("/v2/", "server_metadata", {}),
    ("/v2/health/ready", "ready", {}),
    ("/v2/models/iris", "model_metadata", {"model_name": "iris"}),
    ("/v2/models/iris/", "model_metadata", {"model_name": "iris"}),
    ("/v2/models/iris/infer", "infer_v2", {"model_name": "iris"}),
    ("/v2/models/iris/versions/2/infer", "infer_v2", {"model_name": "iris", "model_version": "2"}),
    ("/v2/models/iris/versions/2/", "model_metadata", {"model_name": "iris", "model_version": "2"}),
    ("/v2/models/iris/versions/2/stats", "model_stats", {"model_name": "iris", "model_version": "2"}),
    ("/v1/models", "model_list", {}),
    ("/v1/models/iris", "model_ready", {"model_name": "iris"}),
    ("/v1/models/iris:predict", "predict_v1", {"model_name": "iris"}),
    ("/v1/embeddings", "embeddings", {}),
    ("/livez", "live", {}),
    ("/health/startup", "started", {}),
]


@pytest.mark.parametrize(("path", "handler", "params"), CASES, ids=[c[0] for c in CASES])
def test_paths_match_their_route_and_parameters(path: str, handler: str, params: dict[str, str]) -> None:
    found = TABLE.match(path)
    assert found is not None
    assert (found[0].handler, found[1]) == (handler, params)


@pytest.mark.parametrize(
    "path", ["/", "/v2/nothing", "/v2/models/iris/ready/", "/v2/models/a/b/infer", "/v1/models/iris/predict", "/v3"]
)
def test_other_paths_match_nothing(path: str) -> None:
    assert TABLE.match(path) is None


def test_every_route_has_a_handler_on_the_app() -> None:
    app = InferenceApp()
    for route in ROUTES:
        # "generate.completions": a method of the app's generate routes (server/openai_generate.py)
        assert callable(operator.attrgetter(route.handler)(app)), route.handler


def test_the_openapi_document_has_exactly_the_documented_routes() -> None:
    doc = openapi_document([("iris", "1")])
    documented = {(r.path, r.method.lower()) for r in ROUTES if r.documented}
    assert {(path, method) for path, ops in doc["paths"].items() for method in ops} == documented
    for route in ROUTES:
        if route.documented:
            op = doc["paths"][route.path][route.method.lower()]
            assert [p["name"] for p in op.get("parameters", [])] == list(route.params)
            assert op["summary"] == route.summary


def test_one_route_per_path() -> None:
    paths = [r.path for r in ROUTES]
    assert len(paths) == len(set(paths))
