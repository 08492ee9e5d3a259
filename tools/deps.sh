#!/usr/bin/env bash
# Installs the Debian packages coho's build, tests and benchmarks use, if any is missing.
# Usage: tools/deps.sh [base|test|bench|integration|game|viewer|all]   (default: all; viewer is
# never part of all). Idempotent; needs root for apt-get.
set -euo pipefail

base=(cmake make g++ gcc pkg-config libcmocka-dev libgtest-dev libgmock-dev clang-format python3
      libssl-dev libwslay-dev libhttp-parser-dev  # libcoho_net: TLS, WebSocket
      protobuf-compiler libprotobuf-dev libmariadb-dev  # game/
      libcurl4-openssl-dev nlohmann-json3-dev)  # game/: the etcd client (HTTP, JSON)
test_extra=(clang libclang-rt-14-dev qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross
            python3-websockets openssl  # net/'s tests: a WebSocket client not written
                                        # here; certificates made at test time
            prometheus  # promtool checks the admin server's /metrics page
            tzdata  # game/svc's calendar tests set TZ to zones with DST
            etcd-server etcd-client)  # game/'s cluster tests: a throwaway etcd
test_extra+=(gdb tmux)  # the debugging tools' tests (test/integration/debug/): gdb, coho-top's screen
bench_extra=(libbenchmark-dev libboost-context-dev valgrind strace
             redis-server redis-tools)  # tools/bench-resp.sh: redis-server, redis-benchmark
# `tools/deps.sh viewer`, optional and never part of `all` (about 300 MB): a headless browser that
# renders coho-trace --html pages (tools/README.md, "Timeline picture"); no test needs it.
viewer_extra=(chromium fonts-dejavu-core)
# Servers and unmodified blocking client libraries the hook integration tests drive.
# redis-tools: redis-cli and redis-benchmark drive bench/resp's server (resp_coho_test.sh).
integration=(redis-server redis-tools libhiredis-dev memcached libmemcached-dev mariadb-server libmariadb-dev
             libcurl4-openssl-dev)
# `make game` (tools/run-game.sh): a throwaway MariaDB server and its client, python3 for free ports.
# `make cluster` (tools/run-cluster.sh) also starts etcd.
game_extra=(mariadb-server mariadb-client python3
            etcd-server etcd-client)  # `make cluster`: membership, leases, machine ids

case "${1:-all}" in
base) want=("${base[@]}") ;;
test) want=("${base[@]}" "${test_extra[@]}" "${integration[@]}") ;;
bench) want=("${base[@]}" "${bench_extra[@]}") ;;
integration) want=("${base[@]}" "${integration[@]}") ;;
game) want=("${base[@]}" "${game_extra[@]}") ;;
viewer) want=("${viewer_extra[@]}") ;;
all) want=("${base[@]}" "${test_extra[@]}" "${integration[@]}" "${bench_extra[@]}" "${game_extra[@]}") ;;
*) echo "deps.sh: unknown set '$1' (base, test, bench, integration, game, viewer or all)" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps.sh: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
