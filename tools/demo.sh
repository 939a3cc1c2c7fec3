#!/usr/bin/env bash
# README command 1: install dependencies, build, and render the demo (a synthetic avatar
# package and espeak-ng speech, lip-synced by the small trained model in models/demo) to
# demo.mp4.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target talkrender
./build/talkrender demo --out demo.mp4 "$@"
