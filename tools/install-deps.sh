#!/usr/bin/env bash
# Installs every build, test and demo dependency of talkrender from Debian 12's archive.
# Safe to re-run: apt skips what is already there. Needs root (or sudo).
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
PKGS=(
  build-essential cmake ninja-build pkg-config git clang clang-format libclang-rt-14-dev
  libavformat-dev libavcodec-dev libavutil-dev libswresample-dev libswscale-dev ffmpeg libx264-dev
  libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev python3-opencv libjpeg62-turbo-dev libpng-dev
  libonnx-dev libprotobuf-dev protobuf-compiler libonnx-testdata
  libdnnl-dev libopenblas-dev libhwy-dev libtbb-dev
  libcli11-dev nlohmann-json3-dev libfmt-dev
  libsoxr-dev libfftw3-dev libzip-dev
  libhiredis-dev redis-server python3-redis
  libgtest-dev libgmock-dev libbenchmark-dev
  python3-torch python3-numpy python3-scipy python3-onnx
  espeak-ng sox
  libboost-dev python3-aiohttp python3-websockets chromium
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "install-deps: all dependencies present" >&2
