"""A local platform whose controller stops: the platform says why and exits 1 rather than run on unsupervised."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from kubeinfer.local.platform import Platform, RouterOptions
from kubeinfer.local.settings import LocalSettings
from kubeinfer.spec import validate_spec


def test_a_controller_that_stops_ends_the_platform_with_exit_code_1(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    svc = validate_spec(
        {
            "apiVersion": "kubeinfer.io/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": "held"},
            "spec": {
                "model": {"format": "python", "className": "m:M", "version": "1"},
                "autoscaling": {"policy": "none"},
                "replicas": 0,
            },
        }
    )
    platform = Platform(svc, tmp_path, LocalSettings(home=tmp_path / "home"), RouterOptions(port=0, grpc=False))

    async def broken_run() -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("the loops ended")

    platform.controller.run = broken_run  # type: ignore[method-assign]

    async def main() -> int:
        return await asyncio.wait_for(platform.run(), timeout=30)

    with caplog.at_level(logging.ERROR, logger="kubeinfer.local"):
        assert asyncio.run(main()) == 1
    assert any("the controller stopped unexpectedly" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "home" / "held" / "platform.pid").exists()
