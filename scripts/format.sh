#!/usr/bin/env bash
# Apply .clang-format to the project's C++/CUDA sources (not tests/data, not build dirs).
#   scripts/format.sh           rewrite in place
#   scripts/format.sh --check   exit 1 and list the files that differ
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.cpp' '*.h' '*.cu' '*.cuh' | grep -v '^tests/data/')
if [ "${1:-}" = "--check" ]; then
  bad=()
  for f in "${files[@]}"; do
    clang-format "$f" | cmp -s - "$f" || bad+=("$f")
  done
  if [ ${#bad[@]} -gt 0 ]; then
    printf 'not formatted (run scripts/format.sh):\n'; printf '  %s\n' "${bad[@]}"; exit 1
  fi
  echo "format: ${#files[@]} files clean"
else
  clang-format -i "${files[@]}"
fi
