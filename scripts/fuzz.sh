#!/usr/bin/env bash
# Build the libFuzzer targets (clang, ASan + UBSan) and run each for FUZZ_SECONDS (default 30).
#   scripts/fuzz.sh                 every target, 30 s each (the test command runs this)
#   FUZZ_SECONDS=600 scripts/fuzz.sh fuzz_safetensors     one target, 10 minutes (by hand)
# Seed corpora: tests/fuzz/corpus/<target>/ plus the matching fixtures from tests/data; the working
# corpus lives in build-fuzz/corpus/ (never in the repository). A crash leaves its input in
# build-fuzz/findings/; commit it as a unit test.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-30}
jobs=${SAILVL_JOBS:-$(nproc)}
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSAILVL_FUZZ=ON \
  -DSAILVL_CUDA=OFF -DSAILVL_NATIVE=OFF -DSAILVL_BUILD_TESTS=OFF -DSAILVL_BUILD_BENCH=OFF >/dev/null
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=($(cd tests/fuzz && ls fuzz_*.cpp | sed 's/\.cpp$//'))
cmake --build build-fuzz -j "$jobs" --target "${targets[@]}"

seed() {  # seed <target> <files...>
  local dir=build-fuzz/corpus/$1; shift
  mkdir -p "$dir"
  for f in "$@"; do [ -f "$f" ] && cp -f "$f" "$dir/" || true; done
}
mkdir -p build-fuzz/findings
status=0
for t in "${targets[@]}"; do
  name=${t#fuzz_}
  seed "$t" tests/fuzz/corpus/$name/*
  case $name in
    safetensors) seed "$t" tests/data/models/*/*.safetensors ;;
    config) seed "$t" tests/data/configs/*.json ;;
    index) seed "$t" tests/fuzz/corpus/index/* ;;
    image) seed "$t" $(ls tests/data/images/src/* 2>/dev/null | head -40) ;;
  esac
  dict=()
  [ -f tests/fuzz/$name.dict ] && dict=(-dict=tests/fuzz/$name.dict)
  echo "== $t: ${secs}s =="
  if ! ./build-fuzz/$t "${dict[@]}" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
      -artifact_prefix=build-fuzz/findings/$t- -print_final_stats=1 build-fuzz/corpus/$t 2> build-fuzz/$t.log; then
    echo "FINDING in $t: see build-fuzz/$t.log and build-fuzz/findings/"; tail -30 build-fuzz/$t.log; status=1
  else
    grep -E "stat::number_of_executed_units|cov:" build-fuzz/$t.log | tail -2
  fi
done
exit $status
