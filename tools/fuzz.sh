#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang, ASan + UBSan) if needed and runs each one for
# N seconds on its seed corpus (fuzz/corpus/<target>/), seeded (-seed=1). Fails on any crash,
# leak, sanitizer report or timeout. New inputs found go to build-fuzz/corpus/<target>/ (the
# seed corpus in the repository is only read).
#   bash tools/fuzz.sh [--seconds N] [--target NAME] [--jobs J]
#   FUZZ_BUILD_DIR=build-fuzz (default)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=20
ONLY=""
JOBS=${JOBS:-$(nproc)}
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECONDS_PER_TARGET=$2; shift 2 ;;
    --target) ONLY=$2; shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "fuzz.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
BUILD=${FUZZ_BUILD_DIR:-build-fuzz}
TARGETS=(fuzz_onnx_import fuzz_crop_rects fuzz_npy fuzz_feature_file fuzz_audio_mel)
[ -n "$ONLY" ] && TARGETS=("$ONLY")

if [ ! -f "$BUILD/build.ninja" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTALKRENDER_FUZZ=ON \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DTALKRENDER_SANITIZE=address,undefined -DTALKRENDER_TESTS=OFF -DTALKRENDER_BENCH=OFF \
    >/dev/null
fi
cmake --build "$BUILD" -j "$JOBS" --target "${TARGETS[@]}"

# UBSan reports abort (so libFuzzer records them as crashes); leaks are errors too.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1}
status=0
for t in "${TARGETS[@]}"; do
  work="$BUILD/corpus/$t"
  artifacts="$BUILD/artifacts/$t/"
  mkdir -p "$work" "$artifacts"
  echo "--- $t: ${SECONDS_PER_TARGET} s"
  # Inputs that once crashed a target are replayed first, one by one, so a fixed finding
  # stays fixed whatever the random run explores this time.
  regressions=(fuzz/regressions/"$t"-*)
  if [ -e "${regressions[0]}" ] &&
      ! "$BUILD/fuzz/$t" "${regressions[@]}" 2>"$BUILD/$t.regressions.log"; then
    echo "FAIL $t: a recorded regression input crashes again: see $BUILD/$t.regressions.log" >&2
    grep -m5 -E "ERROR|runtime error|SUMMARY|Running:" "$BUILD/$t.regressions.log" >&2 || true
    status=1
  fi
  # The working corpus first (new inputs are written there), the seeds second (read only).
  if ! "$BUILD/fuzz/$t" -seed=1 -max_total_time="$SECONDS_PER_TARGET" -timeout=25 \
      -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1 \
      -artifact_prefix="$artifacts" "$work" "fuzz/corpus/$t" 2>"$BUILD/$t.log"; then
    echo "FAIL $t: see $BUILD/$t.log and $artifacts" >&2
    grep -m5 -E "ERROR|runtime error|SUMMARY" "$BUILD/$t.log" >&2 || true
    status=1
  fi
  grep -E "^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)" \
    "$BUILD/$t.log" | tr '\n' ' ' || true
  grep -E "cov: [0-9]+" "$BUILD/$t.log" | tail -1 | grep -oE "cov: [0-9]+ ft: [0-9]+" || true
done
exit $status
