#!/usr/bin/env bash
# Create .venv and install virtualcell (CPU torch first: a bare `torch` requirement would pull a CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0
python -m pip install -q -e .
