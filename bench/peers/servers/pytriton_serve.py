"""PyTriton: the Triton Inference Server that nvidia-pytriton bundles, with the Python model bound through
``triton.bind``, Triton's dynamic batcher on (max_batch_size, max_queue_delay_microseconds).

OIP v2 REST (Triton's HTTP endpoint): POST /v2/models/{tabular64|hgb64|rf64|mixed|minilm}/infer; mixed has one
input per column (``age``/``income`` FP64, ``city``/``plan`` BYTES, each [batch, 1]), the batch becomes a pandas
DataFrame.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import common
import numpy as np


def _own_libpython() -> None:
    """Triton runs the Python model in ``triton_python_backend_stub``, which links ``libpython3.X.so.1.0`` through
    the dynamic loader but imports the standard library of this interpreter. Where the two differ (here: Debian's
    /lib/x86_64-linux-gnu/libpython3.11.so.1.0, 3.11.2, against a 3.11.7 interpreter) the stub dies at model load
    (``'_thread.RLock' object has no attribute '_recursion_count'``). Put this interpreter's own libpython first."""
    lib = Path(sys.base_prefix) / "lib"
    if (lib / f"libpython{sys.version_info.major}.{sys.version_info.minor}.so.1.0").exists():
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(lib), os.environ.get("LD_LIBRARY_PATH")]))


def main() -> None:
    _own_libpython()
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    config = ModelConfig(
        max_batch_size=common.MAX_BATCH,
        batcher=DynamicBatcher(max_queue_delay_microseconds=int(common.MAX_DELAY_MS * 1000)),
    )
    triton_config = TritonConfig(
        http_address=common.HOST,
        http_port=common.PORT,
        grpc_address=common.HOST,
        grpc_port=common.PORT2,
        metrics_port=common.PORT3,
    )
    with Triton(config=triton_config) as triton:
        if common.KIND == "rows":
            model = common.load_sklearn()

            @batch
            def infer_rows(input: np.ndarray) -> dict[str, np.ndarray]:
                # C order: HistGradientBoosting answers a Fortran-ordered array, which Triton's proxy would send
                # as it lies in memory ("output tensor shape does not match size of output")
                return {"predict_proba": np.ascontiguousarray(model.predict_proba(input), dtype=np.float32)}

            triton.bind(
                model_name=common.MODEL,
                infer_func=infer_rows,
                inputs=[Tensor(name="input", dtype=np.float32, shape=(model.n_features_in_,))],
                outputs=[Tensor(name="predict_proba", dtype=np.float32, shape=(common.n_classes(model),))],
                config=config,
            )
        elif common.KIND == "table":
            table = common.load_sklearn()

            @batch
            def infer_table(**columns: np.ndarray) -> dict[str, np.ndarray]:
                x = common.frame({name: v.reshape(-1) for name, v in columns.items()})
                return {"predict_proba": np.ascontiguousarray(table.predict_proba(x), dtype=np.float32)}

            triton.bind(
                model_name=common.MODEL,
                infer_func=infer_table,
                inputs=[
                    Tensor(name=name, dtype=bytes if dt == "BYTES" else np.float64, shape=(1,))
                    for name, dt in common.COLUMNS
                ],
                outputs=[Tensor(name="predict_proba", dtype=np.float32, shape=(common.n_classes(table),))],
                config=config,
            )
        else:
            st = common.load_minilm()

            @batch
            def infer_text(text: np.ndarray) -> dict[str, np.ndarray]:
                return {"embedding": st.encode(common.texts(text), convert_to_numpy=True).astype(np.float32)}

            triton.bind(
                model_name="minilm",
                infer_func=infer_text,
                inputs=[Tensor(name="text", dtype=bytes, shape=(1,))],
                outputs=[Tensor(name="embedding", dtype=np.float32, shape=(384,))],
                config=config,
            )
        triton.serve()


if __name__ == "__main__":
    main()
