#!/usr/bin/env bash
# Conformal intervals from inner folds (issue 22 item 4): every run's results.json is copied to
# benchmarks/results/coverage/<stage>.json, which benchmarks/report_coverage.py renders.
#
#   benchmarks/run_coverage.sh [stage ...]
#
# stages: valid-oos-pca valid-oos-vae pert-pca full-oos-pca
# Each run gives every method of the run (the named one and the baselines) conformal intervals
# calibrated on the held-out unit's training cells only (--conformal; docs/uncertainty.md).
# Environment: DATA, OUT, THREADS (default 2 here), SEED (see benchmarks/env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS=${THREADS:-2}
source benchmarks/env.sh
common=(--seed "$SEED" --threads "$THREADS" --overwrite --no-plots --conformal --quiet)
RESULTS=benchmarks/results/coverage
mkdir -p "$RESULTS" "$OUT/coverage"

stage() {
  local s=$1
  case "$s" in
    valid-oos-pca) run_benchmark "coverage/$s" oos --data "$VALID" --encoder pca --manipulator latent-arithmetic ;;
    valid-oos-vae) run_benchmark "coverage/$s" oos --data "$VALID" --encoder vae --manipulator latent-arithmetic ;;
    pert-pca)      run_benchmark "coverage/$s" pert --data "$PAPALEXI" --preprocess log1p --encoder pca \
                     --manipulator latent-arithmetic ;;
    full-oos-pca)  run_benchmark "coverage/$s" oos --data "$FULL" "${full[@]}" --encoder pca --manipulator latent-arithmetic ;;
    *) echo "unknown stage $s" >&2; exit 2 ;;
  esac
  cp "$OUT/coverage/$s/results.json" "$RESULTS/$s.json"
}

stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(valid-oos-pca pert-pca)
for s in "${stages[@]}"; do stage "$s"; done
