"""The controller's scrape reads a generative replica's token gauges under the names the server exports them
(``kubeinfer.server.generate_metrics``), summed over the replica's models as the Prometheus adapter's rules sum a
pod's series; a replica without them reports none."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from kubeinfer.local.metrics import HttpMetricsSource
from kubeinfer.server.generate_metrics import GenerationMetrics

pytestmark = pytest.mark.timeout(10)


class _Stats:
    """An engine's counters as the collector reads them, with a fixed tokens/s."""

    def __init__(self, rate: float) -> None:
        self.prompt_tokens, self.generated_tokens, self.steps, self.rate = 10, 500, 40, rate

    def tokens_per_second(self, now: float) -> float:
        return self.rate


def _serve(tmp_path: Path, body: bytes) -> tuple[str, Any]:
    sock = str(tmp_path / "r.sock")

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    return sock, answer


def _scrape(tmp_path: Path, body: bytes) -> Any:
    sock, answer = _serve(tmp_path, body)

    async def main() -> Any:
        server = await asyncio.start_unix_server(answer, sock)
        async with server:
            return await HttpMetricsSource().scrape(sock, None, 2)

    return asyncio.run(main())


def test_a_replica_of_two_generative_models_reports_their_summed_waiting_sequences_and_tokens_per_second(
    tmp_path: Path,
) -> None:
    engines = [
        ("chat", SimpleNamespace(stats=_Stats(120.0), num_waiting=3, num_running=8)),
        ("code", SimpleNamespace(stats=_Stats(30.5), num_waiting=1, num_running=2)),
        ("loading", None),  # a model whose engine is not up yet exports nothing
    ]
    registry = CollectorRegistry()
    registry.register(GenerationMetrics(lambda: engines))
    m = _scrape(tmp_path, generate_latest(registry))
    assert m.sequences_waiting == 4 and m.tokens_per_second == 150.5


def test_a_replica_without_a_generative_model_reports_no_token_signals(tmp_path: Path) -> None:
    m = _scrape(tmp_path, b'kubeinfer_queue_depth 3\nkubeinfer_generation_tokens_total{kind="generated"} 9\n')
    assert m.queue_depth == 3 and m.sequences_waiting is None and m.tokens_per_second is None
