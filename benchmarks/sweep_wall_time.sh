#!/usr/bin/env bash
# Wall time of one real sweep (sweeps/mnist-mini-levels.toml) with 1 and then 2
# local workers, each into a fresh folder; BLAS single-threaded in every worker.
# Usage: bash benchmarks/sweep_wall_time.sh [OUT_FOLDER]   (default runs/bench-sweep)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/bench-sweep}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
for workers in 1 2; do
    rm -rf "$out/j$workers"
    start=$(date +%s.%N)
    eqprop sweep sweeps/mnist-mini-levels.toml --workers "$workers" --out "$out/j$workers" \
        > "$out-j$workers.txt" 2>&1 || true
    end=$(date +%s.%N)
    echo "workers $workers: $(echo "$end - $start" | bc) s wall"
done
