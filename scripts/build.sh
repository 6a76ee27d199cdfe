#!/usr/bin/env bash
# scripts/build.sh [BUILD_DIR] [extra cmake args...]: configure (Ninja, Release) and build.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}; shift || true
jobs=${SAILVL_JOBS:-$(nproc)}
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$dir" -j "$jobs"
