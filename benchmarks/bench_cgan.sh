#!/usr/bin/env bash
# The cgan manipulator on the docs/evaluation.md protocols (numbers in benchmarks/RESULTS.md).
#
#   benchmarks/bench_cgan.sh [stage ...]        (default: every stage, in this order)
#
# stages: valid-oos valid-ood full-oos full-ood pert
# Every run also scores the control and mean-shift baselines on the same split.
# Outputs: benchmarks/out/cgan-<stage>/{results.json,results.md,predictions/,plots/}  (git-ignored),
#          benchmarks/out/cgan-<stage>.time (/usr/bin/time -v), benchmarks/out/cgan-<stage>.log.
# Environment: DATA, OUT, THREADS, SEED (see benchmarks/env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

source benchmarks/env.sh
common=(--encoder identity-encoder --manipulator cgan --seed "$SEED" --threads "$THREADS" --overwrite)
# Kang valid (1.7k training cells): 20 epochs of batch 64, every cell once per epoch (~540 generator steps).
valid_options=(--manipulator-option max_epochs=20 --manipulator-option batch_size=64)
# Kang full (12k) and Papalexi (11k training cells): the same number of steps, 2048 random cells an epoch.
large_options=(--manipulator-option max_epochs=20 --manipulator-option batch_size=64
               --manipulator-option epoch_cells=2048)

stage() {
  case "$1" in
    valid-oos) run_benchmark "cgan-$1" oos --data "$VALID" "${valid_options[@]}" ;;
    valid-ood) run_benchmark "cgan-$1" ood --data "$VALID" "${valid_options[@]}" ;;
    full-oos)  run_benchmark "cgan-$1" oos --data "$FULL" "${full[@]}" "${large_options[@]}" ;;
    full-ood)  run_benchmark "cgan-$1" ood --data "$FULL" "${full[@]}" "${large_options[@]}" ;;
    pert)      run_benchmark "cgan-$1" pert --data "$PAPALEXI" --preprocess log1p "${large_options[@]}" ;;
    *) echo "unknown stage $1 (valid-oos valid-ood full-oos full-ood pert)" >&2; exit 2 ;;
  esac
}

stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(valid-oos valid-ood full-oos full-ood pert)
for s in "${stages[@]}"; do stage "$s" 2>&1 | tee "$OUT/cgan-$s.log"; done
