#!/usr/bin/env bash
# Create (or reuse) .venv and install nnkd with everything the demo, the server and the tests need.
# torch is installed first, pinned to the CPU build, so no resolver ever pulls a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "torch==2.13.0"
# Editable install: builds the C extension (cext/) in place so tests run against this tree.
python -m pip install --quiet -e ".[ann,test,bench,serve]"
python -c "import nnkd._cext" || { echo "nnkd: the C extension did not build" >&2; exit 1; }
