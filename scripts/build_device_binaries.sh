#!/usr/bin/env bash
# Builds the portable CUDA binaries the GPU benchmarks run (`canvas`, `canvas-synthetic-checkpoint`,
# `canvas_cuda_tests`; sm_90, third-party libraries linked statically) into build-portable/ and packs them,
# stripped, into .device/bin.tar.xz, which bench/device_setup.sh unpacks on the GPU machine. cpp-httplib
# has no static library in Debian: it and the libraries it needs (OpenSSL, Brotli) go into the archive's
# lib/.
# Usage: scripts/build_device_binaries.sh   (needs scripts/setup.sh's packages, the CUDA toolkit and
#        .deps/cudnn-frontend, which a CUDA scripts/setup.sh fetches)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/cuda/bin:$PATH
launcher=()
command -v ccache > /dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
cmake -S . -B build-portable -G Ninja -DCMAKE_BUILD_TYPE=Release -DCANVAS_CUDA=ON -DCANVAS_PORTABLE=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DCANVAS_BUILD_TESTS=ON -DCANVAS_BUILD_BENCH=OFF "${launcher[@]}" > /dev/null
cmake --build build-portable -j "$(nproc)" --target canvas canvas-synthetic-checkpoint canvas_cuda_tests
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib"
cp build-portable/src/canvas build-portable/tools/canvas-synthetic-checkpoint \
  build-portable/tests/canvas_cuda_tests "$stage/bin/"
strip "$stage/bin/"*
for library in $(ldd build-portable/src/canvas | awk '/libcpp-httplib|libssl|libcrypto|libbrotli/ {print $3}'); do
  cp -L "$library" "$stage/lib/"
done
mkdir -p .device
tar -C "$stage" -cJf .device/bin.tar.xz bin lib
ls -la .device/bin.tar.xz
