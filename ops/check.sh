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
# A failed test runs once more before it counts as failed (--repeat until-pass:2): the
# integration tests share two cores with each other; a test that needed the second run is
# still printed with its output, so flakiness stays visible.
(cd build-check && ctest --output-on-failure --repeat until-pass:2 -j"$jobs")
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSTYLUS_WERROR=ON -DSTYLUS_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --output-on-failure --repeat until-pass:2 -j"$jobs")
echo "check: all suites passed in $(( $(date +%s) - start )) s"
