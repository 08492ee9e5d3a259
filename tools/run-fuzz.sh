#!/usr/bin/env bash
# Runs every libFuzzer target of a fuzz build for a short time, each on its kept corpus.
# Usage: tools/run-fuzz.sh BUILD_DIR SECONDS
set -euo pipefail
dir=$(cd "$1/test/fuzz" && pwd)
secs=$2
top=$(cd "$(dirname "$0")/.." && pwd)
found=0
for f in "$dir"/*_fuzz; do
    [ -x "$f" ] || continue
    found=1
    name=$(basename "$f")
    corpus=$top/test/fuzz/corpus/${name%_fuzz}
    work=$(mktemp -d)
    mkdir -p "$corpus"
    echo "== $name for ${secs}s (corpus $corpus)"
    (cd "$work" && "$f" -max_total_time="$secs" -print_final_stats=1 "$work" "$corpus" 2>&1 | tail -n 12)
    rm -rf "$work"
done
[ "$found" = 1 ] || { echo "run-fuzz: no fuzz targets in $dir" >&2; exit 1; }
