#!/usr/bin/env bash
# The whole test suite (README's test command; .ci/run runs exactly this):
#   1. install missing Debian packages,
#   2. build and test the CUDA-enabled configuration (GPU tests skip without a device),
#   3. build and test the CPU-only configuration (-DSAILVL_CUDA=OFF).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
jobs=${SAILVL_JOBS:-$(nproc)}
start=$(date +%s)

cuda_args=(-DSAILVL_CUDA=AUTO)
[ -n "${SAILVL_CUDA_ARCHS:-}" ] && cuda_args+=("-DCMAKE_CUDA_ARCHITECTURES=${SAILVL_CUDA_ARCHS}")

echo "== build: CUDA-enabled (build/) =="
bash scripts/build.sh build "${cuda_args[@]}"
echo "== test: CUDA-enabled =="
ctest --test-dir build --output-on-failure -j "$jobs"

echo "== build: CPU-only (build-cpu/) =="
bash scripts/build.sh build-cpu -DSAILVL_CUDA=OFF -DSAILVL_BUILD_BENCH=OFF
echo "== test: CPU-only =="
ctest --test-dir build-cpu --output-on-failure -j "$jobs"

echo "== all tests passed in $(( $(date +%s) - start )) s =="
