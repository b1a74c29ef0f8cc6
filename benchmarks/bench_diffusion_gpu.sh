#!/usr/bin/env bash
# Kang OOS + calibration of the diffusion manipulator on one CUDA GPU: one process per held-out cell type
# (the denoiser is small, so 7 processes share the GPU well), then one merged folder.
#   bash benchmarks/bench_diffusion_gpu.sh valid|full OUT [bench_diffusion.py oos options, e.g. --n-samples 100]
# DATA_DIR (default ../shared/data) holds the Kang files; THREADS (default 2) torch CPU threads per process.
set -euo pipefail
cd "$(dirname "$0")/.."
stage=$1 out=$2
shift 2
data_dir=${DATA_DIR:-../shared/data}
case $stage in
  valid) data=$data_dir/kang_pbmc_scgen_valid.h5ad split=(--context-key cell_type)
         contexts=(CD4T CD14+Mono B CD8T NK FCGR3A+Mono Dendritic) ;;
  full)  data=$data_dir/kang_ifnb_full.h5ad split=(--preprocess kang-full --context-key cell_type_coarse)
         contexts=(B CD14+Mono CD4T CD8T Dendritic FCGR3A+Mono NK) ;;
  *) echo "unknown stage $stage (valid or full)" >&2; exit 2 ;;
esac
mkdir -p "$out/parts"
pids=()
for context in "${contexts[@]}"; do
  python benchmarks/bench_diffusion.py oos --data "$data" "${split[@]}" --contexts "$context" --device cuda \
      --encoder-option device=cuda --threads "${THREADS:-2}" --quiet --out "$out/parts/$context" "$@" \
      > "$out/parts/$context.log" 2>&1 &
  pids+=($!)
done
failed=0
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || { echo "${contexts[$i]} failed:" >&2; tail -20 "$out/parts/${contexts[$i]}.log" >&2; failed=1; }
done
[ "$failed" = 0 ]
parts=()
for context in "${contexts[@]}"; do parts+=("$out/parts/$context"); done
python benchmarks/bench_diffusion.py merge "${parts[@]}" --out "$out"
