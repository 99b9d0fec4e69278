"""``engineProcess: auto`` (the default): the engine apart from the server where the replica has two CPUs."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeinfer.runtimes.base import ModelError
from kubeinfer.runtimes.cpus import cgroup_cpus
from kubeinfer.runtimes.llm.model import LLMModel, engine_process_auto


@pytest.mark.parametrize(("threads", "apart"), [("1", False), ("2", True), ("8", True)])
def test_the_cpus_kubeinfer_up_gives_decide(threads: str, apart: bool) -> None:
    assert engine_process_auto({"OMP_NUM_THREADS": threads}) is apart


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("max 100000\n", None), ("150000 100000\n", 1.5), ("200000 100000", 2.0), ("", None), ("x y", None)],
)
def test_a_cgroup_quota_is_read_as_cpus(tmp_path: Path, text: str, cpus: float | None) -> None:
    path = tmp_path / "cpu.max"
    path.write_text(text)
    assert cgroup_cpus(path) == cpus
    assert cgroup_cpus(tmp_path / "missing") is None


def test_auto_true_false_are_taken_and_anything_else_refused(tmp_path: Path) -> None:
    for value, expected in (("auto", engine_process_auto()), (True, True), (False, False)):
        assert LLMModel("m", "1", tmp_path, {"engineProcess": value})._process is expected
    with pytest.raises(ModelError, match=r"engineProcess must be true, false or auto, not 'yes'"):
        LLMModel("m", "1", tmp_path, {"engineProcess": "yes"})
