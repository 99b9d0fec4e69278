"""Autoscaling on the token signals through ``kubeinfer up``: the tiny language model under an hpa on ``tokens`` (the
replicas' ``kubeinfer_generation_tokens_per_second``, what the rendered HPA reads through the Prometheus adapter)
stays at one replica while idle and scales to two under a sustained streaming load, the event naming the metric."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable

import pytest

from conftest import PROBES, Platform
from llm import tiny_llm_dir

pytestmark = pytest.mark.e2e

TARGET = 20
"""Generated tokens per second per replica: a few streams of the tiny model make several times that."""
STREAM = {"prompt": "Once upon a time", "max_tokens": 200, "ignore_eos": True, "stream": True}


def _spec() -> str:
    return (
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: tinyscale}\nspec:\n"
        f"  model: {{format: llm, uri: '{tiny_llm_dir()}', args: {{intraOpThreads: 1}}}}\n"
        f"  autoscaling: {{policy: hpa, metric: tokens, target: {TARGET}, minReplicas: 1, maxReplicas: 2, "
        "syncPeriodSeconds: 1}\n" + PROBES
    )


def _stream(url: str) -> int:
    """One streamed completion; the number of server-sent chunks it carried (the text of several tokens may come in
    one)."""
    req = urllib.request.Request(
        f"{url}/v1/completions", data=json.dumps(STREAM).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return sum(1 for line in r if line.startswith(b"data: {"))


@pytest.mark.slow  # ~10-25 s; the default run stays under 15 minutes
def test_sustained_streams_scale_an_hpa_on_tokens_from_one_replica_to_two(platform: Callable[..., Platform]) -> None:
    # streams pause longer than the suite's fast per-try timeout (1.5 s) on a loaded machine
    p = platform("tinyscale", _spec(), extra_env={"KUBEINFER_TRY_TIMEOUT": "60"})
    url = p.url
    # Idle, tokens/s is 0: a few decisions (one a second) keep the single replica.
    p.wait("an autoscaling decision", lambda s: s["autoscaling"]["reason"] != "", 10)
    time.sleep(3)
    st = p.status()
    assert st["desired"] == 1 and len(st["replicas"]) == 1, st["autoscaling"]

    stop = threading.Event()
    events: list[int] = []
    failures: list[str] = []

    def load() -> None:
        while not stop.is_set():
            try:
                events.append(_stream(url))
            except OSError as e:
                failures.append(f"{type(e).__name__}: {e}")

    workers = [threading.Thread(target=load, daemon=True) for _ in range(3)]
    for w in workers:
        w.start()
    try:
        st = p.wait("a scale-up on tokens", lambda s: s["desired"] == 2, 40)
    finally:
        stop.set()
        for w in workers:
            w.join(70)
    up = [e["message"] for e in st["events"] if e["reason"] == "ScalingReplicaSet"]
    assert up and up[-1].startswith("scaled up from 1 to 2: tokens above target"), up
    assert failures == [] and events and min(events) > 0
    # The load is over, the scale-down waits out its 300 s window: the second replica starts and joins.
    p.wait("the second replica ready", lambda s: sum(1 for r in s["replicas"] if r["ready"]) == 2, 40)
