"""Which URIs are remote, how hf:// splits, and the name a model keeps once downloaded."""

from __future__ import annotations

import pytest

from kubeinfer.storage.uris import HfRef, is_remote, model_basename, parse_hf, uri_problem


@pytest.mark.parametrize(
    ("uri", "remote"),
    [
        ("models/iris.joblib", False),
        ("/abs/m.onnx", False),
        ("file:///abs/m.onnx", False),
        ("C:/models/m.onnx", False),  # a Windows drive letter is not a scheme
        ("s3://b/m.onnx", True),
        ("gs://b/m", True),
        ("az://c/m", True),
        ("abfss://c@acct.dfs.core.windows.net/m", True),
        ("https://host/m.onnx", True),
        ("hf://org/repo", True),
    ],
)
def test_remote_or_local(uri: str, remote: bool) -> None:
    assert is_remote(uri) is remote
    assert uri_problem(uri) is None


def test_hf_uris_split_into_repository_revision_and_path() -> None:
    assert parse_hf("hf://org/repo") == HfRef("org/repo", None, "")
    assert parse_hf("hf://org/repo@v1.0/onnx/model.onnx") == HfRef("org/repo", "v1.0", "onnx/model.onnx")
    assert parse_hf("hf://gpt2") == HfRef("gpt2", None, "")


@pytest.mark.parametrize(
    ("uri", "name"),
    [
        ("s3://b/iris/model.onnx", "model.onnx"),
        ("s3://b/minilm/", "minilm"),
        ("hf://sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"),
        ("hf://org/repo@main/onnx", "onnx"),
        ("https://host/files/m.joblib", "m.joblib"),
    ],
)
def test_the_downloaded_name_is_the_last_path_segment(uri: str, name: str) -> None:
    assert model_basename(uri) == name


@pytest.mark.parametrize(
    ("uri", "says"),
    [("ftp://h/m", "not a storage kubeinfer reads"), ("gs://bucket", "needs a path"), ("s3:///k", "needs a bucket")],
)
def test_unreadable_uris_say_why(uri: str, says: str) -> None:
    problem = uri_problem(uri)
    assert problem is not None and says in problem
