#!/usr/bin/env bash
# One real sweep (circuits/sweeps/mnist-mini-levels.toml) with 1 and then 2 local
# workers, each into a fresh folder, BLAS single-threaded in every worker;
# prints the wall time of each and checks that both give the same results.
# Copies the results, the summary and the figures of the 2-worker run to
# benchmarks/results/sweep-mnist-mini-levels/.
# Usage: bash benchmarks/sweep_wall_time.sh [OUT_FOLDER]   (default runs/bench-sweep)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/bench-sweep}
results=benchmarks/results/sweep-mnist-mini-levels
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$out"
for workers in 1 2; do
    rm -rf "$out/j$workers"
    start=$(date +%s.%N)
    eqprop sweep circuits/sweeps/mnist-mini-levels.toml --workers "$workers" --out "$out/j$workers" \
        > "$out/j$workers.txt" 2>&1 || true
    end=$(date +%s.%N)
    echo "workers $workers: $(echo "$end - $start" | bc) s wall"
done
cmp "$out/j1/results.csv" "$out/j2/results.csv" && echo "1 and 2 workers: the same results.csv"
mkdir -p "$results"
eqprop report "$out/j2" --out "$results"
cp "$out/j2/results.csv" "$out/j2/summary.csv" "$results/"
