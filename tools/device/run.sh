#!/usr/bin/env bash
# The CUDA executor's device check (issue 8), as one call on a lent GPU machine:
#   1. export the test generators there, with that machine's own PyTorch
#      (tools/export_models.py; goldens are PyTorch fp32 at batch 1, 4 and 32);
#   2. correctness of talkrender-nn against them: fp16 (tol 2e-3) and fp32 (tol 1e-4);
#   3. our timing at batch 1, 4, 8, 32 (device time of the CUDA graph, and a whole run
#      with the host copies);
#   4. PyTorch on the same model and batches: eager fp16 (NCHW and channels_last) and
#      torch.compile(mode="max-autotune") fp16, which records CUDA graphs itself;
#   5. one table (tools/device/torch_bench.py table).
#
# talkrender-nn is built on the CPU machine (it needs protobuf/onnx, which the GPU image
# lacks) and carried with its few shared libraries:
#   bash tools/device/run.sh --pack            # here: build-cuda/talkrender-nn -> .devbin/
#   run(command="bash tools/device/run.sh", carry=[".devbin"], timeout_s=560)
# Expected on an H100/H200: ~1 min export and goldens, ~1 min ours, ~1 min PyTorch eager, and
# torch.compile max-autotune at batch 8 and 32 within the remaining budget (it stops starting
# compiles after 300 s of PyTorch timing). The log comes back as $OUT/tr-device-log.txt.
# Dry run without a GPU (the CPU plan emulator instead of CUDA, a small model, batch 1,
# PyTorch eager on the CPU):
#   bash tools/device/run.sh --cpu
#
# Options: --bin DIR (default .devbin, else build-cuda), --work DIR (default $OUT or /tmp),
#          --models LIST (default gen320-ave,gen160-hubert), --torch-models LIST
#          (default gen320-ave), --compile-batches LIST (default 8,32), --skip-torch,
#          --skip-compile.
set -uo pipefail
cd "$(dirname "$0")/../.."

CPU=0
PACK=0
BIN=""
# The models and goldens stay in WORK (they are large: $OUT returns at most 8 files of
# 16 MB); only the log goes to $OUT, written as the run goes, so a timeout still returns it.
WORK=/tmp/tr-device
MODELS="gen320-ave,gen160-hubert"
TORCH_MODELS="gen320-ave"
COMPILE_BATCHES="8,32"
SKIP_TORCH=0
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) CPU=1 ;;
    --pack) PACK=1 ;;
    --bin) BIN="$2"; shift ;;
    --work) WORK="$2"; shift ;;
    --models) MODELS="$2"; shift ;;
    --torch-models) TORCH_MODELS="$2"; shift ;;
    --compile-batches) COMPILE_BATCHES="$2"; shift ;;
    --skip-torch) SKIP_TORCH=1 ;;
    --skip-compile) COMPILE_BATCHES="" ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

# --pack: on the build machine, copy the binary and the shared libraries it needs that a
# bare CUDA image lacks (protobuf, onnx) into .devbin/, which `carry` then takes along.
if [ "$PACK" = 1 ]; then
  src=build-cuda/talkrender-nn
  [ -x "$src" ] || { echo "run.sh --pack: build $src first (ninja -C build-cuda talkrender-nn)" >&2; exit 2; }
  grep -qx '/.devbin/' .git/info/exclude 2>/dev/null || echo '/.devbin/' >>.git/info/exclude
  rm -rf .devbin && mkdir -p .devbin/lib
  cp "$src" .devbin/
  ldd "$src" | awk '/=> \// {print $3}' | grep -E 'libprotobuf|libonnx' |
    while read -r lib; do cp -L "$lib" .devbin/lib/; done
  strip .devbin/talkrender-nn 2>/dev/null || true
  du -sh .devbin
  ls -la .devbin .devbin/lib
  exit 0
fi

mkdir -p "$WORK"
LOG="${OUT:-$WORK}/tr-device-log.txt"
: >"$LOG"
say() { printf '\n=== %s (%s)\n' "$*" "$(date +%T)" | tee -a "$LOG"; }
# Runs a command, keeping its output in the log; a failure is reported and the script goes on.
step() {
  "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || echo "STEP FAILED (exit $rc): $*" | tee -a "$LOG"
  return 0
}

