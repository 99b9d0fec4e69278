"""The repository's version plan (folders, listed entries, policies, batching) and the data plane's table of versions:
which version a lookup gets, what unloading leaves in the index."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from kubeinfer.runtimes.base import ModelInfo
from kubeinfer.server.dataplane import DataPlane, ModelSlot
from kubeinfer.server.errors import InvalidInput, ModelNotFound
from kubeinfer.server.repository import Repository, RepositoryError, plan, version_folders
from kubeinfer.spec.load import loads_spec

HEAD = "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: repo}\nspec:\n"


def folder(root: Path, *versions: str, files: tuple[str, ...] = ("model.joblib",)) -> Path:
    for v in versions:
        (root / v).mkdir(parents=True)
        for f in files:
            (root / v / f).write_bytes(b"x")
    return root


def test_version_folders_are_numbered_subfolders_by_value(tmp_path: Path) -> None:
    folder(tmp_path / "m", "1", "10", "9")
    (tmp_path / "m" / "config.pbtxt").write_text("")
    (tmp_path / "m" / "notes").mkdir()
    assert version_folders(tmp_path / "m") == ["1", "9", "10"]
    assert version_folders(tmp_path / "m" / "config.pbtxt") == []


def test_folder_layout_serves_the_latest_by_default_and_the_one_file_of_a_version(tmp_path: Path) -> None:
    folder(tmp_path / "clf", "1", "2", "3")
    svc = loads_spec(HEAD + "  model: {format: sklearn, uri: clf}\n  batching: {maxBatchSize: 8}\n")
    [only] = plan(svc, "repo", tmp_path)
    assert (only.name, only.version, only.batching.maxBatchSize) == ("repo", "3", 8)
    assert only.model.uri == str(tmp_path / "clf" / "3" / "model.joblib")


def test_a_version_folder_of_several_files_is_the_model(tmp_path: Path) -> None:
    folder(tmp_path / "st", "1", "2", files=("config.json", "model.safetensors"))
    svc = loads_spec(HEAD + "  model: {format: sentence-transformers, uri: st, versionPolicy: {all: true}}\n")
    assert [s.model.uri for s in plan(svc, "repo", tmp_path)] == [str(tmp_path / "st" / v) for v in ("1", "2")]


def test_listed_entries_are_all_served_with_their_own_batching(tmp_path: Path) -> None:
    svc = loads_spec(
        HEAD + "  batching: {maxBatchSize: 8}\n  models:\n"
        "    - {name: m, format: sklearn, uri: a.joblib, version: '2', batching: {maxBatchSize: 2}}\n"
        "    - {name: m, format: sklearn, uri: b.joblib, version: '10'}\n"
        "    - {name: other, format: sklearn, uri: c.joblib}\n"
    )
    got = [(s.version, s.model.uri, s.batching.maxBatchSize) for s in plan(svc, "m", tmp_path)]
    assert got == [("2", "a.joblib", 2), ("10", "b.joblib", 8)]
    assert [s.name for s in plan(svc, "other", tmp_path)] == ["other"]


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("{format: sklearn, uri: clf, version: '3'}", "version '3' and the version folders of uri 'clf' (1, 2)"),
        ("{format: sklearn, uri: clf, versionPolicy: {specific: ['1', '7']}}", "names '7', which the model does not"),
    ],
)
def test_plans_that_cannot_be_served_name_the_field(tmp_path: Path, model: str, message: str) -> None:
    folder(tmp_path / "clf", "1", "2")
    with pytest.raises(RepositoryError, match=r"^spec\.model.*" + message.replace("(", r"\(").replace(")", r"\)")):
        plan(loads_spec(HEAD + f"  model: {model}\n"), "repo", tmp_path)


class _Model:
    def load(self) -> ModelInfo:
        raise NotImplementedError

    def predict(self, inputs: Any, parameters: Any = None) -> Any:
        raise NotImplementedError


def _slot(name: str, version: str, ready: bool = True) -> ModelSlot:
    return ModelSlot(model=_Model(), name=name, version=version, ready=ready)


def test_a_lookup_without_version_gets_the_highest_and_each_version_is_its_own() -> None:
    plane = DataPlane()
    v2, v10 = _slot("m", "2"), _slot("m", "10")
    plane.put("m", [v10, v2])
    assert plane.model("m") is v10 and plane.model("m", "2") is v2 and plane.model("m", "10") is v10
    with pytest.raises(ModelNotFound, match="has no version '3': it serves version\\(s\\) '2', '10'"):
        plane.model("m", "3")
    assert plane.model_metadata(v2)["versions"] == ["2", "10"]
    plane.add(_slot("m", "11", ready=False))
    assert plane.model("m").version == "11"
    assert [e["state"] for e in plane.repository_index()] == ["READY", "READY", "LOADING"]


def test_an_unloaded_model_stays_in_the_index_and_is_not_found_with_triton_words() -> None:
    plane = DataPlane()
    plane.started = True
    old = [_slot("m", "1"), _slot("m", "2")]
    plane.put("m", old)
    plane.put("n", [_slot("n", "1")])
    gone = plane.remove("m", "unloaded")
    assert gone == old and not any(s.ready for s in gone)
    assert plane.repository_index() == [
        {"name": "m", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"},
        {"name": "m", "version": "2", "state": "UNAVAILABLE", "reason": "unloaded"},
        {"name": "n", "version": "1", "state": "READY", "reason": ""},
    ]
    assert [e["name"] for e in plane.repository_index(ready_only=True)] == ["n"]
    with pytest.raises(ModelNotFound, match="Request for unknown model: 'm' has no available versions \\(unloaded\\)"):
        plane.model("m")
    assert plane.ready  # the models still served are ready
    assert "m" not in plane.metrics.ready


def _repository(spec: str) -> DataPlane:
    plane = DataPlane()
    Repository(plane, loads_spec(HEAD + spec), None, ThreadPoolExecutor(1), lambda slot, batching: None)  # type: ignore[arg-type,return-value]
    return plane


def test_load_and_unload_are_refused_for_unknown_names_and_file_overrides() -> None:
    plane = _repository("  model: {format: sklearn, uri: a.joblib}\n")
    with pytest.raises(InvalidInput, match=r"failed to unload 'other': no model of that name in the repository"):
        asyncio.run(plane.unload("other", {}))
    with pytest.raises(InvalidInput, match=r"failed to load 'repo': parameter 'file:1/model.onnx' is not supported"):
        asyncio.run(plane.load("repo", {"file:1/model.onnx": b"x"}))


def test_load_is_refused_with_several_processes() -> None:
    """Each process of a multi-process replica holds its own models: a load would reach one of them only."""
    plane = _repository("  model: {format: sklearn, uri: a.joblib}\n  server: {processes: 2}\n")
    with pytest.raises(InvalidInput, match=r"only with spec.server.processes 1 \(each of the 2 processes"):
        asyncio.run(plane.load("repo", {}))
