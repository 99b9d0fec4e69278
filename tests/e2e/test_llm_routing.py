"""Token-aware routing through ``kubeinfer up``: two replicas of the tiny language model behind the router. A long
generation holds one replica's tokens, so a burst of short ones goes to the other (by tokens, not by counts); a
session sticks to one replica; the router's per-replica token gauge goes back to zero."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from conftest import PROBES, Platform
from llm import tiny_llm_dir

pytestmark = pytest.mark.e2e

LONG = {"prompt": "Once upon a time", "max_tokens": 300, "n": 2, "ignore_eos": True, "stream": True}
SHORT = {"prompt": "Hello", "max_tokens": 3, "ignore_eos": True}


def _spec(routing: str) -> str:
    return (
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceService\nmetadata: {name: tinyroute}\nspec:\n"
        f"  model: {{format: llm, uri: '{tiny_llm_dir()}', args: {{intraOpThreads: 1, engineProcess: false}}}}\n"
        f"  autoscaling: {{policy: none}}\n  replicas: 2\n  routing: {routing}\n" + PROBES
    )


def _post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> bytes:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json", **(headers or {})}
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return bytes(r.read())


def _families(url: str) -> dict[str, dict[str, float]]:
    """The router's own per-backend families: name -> backend -> value."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if line.startswith("kubeinfer_router_") and '{backend="' in line:
            name, rest = line.split("{", 1)
            backend = rest.split('backend="', 1)[1].split('"', 1)[0]
            if "code=" not in rest:
                out.setdefault(name, {})[backend] = float(line.rsplit(" ", 1)[1])
    return out


def _tries(url: str) -> dict[str, float]:
    return _families(url).get("kubeinfer_router_backend_tries_total", {})


def _diff(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {b: after[b] - before.get(b, 0.0) for b in after if after[b] - before.get(b, 0.0)}


def test_long_and_short_generations_are_balanced_by_tokens_and_a_session_sticks(
    platform: Callable[..., Platform],
) -> None:
    # the suite's fast per-try timeout (1.5 s) is also the idle timeout of a stream: a loaded machine may pause one
    # that long
    p = platform("tinyroute", _spec("{affinity: session}"), extra_env={"KUBEINFER_TRY_TIMEOUT": "60"})
    url = p.url
    completions = f"{url}/v1/completions"
    _post(completions, SHORT)  # both replicas answer before the measured part (first-request warm-up)
    _post(completions, SHORT)

    # A long generation holds one replica: 2 sequences x 300 tokens. While it runs, a burst of short requests from
    # four threads (several in flight at once) goes entirely to the other replica: its few dozen outstanding tokens
    # stay below the long one's ~600. By request counts, two shorts in flight there would already send the next
    # one to the long one's replica.
    for _attempt in range(3):
        before = _tries(url)
        long_done = threading.Event()

        def run_long(long_done: threading.Event = long_done) -> None:
            try:
                _post(completions, LONG)
            finally:
                long_done.set()

        threading.Thread(target=run_long, daemon=True).start()
        held: dict[str, float] = {}
        while not held and not long_done.is_set():
            held = {b: v for b, v in _families(url).get("kubeinfer_router_backend_outstanding_tokens", {}).items() if v}
        assert held, "the long generation ended before the router showed its tokens"
        (busy,) = held
        assert held[busy] >= 2 * 300
        mid = _tries(url)

        def shorts() -> None:
            for _ in range(6):
                _post(completions, SHORT)

        workers = [threading.Thread(target=shorts) for _ in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        long_outlived_the_burst = not long_done.is_set()
        burst = _diff(_tries(url), mid)
        long_done.wait(120)
        if long_outlived_the_burst:
            break
    else:
        pytest.fail("the long generation never outlived the burst of short ones (3 tries)")
    assert _diff(mid, before) == {busy: 1.0}
    assert sum(burst.values()) == 24 and busy not in burst, burst

    # A session goes to one replica, request after request.
    before = _tries(url)
    for i in range(6):
        _post(completions, {**SHORT, "prompt": f"turn {i}"}, {"x-session-id": "alice"})
    assert len(_diff(_tries(url), before)) == 1
    # OpenAI's user field is a session key too, when no header is given.
    before = _tries(url)
    for _ in range(4):
        _post(completions, {**SHORT, "user": "bob"})
    assert len(_diff(_tries(url), before)) == 1

    fam = _families(url)
    assert set(fam["kubeinfer_router_backend_outstanding_tokens"].values()) == {0.0}
