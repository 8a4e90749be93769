#!/usr/bin/env bash
# Set up .venv and run the whole test suite (plus the import-layer contract).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh
. .venv/bin/activate
lint-imports
python -m pytest -q "$@"
