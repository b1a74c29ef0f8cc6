#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the main job: `virtualcell demo` on built-in simulated data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
virtualcell demo --out virtualcell-demo "$@"
