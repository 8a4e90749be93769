#!/usr/bin/env bash
# Set up .venv and run the main job: condense scikit-learn's digits with every method.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh
. .venv/bin/activate
nnkd demo "$@"
