#!/bin/sh
# run_search_bench.sh - the shard's vector search against FAISS on this machine.
#
#   bench/run_search_bench.sh [--quick] [--seconds S] [--out FILE]
#
# Builds the indexer and proto libraries (Release) and bench/shard_bench.c in a
# scratch directory, then for each data set (random unit vectors, and the
# fixture catalog's card embeddings replicated with noise; 100K rows, and 1M
# unless --quick) runs shard_bench (writes the vectors as .npy, fills a store,
# measures) and faiss_bench.py (FAISS IndexFlatIP and IndexScalarQuantizer
# QT_8bit on the same .npy files), and prints the table of docs/search.md.
# Scratch data lives in /dev/shm when it has room (else /tmp) and is removed
# at exit.  --out keeps the raw results (tab-separated).  Needs cmake, gcc,
# pkg-config, the project's libraries, /usr/bin/python3 with python3-faiss.
# On the 2-core project machine: about 1.5 minutes with --quick, 5-6 in full.
set -eu

cd "$(dirname "$0")/.."
sizes="100000 1000000"
seconds=2
keep=""
while [ $# -gt 0 ]; do
        case "$1" in
        --quick) sizes="100000" ;;
        --seconds) seconds="$2"; shift ;;
        --out) keep="$2"; shift ;;
        *) echo "usage: $0 [--quick] [--seconds S] [--out FILE]" >&2; exit 2 ;;
        esac
        shift
done

need_mb=$(( ${sizes##* } * 5 / 1000 + 2000 )) # vectors, store and slack for the largest set
shm_mb=$(df -Pm /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')
if [ -n "$shm_mb" ] && [ "$shm_mb" -gt "$need_mb" ]; then
        work=$(mktemp -d /dev/shm/stylus-search-bench.XXXXXX)
else
        work=$(mktemp -d /tmp/stylus-search-bench.XXXXXX)
fi
trap 'rm -rf "$work"' EXIT INT TERM
results="$work/results.tsv"
start=$(date +%s)

echo "== build ($work)"
cmake -S . -B "$work/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/build" -j2 --target stylus_indexer stylus_proto >/dev/null
# shellcheck disable=SC2046 # pkg-config output is meant to split
gcc -std=c11 -O2 -Wall -Wextra -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -I. \
        bench/shard_bench.c "$work/build/libstylus_indexer.a" "$work/build/libstylus_proto.a" \
        $(pkg-config --cflags --libs lmdb openblas jansson libzmq msgpack) -lpthread -lm \
        -o "$work/shard_bench"

echo "== machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)," \
        "load average $(cut -d' ' -f1-3 /proc/loadavg)"
for rows in $sizes; do
        for data in random catalog; do
                dir="$work/$data-$rows"
                mkdir -p "$dir"
                echo "== $data, $rows rows (load $(cut -d' ' -f1 /proc/loadavg))"
                "$work/shard_bench" --dir "$dir" --out "$results" --data "$data" --rows "$rows" \
                        --fixtures tests/fixtures --seconds "$seconds"
                # PASSIVE: idle OpenMP threads sleep instead of spinning on the cores
                # OpenBLAS's threads need; FAISS's best 2-thread figures (docs/search.md).
                OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/faiss_bench.py --dir "$dir" \
                        --data "$data" --out "$results" --seconds "$seconds"
                rm -rf "$dir"
        done
done

/usr/bin/python3 bench/faiss_bench.py --report "$results"
echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); $(( $(date +%s) - start )) s in all"
if [ -n "$keep" ]; then
        cp "$results" "$keep"
fi
