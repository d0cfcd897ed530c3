#!/usr/bin/env bash
# Installs what is missing, builds stylus, and runs the one-machine demo:
# crawl the bundled fixture catalog over HTTP, refine, index, ask prompts.
set -euo pipefail
cd "$(dirname "$0")/.."
ops/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
exec build/stylus up --demo --data "${STYLUS_DEMO_DIR:-stylus-demo}" "$@"
