#!/usr/bin/env bash
# Real-data runs of the docs/evaluation.md protocols (numbers in benchmarks/RESULTS.md).
#
#   benchmarks/run_kang.sh [stage ...]        (default: every stage, in this order)
#
# stages: valid-pca valid-vae valid-ood-pca valid-ood-vae full-pca full-vae pert-pca pert-vae valid-vae-scgen
# (valid-vae-scgen: the VAE trained with scGen's own settings, virtualcell.representations.vae.SCGEN_SETTINGS)
# Outputs: benchmarks/out/<stage>/{results.json,results.md,predictions/,plots/}  (git-ignored).
# Environment: DATA, OUT, THREADS, SEED (see benchmarks/env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

source benchmarks/env.sh
common=(--seed "$SEED" --threads "$THREADS" --overwrite)

stage() {
  case "$1" in
    valid-pca)     run_benchmark "$1" oos --data "$VALID" --encoder pca --manipulator latent-arithmetic ;;
    valid-vae)     run_benchmark "$1" oos --data "$VALID" --encoder vae --manipulator latent-arithmetic ;;
    valid-ood-pca) run_benchmark "$1" ood --data "$VALID" --encoder pca --manipulator latent-arithmetic ;;
    valid-ood-vae) run_benchmark "$1" ood --data "$VALID" --encoder vae --manipulator latent-arithmetic ;;
    valid-vae-scgen) run_benchmark "$1" oos --data "$VALID" --encoder vae --manipulator latent-arithmetic \
                       --encoder-option dropout=0.2 --encoder-option batch_size=32 --encoder-option lr=0.001 \
                       --encoder-option adam_eps=0.01 --encoder-option max_epochs=100 --encoder-option patience=25 ;;
    full-pca)      run_benchmark "$1" oos --data "$FULL" "${full[@]}" --encoder pca --manipulator latent-arithmetic ;;
    full-vae)      run_benchmark "$1" oos --data "$FULL" "${full[@]}" --encoder vae --manipulator latent-arithmetic ;;
    pert-pca)      run_benchmark "$1" pert --data "$PAPALEXI" --preprocess log1p --encoder pca --manipulator latent-arithmetic ;;
    pert-vae)      run_benchmark "$1" pert --data "$PAPALEXI" --preprocess log1p --encoder vae --manipulator latent-arithmetic ;;
    *) echo "unknown stage $1" >&2; exit 2 ;;
  esac
}

stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(valid-pca valid-vae valid-ood-pca valid-ood-vae full-pca full-vae pert-pca pert-vae)
for s in "${stages[@]}"; do stage "$s"; done
