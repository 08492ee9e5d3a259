#!/usr/bin/env bash
# The main job (`make run`): runs the demo program inside the build tree, so its trace log lands
# in BUILD_DIR/log/, never in the source tree.
# Usage: tools/run-main.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
demo=$build/examples/trace_demo
[ -x "$demo" ] || { echo "run-main: $demo is missing; build first (make)" >&2; exit 1; }
cd "$build"
"$demo"
echo "run-main: trace log in $build/log/"
