#!/usr/bin/env bash
# The main job (`make run`): the socket_ext load test. Starts sock_svr on a free loopback port
# inside the build tree, runs sock_client against it for 30 s, stops the server, prints both
# summaries and where the logs are (BUILD_DIR/log/, never the source tree), and exits non-zero
# if either program failed. Builds nothing itself: `make run` builds BUILD_DIR first.
#
# Usage: tools/run-main.sh BUILD_DIR [FLAGS...]
#   make run RUN_ARGS="--duration-s 10 --coroutines 500"
# FLAGS (test/load/run_pair.sh routes each to its program; later ones win over the defaults):
#   --duration-s S (30)  --conns M (4)  --coroutines N (200)  --max-body B (256K)
#   --delay-ms D (5)  --timeout-ms T (5000)  --max-req-body B (1K)  --seed X
#   --log-level L (debug)  --log-sample N (16: requests whose seq is a multiple of 16)  --quiet
set -euo pipefail
[ $# -ge 1 ] || {
    echo "usage: $0 BUILD_DIR [FLAGS...]" >&2
    exit 2
}
build=$(cd "$1" && pwd)
shift
src=$(cd "$(dirname "$0")/.." && pwd)
svr=$build/test/load/sock_svr
client=$build/test/load/sock_client
for p in "$svr" "$client"; do
    [ -x "$p" ] || {
        echo "run-main: $p is missing; build first (make, with COHO_BUILD_LOAD=ON)" >&2
        exit 1
    }
done
defaults=(--duration-s 30 --conns 4 --coroutines 200 --max-body 256K --delay-ms 5)
exec "$src/test/load/run_pair.sh" --svr "$svr" --client "$client" --workdir "$build" \
    "${defaults[@]}" "$@"
