#!/usr/bin/env bash
# One run on the H100/H200 machine: build (sm_90 only, Release, build-gpu/), all tests, the
# compute-sanitizer tools on the CUDA op tests, the CUDA op benchmarks, and a short table last.
# No network. Logs go to $OUT when set (the device machine's fetch folder), else build-gpu/gpu-check/.
# Each step's failure is shown in the table; the script keeps going so one run reports everything.
# Budget: ~8 minutes in total (build ~3-4 min on 16 cores, tests ~1 min, sanitizers ~2 min, bench ~1 min).
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=${OUT:-build-gpu/gpu-check}
mkdir -p "$LOG"
jobs=$(nproc)
declare -a rows

step() {  # step NAME TIMEOUT_S CMD...: runs CMD with a timeout, logs to $LOG/NAME.log, records the result
  local name=$1 limit=$2
  shift 2
  local t0=$(date +%s)
  timeout "$limit" "$@" >"$LOG/$name.log" 2>&1
  local rc=$?
  local dt=$(( $(date +%s) - t0 ))
  local verdict=PASS
  [ $rc -ne 0 ] && verdict="FAIL(rc=$rc)"
  [ $rc -eq 124 ] && verdict="TIMEOUT"
  rows+=("$(printf '%-28s %-14s %5ss  %s' "$name" "$verdict" "$dt" "$LOG/$name.log")")
  echo "== $name: $verdict in ${dt}s"
  [ $rc -ne 0 ] && tail -n 30 "$LOG/$name.log"
  return $rc
}

nvidia-smi >"$LOG/nvidia-smi.txt" 2>&1 || true
step configure 120 cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DSAILVL_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DSAILVL_BUILD_BENCH=ON
step build 330 cmake --build build-gpu -j "$jobs"
step ctest 240 ctest --test-dir build-gpu --output-on-failure -j 4 --timeout 200

SAN=/usr/local/cuda/bin/compute-sanitizer
T=build-gpu/cuda_test_ops_cuda
# racecheck/synccheck/initcheck are slow: run them on the kernels with shared memory and barriers,
# on small shapes (the test cases are small already).
if [ -x "$SAN" ] && [ -x "$T" ]; then
  step san-memcheck 120 "$SAN" --tool memcheck --error-exitcode 1 "$T" --gtest_filter='CudaOps.*'
  step san-racecheck 120 "$SAN" --tool racecheck --error-exitcode 1 "$T" \
    --gtest_filter='CudaOps.AttentionMatchesCpu:CudaOps.NormsMatchCpu:CudaOps.LinearMatchesCpu:CudaOps.GreedyMatchesCpu'
  step san-initcheck 120 "$SAN" --tool initcheck --error-exitcode 1 "$T" \
    --gtest_filter='CudaOps.AttentionMatchesCpu:CudaOps.ElementwiseMatchCpu:CudaOps.GathersAreExact'
  step san-synccheck 90 "$SAN" --tool synccheck --error-exitcode 1 "$T" \
    --gtest_filter='CudaOps.AttentionMatchesCpu:CudaOps.NormsMatchCpu:CudaOps.LinearMatchesCpu'
else
  rows+=("compute-sanitizer            SKIPPED        (no $SAN or no $T)")
fi

if [ -x build-gpu/bench_ops_cuda ]; then
  step bench 150 build-gpu/bench_ops_cuda \
    --benchmark_out="$LOG/bench_ops_cuda.json" --benchmark_out_format=json
fi

echo
echo "================ gpu-check summary ($(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)) ================"
for r in "${rows[@]}"; do echo "$r"; done
if [ -f "$LOG/bench.log" ]; then
  echo "---------------- bench (time per call, counters) ----------------"
  grep -E "^[a-z_0-9]+/" "$LOG/bench.log" | awk '{ $3=""; $4=""; print }' | sed 's/  */ /g'
fi
