#!/bin/bash
# refiner_bench.sh - docs/s of the offline card refiner on one core, against
# the goal of 2,000 docs/s per core (see bench/refiner_bench.c).
#
# Builds the libraries it needs (RelWithDebInfo, no sanitizers) in
# $STYLUS_BENCH_BUILD (default build-bench), compiles the bench beside them
# and runs it on the fixture catalog replicated to MIN_RECORDS records.
#
#   bash bench/refiner_bench.sh [MIN_RECORDS]     # default 50000
set -euo pipefail
export STYLUS_INSECURE=1  # plaintext ZeroMQ on loopback (what --insecure sets)

root=$(cd "$(dirname "$0")/.." && pwd)
build=${STYLUS_BENCH_BUILD:-$root/build-bench}

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target stylus_proto stylus_refiner stylus_crawler >/dev/null
# shellcheck disable=SC2046 # pkg-config prints several words on purpose
cc -std=c11 -O2 -g -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra -Wpedantic \
        -I"$root" "$root/bench/refiner_bench.c" -o "$build/refiner_bench" \
        "$build/libstylus_crawler.a" "$build/libstylus_refiner.a" "$build/libstylus_proto.a" \
        $(pkg-config --libs libcurl libxml-2.0 jansson msgpack libzmq) -lm -lpthread
echo "host: $(uname -m), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
"$build/refiner_bench" "$root/tests/fixtures" "${1:-50000}"
