"""Build the tiny example language model into ./model (a seeded random Llama and a BPE tokenizer; no download).

    python examples/tiny-llm/build.py && kubeinfer serve examples/tiny-llm/service.yaml

Needs PyTorch and transformers (``pip install 'kubeinfer[llm]'``, the CPU wheel of torch first: see install.sh).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    try:
        from kubeinfer.testing.tiny_llm import build_tiny_llm

        path = build_tiny_llm(HERE / "model")
    except ImportError as e:
        print(f"tiny-llm: skipped ({e.name} is not installed: pip install 'kubeinfer[llm]')", file=sys.stderr)
        return 0
    print(f"built tiny-llm: {path.relative_to(HERE.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
