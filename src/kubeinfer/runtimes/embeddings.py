"""Sentence-embedding models (format ``sentence-transformers``): text in, one vector per row out.

Why two backends. ``onnx`` (the default) runs an ONNX export of the transformer with ONNX Runtime and tokenizes
with the Rust ``tokenizers`` library; it never imports torch, so a replica starts in about a second and stays
small, and on CPUs it is faster than PyTorch at equal precision. ``torch`` runs
``sentence_transformers.SentenceTransformer`` itself, for checkpoints whose modules the ONNX path does not cover
(``Dense`` heads, custom code) and as the reference the export is verified against.

What the ``onnx`` backend reproduces, read from the checkpoint exactly as sentence-transformers reads it:
``modules.json`` (Transformer -> Pooling -> optional Normalize), ``sentence_bert_config.json`` (``max_seq_length``,
``do_lower_case``), the pooling config (old ``pooling_mode_*_tokens`` flags or the newer ``pooling_mode``) and
``tokenizer.json``. Rows are truncated to ``max_seq_length`` and padded to the longest row of each run; a batch is
sorted by length and cut into runs of at most ``maxBatchTokens`` padded tokens, so one long text does not make
sixty-three short ones pay for its padding. Each row's result does not depend on its neighbours (within float
rounding). ``src/kubeinfer/runtimes/export.py`` writes the model directory this backend loads.

Input ``text``: BYTES ``[-1]`` (``[-1, 1]`` is accepted too), UTF-8, one text per row. Output ``embedding``: FP32
``[-1, dim]``. ``args``: ``backend`` (``onnx`` | ``torch``), ``intraOpThreads`` (else ``OMP_NUM_THREADS``, else
the runtime's default), ``maxSeqLength`` (may only lower the checkpoint's), ``maxBatchTokens``, ``onnxFile``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kubeinfer.runtimes.base import ModelError, ModelInfo, TensorSpec
from kubeinfer.runtimes.onnx import intra_op_threads, session

__all__ = ["POOLING_MODES", "EmbeddingModel", "SentenceConfig", "decode_texts", "pool"]

BACKENDS = ("onnx", "torch")
ARGS = frozenset({"backend", "intraOpThreads", "maxSeqLength", "maxBatchTokens", "onnxFile"})
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
# Legacy pooling flags in the order sentence-transformers concatenates the modes they enable.
_LEGACY_POOLING = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
_TOKEN_OUTPUTS = ("token_embeddings", "last_hidden_state")
_ONNX_FILES = ("model.onnx", "onnx/model.onnx")
_DEFAULT_BATCH_TOKENS = 8192
INPUT, OUTPUT = "text", "embedding"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read {path}: {e}") from e
    if not isinstance(data, dict):
        raise ModelError(f"{path} must hold a JSON object")
    return data


@dataclass(frozen=True, slots=True)
class SentenceConfig:
    """How a sentence-transformers checkpoint turns token embeddings into one vector, read without torch."""

    transformer_dir: Path
    max_seq_length: int
    do_lower_case: bool
    pooling: tuple[str, ...]
    normalize: bool
    unsupported: tuple[str, ...]  # module types the onnx backend cannot run (e.g. Dense)

    @classmethod
    def read(cls, root: Path) -> SentenceConfig:
        modules_file = root / "modules.json"
        if modules_file.exists():
            try:
                modules = json.loads(modules_file.read_text(encoding="utf-8"))
            except ValueError as e:
                raise ModelError(f"cannot read {modules_file}: {e}") from e
        else:
            # A plain Hugging Face checkpoint: sentence-transformers wraps it as Transformer + mean Pooling.
            modules = [{"type": "sentence_transformers.models.Transformer", "path": ""}]
        transformer_dir, normalize, unsupported = root, False, []
        pooling: tuple[str, ...] = ("mean",)
        if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
            raise ModelError(f"{modules_file} must be a JSON list of module objects")
        for m in modules:
            kind = str(m.get("type", "")).rsplit(".", 1)[-1]
            mdir = root / str(m.get("path", ""))
            if kind == "Transformer":
                transformer_dir = mdir
            elif kind == "Pooling":
                pooling = _pooling_modes(_read_json(mdir / "config.json"), mdir / "config.json")
            elif kind == "Normalize":
                normalize = True
            else:
                unsupported.append(kind or "?")
        st_cfg = transformer_dir / "sentence_bert_config.json"
        st = _read_json(st_cfg) if st_cfg.exists() else {}
        max_len = st.get("max_seq_length")
        if not isinstance(max_len, int) or max_len <= 0:
            max_len = _model_max_length(transformer_dir)
        return cls(
            transformer_dir,
            max_len,
            bool(st.get("do_lower_case", False)),
            pooling,
            normalize,
            tuple(unsupported),
        )


def _pooling_modes(cfg: Mapping[str, Any], where: Path) -> tuple[str, ...]:
    raw = cfg.get("pooling_mode")
    if raw is None:
        modes = tuple(mode for key, mode in _LEGACY_POOLING.items() if cfg.get(key))
    else:
        modes = (raw,) if isinstance(raw, str) else tuple(raw)
    bad = [m for m in modes if m not in POOLING_MODES]
    if not modes or bad:
        raise ModelError(f"{where}: pooling mode {bad or 'none'} is not one of {', '.join(POOLING_MODES)}")
    return modes


def _model_max_length(transformer_dir: Path) -> int:
    """What sentence-transformers falls back to: the smaller of the position table and the tokenizer's limit."""
    limits = []
    for name, key in (
        ("config.json", "max_position_embeddings"),
        ("tokenizer_config.json", "model_max_length"),
    ):
        f = transformer_dir / name
        value = _read_json(f).get(key) if f.exists() else None
        if isinstance(value, int | float) and 0 < value < 1_000_000:
            limits.append(int(value))
    return min(limits) if limits else 512


