#!/bin/bash
# crawl_bench.sh - listing pages per second of the crawler's fetcher against
# the fixture server with a fixed latency, as a ratio of the politeness bound
# (see bench/crawl_bench.c for what a page is and the two figures).
#
# Builds the libraries it needs (RelWithDebInfo, no sanitizers) in
# $STYLUS_BENCH_BUILD (default build-bench), starts tests/fixtures/server.py
# on a free loopback port, runs the bench, and stops the server by its pid.
#
#   bash bench/crawl_bench.sh [LATENCY_MS [MAX_PER_HOST [PAGE_LIMIT [ROUNDS]]]]
#                                  # default 50 4 2 3
set -euo pipefail
export STYLUS_INSECURE=1  # plaintext ZeroMQ on loopback (what --insecure sets)

root=$(cd "$(dirname "$0")/.." && pwd)
build=${STYLUS_BENCH_BUILD:-$root/build-bench}
latency=${1:-50}
per_host=${2:-4}
limit=${3:-2}
rounds=${4:-3}

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target stylus_proto stylus_crawler >/dev/null
# shellcheck disable=SC2046 # pkg-config prints several words on purpose
cc -std=c11 -O2 -g -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra -Wpedantic \
        -I"$root" "$root/bench/crawl_bench.c" -o "$build/crawl_bench" \
        "$build/libstylus_crawler.a" "$build/libstylus_proto.a" \
        $(pkg-config --libs libcurl yaml-0.1 jansson msgpack libzmq) -lm -lpthread

tmp=$(mktemp -d)
server_pid=
cleanup() {
        if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
        rm -rf "$tmp"
}
trap cleanup EXIT
/usr/bin/python3 "$root/tests/fixtures/server.py" --port 0 --port-file "$tmp/port" \
        --data "$root/tests/fixtures" --latency-ms "$latency" >"$tmp/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.05; done
[ -s "$tmp/port" ] || { echo "fixture server did not start"; cat "$tmp/server.log"; exit 1; }

echo "host: $(uname -m), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "server: fixture server.py --latency-ms $latency; fetcher: max_per_host $per_host, rate 0"
"$build/crawl_bench" "http://127.0.0.1:$(cat "$tmp/port")" "$latency" "$per_host" "$limit" "$rounds"
