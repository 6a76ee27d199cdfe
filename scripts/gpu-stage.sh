#!/usr/bin/env bash
# Stage a prebuilt sm_90 build for scripts/gpu-check.sh, so that a short GPU lease spends no time
# compiling. Builds build-cuda/ here (Release, CUDA on, sm_90 unless SAILVL_CUDA_ARCHS says
# otherwise), then packs into .gpu/staged.tar.xz (~11 MB; .gpu/ is ignored by git: name it in the
# device call's carry, whose limit is 64 MiB with the checkout):
#   bin/       the GPU test binaries, sailvl and bench_ops_cuda (stripped)
#   lib/            the shared libraries they need that a bare CUDA image may lack (PCRE2, utf8proc,
#                   libpng/jpeg/webp, libgomp, ...); the CUDA libraries themselves are found there
#   source_dir, build_dir   the absolute paths compiled into the tests (test data, tiny
#                   models); gpu-check.sh links them to the device machine's checkout
# The device image must have the same CUDA major version (13) as this machine's toolkit.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build-cuda}
ARCHS=${SAILVL_CUDA_ARCHS:-90}
if [ ! -f "$B/CMakeCache.txt" ]; then
  cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSAILVL_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="$ARCHS" -DSAILVL_BUILD_BENCH=ON
fi
cmake --build "$B" -j "$(nproc)"

S=$(mktemp -d)
trap 'rm -rf "$S"' EXIT
mkdir -p "$S/bin" "$S/lib"
bins=(sailvl bench_ops_cuda)
for t in "$B"/cuda_test_*; do [ -x "$t" ] && bins+=("$(basename "$t")"); done
for b in "${bins[@]}"; do
  cp "$B/$b" "$S/bin/"
  strip --strip-debug "$S/bin/$b"
done
# Non-CUDA, non-libc shared libraries the binaries load.
for b in "$S"/bin/*; do ldd "$b"; done | awk '/=> \// { print $1, $3 }' | sort -u |
  while read -r name path; do
    case "$name" in
      libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libstdc++.so*|libgcc_s.so*) ;;
      libcuda*|libcublas*|libcudnn*|libnvrtc*) ;;
      *) cp -L "$path" "$S/lib/$name" ;;
    esac
  done
realpath . > "$S/source_dir"
realpath "$B" > "$S/build_dir"
git rev-parse --short HEAD > "$S/commit"
git diff --quiet HEAD -- . ':!scripts' ':!tools' ':!docs' || echo "+dirty" >> "$S/commit"
rm -rf .gpu
mkdir -p .gpu
tar -C "$S" -cf - . | xz -T0 -6 > .gpu/staged.tar.xz
ls -la .gpu/staged.tar.xz
