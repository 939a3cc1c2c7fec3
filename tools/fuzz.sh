#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang, ASan + UBSan) if needed, replays the recorded
# regression inputs (fuzz/regressions/<target>-*), then runs each target for N seconds per
# seed on its corpus. Fails on any crash, leak, sanitizer report or timeout.
#   bash tools/fuzz.sh [--seconds N] [--target NAME]... [--seed S] [--seeds K] [--merge]
#                      [--parallel P] [--jobs J] [--no-build]
#   --seconds N   per target and seed (default 20; 0 runs nothing, e.g. with --merge)
#   --seed S      first seed (default: from the clock); the K runs use S, S+1, ..., S+K-1.
#                 Every run prints its seed: rerun with --seed S --seeds 1 to reproduce it.
#   --seeds K     runs per target, one after the other on the same working corpus (default 1)
#   --merge       afterwards, libFuzzer -merge=1 of the working corpus into the committed
#                 one (fuzz/corpus/<target>/): only inputs that reach new edges are copied,
#                 so it grows slowly and coverage carries over to the next run, CI's included.
#   --parallel P  targets run at once (default 1; each libFuzzer run uses one core)
#   --jobs J      build jobs (default nproc); --no-build skips the build step
#   FUZZ_BUILD_DIR=build-fuzz (default); FUZZ_BUILD_LOCK=/path: hold this flock while building
# The longer run for a parser change (its result goes in the issue's closing note):
#   bash tools/fuzz.sh --seconds 600 --seeds 3 --parallel 2 --merge
# New inputs found go to build-fuzz/corpus/<target>/, logs to build-fuzz/logs/, crashing
# inputs to build-fuzz/artifacts/<target>/. A fixed finding goes to
# fuzz/regressions/<target>-<name>, so it is replayed on every run.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=20
ONLY=()
SEED=""
NSEEDS=1
MERGE=0
PARALLEL=1
BUILD_STEP=1
JOBS=${JOBS:-$(nproc)}
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECONDS_PER_TARGET=$2; shift 2 ;;
    --target) ONLY+=("$2"); shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --seeds) NSEEDS=$2; shift 2 ;;
    --merge) MERGE=1; shift ;;
    --parallel) PARALLEL=$2; shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    --no-build) BUILD_STEP=0; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0"; exit 0 ;;
    *) echo "fuzz.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
