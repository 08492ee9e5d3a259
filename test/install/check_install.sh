#!/usr/bin/env bash
# Installs the built coho into a temporary prefix, then builds and runs two tiny consumers
# against the installed package: one through find_package(coho), one through pkg-config.
# Usage: check_install.sh BUILD_DIR CONSUMER_SRC_DIR WORK_DIR
set -euo pipefail
build=$1 src=$2 work=$3
rm -rf "$work"; mkdir -p "$work"
prefix=$work/prefix

cmake --install "$build" --prefix "$prefix" >"$work/install.log"

# find_package, shared and static targets
cmake -S "$src" -B "$work/cmake-consumer" -DCMAKE_PREFIX_PATH="$prefix" >"$work/configure.log"
cmake --build "$work/cmake-consumer" >"$work/build.log"
"$work/cmake-consumer/consumer_shared"
"$work/cmake-consumer/consumer_static"
"$work/cmake-consumer/net_consumer"
"$work/cmake-consumer/admin_consumer"

# pkg-config
libdir=$(ls -d "$prefix"/lib*/pkgconfig | head -n 1)
export PKG_CONFIG_PATH=$libdir
cc -std=gnu11 -Wall -Werror "$src/consumer.c" -o "$work/consumer_pc" \
   $(pkg-config --cflags --libs coho) -Wl,-rpath,"$(dirname "$libdir")"
"$work/consumer_pc"
cc -std=gnu11 -Wall -Werror "$src/net_consumer.c" -o "$work/net_consumer_pc" \
   $(pkg-config --cflags --libs coho-net) -Wl,-rpath,"$(dirname "$libdir")"
"$work/net_consumer_pc"
cc -std=gnu11 -Wall -Werror "$src/admin_consumer.c" -o "$work/admin_consumer_pc" \
   $(pkg-config --cflags --libs coho-net) -Wl,-rpath,"$(dirname "$libdir")"
"$work/admin_consumer_pc"
echo "install check: find_package (shared, static, net, admin) and pkg-config (coho, coho-net, admin) consumers ran"
