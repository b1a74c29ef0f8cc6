#!/usr/bin/env bash
# Real-data runs of the EVALUATION.md protocols (numbers in benchmarks/RESULTS.md).
#
#   benchmarks/run_kang.sh [stage ...]        (default: every stage, in this order)
#
# stages: valid-pca valid-vae valid-ood-pca valid-ood-vae full-pca full-vae pert-pca pert-vae valid-vae-scgen
# (valid-vae-scgen: the VAE trained with scGen's own settings, virtualcell.representations.vae.SCGEN_SETTINGS)
# Outputs: benchmarks/out/<stage>/{results.json,results.md,predictions/,plots/}  (git-ignored).
# Environment: DATA (folder of the .h5ad files, default ../shared/data), OUT, THREADS (torch threads, 1), SEED (0).
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${DATA:-../shared/data}
OUT=${OUT:-benchmarks/out}
THREADS=${THREADS:-1}
SEED=${SEED:-0}
export TQDM_MININTERVAL=${TQDM_MININTERVAL:-30}   # progress lines in a log file every 30 s, not every 0.1 s

VALID="$DATA/kang_pbmc_scgen_valid.h5ad"
FULL="$DATA/kang_ifnb_full.h5ad"
PAPALEXI="$DATA/papalexi2021_crispr_thp1.h5ad"
common=(--seed "$SEED" --threads "$THREADS" --overwrite)
full=(--preprocess kang-full --context-key cell_type_coarse --exclude-contexts Megakaryocyte,Erythrocyte)

run() {  # run <stage> <args...>: echo the exact command, then time it
  local stage=$1; shift
  echo "== $stage: virtualcell benchmark $*" >&2
  /usr/bin/time -v -o "$OUT/$stage.time" virtualcell benchmark "$@" --out "$OUT/$stage" "${common[@]}"
}

stage() {
  case "$1" in
    valid-pca)     run "$1" oos --data "$VALID" --encoder pca --manipulator latent-arithmetic ;;
    valid-vae)     run "$1" oos --data "$VALID" --encoder vae --manipulator latent-arithmetic ;;
    valid-ood-pca) run "$1" ood --data "$VALID" --encoder pca --manipulator latent-arithmetic ;;
    valid-ood-vae) run "$1" ood --data "$VALID" --encoder vae --manipulator latent-arithmetic ;;
    valid-vae-scgen) run "$1" oos --data "$VALID" --encoder vae --manipulator latent-arithmetic \
                       --encoder-option dropout=0.2 --encoder-option batch_size=32 --encoder-option lr=0.001 \
                       --encoder-option adam_eps=0.01 --encoder-option max_epochs=100 --encoder-option patience=25 ;;
    full-pca)      run "$1" oos --data "$FULL" "${full[@]}" --encoder pca --manipulator latent-arithmetic ;;
    full-vae)      run "$1" oos --data "$FULL" "${full[@]}" --encoder vae --manipulator latent-arithmetic ;;
    pert-pca)      run "$1" pert --data "$PAPALEXI" --preprocess log1p --encoder pca --manipulator latent-arithmetic ;;
    pert-vae)      run "$1" pert --data "$PAPALEXI" --preprocess log1p --encoder vae --manipulator latent-arithmetic ;;
    *) echo "unknown stage $1" >&2; exit 2 ;;
  esac
}

mkdir -p "$OUT"
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(valid-pca valid-vae valid-ood-pca valid-ood-vae full-pca full-vae pert-pca pert-vae)
for s in "${stages[@]}"; do stage "$s"; done
