#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
python -m pip install -q -e ".[test]" -e tests/plugins/virtualcell-toy-plugin  # the toy plugin proves the registry
export VIRTUALCELL_PROGRESS=0 MPLBACKEND=Agg
python -m pytest -q "$@"