for v in "$SECONDS_PER_TARGET" "$NSEEDS" "$PARALLEL" ${SEED:+"$SEED"}; do
  [[ "$v" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: '$v' is not a non-negative integer" >&2; exit 2; }
done
# libFuzzer takes an unsigned seed, and -seed=0 means "pick one from the clock": avoid it.
[ -n "$SEED" ] || SEED=$(( $(date +%s) % 2000000000 + 1 ))
[ "$SEED" -ge 1 ] || { echo "fuzz.sh: --seed must be at least 1" >&2; exit 2; }
[ "$PARALLEL" -ge 1 ] || PARALLEL=1
BUILD=${FUZZ_BUILD_DIR:-build-fuzz}
TARGETS=(fuzz_onnx_import fuzz_crop_rects fuzz_lms fuzz_npy fuzz_feature_file fuzz_audio_mel fuzz_pth fuzz_farm_job)
[ ${#ONLY[@]} -gt 0 ] && TARGETS=("${ONLY[@]}")

if [ "$BUILD_STEP" = 1 ]; then
  if [ ! -f "$BUILD/build.ninja" ]; then
    cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTALKRENDER_FUZZ=ON \
      -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
      -DTALKRENDER_SANITIZE=address,undefined -DTALKRENDER_TESTS=OFF -DTALKRENDER_BENCH=OFF \
      >/dev/null
  fi
  # A shared machine serialises its builds with a lock file; CI has none to share.
  lock=()
  [ -n "${FUZZ_BUILD_LOCK:-}" ] && lock=(flock "$FUZZ_BUILD_LOCK")
  "${lock[@]}" cmake --build "$BUILD" -j "$JOBS" --target "${TARGETS[@]}"
fi

# UBSan reports abort (so libFuzzer records them as crashes); leaks are errors too.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1}
COMMON=(-timeout=25 -rss_limit_mb=4096 -max_len=65536)
mkdir -p "$BUILD/logs"
STATE=$(mktemp -d)
trap 'rm -rf "$STATE"' EXIT
if [ "$SECONDS_PER_TARGET" -gt 0 ]; then
  echo "fuzz: ${#TARGETS[@]} target(s), ${SECONDS_PER_TARGET} s per seed, seeds $SEED..$(( SEED + NSEEDS - 1 ))"
else
  echo "fuzz: ${#TARGETS[@]} target(s): regression inputs$([ "$MERGE" = 1 ] && echo " and merge") only"
fi

corpus_size() { # "<files> files, <KiB> KiB" (the bytes git stores, not disk blocks)
  echo "$(find "$1" -type f | wc -l) files, $(( $(find "$1" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}') / 1024 )) KiB"
}

# One target: regressions, then each seed, then the optional merge. Prints one line per
# run; a failure leaves a marker in $STATE.
run_target() {
  local t=$1 bin="$BUILD/fuzz/$1" work="$BUILD/corpus/$1" artifacts="$BUILD/artifacts/$1/"
  mkdir -p "$work" "$artifacts" "fuzz/corpus/$t"
  # Inputs that once crashed a target are replayed first, one by one, so a fixed finding
  # stays fixed whatever the random run explores this time.
  local regressions=(fuzz/regressions/"$t"-*)
  if [ -e "${regressions[0]}" ]; then
    if ! "$bin" "${regressions[@]}" >"$BUILD/logs/$t.regressions.log" 2>&1; then
      echo "FAIL $t: a recorded regression input crashes again: see $BUILD/logs/$t.regressions.log" >&2
      grep -m5 -E "ERROR|runtime error|SUMMARY|Running:" "$BUILD/logs/$t.regressions.log" >&2 || true
      touch "$STATE/fail.$t"
    else
      echo "$t: ${#regressions[@]} regression input(s) replay clean"
    fi
  fi
  local k s log stats cov
  for (( k = 0; k < NSEEDS && SECONDS_PER_TARGET > 0; k++ )); do
    s=$(( SEED + k ))
    log="$BUILD/logs/$t.seed$s.log"
    echo "--- $t: seed $s, ${SECONDS_PER_TARGET} s (log $log)"
    # The working corpus first (new inputs are written there), the seeds second (read only).
    if ! "$bin" -seed="$s" -max_total_time="$SECONDS_PER_TARGET" "${COMMON[@]}" \
        -print_final_stats=1 -artifact_prefix="$artifacts" "$work" "fuzz/corpus/$t" \
        >"$log" 2>&1; then
      echo "FAIL $t (seed $s): see $log and $artifacts" >&2
      grep -m5 -E "ERROR|runtime error|SUMMARY|Test unit written" "$log" >&2 || true
      touch "$STATE/fail.$t"
    fi
    # (After a crash libFuzzer prints its final stats twice: keep each line once.)
    stats=$(grep -E "^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)" \
      "$log" | awk '!seen[$0]++' | sed -E 's/^stat::([a-z_]+): */\1=/' | tr '\n' ' ' || true)
    cov=$(grep -E "cov: [0-9]+" "$log" | tail -1 | grep -oE "cov: [0-9]+ ft: [0-9]+" || true)
    echo "$t seed=$s ${stats}${cov:-cov: ?}"
  done
  if [ "$MERGE" = 1 ]; then
    local before after
    before=$(corpus_size "fuzz/corpus/$t")
    # Edges only (-use_counters=0): an input is kept for a new edge, not for a new hit count
    # of a known one, which would keep thousands of near-copies (fuzz_feature_file: 1362
    # files with hit counts, 342 with edges only, the same 2207 edges).
    if "$bin" -merge=1 -use_counters=0 "${COMMON[@]}" "fuzz/corpus/$t" "$work" \
        >"$BUILD/logs/$t.merge.log" 2>&1; then
      after=$(corpus_size "fuzz/corpus/$t")
      echo "$t: merged into fuzz/corpus/$t: $before -> $after"
    else
      echo "FAIL $t: merge failed: see $BUILD/logs/$t.merge.log" >&2
      touch "$STATE/fail.$t"
    fi
  fi
}

for t in "${TARGETS[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$PARALLEL" ]; do wait -n || true; done
  run_target "$t" &
done
wait
if compgen -G "$STATE/fail.*" >/dev/null; then
  echo "fuzz: FAILED: $(cd "$STATE" && ls fail.* | sed 's/^fail\.//' | tr '\n' ' ')(seeds $SEED..$(( SEED + NSEEDS - 1 )))" >&2
  exit 1
fi
echo "fuzz: ok$([ "$SECONDS_PER_TARGET" -gt 0 ] && echo " (seeds $SEED..$(( SEED + NSEEDS - 1 )))")"
