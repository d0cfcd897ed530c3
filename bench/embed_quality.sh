#!/bin/bash
# embed_quality.sh - retrieval quality of the built-in embedder on the fixture
# catalog: without IDF, with IDF tables learned by `stylus idf`, and (when
# Debian's wordnet-base is installed: /usr/share/wordnet) with WordNet
# synonyms added to the prompts.  Figures: recall@10/20/50 and MRR of the
# adapters tests/fixtures/expected.json expects (bench/embed_quality.py
# says how they are counted).
#
# Builds the stylus binary in $STYLUS_BENCH_BUILD (default build-embed-quality),
# runs `stylus up --demo` (the whole pipeline on the fixture catalog) in a
# scratch directory, exports the catalog, learns the tables from it, and
# scans the docs by brute force for each prompt.  Removes the scratch
# directory at the end.
#
#   bash bench/embed_quality.sh [--json FILE]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${STYLUS_BENCH_BUILD:-$root/build-embed-quality}
work=$(mktemp -d /tmp/stylus-embed-quality.XXXXXX)
trap 'rm -rf "$work"' EXIT

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target stylus >/dev/null
stylus=$build/stylus

"$stylus" up --demo --data "$work/demo" >"$work/demo.log" 2>&1 ||
        { tail -20 "$work/demo.log"; exit 1; }
"$stylus" export --data "$work/demo/catalog" --out "$work/export" >/dev/null
"$stylus" idf --catalog-data "$work/demo/catalog" --out "$work/idf.bin" >/dev/null
"$stylus" idf --catalog-data "$work/demo/catalog" --out "$work/idf-min-df-2.bin" --min-df 2 >/dev/null
"$stylus" idf --catalog-data "$work/demo/catalog" --out "$work/idf-512.bin" --buckets 512 >/dev/null

wordnet=()
if [ -r /usr/share/wordnet/index.noun ]; then
        wordnet=(--wordnet /usr/share/wordnet)
else
        echo "wordnet-base is not installed (/usr/share/wordnet): no synonym expansion measured" >&2
fi

/usr/bin/python3 "$root/bench/embed_quality.py" --stylus "$stylus" --export "$work/export" \
        --expected "$root/tests/fixtures/expected.json" \
        --variant "built-in=" \
        --variant "IDF (2^18 buckets, min-df 1)=--embed-idf $work/idf.bin" \
        --variant "IDF, min-df 2=--embed-idf $work/idf-min-df-2.bin" \
        --variant "IDF over 512 buckets=--embed-idf $work/idf-512.bin" \
        "${wordnet[@]}" "$@"
