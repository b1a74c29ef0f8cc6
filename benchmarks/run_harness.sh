#!/usr/bin/env bash
# Metrics-v2 runs of the harness (issue #11): every run's results.json is copied to
# benchmarks/results/harness/<stage>.json, which benchmarks/report_harness.py renders.
#
#   flock /tmp/vc-bench.lock nice benchmarks/run_harness.sh [stage ...]
#
# stages: valid-oos-pca valid-oos-vae valid-ood-pca valid-ood-vae full-oos-pca full-oos-vae full-ood-pca
#         full-ood-vae pert-pca pert-vae valid-oos-cgan valid-oos-diffusion valid-ood-cgan valid-ood-diffusion
#         full-oos-cgan full-ood-cgan full-oos-diffusion full-ood-diffusion pert-cgan pert-diffusion
# Environment: DATA, OUT, THREADS (default 2 here), SEED (see benchmarks/env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS=${THREADS:-2}
source benchmarks/env.sh
common=(--seed "$SEED" --threads "$THREADS" --overwrite --no-plots)
RESULTS=benchmarks/results/harness
diffusion=(--manipulator-option max_epochs=40)
mkdir -p "$RESULTS"

keep() {  # keep <stage>: the run's JSON (no h5ad) into the committed results folder
  cp "$OUT/harness/$1/results.json" "$RESULTS/$1.json"
}

stage() {
  local s=$1
  case "$s" in
    valid-oos-pca) run_benchmark "harness/$s" oos --data "$VALID" --encoder pca --manipulator latent-arithmetic ;;
    valid-oos-vae) run_benchmark "harness/$s" oos --data "$VALID" --encoder vae --manipulator latent-arithmetic ;;
    valid-ood-pca) run_benchmark "harness/$s" ood --data "$VALID" --encoder pca --manipulator latent-arithmetic ;;
    valid-ood-vae) run_benchmark "harness/$s" ood --data "$VALID" --encoder vae --manipulator latent-arithmetic ;;
    full-oos-pca)  run_benchmark "harness/$s" oos --data "$FULL" "${full[@]}" --encoder pca --manipulator latent-arithmetic ;;
    full-ood-pca)  run_benchmark "harness/$s" ood --data "$FULL" "${full[@]}" --encoder pca --manipulator latent-arithmetic ;;
    # Kang full with the VAE: 20 epochs (not the default) to keep a run near 10 minutes on 2 cores
    full-oos-vae)  run_benchmark "harness/$s" oos --data "$FULL" "${full[@]}" --encoder vae --manipulator latent-arithmetic \
                     --encoder-option max_epochs=20 ;;
    full-ood-vae)  run_benchmark "harness/$s" ood --data "$FULL" "${full[@]}" --encoder vae --manipulator latent-arithmetic \
                     --encoder-option max_epochs=20 ;;
    pert-pca)      run_benchmark "harness/$s" pert --data "$PAPALEXI" --preprocess log1p --encoder pca --manipulator latent-arithmetic ;;
    pert-vae)      run_benchmark "harness/$s" pert --data "$PAPALEXI" --preprocess log1p --encoder vae --manipulator latent-arithmetic ;;
    valid-oos-cgan) run_benchmark "harness/$s" oos --data "$VALID" --encoder vae --manipulator cgan --n-samples 20 ;;
    # diffusion: 40 epochs (its default, 300 with early stopping, is sized for a GPU; 40 took 1-4 min per fit here)
    valid-oos-diffusion) run_benchmark "harness/$s" oos --data "$VALID" --encoder vae --manipulator diffusion --n-samples 20 \
                     "${diffusion[@]}" ;;
    # the sampling manipulators beyond Kang valid OOS, each with 20 samples for coverage90
    valid-ood-cgan) run_benchmark "harness/$s" ood --data "$VALID" --encoder vae --manipulator cgan --n-samples 20 ;;
    valid-ood-diffusion) run_benchmark "harness/$s" ood --data "$VALID" --encoder vae --manipulator diffusion --n-samples 20 \
                     "${diffusion[@]}" ;;
    # Kang full: the VAE at 20 epochs as above, the CGAN at 10 (its progress bar showed ~10 s per epoch on 2 cores)
    full-oos-cgan) run_benchmark "harness/$s" oos --data "$FULL" "${full[@]}" --encoder vae --manipulator cgan --n-samples 20 \
                     --encoder-option max_epochs=20 --manipulator-option max_epochs=10 ;;
    full-ood-cgan) run_benchmark "harness/$s" ood --data "$FULL" "${full[@]}" --encoder vae --manipulator cgan --n-samples 20 \
                     --encoder-option max_epochs=20 --manipulator-option max_epochs=10 ;;
    full-oos-diffusion) run_benchmark "harness/$s" oos --data "$FULL" "${full[@]}" --encoder vae --manipulator diffusion \
                     --n-samples 20 --encoder-option max_epochs=20 "${diffusion[@]}" ;;
    full-ood-diffusion) run_benchmark "harness/$s" ood --data "$FULL" "${full[@]}" --encoder vae --manipulator diffusion \
                     --n-samples 20 --encoder-option max_epochs=20 "${diffusion[@]}" ;;
    # Papalexi: one fit serves every target, so the VAE keeps its defaults
    pert-cgan)     run_benchmark "harness/$s" pert --data "$PAPALEXI" --preprocess log1p --encoder vae --manipulator cgan --n-samples 20 ;;
    pert-diffusion) run_benchmark "harness/$s" pert --data "$PAPALEXI" --preprocess log1p --encoder vae --manipulator diffusion \
                     --n-samples 20 "${diffusion[@]}" ;;
    *) echo "unknown stage $s" >&2; exit 2 ;;
  esac
  keep "$s"
}

stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(valid-oos-pca pert-pca pert-vae valid-oos-vae valid-ood-pca valid-ood-vae full-oos-pca full-ood-pca)
for s in "${stages[@]}"; do stage "$s"; done
