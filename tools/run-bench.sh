#!/usr/bin/env bash
# Runs every benchmark program of a bench build and prints its results.
# Usage: tools/run-bench.sh BUILD_DIR [benchmark filter regex]
set -euo pipefail
dir=$1/bench
filter=${2:-}
found=0
for b in "$dir"/*_bench; do
    [ -x "$b" ] || continue
    found=1
    echo "== $(basename "$b")"
    if [ -n "$filter" ]; then "$b" --benchmark_filter="$filter"; else "$b"; fi
done
[ "$found" = 1 ] || { echo "run-bench: no benchmark programs in $dir" >&2; exit 1; }
