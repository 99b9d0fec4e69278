"""The ceiling for a Python data plane: a bare ASGI app on uvicorn (uvloop, httptools, orjson), no validation and
no metrics, that gathers concurrent requests into one ``predict`` call (``--mode batch``) or calls ``predict`` per
request (``--mode single``). kubeinfer is measured against it in the same sitting.

    python bench/ceiling.py examples/tabular64/model.joblib --port 9100 [--mode batch|single]
"""

from __future__ import annotations

import argparse
import asyncio
from concurrent.futures import ThreadPoolExecutor

import joblib
import numpy as np
import orjson
import uvicorn


def make_app(model, mode: str):  # type: ignore[no-untyped-def]
    pool = ThreadPoolExecutor(1)
    pending: list[tuple[np.ndarray, asyncio.Future]] = []
    busy = False

    def run(rows: np.ndarray) -> np.ndarray:
        # orjson encodes only C-contiguous arrays; HistGradientBoosting's predict_proba is Fortran-ordered.
        return np.ascontiguousarray(model.predict_proba(rows), dtype=np.float32)

    async def drain() -> None:
        nonlocal busy, pending
        busy = True
        loop = asyncio.get_running_loop()
        while pending:
            batch, pending = pending, []
            x = np.concatenate([b[0] for b in batch])
            out = await loop.run_in_executor(pool, run, x)
            i = 0
            for rows, fut in batch:
                fut.set_result(out[i : i + len(rows)])
                i += len(rows)
        busy = False

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            msg = await receive()
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
        doc = orjson.loads(body)
        t = doc["inputs"][0]
        x = np.asarray(t["data"], dtype=np.float32).reshape(t["shape"])
        if mode == "batch":
            fut = asyncio.get_running_loop().create_future()
            pending.append((x, fut))
            if not busy:
                asyncio.get_running_loop().create_task(drain())
            out = await fut
        else:
            out = await asyncio.get_running_loop().run_in_executor(pool, run, x)
        resp = orjson.dumps(
            {
                "outputs": [
                    {"name": "predict_proba", "datatype": "FP32", "shape": list(out.shape), "data": out.reshape(-1)}
                ]
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": resp})

    return app


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--port", type=int, default=9100)
    p.add_argument("--mode", choices=["batch", "single"], default="batch")
    a = p.parse_args()
    model = joblib.load(a.model)
    uvicorn.run(
        make_app(model, a.mode),
        host="127.0.0.1",
        port=a.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
