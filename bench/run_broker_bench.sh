#!/usr/bin/env bash
# Job round trips per second through the catalog's broker (1, 4, 16 workers)
# and write transactions per second of its store.  Figures go to docs/BENCHMARKS.md.
#   bash bench/run_broker_bench.sh [N_JOBS]
set -euo pipefail
export STYLUS_INSECURE=1  # plaintext ZeroMQ on loopback (what --insecure sets)
cd "$(dirname "$0")/.."
n=${1:-5000}
build=${STYLUS_BENCH_BUILD:-build-bench}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target stylus stylus_ops stylus_proto >/dev/null
gcc -std=c11 -O2 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -I. bench/broker_bench.c \
    "$build"/libstylus_ops.a "$build"/libstylus_proto.a \
    $(pkg-config --libs lmdb libzmq msgpack jansson) -lpthread -lm -o "$build"/broker_bench
"$build"/broker_bench "$build"/stylus "$n" 1 4 16
