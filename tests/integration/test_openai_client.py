"""The OpenAI-style routes driven by the real ``openai`` Python client against a real server process."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest

from helpers import python_model
from kubeinfer.testing import ServerProcess

openai = pytest.importorskip("openai")

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def emb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(python_model(tmp_path_factory.mktemp("emb"), "emb", "Embedder"), grpc=False) as s:
        yield s


@pytest.fixture
def client(emb_server: ServerProcess) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=f"{emb_server.url}/v1", api_key="unused", max_retries=0, timeout=10)
    yield c
    c.close()


def test_openai_client_lists_the_served_models(client: openai.OpenAI) -> None:
    models = list(client.models.list())
    assert [m.id for m in models] == ["emb"]
    assert models[0].object == "model"
    assert models[0].owned_by == "kubeinfer"
    assert models[0].created > 0


def test_v1_models_keeps_kserve_v1_names_beside_openai_list(emb_server: ServerProcess) -> None:
    """A KServe v1 client reads ``models`` from the same answer that OpenAI clients read ``data`` from."""
    status, doc = emb_server.json("/v1/models")
    assert status == 200
    assert doc["models"] == ["emb"]
    assert doc["object"] == "list"
    assert [(d["id"], d["object"], d["owned_by"]) for d in doc["data"]] == [("emb", "model", "kubeinfer")]


def test_openai_client_embeddings_match_the_rest_answer(client: openai.OpenAI, emb_server: ServerProcess) -> None:
    """The client asks for base64 vectors by default; they decode to the floats the route answers in JSON."""
    got = client.embeddings.create(model="emb", input=["hello", "world"])
    assert got.model == "emb"
    assert [d.index for d in got.data] == [0, 1]
    status, _, body = emb_server.post(
        "/v1/embeddings", json.dumps({"model": "emb", "input": ["hello", "world"]}).encode()
    )
    assert status == 200
    expected = [d["embedding"] for d in json.loads(body)["data"]]
    np.testing.assert_allclose([d.embedding for d in got.data], expected, rtol=1e-6)
    assert got.usage.prompt_tokens > 0


def test_openai_client_reports_an_unknown_model_as_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as ei:
        client.embeddings.create(model="nope", input="hello")
    assert ei.value.status_code == 404
    assert "unknown model 'nope'" in ei.value.response.json()["error"]
