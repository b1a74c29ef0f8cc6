# Shared settings of benchmarks/run_kang.sh and benchmarks/bench_cgan.sh (sourced, not run).
# Environment: DATA (folder of the .h5ad files, default ../shared/data), OUT, THREADS (torch threads, 1), SEED (0).
DATA=${DATA:-../shared/data}
OUT=${OUT:-benchmarks/out}
THREADS=${THREADS:-1}
SEED=${SEED:-0}
export TQDM_MININTERVAL=${TQDM_MININTERVAL:-30}   # progress lines in a log file every 30 s, not every 0.1 s

VALID="$DATA/kang_pbmc_scgen_valid.h5ad"
FULL="$DATA/kang_ifnb_full.h5ad"
PAPALEXI="$DATA/papalexi2021_crispr_thp1.h5ad"
full=(--preprocess kang-full --context-key cell_type_coarse --exclude-contexts Megakaryocyte,Erythrocyte)
mkdir -p "$OUT"

run_benchmark() {  # run_benchmark <folder> <args...>: print the exact command, then time it into $OUT/<folder>
  local folder=$1; shift                             # (the caller sets ${common[@]}, appended to every run)
  echo "== $folder: virtualcell benchmark $* --out $OUT/$folder ${common[*]}" >&2
  /usr/bin/time -v -o "$OUT/$folder.time" virtualcell benchmark "$@" --out "$OUT/$folder" "${common[@]}"
}
