#!/usr/bin/env bash
# sailvl vs the HF transformers reference, side by side, one table of ratios.
#
#   scripts/compare.sh                       sailvl-2b and sailvl-1d5-2b on CPU, 2 threads
#   scripts/compare.sh sailvl-2b             one preset
#   HF_BF16=full scripts/compare.sh          also the whole HF run in bfloat16 (slow on CPUs
#                                            without native BF16 matmul: ~8x the float32 prefill)
#   DEVICE=cuda scripts/compare.sh           on a GPU: ours in BF16 vs HF in bfloat16 and float32
#
# Scenario (the same on both sides; speed does not depend on weight values, so both use random
# weights of the real shapes): TILES image tiles of 448 px (7 = a 4:3 photo at max_num 10), a
# prompt of TILES*256 image rows + 50 text tokens, GEN greedy decode steps.
#   vision   = vision tower + pixel shuffle + mlp1   (ours: the vision + projector stages)
#   prefill  = the LLM forward over the whole prompt, filling the KV cache
#   decode   = tokens per second on that cache (ours: median step; HF: the hand loop's mean)
# Ratios are "how many times faster sailvl is" than HF's best row (float32 or bfloat16).
#
# Needs: a build (scripts/build.sh) and the reference venv (tools/reference/setup.sh). Full-size
# random checkpoints are written to models/<preset> once (sailvl make-model, ~4.5 GB each).
# Raw JSON of every run goes to $OUT_DIR (default build/compare/<date>).
set -euo pipefail
cd "$(dirname "$0")/.."

presets=("$@")
[ ${#presets[@]} -eq 0 ] && presets=(sailvl-2b sailvl-1d5-2b)
THREADS=${THREADS:-2}
TILES=${TILES:-7}
GEN=${GEN:-16}
DEVICE=${DEVICE:-cpu}
HF_BF16=${HF_BF16:-decode}   # decode | full | off
BIN=${SAILVL_BIN:-build/sailvl}
PY=${PY:-tools/reference/.venv/bin/python}
OUT_DIR=${OUT_DIR:-build/compare/$(date +%Y%m%d-%H%M%S)}
REPEAT=${REPEAT:-2}                 # alternating rounds; the table keeps each side's best
if [ "$DEVICE" = cuda ]; then       # GPU runs are short: more repetitions inside each round
  HF_REPS=${HF_REPS:-10}; HF_WARMUP=${HF_WARMUP:-3}; OUR_REPS=${OUR_REPS:-5}
else
  HF_REPS=${HF_REPS:-1}; HF_WARMUP=${HF_WARMUP:-0}; OUR_REPS=${OUR_REPS:-1}
fi
mkdir -p "$OUT_DIR"

[ -x "$BIN" ] || { echo "compare.sh: $BIN not found; run scripts/build.sh first" >&2; exit 2; }
[ -x "$PY" ] || { echo "compare.sh: $PY not found; run tools/reference/setup.sh first" >&2; exit 2; }
prompt_tokens=$((TILES * 256 + 50))

ours() {  # ours PRESET DIR
  echo "== $1: sailvl ($DEVICE, $THREADS threads) -> $2"
  "$BIN" bench -m "models/$1" --device "$DEVICE" --threads "$THREADS" --image-tiles "$TILES" \
    --prompt-tokens "$prompt_tokens" --gen "$GEN" --repeat "$OUR_REPS" --json > "$2/$1.sailvl.json"
}
theirs() {  # theirs PRESET DIR
  local p=$1 dir=$2 hf_main other extra=()
  hf_main=$([ "$DEVICE" = cuda ] && echo bfloat16 || echo float32)
  other=$([ "$hf_main" = float32 ] && echo bfloat16 || echo float32)
  [ "$HF_BF16" = decode ] && [ "$hf_main" = float32 ] && extra=(--bf16-decode)
  echo "== $p: HF transformers $hf_main -> $dir"
  "$PY" tools/reference/bench_hf.py --preset "$p" --device "$DEVICE" --dtype "$hf_main" --tiles "$TILES" \
    --gen "$GEN" --reps "$HF_REPS" --warmup "$HF_WARMUP" --threads "$THREADS" --no-generate "${extra[@]}" \
    --json - > "$dir/$p.hf.$hf_main.json"
  if [ "$HF_BF16" = full ] || [ "$DEVICE" = cuda ]; then
    echo "== $p: HF transformers $other -> $dir"
    "$PY" tools/reference/bench_hf.py --preset "$p" --device "$DEVICE" --dtype "$other" --tiles "$TILES" \
      --gen "$GEN" --reps "$HF_REPS" --warmup "$HF_WARMUP" --threads "$THREADS" --no-generate \
      --json - > "$dir/$p.hf.$other.json"
  fi
}

for p in "${presets[@]}"; do
  if [ ! -f "models/$p/config.json" ]; then
    echo "== make-model $p -> models/$p"
    "$BIN" make-model --preset "$p" -o "models/$p" -q
  fi
done
# REPEAT rounds; the two sides alternate which goes first, and the table keeps each side's best
# per row (a shared or throttled machine only ever makes a run slower).
for r in $(seq 1 "$REPEAT"); do
  dir=$OUT_DIR/rep$r
  mkdir -p "$dir"
  for p in "${presets[@]}"; do
    if [ $((r % 2)) = 1 ]; then ours "$p" "$dir"; theirs "$p" "$dir"; else theirs "$p" "$dir"; ours "$p" "$dir"; fi
  done
done

python3 tools/reference/compare_table.py "$OUT_DIR" "$THREADS" "$DEVICE" models "${presets[@]}"
