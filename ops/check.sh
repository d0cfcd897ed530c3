#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds with warnings as
# errors, runs ctest, then builds and runs it again under ASan+UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
ops/install-deps.sh
jobs=$(nproc)
start=$(date +%s)
cmake -S . -B build-check -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTYLUS_WERROR=ON >/dev/null
cmake --build build-check -j"$jobs"
(cd build-check && ctest --output-on-failure -j"$jobs")
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSTYLUS_WERROR=ON -DSTYLUS_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --output-on-failure -j"$jobs")
echo "check: all suites passed in $(( $(date +%s) - start )) s"