if [ "$CPU" = 1 ]; then
  PY=/usr/bin/python3
  DEVICE=plan
  MODELS=gen160-hubert
  TORCH_MODELS=gen160-hubert
  CHECK_BATCHES=1
  BENCH_BATCHES=1
  GOLDEN_BATCHES=1
  ITERS=1
  FP32_BATCH=1
else
  PY=python3
  DEVICE=cuda
  CHECK_BATCHES=1,4,32
  BENCH_BATCHES=1,4,8,32
  GOLDEN_BATCHES=1,4,32
  ITERS=20
  FP32_BATCH=8
fi

# The binary: carried .devbin/ (with its libraries), else a local build.
if [ -z "$BIN" ]; then
  if [ -x .devbin/talkrender-nn ]; then BIN=.devbin; else BIN=build-cuda; fi
fi
NN="$BIN/talkrender-nn"
[ -x "$NN" ] || { echo "run.sh: no $NN (build it, or --pack here and carry .devbin)" | tee -a "$LOG"; exit 2; }
# cuBLASLt comes from the machine's CUDA: the toolkit's, or PyTorch's nvidia-cublas wheel.
LIBS="$BIN/lib"
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -e "$d/libcublasLt.so.13" ] && LIBS="$LIBS:$d"
done
if [ "$CPU" = 0 ]; then
  wheel_lib=$($PY - <<'EOF' 2>/dev/null
import glob, os, site
for base in site.getsitepackages():
    for p in glob.glob(os.path.join(base, 'nvidia', '**', 'libcublasLt.so.13*'), recursive=True):
        print(os.path.dirname(p)); raise SystemExit
EOF
)
  [ -n "$wheel_lib" ] && LIBS="$LIBS:$wheel_lib"
fi
export LD_LIBRARY_PATH="$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

say "machine"
step uname -m
[ "$CPU" = 0 ] && step nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
step "$NN" info
step ldd "$NN"

say "export ($MODELS) with this machine's PyTorch"
step $PY -c 'import torch, onnx; print("torch", torch.__version__, "onnx", onnx.__version__)'
step $PY tools/export_models.py --models "$MODELS" --non-saturated --golden-batch "$GOLDEN_BATCHES" --out "$WORK/models"

say "correctness: talkrender-nn ($DEVICE) against PyTorch fp32"
IFS=, read -ra model_list <<<"$MODELS"
for m in "${model_list[@]}"; do
  step "$NN" check --model "$WORK/models/$m.onnx" --goldens "$WORK/models/$m" --batches "$CHECK_BATCHES" --device "$DEVICE" --precision fp16 --tol 2e-3
  step "$NN" check --model "$WORK/models/$m.onnx" --goldens "$WORK/models/$m" --batches "$CHECK_BATCHES" --device "$DEVICE" --precision fp32 --tol 1e-4
done

say "timing: talkrender-nn ($DEVICE)"
for m in "${model_list[@]}"; do
  step "$NN" bench --model "$WORK/models/$m.onnx" --batches "$BENCH_BATCHES" --device "$DEVICE" --precision fp16 --iters "$ITERS"
done
step "$NN" bench --model "$WORK/models/${model_list[0]}.onnx" --batches "$FP32_BATCH" --device "$DEVICE" --precision fp32 --iters "$ITERS"

say "PyTorch's own error against the same goldens (the yardstick for fp16)"
CPUFLAG=""
[ "$CPU" = 1 ] && CPUFLAG=--cpu
step $PY tools/device/torch_bench.py accuracy $CPUFLAG --models "$MODELS" --goldens-dir "$WORK/models" --batches "$CHECK_BATCHES"

if [ "$SKIP_TORCH" = 0 ]; then
  say "timing: PyTorch ($TORCH_MODELS)"
  if [ "$CPU" = 1 ]; then
    step $PY tools/device/torch_bench.py bench --cpu --models "$TORCH_MODELS" --batches 1 --iters 1 --repeats 1
  else
    step $PY tools/device/torch_bench.py bench --models "$TORCH_MODELS" --batches "$BENCH_BATCHES" --compile-batches "$COMPILE_BATCHES" --budget-s 300
  fi
fi

say "summary"
$PY tools/device/torch_bench.py table "$LOG" 2>&1 || /usr/bin/python3 tools/device/torch_bench.py table "$LOG"
