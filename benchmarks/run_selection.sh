#!/usr/bin/env bash
# `--manipulator auto` (selection by inner CV on each task's training cells, issue #11) judged on held-out
# contexts; every run's results.json is copied to benchmarks/results/selection/<stage>.json, which
# benchmarks/report_selection.py renders.
#
#   flock /tmp/vc-bench.lock nice benchmarks/run_selection.sh [stage ...]
#
# stages: valid-oos-auto full-oos-auto pert-auto valid-oos-auto-nospread valid-oos-auto-fullbudget
# Environment: DATA, OUT, THREADS (default 2 here), SEED (see benchmarks/env.sh).
# The candidates are select's defaults (virtualcell/selection/candidates.py: mean-shift,
# pca+latent-arithmetic, vae+latent-arithmetic at its own 40 epochs). The first four stages keep the
# runs' earlier cost with select's QUICK inner CV (150 cells per group, inner epochs capped at 15; the
# final fit is full); valid-oos-auto-fullbudget is select's default (faithful) budget. The fidelity of
# either is measured by benchmarks/bench_fidelity.py.
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS=${THREADS:-2}
source benchmarks/env.sh
common=(--seed "$SEED" --threads "$THREADS" --overwrite --no-plots)
# inner CV: 2 worker processes (1 torch thread each); quick: each (fold, condition) group subsampled to 150
# cells and inner epochs capped at 15 (the final fit of the chosen pipeline uses every training cell)
auto=(--manipulator-option n_jobs=2 --manipulator-option quick=true --manipulator-option max_cells=150)
RESULTS=benchmarks/results/selection
mkdir -p "$RESULTS"

stage() {
  local s=$1
  case "$s" in
    valid-oos-auto) run_benchmark "selection/$s" oos --data "$VALID" --manipulator auto "${auto[@]}" ;;
    # ablation: the same run without the spread step (select(spread=False))
    valid-oos-auto-nospread) run_benchmark "selection/$s" oos --data "$VALID" --manipulator auto "${auto[@]}" \
                     --manipulator-option spread=false ;;
    valid-oos-auto-fullbudget) run_benchmark "selection/$s" oos --data "$VALID" --manipulator auto \
                     --manipulator-option n_jobs=2 ;;
    full-oos-auto)  run_benchmark "selection/$s" oos --data "$FULL" "${full[@]}" --manipulator auto "${auto[@]}" ;;
    pert-auto)      run_benchmark "selection/$s" pert --data "$PAPALEXI" --preprocess log1p --manipulator auto "${auto[@]}" ;;
    *) echo "unknown stage $s" >&2; exit 2 ;;
  esac
  cp "$OUT/selection/$s/results.json" "$RESULTS/$s.json"
}

stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(valid-oos-auto full-oos-auto pert-auto)
for s in "${stages[@]}"; do stage "$s"; done
