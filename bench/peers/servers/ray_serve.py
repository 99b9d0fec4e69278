"""Ray Serve: one deployment, one replica, dynamic batching with ``@serve.batch`` (max_ongoing_requests raised above
the batch size, as the batching guide asks), on a local Ray started by this process (dashboard off).

    python ray_serve.py            Serve's default HTTP proxy (a proxy actor forwards to the replica)
    PEER_RAY_DIRECT=1 python ...   Ray's throughput-optimized mode (RAY_SERVE_THROUGHPUT_OPTIMIZED=1, Ray >= 2.55),
                                   which turns on direct ingress: no proxy actor, the ingress replica itself serves
                                   HTTP on a port that Serve allocates from RAY_SERVE_DIRECT_INGRESS_MIN/MAX_HTTP_PORT
                                   (pinned here to PEER_PORT so that the client knows it). On a cluster the docs put
                                   HAProxy (RAY_SERVE_ENABLE_HA_PROXY=1) in front of the replicas; with one replica on
                                   one machine the client talks to the replica directly.

Native JSON: POST / with {"data": [64 floats]} (tabular64, hgb64, rf64), {"age": 42.0, "income": 52000.0, "city":
"lyon", "plan": "pro"} (mixed: the batch becomes a pandas DataFrame) or {"text": "a sentence"} (minilm).
"""

from __future__ import annotations

import os
import signal
import sys
import time

import common
import numpy as np

DIRECT = os.environ.get("PEER_RAY_DIRECT") == "1"
if DIRECT:  # read by Serve's constants at import, in this process and in the actors it starts
    os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
    os.environ["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"] = str(common.PORT)
    os.environ["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"] = str(common.PORT + 1)
    os.environ["RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT"] = str(common.PORT2)
    os.environ["RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT"] = str(common.PORT2 + 1)

try:
    from ray import serve
    from starlette.requests import Request
except ImportError:  # imported by the linter outside the env
    serve = None


def _deployment(cls):  # type: ignore[no-untyped-def]
    return serve.deployment(num_replicas=1, max_ongoing_requests=4 * common.MAX_BATCH)(cls) if serve else cls


def _batch(fn):  # type: ignore[no-untyped-def]
    if serve is None:
        return fn
    return serve.batch(max_batch_size=common.MAX_BATCH, batch_wait_timeout_s=common.MAX_DELAY_MS / 1000)(fn)


@_deployment
class Rows:
    """Any scikit-learn model on rows of FP32 features (tabular64, hgb64, rf64)."""

    def __init__(self) -> None:
        self._model = common.load_sklearn()

    @_batch
    async def predict(self, rows: list[list[float]]) -> list[list[float]]:
        out = self._model.predict_proba(np.asarray(rows, dtype=np.float32))
        return [r.tolist() for r in out]

    async def __call__(self, request: Request) -> dict:
        doc = await request.json()
        return {"predict_proba": await self.predict(doc["data"])}


@_deployment
class Table:
    """A scikit-learn pipeline on a pandas DataFrame of named columns (mixed): one JSON object a request."""

    def __init__(self) -> None:
        self._model = common.load_sklearn()

    @_batch
    async def predict(self, records: list[dict]) -> list[list[float]]:
        x = common.frame({name: [r[name] for r in records] for name, _ in common.COLUMNS})
        return [r.tolist() for r in self._model.predict_proba(x)]

    async def __call__(self, request: Request) -> dict:
        return {"predict_proba": await self.predict(await request.json())}


@_deployment
class MiniLM:
    def __init__(self) -> None:
        self._model = common.load_minilm()

    @_batch
    async def embed(self, sentences: list[str]) -> list[list[float]]:
        out = self._model.encode(sentences, convert_to_numpy=True)
        return [r.tolist() for r in out]

    async def __call__(self, request: Request) -> dict:
        doc = await request.json()
        return {"embedding": await self.embed(doc["text"])}


def main() -> None:
    import ray

    def stop(*_: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    ray.init(include_dashboard=False, log_to_driver=False)
    # in direct-ingress mode the replica holds PEER_PORT; a proxy, if any were started, gets PEER_PORT3
    serve.start(http_options={"host": common.HOST, "port": common.PORT3 if DIRECT else common.PORT})
    app = {"rows": Rows, "table": Table, "text": MiniLM}[common.KIND].bind()
    serve.run(app, name=common.MODEL, route_prefix="/")
    print("PEER_READY", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        serve.shutdown()
        ray.shutdown()
        sys.stdout.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
