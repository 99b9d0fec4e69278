#!/usr/bin/env bash
# Regenerate the Python modules of the Open Inference Protocol v2 gRPC service from
# src/kubeinfer/server/_proto/grpc_predict_v2.proto. The generated modules are committed, so that installing
# kubeinfer needs no grpcio-tools; run this after changing the .proto, with the dev extra installed.
#
#   scripts/gen_proto.sh            (uses .venv/bin/python if present, else python3)
#
# Only the message modules are generated: the server registers its handlers with a generic handler
# (grpc_service.py), and clients have ready-made stubs in tritonclient.grpc, so no *_pb2_grpc servicer module is
# kept (its base class is nothing but "not implemented" placeholders).
#
# One edit follows protoc: the messages are registered in a descriptor pool of their own instead of protobuf's default pool. The
#   protocol's message names (inference.ModelInferRequest ...) are also registered by tritonclient.grpc and by
# kserve; in the default pool, importing two of them in one process fails with "duplicate symbol".
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT=src/kubeinfer/server/_proto
"$PY" -m grpc_tools.protoc -I src --python_out=src --pyi_out=src \
  kubeinfer/server/_proto/grpc_predict_v2.proto
"$PY" - "$OUT" <<'PYEOF'
import sys
from pathlib import Path

out = Path(sys.argv[1])
pb2 = out / "grpc_predict_v2_pb2.py"
text = pb2.read_text()
old = "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
if old not in text:
    sys.exit(f"gen_proto.sh: {pb2} no longer has {old!r}; update this script for the new protoc output")
text = text.replace(
    old,
    "# kubeinfer: a private pool, so that tritonclient.grpc or kserve can be imported in the same process.\n"
    "POOL = _descriptor_pool.DescriptorPool()\nDESCRIPTOR = POOL.AddSerializedFile(",
)
pb2.write_text(text)

PYEOF
touch "$OUT/__init__.py"
echo "generated $(ls "$OUT"/*_pb2*.py* | tr '\n' ' ')"