def decode_texts(arr: np.ndarray[Any, Any], name: str = INPUT) -> list[str]:
    """The rows of a BYTES tensor as strings; errors say which row is wrong and how."""
    if not isinstance(arr, np.ndarray):
        raise ModelError(f"input {name!r} must be a BYTES tensor, got {type(arr).__name__}")
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ModelError(f"input {name!r} must have shape [-1] (one text per row), got {list(arr.shape)}")
    if arr.dtype.kind not in ("O", "S", "U"):
        raise ModelError(f"input {name!r} must be BYTES (UTF-8 text), got numeric dtype {arr.dtype}")
    try:
        return [x.decode("utf-8") if isinstance(x, bytes) else _as_str(x) for x in arr.tolist()]
    except (TypeError, UnicodeDecodeError):
        pass
    for i, x in enumerate(arr.tolist()):  # slow path only to say which row is wrong
        if isinstance(x, bytes):
            try:
                x.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ModelError(f"input {name!r} row {i} is not valid UTF-8: {e.reason} at byte {e.start}") from None
        elif not isinstance(x, str):
            raise ModelError(f"input {name!r} row {i} must be bytes (UTF-8 text), got {type(x).__name__}")
    raise ModelError(f"input {name!r} could not be decoded")  # pragma: no cover - the loop finds the row


def _as_str(x: object) -> str:
    if isinstance(x, str):
        return x
    raise TypeError


