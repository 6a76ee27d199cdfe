#!/usr/bin/env bash
# The whole test suite (README's test command; .ci/run runs exactly this):
#   1. install missing Debian packages;
#   2. build and test the CUDA-enabled configuration (build/; GPU tests skip without a device);
#   3. build and test the CPU-only configuration under ASan + UBSan + _GLIBCXX_ASSERTIONS
#      (build-cpu/: -DSAILVL_CUDA=OFF -DSAILVL_SANITIZE=ON);
#   4. a short run of every libFuzzer target (scripts/fuzz.sh, FUZZ_SECONDS each, default 20).
# SAILVL_CUDA_ARCHS=90 narrows the CUDA architectures; SAILVL_SKIP_FUZZ=1 skips step 4.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
jobs=${SAILVL_JOBS:-$(nproc)}
# The run needs a few GB of disk (three build trees, tiny checkpoints, the quantisation tests'
# checkpoints while they run); say so up front rather than fail a test with ENOSPC.
free_gb=$(df -Pk . | awk 'NR == 2 { print int($4 / 1048576) }')
[ "$free_gb" -ge 5 ] || echo "warning: only ${free_gb} GB free on this disk; the suite peaks at ~3.2 GB (plus headroom)" >&2
start=$(date +%s)
# Each phase line also shows the disk left: a full disk fails tests in ways that look like bugs.
phase() { echo "== $1 ($(( $(date +%s) - start )) s; $(df -Pk . | awk 'NR == 2 { printf "%.1f GB free", $4 / 1048576 }')) =="; }

cuda_args=(-DSAILVL_CUDA=AUTO)
[ -n "${SAILVL_CUDA_ARCHS:-}" ] && cuda_args+=("-DCMAKE_CUDA_ARCHITECTURES=${SAILVL_CUDA_ARCHS}")

phase "build: CUDA-enabled (build/)"
bash scripts/build.sh build "${cuda_args[@]}"
phase "test: CUDA-enabled"
ctest --test-dir build --output-on-failure -j "$jobs"
phase "bench smoke: every microbenchmark runs"
for b in build/bench_*; do
  [ -x "$b" ] || continue
  "$b" --benchmark_min_time=0.01 --benchmark_filter="${SAILVL_BENCH_SMOKE_FILTER:-.}" >/dev/null || { echo "FAILED: $b"; exit 1; }
  echo "ok: $b"
done
# A passing run leaves no test_tmp behind (tests/testutil.cpp); the CUDA tree's tiny checkpoints are not
# needed by the later steps, so hand their disk back too: CI machines' disks are not large.
rm -rf build/test_models build/test_tmp

phase "build: CPU-only, ASan + UBSan (build-cpu/)"
bash scripts/build.sh build-cpu -DSAILVL_CUDA=OFF -DSAILVL_SANITIZE=ON -DSAILVL_BUILD_BENCH=OFF
phase "test: CPU-only, ASan + UBSan"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-cpu --output-on-failure -j "$jobs"

if [ "${SAILVL_SKIP_FUZZ:-0}" != 1 ]; then
  phase "fuzz: every target, ${FUZZ_SECONDS:-20} s each"
  FUZZ_SECONDS=${FUZZ_SECONDS:-20} bash scripts/fuzz.sh
fi
phase "all tests passed"
