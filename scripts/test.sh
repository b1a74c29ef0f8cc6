#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the test suite. The test plugins (tests/plugins/) are installed by
# tests/conftest.py into a throw-away folder for the test session only: .venv is left as you had it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
python -m pip install -q -e ".[test]"
# an earlier version of this script installed the toy plugin into .venv (every command then warned that
# 'mean-shift' is claimed twice): take it out again
if python -m pip show -q virtualcell-toy-plugin >/dev/null 2>&1; then
  python -m pip uninstall -y -q virtualcell-toy-plugin
fi
export VIRTUALCELL_PROGRESS=0 MPLBACKEND=Agg
python -m pytest -q "$@"
