#!/usr/bin/env bash
# Configures and builds icd in BUILD_DIR (default build/) with the given extra CMake options.
#   scripts/build.sh [cmake options...]      e.g. scripts/build.sh -DICD_CUDA=OFF
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$build_dir" -j"$(nproc)"
