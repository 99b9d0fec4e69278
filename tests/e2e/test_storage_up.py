"""`kubeinfer up` with a model in S3: fetched once before the replicas start, every replica loads it from the shared
cache (a Python model's module comes from the fetched folder too)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import HERE, PROBES, Load, Platform
from storage_servers import S3Server, s3_server


@pytest.fixture
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


def test_up_fetches_a_model_from_s3_once_for_every_replica(
    s3: S3Server, platform: Callable[..., Platform], tmp_path: Path
) -> None:
    s3.put("e2e/code/e2emodels.py", (HERE / "e2emodels.py").read_bytes())
    spec = (
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: froms3}\nspec:\n"
        f"  model: {{format: python, className: 'e2emodels:Echo', uri: 's3://{s3.bucket}/e2e/code'}}\n"
        "  autoscaling: {policy: none}\n  replicas: 2\n" + PROBES
    )
    cache = tmp_path / "cache"
    p = platform("froms3", spec, extra_env=s3.env() | {"KUBEINFER_MODEL_CACHE": str(cache)})
    p.wait("two ready replicas", lambda s: sum(1 for r in s["replicas"] if r.get("ready")) == 2, 60)
    ok, info, _ = Load(p.url, "froms3").one()
    assert ok, info
    refs = list((cache / "refs").glob("*.json"))
    assert len(refs) == 1 and json.loads(refs[0].read_text())["uri"] == f"s3://{s3.bucket}/e2e/code"