def pool(tokens: np.ndarray[Any, Any], mask: np.ndarray[Any, Any], modes: Sequence[str]) -> np.ndarray[Any, Any]:
    """sentence-transformers' Pooling on right-padded ``tokens [b, L, d]`` with ``mask [b, L]`` (1 = real token)."""
    maskf = mask.astype(np.float32)
    lengths = maskf.sum(axis=1, keepdims=True)  # [b, 1]
    out = []
    for mode in modes:
        if mode == "cls":
            out.append(tokens[:, 0])
        elif mode == "max":
            out.append(np.where(maskf[:, :, None] > 0, tokens, -np.inf).max(axis=1))
        elif mode in ("mean", "mean_sqrt_len_tokens"):
            summed = np.matmul(maskf[:, None, :], tokens)[:, 0]  # batched GEMV, [b, d]
            denom = np.maximum(lengths, 1e-9)
            out.append(summed / (denom if mode == "mean" else np.sqrt(denom)))
        elif mode == "weightedmean":
            w = maskf * np.arange(1, tokens.shape[1] + 1, dtype=np.float32)[None, :]
            out.append(np.matmul(w[:, None, :], tokens)[:, 0] / np.maximum(w.sum(axis=1, keepdims=True), 1e-9))
        elif mode == "lasttoken":
            last = np.maximum(mask.sum(axis=1).astype(np.int64) - 1, 0)
            out.append(tokens[np.arange(tokens.shape[0]), last])
        else:
            raise ModelError(f"pooling mode {mode!r} is not one of {', '.join(POOLING_MODES)}")
    result = out[0] if len(out) == 1 else np.concatenate(out, axis=1)
    return np.asarray(result, dtype=np.float32)


