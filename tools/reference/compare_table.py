#!/usr/bin/env python3
"""One table of sailvl vs HF transformers from the raw JSON of scripts/compare.sh or gpu-check.sh.

    compare_table.py OUT_DIR THREADS DEVICE MODELS_ROOT PRESET...

OUT_DIR holds <preset>.sailvl.json (sailvl bench --json) and <preset>.hf.<dtype>.json (bench_hf.py),
or sub-directories rep1/, rep2/, ... with those files (compare.sh's alternating rounds). With rounds,
each side's best value per row is used (a busy machine only ever slows a run down) and one more
table gives every round's ratios, so their spread is visible. MODELS_ROOT/<preset> is the
checkpoint (for its size). Standard library only.
"""
import glob
import json
import os
import subprocess
import sys

out, threads, device, models = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
presets = sys.argv[5:]
commit = os.environ.get("SAILVL_COMMIT") or subprocess.run(
    ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
rounds = sorted(glob.glob(f"{out}/rep*/"), key=lambda d: int(d.rstrip("/").rsplit("rep", 1)[1])) or [out]


def load(d, p):
    ours = json.load(open(f"{d}/{p}.sailvl.json"))
    hf = {}
    for f in glob.glob(f"{d}/{p}.hf.*.json"):
        r = json.loads(open(f).read())
        hf[r["dtype"]] = r
    return ours, hf


def ours_rows(o):
    t = o["ttft_ms"]
    return {"vision": t["vision"] + t["projector"], "prefill": t["prefill"],
            "decode": o["decode"]["tokens_per_s_median"]}


def hf_rows(r):
    if r is None:
        return {}
    v = {"vision": r["vision_ms"], "prefill": r["prefill_ms"], "decode": r["decode_hand_loop"]["tok_s"]}
    if r.get("bf16_decode_hand_loop"):
        v["decode_bf16_cast"] = r["bf16_decode_hand_loop"]["tok_s"]
    return v


HIGHER = {"vision": False, "prefill": False, "decode": True}


def best(vals, key):
    vals = [v for v in vals if v]
    if not vals:
        return None
    return max(vals) if HIGHER.get(key, True) else min(vals)


def ratio(mine, theirs, key):
    if not mine or not theirs:
        return None
    return mine / theirs if HIGHER[key] else theirs / mine


fmt = lambda v, hb: "—" if v is None else (f"{v:.2f}" if hb or v < 100 else f"{v:.0f}")
note = f", best of {len(rounds)} alternating rounds" if len(rounds) > 1 else ""
print(f"\n## sailvl vs HF transformers — {device}, {threads} threads, commit {commit}{note}, raw JSON in {out}\n")
print("| preset | row | sailvl | HF float32 | HF bfloat16 | speed-up vs HF's best |")
print("|---|---|---|---|---|---|")
per_round = []
for p in presets:
    data = [load(d, p) for d in rounds]
    ours = [ours_rows(o) for o, _ in data]
    f32 = [hf_rows(h.get("float32")) for _, h in data]
    b16 = [hf_rows(h.get("bfloat16")) for _, h in data]
    last_ours = data[-1][0]
    labels = {"vision": "vision + projector, ms", "prefill": f"prefill {last_ours['prompt_tokens']} tokens, ms",
              "decode": "decode, tok/s"}
    for key, label in labels.items():
        hb = HIGHER[key]
        mine = best([o[key] for o in ours], key)
        a = best([r.get(key) for r in f32], key)
        b = best([r.get(key) for r in b16], key)
        cast = False
        if b is None and key == "decode":  # --bf16-decode: a cast of the float32 run's cache
            b = best([r.get("decode_bf16_cast") for r in f32], key)
            cast = b is not None
        theirs = best([a, b], key)
        r = ratio(mine, theirs, key)
        b_txt = fmt(b, hb) + (" (cast after F32 prefill)" if cast else "")
        print(f"| {p} | {label} | {fmt(mine, hb)} | {fmt(a, hb)} | {b_txt} | {'—' if r is None else f'{r:.2f}×'} |")
        # each round's own ratio against that round's best HF row
        rr = []
        for o, x, y in zip(ours, f32, b16):
            t = best([x.get(key), y.get(key), None if y.get(key) else x.get("decode_bf16_cast") if key == "decode" else None], key)
            rr.append(ratio(o[key], t, key))
        per_round.append((p, label, rr))
    if device == "cuda":
        print(f"| {p} | peak device memory | {last_ours['peak_device_bytes'] / 1e9:.2f} GB | | | |")
        dec = last_ours["decode"]
        print(f"| {p} | decode weight+KV stream | {dec['achieved_GBps']:.0f} GB/s | | | "
              f"{dec['bytes_per_token'] / 1e9:.2f} GB per token |")
    ck = sum(os.path.getsize(f) for f in glob.glob(f"{models}/{p}/*.safetensors"))
    rss = last_ours["peak_host_bytes"]
    hf_rss = (data[-1][1].get("float32") or data[-1][1].get("bfloat16") or {}).get("peak_rss_bytes", 0)
    share = f"{100 * rss / ck:.0f} % of the {ck / 1e9:.2f} GB checkpoint" if ck else ""
    print(f"| {p} | peak host RSS | {rss / 1e9:.2f} GB | {hf_rss / 1e9:.2f} GB | | {share} |")

if len(rounds) > 1:
    print("\nEach round's speed-up (its own sailvl row against its own best HF row):\n")
    print("| preset | row | " + " | ".join(f"round {i + 1}" for i in range(len(rounds))) + " | max/min |")
    print("|---|---|" + "---|" * len(rounds) + "---|")
    for p, label, rr in per_round:
        vals = [v for v in rr if v]
        spread = f"{max(vals) / min(vals):.2f}" if vals else "—"
        print(f"| {p} | {label} | " + " | ".join("—" if v is None else f"{v:.2f}×" for v in rr) + f" | {spread} |")
