#!/usr/bin/env bash
# README command 2 (and CI, through .ci/run): install dependencies, build, run every test;
# then the sanitizer jobs: ASan+UBSan over the unit and integration tests, TSan over the
# pipeline tests, and a short seeded run of each fuzz target.
#   TALKRENDER_SKIP_SANITIZERS=1  skips the sanitizer and fuzz jobs (quick local runs).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
bash tools/install-deps.sh

step() { printf '\n=== %s (%s)\n' "$1" "$(date +%T)"; }

step "release build"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$JOBS"
step "release tests"
ctest --test-dir build --output-on-failure -j "$JOBS"

if [ "${TALKRENDER_SKIP_SANITIZERS:-0}" != 1 ]; then
  step "ASan+UBSan build"
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DTALKRENDER_SANITIZE=address,undefined -DTALKRENDER_BENCH=OFF >/dev/null
  cmake --build build-asan -j "$JOBS"
  step "ASan+UBSan tests"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j "$JOBS" -LE 'models|e2e|slow'

  step "TSan build (pipeline)"
  cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DTALKRENDER_SANITIZE=thread -DTALKRENDER_BENCH=OFF >/dev/null
  cmake --build build-tsan -j "$JOBS"
  step "TSan tests (pipeline)"
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    ctest --test-dir build-tsan --output-on-failure -j "$JOBS" -L 'render'

  if [ -x tools/fuzz.sh ]; then
    step "fuzz targets (short seeded runs)"
    bash tools/fuzz.sh --seconds 20
  fi
fi
step "all tests passed"