def _normalize(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    # torch.nn.functional.normalize: x / max(||x||, eps)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


def _positive_int(args: Mapping[str, Any], key: str) -> int | None:
    value = args.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelError(f"args.{key} must be an integer >= 1, got {value!r}")
    return value


class EmbeddingModel:
    """A sentence-embedding model behind the ``Model`` protocol, plus ``embed`` and ``count_tokens``."""

    def __init__(self, name: str, version: str, path: Path, args: Mapping[str, Any]) -> None:
        self.name = name
        self.version = version
        self.path = Path(path)
        self.args = dict(args)
        self.dim = 0
        self.config: SentenceConfig | None = None
        self._tok: Any = None
        self._encode: Any = None
        self._pad_id = 0
        self._sess: Any = None
        self._feeds: tuple[str, ...] = ()
        self._out_name = ""
        self._pooled_output = False
        self._st: Any = None
        self._max_tokens = _DEFAULT_BATCH_TOKENS

    # -- loading -------------------------------------------------------------------------------------------------
    def load(self) -> ModelInfo:
        unknown = sorted(set(self.args) - ARGS)
        if unknown:
            raise ModelError(f"args {unknown} are not known to sentence-transformers models; allowed: {sorted(ARGS)}")
        backend = self.args.get("backend", "onnx")
        if backend not in BACKENDS:
            raise ModelError(f"args.backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if not self.path.is_dir():
            raise ModelError(
                f"model directory {self.path} does not exist (a sentence-transformers checkpoint "
                "or an ONNX export of one is a directory)"
            )
        threads = intra_op_threads(self.args)
        self._max_tokens = _positive_int(self.args, "maxBatchTokens") or _DEFAULT_BATCH_TOKENS
        cfg = SentenceConfig.read(self.path)
        limit = _positive_int(self.args, "maxSeqLength")
        if limit is not None and limit < cfg.max_seq_length:
            cfg = SentenceConfig(
                cfg.transformer_dir, limit, cfg.do_lower_case, cfg.pooling, cfg.normalize, cfg.unsupported
            )
        self.config = cfg
        self._load_tokenizer(cfg)
        if backend == "onnx":
            platform, extra = self._load_onnx(cfg, threads)
        else:
            platform, extra = self._load_torch(cfg, threads)
        extra |= {
            "backend": backend,
            "dimension": self.dim,
            "max_seq_length": cfg.max_seq_length,
            "pooling": list(cfg.pooling),
            "normalize": cfg.normalize,
            "intra_op_threads": threads,
        }
        return ModelInfo(
            platform=platform,
            inputs=[TensorSpec(INPUT, "BYTES", (-1,))],
            outputs=[TensorSpec(OUTPUT, "FP32", (-1, self.dim))],
            extra=extra,
        )

    def _load_tokenizer(self, cfg: SentenceConfig) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as e:  # pragma: no cover - depends on extras
            raise ModelError("embedding models need the [embeddings] extra: pip install 'kubeinfer[embeddings]'") from e
        tok_file = cfg.transformer_dir / "tokenizer.json"
        if not tok_file.exists():
            raise ModelError(f"{tok_file} does not exist: the model needs a fast tokenizer file (tokenizer.json)")
        try:
            tok = Tokenizer.from_file(str(tok_file))
        except Exception as e:
            raise ModelError(f"cannot load tokenizer {tok_file}: {e}") from e
        padding = tok.padding or {}
        self._pad_id = int(padding.get("pad_id", 0))
        # tokenizer.json often carries the training-time padding/truncation (all-MiniLM-L6-v2: fixed 128);
        # serving truncates to max_seq_length and pads per run itself.
        tok.no_padding()
        tok.enable_truncation(max_length=cfg.max_seq_length)
        self._tok = tok
        self._encode = getattr(tok, "encode_batch_fast", tok.encode_batch)  # fast: skips character offsets
        # The tokenizer's own thread pool has a thread per CPU of the machine, beside the runtime's threads, the event
        # loop and the replica's other processes: tokenizing a batch in parallel took CPU from all of them (MiniLM,
        # two processes of one thread, 64 clients: 802 -> 863 sentences/s, server CPU 2,400 -> 2,273 us a request).
        # Sequential unless the operator set TOKENIZERS_PARALLELISM; read by the library at each call.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    def _load_onnx(self, cfg: SentenceConfig, threads: int | None) -> tuple[str, dict[str, Any]]:
        if cfg.unsupported:
            raise ModelError(
                f"modules {list(cfg.unsupported)} of {self.path} are not supported by the onnx "
                "backend; use args.backend: torch"
            )
        try:
            import onnxruntime  # noqa: F401  (fail early, with the extra to install)
        except ImportError as e:  # pragma: no cover - depends on extras
            raise ModelError("embedding models need the [embeddings] extra: pip install 'kubeinfer[embeddings]'") from e
        candidates = [self.args["onnxFile"]] if self.args.get("onnxFile") else list(_ONNX_FILES)
        onnx_path = next((self.path / c for c in candidates if (self.path / c).is_file()), None)
        if onnx_path is None:
            raise ModelError(
                f"no ONNX export in {self.path} (looked for {', '.join(candidates)}); build one with "
                f"`python -m kubeinfer.runtimes.export {self.path}_onnx --src {self.path}` or use "
                "args.backend: torch"
            )
        try:
            self._sess = session(str(onnx_path), threads)
        except Exception as e:
            raise ModelError(f"ONNX Runtime cannot load {onnx_path}: {e}") from e
        known = {"input_ids", "attention_mask", "token_type_ids"}
        self._feeds = tuple(i.name for i in self._sess.get_inputs())
        if "input_ids" not in self._feeds or not set(self._feeds) <= known:
            raise ModelError(
                f"{onnx_path} takes inputs {list(self._feeds)}; expected input_ids and optionally "
                "attention_mask, token_type_ids"
            )
        outs = {o.name: o for o in self._sess.get_outputs()}
        name = next((n for n in _TOKEN_OUTPUTS if n in outs), next(iter(outs)))
        shape = outs[name].shape
        self._out_name, self._pooled_output = name, len(shape) == 2
        hidden = shape[-1] if isinstance(shape[-1], int) else self._probe_dim()
        # Pooling concatenates one vector per mode; a graph that pools itself already gives the final width.
        self.dim = hidden if self._pooled_output else hidden * len(cfg.pooling)
        return "onnxruntime_onnx", {
            "onnx_file": str(onnx_path.relative_to(self.path)),
            "providers": self._sess.get_providers(),
        }

    def _probe_dim(self) -> int:
        out = self._sess.run([self._out_name], self._feed(np.array([[self._pad_id]], np.int64), np.ones((1, 1))))
        return int(out[0].shape[-1])

    def _load_torch(self, cfg: SentenceConfig, threads: int | None) -> tuple[str, dict[str, Any]]:
        # Local directory only: never reach the Hugging Face hub from a replica.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as e:  # pragma: no cover - depends on extras
            raise ModelError("args.backend: torch needs torch and sentence-transformers installed") from e
        if threads:
            torch.set_num_threads(threads)
        device = "cuda" if os.environ.get("CUDA_VISIBLE_DEVICES") and torch.cuda.is_available() else "cpu"
        try:
            st = SentenceTransformer(str(self.path), device=device, local_files_only=True)
        except Exception as e:
            raise ModelError(f"sentence-transformers cannot load {self.path}: {e}") from e
        st.max_seq_length = cfg.max_seq_length
        self._st = st
        # sentence-transformers >= 6 renamed get_sentence_embedding_dimension (the old name warns).
        getter = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
        dim = getter()
        if not dim:
            dim = int(st.encode(["probe"], convert_to_numpy=True).shape[1])
        self.dim = int(dim)
        return "pytorch", {"device": device, "torch": torch.__version__}

    # -- serving -------------------------------------------------------------------------------------------------
    def predict(
        self, inputs: Mapping[str, np.ndarray[Any, Any]], outputs: frozenset[str] | None = None
    ) -> dict[str, np.ndarray[Any, Any]]:
        if INPUT not in inputs:
            raise ModelError(f"input {INPUT!r} is missing; this model takes one BYTES tensor named {INPUT!r}")
        texts = decode_texts(inputs[INPUT])
        if outputs is not None and OUTPUT not in outputs:
            return {}
        return {OUTPUT: self.embed(texts)}

    def embed(self, texts: Sequence[str]) -> np.ndarray[Any, Any]:
        """Embeddings ``[len(texts), dim]`` (float32) of already-decoded texts."""
        cfg = self.config
        if self._tok is None or cfg is None:
            raise ModelError(f"model {self.name!r} is not loaded")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._st is not None:
            emb = self._st.encode(list(texts), batch_size=64, convert_to_numpy=True, show_progress_bar=False)
            return np.ascontiguousarray(emb, dtype=np.float32)
        return self._embed_onnx(texts, cfg)

    def count_tokens(self, texts: Sequence[str]) -> int:
        """Tokens the model sees for ``texts`` (special tokens included, after truncation): OpenAI ``usage``."""
        return sum(len(e.ids) for e in self._tokenize(texts))

    def _tokenize(self, texts: Sequence[str]) -> list[Any]:
        if self.config is not None and self.config.do_lower_case:
            texts = [t.lower() for t in texts]
        return list(self._encode(list(texts)))

    def _embed_onnx(self, texts: Sequence[str], cfg: SentenceConfig) -> np.ndarray[Any, Any]:
        encs = self._tokenize(texts)
        lengths = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
        order = np.argsort(lengths, kind="stable")
        result = np.empty((len(encs), self.dim), dtype=np.float32)
        start = 0
        while start < len(order):
            # Rows ascend in length, so a run's padded size is its last row's length times its row count.
            stop = start + 1
            while stop < len(order) and (stop + 1 - start) * int(lengths[order[stop]]) <= self._max_tokens:
                stop += 1
            rows = order[start:stop]
            width = int(lengths[rows[-1]])
            ids = np.full((len(rows), width), self._pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                n = int(lengths[i])
                ids[r, :n] = encs[i].ids
                mask[r, :n] = 1
            result[rows] = self._run(ids, mask, cfg)
            start = stop
        return result

    def _feed(self, ids: np.ndarray[Any, Any], mask: np.ndarray[Any, Any]) -> dict[str, np.ndarray[Any, Any]]:
        feed = {
            "input_ids": ids,
            "attention_mask": mask.astype(np.int64),
            "token_type_ids": np.zeros_like(ids),
        }
        return {k: feed[k] for k in self._feeds}

    def _run(self, ids: np.ndarray[Any, Any], mask: np.ndarray[Any, Any], cfg: SentenceConfig) -> np.ndarray[Any, Any]:
        (out,) = self._sess.run([self._out_name], self._feed(ids, mask))
        emb = out if self._pooled_output else pool(out, mask, cfg.pooling)
        return _normalize(emb) if cfg.normalize else np.asarray(emb, dtype=np.float32)
