"""Prometheus metrics of text generation, beside the replica's own (``metrics.py``, whose conventions they follow:
plain numbers updated on the event loop, turned into families only when ``/metrics`` is scraped).

=================================================  =========  ===========================================  ========================================
name                                               type       meaning                                      vLLM analogue
=================================================  =========  ===========================================  ========================================
kubeinfer_generation_sequences_waiting             gauge      sequences queued for a place in the batch    vllm:num_requests_waiting
kubeinfer_generation_sequences_running             gauge      sequences in the running batch               vllm:num_requests_running
kubeinfer_generation_time_to_first_token_seconds   histogram  request arrival to a sequence's first token  vllm:time_to_first_token_seconds
kubeinfer_generation_inter_token_latency_seconds   histogram  time between a sequence's successive tokens  vllm:inter_token_latency_seconds
kubeinfer_generation_tokens_total                  counter    tokens by ``kind``: ``prompt``, ``generated``  vllm:prompt_tokens_total, generation_tokens
kubeinfer_generation_tokens_per_second             gauge      tokens generated per second, last 10 s
kubeinfer_generation_steps_total                   counter    engine steps (one batch forward each)
kubeinfer_generation_kv_cache_tokens               gauge      token positions the KV cache holds
kubeinfer_generation_kv_cache_usage_ratio          gauge      that over what the cache can hold (0-1)      vllm:kv_cache_usage_perc
=================================================  =========  ===========================================  ========================================

Only a replica serving a generative model has these families. With ``server.processes`` > 1 each process has its own
engine and reports its own figures (they are not summed across processes as ``metrics.py`` sums its families).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from kubeinfer.server.metrics import Histogram

__all__ = ["GenerationMetrics"]

# Time to first token spans a prefill (milliseconds) to a long queue (seconds); tokens come every few milliseconds.
TTFT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ITL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class GenerationMetrics(Collector):
    """TTFT and inter-token latency observed by the routes (on the event loop), engine gauges read at scrape time.
    ``engines`` answers the served generative models' names and engines."""

    def __init__(self, engines: Callable[[], list[tuple[str, Any]]]) -> None:
        self.engines = engines
        self.ttft: dict[str, Histogram] = {}
        self.itl: dict[str, Histogram] = {}

    def first_token(self, model: str, seconds: float) -> None:
        h = self.ttft.get(model)
        if h is None:
            h = self.ttft[model] = Histogram(TTFT_BUCKETS)
        h.observe(seconds)

    def next_token(self, model: str, seconds: float) -> None:
        h = self.itl.get(model)
        if h is None:
            h = self.itl[model] = Histogram(ITL_BUCKETS)
        h.observe(seconds)

    def collect(self) -> Iterator[Any]:
        engines = [(name, e) for name, e in self.engines() if e is not None]
        if not engines:
            return
        now = time.monotonic()
        waiting = GaugeMetricFamily(
            "kubeinfer_generation_sequences_waiting", "Sequences queued for a place in the batch.", labels=["model"]
        )
        running = GaugeMetricFamily(
            "kubeinfer_generation_sequences_running", "Sequences in the running batch.", labels=["model"]
        )
        tokens = CounterMetricFamily(
            "kubeinfer_generation_tokens", "Tokens by kind (prompt, generated).", labels=["model", "kind"]
        )
        rate = GaugeMetricFamily(
            "kubeinfer_generation_tokens_per_second",
            "Tokens generated per second over the last 10 s.",
            labels=["model"],
        )
        steps = CounterMetricFamily("kubeinfer_generation_steps", "Engine steps.", labels=["model"])
        kv = GaugeMetricFamily(
            "kubeinfer_generation_kv_cache_tokens",
            "Token positions the KV cache holds (the transformers engine: its padded rows; vllm: the running "
            "sequences' tokens).",
            labels=["model"],
        )
        kv_ratio = GaugeMetricFamily(
            "kubeinfer_generation_kv_cache_usage_ratio",
            "KV cache tokens over what the cache can hold (transformers: maxNumSeqs x maxModelLen; vllm: its blocks).",
            labels=["model"],
        )
        for name, engine in engines:
            held = getattr(engine, "kv_cache_tokens", None)
            if held is not None:
                kv.add_metric([name], held)
                capacity = getattr(engine, "kv_cache_capacity", None)
                if capacity:
                    kv_ratio.add_metric([name], min(1.0, held / capacity))
            stats = engine.stats
            waiting.add_metric([name], engine.num_waiting)
            running.add_metric([name], engine.num_running)
            tokens.add_metric([name, "prompt"], stats.prompt_tokens)
            tokens.add_metric([name, "generated"], stats.generated_tokens)
            rate.add_metric([name], stats.tokens_per_second(now))
            steps.add_metric([name], stats.steps)
        yield waiting
        yield running
        yield _hist(
            "kubeinfer_generation_time_to_first_token_seconds",
            "Request arrival to a sequence's first token.",
            self.ttft,
            TTFT_BUCKETS,
            [n for n, _ in engines],
        )
        yield _hist(
            "kubeinfer_generation_inter_token_latency_seconds",
            "Time between a sequence's successive tokens.",
            self.itl,
            ITL_BUCKETS,
            [n for n, _ in engines],
        )
        yield tokens
        yield rate
        yield steps
        yield kv
        yield kv_ratio


def _hist(
    name: str, doc: str, data: dict[str, Histogram], bounds: tuple[float, ...], models: list[str]
) -> HistogramMetricFamily:
    fam = HistogramMetricFamily(name, doc, labels=["model"])
    for model in sorted(set(models) | set(data)):
        h = data.get(model) or Histogram(bounds)
        fam.add_metric([model], h.buckets(), h.sum)
    return fam
