"""The reference's own speed: full-size SAIL-VL built from HF transformers classes, random init.

    tools/reference/.venv/bin/python tools/reference/bench_hf.py --preset sailvl-2b --device cpu \
        --dtype float32 --tiles 7 --gen 16 --reps 1 --json out.json

Speed does not depend on weight values, so the models are built from configs (docs/MODEL.md §2) with
HF's random init instead of a download. Measured (median of --reps after --warmup runs):
  vision_ms     vision tower + pixel shuffle + mlp1 for `--tiles` tiles of 448 px
  prefill_ms    Qwen2 forward over the image prompt (tiles*256 image rows + ~50 text tokens), KV cache
                filled, logits for the last position only (as generate() does)
  decode        hand loop: one token a step on the prefill's KV cache, greedy -> tok/s
  bf16 decode   (--bf16-decode, with --dtype float32) the same loop after casting the model and the
                F32 prefill's KV cache to bfloat16: the BF16 decode row without a BF16 prefill
  generate      (unless --no-generate) HF generate(inputs_embeds, greedy, exactly --gen new tokens):
                total ms, and decode tok/s = (gen-1) / (total - prefill_ms)
Attention uses SDPA (torch's fused scaled_dot_product_attention) on both CPU and CUDA.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import transformers  # noqa: E402
from transformers import (Aimv2VisionConfig, Aimv2VisionModel, InternVLConfig, InternVLVisionConfig,  # noqa: E402
                          InternVLVisionModel, Qwen2Config, Qwen2ForCausalLM)
from transformers.models.internvl.modeling_internvl import InternVLModel, InternVLMultiModalProjector  # noqa: E402

QWEN25_1_5B = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                   num_key_value_heads=2, vocab_size=151936, rms_norm_eps=1e-6, rope_theta=1e6,
                   max_position_embeddings=32768, tie_word_embeddings=False, hidden_act="silu")
INTERNVIT_300M = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                      attention_bias=True, use_qk_norm=False, hidden_act="gelu", norm_type="layer_norm",
                      layer_norm_eps=1e-6, image_size=(448, 448), patch_size=(14, 14), use_mean_pooling=True)
AIMV2_HUGE = dict(hidden_size=1536, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=12,
                  image_size=448, patch_size=14, rms_norm_eps=1e-5, qkv_bias=False, mlp_bias=False,
                  use_head=False, is_native=False)
PRESETS = {"sailvl-2b": ("internvit", INTERNVIT_300M, QWEN25_1_5B),
           "sailvl-1d5-2b": ("aimv2", AIMV2_HUGE, QWEN25_1_5B)}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: str, reps: int, warmup: int) -> tuple[float, object]:
    """Median wall ms of fn() over reps (after warmup calls), and the last result."""
    out = None
    for _ in range(warmup):
        out = fn()
    sync(device)
    ts = []
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts), out


def build(preset: str, dtype: torch.dtype, device: str, layers: int = 0):
    kind, vcfg, lcfg = PRESETS[preset]
    if layers:  # --layers: a smoke test of the script itself; such timings are not the model's
        vcfg, lcfg = dict(vcfg, num_hidden_layers=layers), dict(lcfg, num_hidden_layers=layers)
    attn = "sdpa"
    # On a GPU the random initialisation runs there (seconds instead of a minute on the host).
    with torch.device(device):
        return kind, [m.to(dtype=dtype).eval() for m in _modules(kind, vcfg, lcfg, attn)]


def _modules(kind: str, vcfg: dict, lcfg: dict, attn: str):
    if kind == "internvit":
        vc = InternVLVisionConfig(**vcfg)
        vc._attn_implementation = attn
        vision = InternVLVisionModel(vc)
    else:
        vc = Aimv2VisionConfig(**vcfg)
        vc._attn_implementation = attn
        vision = Aimv2VisionModel(vc)
    pc = InternVLConfig(vision_config=InternVLVisionConfig(hidden_size=vcfg["hidden_size"]),
                        text_config={"model_type": "qwen2", "hidden_size": lcfg["hidden_size"]},
                        downsample_ratio=0.5, projector_hidden_act="gelu")
    proj = InternVLMultiModalProjector(pc)
    qc = Qwen2Config(**lcfg)
    qc._attn_implementation = attn
    llm = Qwen2ForCausalLM(qc)
    return vision, proj, llm


def peak_rss_bytes() -> int:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def machine(device: str) -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads()}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


@torch.no_grad()
def bench(a) -> dict:
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[a.dtype]
    dev = a.device
    torch.manual_seed(0)
    t0 = time.perf_counter()
    kind, (vision, proj, llm) = build(a.preset, dtype, dev, a.layers)
    build_s = time.perf_counter() - t0

    px = torch.randn(a.tiles, 3, 448, 448, device=dev, dtype=dtype)

    def run_vision():
        f = vision(pixel_values=px).last_hidden_state
        if kind == "internvit":
            f = f[:, 1:, :]
        T, N, C = f.shape
        s = InternVLModel.pixel_shuffle(None, f.contiguous().reshape(T, 32, 32, C), 0.5).reshape(T, 256, 4 * C)
        return proj(s)

    vision_ms, rows = timed(run_vision, dev, a.reps, a.warmup)

    text_tokens = 50
    L = a.tiles * 256 + text_tokens
    ids = torch.randint(0, 151643, (1, L), device=dev)
    emb = llm.get_input_embeddings()(ids)
    emb[0, 20:20 + a.tiles * 256] = rows.reshape(-1, rows.shape[-1])

    def run_prefill():
        return llm(inputs_embeds=emb, use_cache=True, logits_to_keep=1)

    prefill_ms, out = timed(run_prefill, dev, a.reps, a.warmup)

    def decode_loop(o, model):
        """(ms, last output) for a.gen greedy steps continuing from output o (its KV cache grows in place)."""
        pkv, nxt = o.past_key_values, o.logits[:, -1].argmax(-1, keepdim=True)
        sync(dev)
        t = time.perf_counter()
        for _ in range(a.gen):
            o = model(input_ids=nxt, past_key_values=pkv, use_cache=True)
            pkv, nxt = o.past_key_values, o.logits[:, -1].argmax(-1, keepdim=True)
        sync(dev)
        return (time.perf_counter() - t) * 1e3, o

    # The first decode run continues from the timed prefill's cache (no second prefill); more reps
    # re-prefill. Decode cost is dominated by streaming the weights; the context is the same.
    first_ms, last = decode_loop(out, llm)
    decode_runs = [first_ms]
    for _ in range(1, max(1, a.reps)):
        decode_runs.append(decode_loop(run_prefill(), llm)[0])
    decode_ms = statistics.median(decode_runs)

    gen = None
    if a.generate:
        def run_generate():
            return llm.generate(inputs_embeds=emb, attention_mask=torch.ones(1, L, dtype=torch.long, device=dev),
                                max_new_tokens=a.gen, min_new_tokens=a.gen, do_sample=False, num_beams=1,
                                pad_token_id=151643, temperature=None, top_p=None, top_k=None)

        gen_ms, seq = timed(run_generate, dev, a.reps, 0)
        assert seq.shape[1] == a.gen
        gen = {"total_ms": round(gen_ms, 2), "decode_tok_s": round((a.gen - 1) / max(1e-9, (gen_ms - prefill_ms) / 1e3), 3)}

    # --bf16-decode (with --dtype float32): the decode row in bfloat16 too, without a bfloat16
    # prefill (which is ~8x slower than float32 on CPUs without native BF16 matmul): the KV cache
    # of the float32 run (prompt + --gen tokens) and the model are cast to bfloat16, then the same
    # loop decodes --gen more tokens. Same per-token work as a bfloat16 run from the start, at a
    # context --gen tokens longer (~1 % of the prompt).
    bf16_decode = None
    if a.bf16_decode and dtype == torch.float32:
        o = last
        for layer in o.past_key_values.layers:
            layer.keys, layer.values = layer.keys.to(torch.bfloat16), layer.values.to(torch.bfloat16)
        o.logits = o.logits.to(torch.bfloat16)
        llm.to(torch.bfloat16)
        ms, _ = decode_loop(o, llm)
        bf16_decode = {"ms": round(ms, 2), "tok_s": round(a.gen / (ms / 1e3), 3)}

    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(dev),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "preset": a.preset, "layers_override": a.layers or None, "device": dev, "dtype": a.dtype, "attention": "sdpa", "tiles": a.tiles,
        "prompt_tokens": L, "gen": a.gen, "reps": a.reps, "warmup": a.warmup,
        "params": {"vision": sum(p.numel() for p in vision.parameters()),
                   "projector": sum(p.numel() for p in proj.parameters()),
                   "llm": sum(p.numel() for p in llm.parameters())},
        "build_s": round(build_s, 2),
        "vision_ms": round(vision_ms, 2),
        "prefill_ms": round(prefill_ms, 2),
        "prefill_tok_s": round(L / (prefill_ms / 1e3), 2),
        "ttft_ms": round(vision_ms + prefill_ms, 2),
        "decode_hand_loop": {"ms": round(decode_ms, 2), "tok_s": round(a.gen / (decode_ms / 1e3), 3)},
        "generate": gen,
        "bf16_decode_hand_loop": bf16_decode,
        "peak_rss_bytes": peak_rss_bytes(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="bfloat16")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="sailvl-2b")
    ap.add_argument("--tiles", type=int, default=7)
    ap.add_argument("--gen", type=int, default=32, help="new tokens to decode")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--layers", type=int, default=0, help="smoke test only: cut every tower to N layers")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--no-generate", dest="generate", action="store_false",
                    help="skip the HF generate() timing (it repeats the prefill)")
    ap.add_argument("--bf16-decode", action="store_true",
                    help="with --dtype float32: also time decode in bfloat16 (model and KV cache cast after prefill)")
    ap.add_argument("--json", default=None, help="append the result to this JSON list file ('-' = stdout only)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    r = bench(a)
    print(json.dumps(r, indent=1))
    if a.json and a.json != "-":
        p = Path(a.json)
        rows = json.loads(p.read_text()) if p.exists() else []
        rows.append(r)
        p.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
