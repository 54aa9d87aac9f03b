#!/usr/bin/env bash
# Installs the build dependencies from Debian packages and builds Ethereal Canvas into ./build.
# Usage: scripts/setup.sh            (CPU build; adds the CUDA backend when nvcc is present)
#        CANVAS_CUDA=OFF scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake ninja-build pkg-config nlohmann-json3-dev libcli11-dev libopenblas-dev
          libpng-dev zlib1g-dev libjpeg62-turbo-dev libwebp-dev libutf8proc-dev libgtest-dev
          libbenchmark-dev libsqlite3-dev libcpp-httplib-dev python3-venv
          chromium chromium-driver python3-selenium redis-server libhiredis-dev clang libclang-rt-14-dev)
cuda=${CANVAS_CUDA:-auto}
if [ "$cuda" = auto ]; then
  if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then cuda=ON; else cuda=OFF; fi
fi
if [ "$cuda" = ON ] && ! command -v nvcc >/dev/null 2>&1; then export PATH="/usr/local/cuda/bin:$PATH"; fi
# pip only fetches the cudnn-frontend headers (below) for CUDA builds.
if [ "$cuda" = ON ] && ! python3 -m pip --version >/dev/null 2>&1; then packages+=(python3-pip); fi
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q "${missing[@]}"
fi


if [ "$cuda" = ON ] && [ ! -f .deps/cudnn-frontend/include/cudnn_frontend.h ]; then
  # cudnn-frontend (header-only C++ API for cuDNN's fused attention) ships on PyPI only.
  echo "Fetching cudnn-frontend headers from PyPI"
  rm -rf .deps/cudnn-frontend && mkdir -p .deps/cudnn-frontend
  python3 -m pip download -q --no-deps --only-binary=:all: -d .deps/cudnn-frontend/wheel \
    "nvidia-cudnn-frontend==1.32.0"
  python3 -m zipfile -e .deps/cudnn-frontend/wheel/*.whl .deps/cudnn-frontend/unpacked
  mv .deps/cudnn-frontend/unpacked/include .deps/cudnn-frontend/include
  rm -rf .deps/cudnn-frontend/wheel .deps/cudnn-frontend/unpacked
fi

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCANVAS_CUDA="$cuda"
cmake --build build -j "$(nproc)"
