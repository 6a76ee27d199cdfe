#!/usr/bin/env bash
# The demo (README's first command): install what is missing, build, make the small embedded
# default model (random weights) if it is not there yet, and run it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
SAILVL_BUILD_BENCH=OFF
bash scripts/build.sh build-demo -DSAILVL_CUDA=OFF -DSAILVL_BUILD_TESTS=OFF -DSAILVL_BUILD_BENCH=OFF >&2
bin=build-demo/sailvl
model=models/tiny-aimv2
if [ ! -f "$model/config.json" ]; then
  echo "demo: generating the tiny random-weight checkpoint $model ..." >&2
  "$bin" make-model --preset tiny-aimv2 --out "$model"
fi
if "$bin" --help | grep -qE '^  run '; then
  image=tests/data/images/demo/photo.jpg
  echo "demo: NOTE the demo model has random weights, so its words are noise;" >&2
  echo "demo: it shows the whole pipeline (image tiling, vision tower, projector, LLM) running." >&2
  "$bin" run -m "$model" -i "$image" -p "What is in this picture?" -n 24
else
  "$bin" inspect -m "$model"
fi
cat >&2 <<'MSG'

To chat with a real SAIL-VL model (about 4.5 GB for the 2B):
  huggingface-cli download BytedanceDouyinContent/SAIL-VL-1d5-2B --local-dir ~/models/SAIL-VL-1d5-2B
  build-demo/sailvl run -m ~/models/SAIL-VL-1d5-2B -i photo.jpg -p "Please describe the image shortly."
MSG
