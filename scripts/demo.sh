#!/usr/bin/env bash
# Set up .venv and run the main job: distil a PyTorch teacher on digits into compressed students.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh
. .venv/bin/activate
nnkd demo "$@"
