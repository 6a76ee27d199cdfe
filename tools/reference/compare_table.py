#!/usr/bin/env python3
"""One table of sailvl vs HF transformers from the raw JSON of scripts/compare.sh or gpu-check.sh.

    compare_table.py OUT_DIR THREADS DEVICE MODELS_ROOT PRESET...

OUT_DIR holds <preset>.sailvl.json (sailvl bench --json) and <preset>.hf.<dtype>.json (bench_hf.py);
MODELS_ROOT/<preset> is the checkpoint (for its size). Standard library only.
"""
import glob, json, os, subprocess, sys
out, threads, device, models = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
presets = sys.argv[5:]
commit = os.environ.get("SAILVL_COMMIT") or subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
print(f"\n## sailvl vs HF transformers — {device}, {threads} threads, commit {commit}, raw JSON in {out}\n")
print("| preset | row | sailvl | HF float32 | HF bfloat16 | speed-up vs HF's best |")
print("|---|---|---|---|---|---|")
for p in presets:
    ours = json.load(open(f"{out}/{p}.sailvl.json"))
    hf = {}
    for f in glob.glob(f"{out}/{p}.hf.*.json"):
        r = json.loads(open(f).read())
        hf[r["dtype"]] = r
    f32, b16 = hf.get("float32"), hf.get("bfloat16")
    def hf_val(r, key):
        if r is None:
            return None
        if key == "vision": return r["vision_ms"]
        if key == "prefill": return r["prefill_ms"]
        return r["decode_hand_loop"]["tok_s"]
    b16_decode = None
    if b16 is None and f32 is not None and f32.get("bf16_decode_hand_loop"):
        b16_decode = f32["bf16_decode_hand_loop"]["tok_s"]
    t = ours["ttft_ms"]
    rows = [("vision + projector, ms", "vision", t["vision"] + t["projector"], False),
            (f"prefill {ours['prompt_tokens']} tokens, ms", "prefill", t["prefill"], False),
            ("decode, tok/s", "decode", ours["decode"]["tokens_per_s_median"], True)]
    for label, key, mine, higher_better in rows:
        a = hf_val(f32, key)
        b = hf_val(b16, key) if b16 is not None else (b16_decode if key == "decode" else None)
        cands = [v for v in (a, b) if v]
        best = (max(cands) if higher_better else min(cands)) if cands else None
        ratio = (mine / best if higher_better else best / mine) if best else None
        fmt = (lambda v: "—" if v is None else (f"{v:.2f}" if higher_better or v < 100 else f"{v:.0f}"))
        b_txt = fmt(b) + (" (cast after F32 prefill)" if b is not None and b16 is None else "")
        print(f"| {p} | {label} | {fmt(mine)} | {fmt(a)} | {b_txt} | {'—' if ratio is None else f'{ratio:.2f}×'} |")
    if device == "cuda":
        print(f"| {p} | peak device memory | {ours['peak_device_bytes']/1e9:.2f} GB | | | |")
        dec = ours["decode"]
        print(f"| {p} | decode weight+KV stream | {dec['achieved_GBps']:.0f} GB/s | | | "
              f"{dec['bytes_per_token']/1e9:.2f} GB per token |")
    ck = sum(os.path.getsize(f) for f in glob.glob(f"{models}/{p}/*.safetensors"))
    rss = ours["peak_host_bytes"]
    print(f"| {p} | peak host RSS | {rss/1e9:.2f} GB | {(f32 or b16 or {}).get('peak_rss_bytes', 0)/1e9:.2f} GB | | "
          f"{100*rss/ck:.0f} % of the {ck/1e9:.2f} GB checkpoint |")
