#!/usr/bin/env bash
# clang-tidy with .clang-tidy's checks over the project's C++ sources (not CUDA, not tests/data),
# using build/compile_commands.json (configure the build first: scripts/build.sh build).
#   scripts/tidy.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
[ -f "$dir/compile_commands.json" ] || { echo "no $dir/compile_commands.json: run scripts/build.sh $dir first" >&2; exit 2; }
mapfile -t files < <(git ls-files 'tensor/*.cpp' 'loader/*.cpp' 'tokenizer/*.cpp' 'image/*.cpp' 'ops/*.cpp' \
  'ops/cpu/*.cpp' 'model/*.cpp' 'runtime/*.cpp' 'server/*.cpp' 'checkpoint/*.cpp' 'cli/*.cpp' | grep -v cuda_stub)
jobs=${SAILVL_JOBS:-$(nproc)}
printf '%s\n' "${files[@]}" | xargs -P "$jobs" -n 4 clang-tidy -p "$dir" --quiet --extra-arg=-Wno-unknown-warning-option 2>/dev/null
echo "tidy: ${#files[@]} files clean"
