"""Model goldens for the tiny presets: weights.json, per-stage vision goldens, chat-case goldens.

    tools/reference/.venv/bin/python tools/reference/make_model_goldens.py [--out tests/data] [--preset P]

Everything is computed in float32 on the CPU from the BF16 PRNG weights (docs/CHECKPOINTS.md),
with HF transformers' own classes (sailvl_hf.py), 2 threads, deterministic algorithms. Outputs
(see tests/data/README.md, "Model goldens"):

  images/chat/{a,b}.png                 the chat images (chat_images.py)
  images/chat/a_pixels.safetensors      load_image(a.png, max_num=2) as BF16 [1,3,448,448]
  models/<preset>/weights.json          name, shape, dtype, FNV-1a-64 of every checkpoint tensor
  models/<preset>/vision_a.safetensors  features / pixel_shuffle / projector of a_pixels (F32)
  models/<preset>/<case>.json           prompt, prompt ids, greedy ids, step margins, tap positions
  models/<preset>/<case>.safetensors    embeds + hidden after each LLM layer at the tap positions,
                                        last-position logits at ids {0,16,32,...} ∪ top-64 allowed ids (F32)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import card  # noqa: E402
import chat_images  # noqa: E402
import checkpoint  # noqa: E402
import sailvl_hf  # noqa: E402
from sailvl_hf import SYSTEM_MESSAGE, SailVLReference, np_f32  # noqa: E402

REPO = HERE.parent.parent
PRESETS = ("tiny-internvit", "tiny-aimv2")
MAX_NUM = 2          # tiles cap for the chat images (card's load_image max_num)
GEN_TOKENS = 32
# Last-position logits are stored at ids {0, 16, 32, ...} ∪ the top-64 samplable ids (sorted): every row of lm_head is
# sampled evenly and the ids that matter for sampling are all there, at 1/16 of the full size.
LOGITS_STRIDE = 16
HISTORY_ANSWER = "The image shows a yellow disc over colour ramps, with a striped band at the bottom."

# name -> (images, question, history). Questions are what the user passes to SAIL's chat().
CASES = {
    "a_text": ([], "Hello, who are you?", []),
    "b_one_image": (["a.png"], "Please describe the image shortly.", []),
    # InternVL's multi-image convention: the caller writes the numbered <image> markers itself.
    "c_two_images": (["a.png", "b.png"], "Image-1: <image>\nImage-2: <image>\nWhat is different between the two images?", []),
    # Second turn: history holds the first question as chat() stored it (with the prepended
    # "<image>\n") and a fixed answer (not the random model's output, so the case does not depend on
    # decoding random tokens); the image tokens come from the history's <image>.
    "d_second_turn": (["b.png"], "Please write a poem according to the image.",
                      [("<image>\nPlease describe the image in detail.", HISTORY_ANSWER)]),
}


# Checkpoint shapes beyond the presets' defaults: name -> (base preset, stored_head, cases). Written like a
# preset (weights.json + the cases' json/safetensors) under models/<name>; the vision goldens are the base's.
VARIANTS = {
    # llm_config.tie_word_embeddings true *and* a stored language_model.lm_head.weight (whose values differ
    # from embed_tokens): the stored tensor is the LM head, as in SAIL-VL's remote code (docs/MODEL.md,
    # "The LM head"). The C++ side makes it with `make-model --preset tiny-internvit --lm-head stored`.
    "tiny-internvit-stored-head": ("tiny-internvit", True, ("a_text", "b_one_image")),
}


def render_prompt(question: str, history: list[tuple[str, str]], has_images: bool) -> tuple[str, str]:
    """SAIL chat(): returns (question as stored in history, un-expanded query). Template
    `sailvl-chat` (docs/MODEL.md §11): roles <|im_start|>user / assistant, sep <|im_end|>, no newline."""
    if not history and has_images and "<image>" not in question:
        question = "<image>\n" + question
    q = f"<|im_start|>system\n{SYSTEM_MESSAGE}<|im_end|>"
    for old_q, old_a in history:
        q += f"<|im_start|>user\n{old_q}<|im_end|><|im_start|>assistant\n{old_a}<|im_end|>"
    q += f"<|im_start|>user\n{question}<|im_end|><|im_start|>assistant\n"
    return question, q


def expand_images(query: str, tiles_per_image: list[int], num_image_token: int) -> str:
    """Each <image>, first remaining first, -> <img> + <IMG_CONTEXT> * 256 * tiles + </img>."""
    for n in tiles_per_image:
        assert "<image>" in query
        query = query.replace("<image>", "<img>" + "<IMG_CONTEXT>" * (num_image_token * n) + "</img>", 1)
    assert "<image>" not in query
    return query


def tap_positions(length: int) -> list[int]:
    """Positions whose hidden states are stored: all for short prompts, else the first 8, every
    32nd and the last 8 (covers text, <img>, image rows of every tile, the prompt tail)."""
    if length <= 96:
        return list(range(length))
    return sorted(set(range(8)) | set(range(0, length, 32)) | set(range(length - 8, length)))


def dump_json(path: Path, obj: dict) -> None:
    """Stable JSON: one top-level key a line (sorted), each value compact on that line."""
    rows = [f" {json.dumps(k)}: {json.dumps(obj[k], ensure_ascii=False, separators=(',', ':'))}" for k in sorted(obj)]
    path.write_text("{\n" + ",\n".join(rows) + "\n}\n", encoding="utf-8")


def write_weights_json(path: Path, preset: str, cfg: dict, state: dict) -> None:
    m = checkpoint.manifest(cfg, state)
    lines = ["{", f' "preset": {json.dumps(preset)},', f' "seed": {m["seed"]},', f' "hash": {json.dumps(m["hash"])},',
             f' "num_tensors": {m["num_tensors"]},', f' "num_elements": {m["num_elements"]},', ' "tensors": [']
    rows = [" " * 2 + json.dumps(t, separators=(", ", ": ")) for t in m["tensors"]]
    lines.append(",\n".join(rows))
    lines += [" ]", "}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def load_pixels(path: Path) -> torch.Tensor:
    """The card's load_image (PIL + torchvision, verbatim), then BF16 as SAIL's chat feeds it."""
    return card.load_image(str(path), max_num=MAX_NUM).to(torch.bfloat16)


def run_case(ref: SailVLReference, tok, name: str, img_dir: Path, pixels: dict[str, torch.Tensor]):
    images, question, history = CASES[name]
    stored_q, query = render_prompt(question, history, bool(images))
    tiles = [pixels[i].shape[0] for i in images]
    expanded = expand_images(query, tiles, ref.num_image_token)
    # SAIL's chat() calls tokenizer(query): added tokens (<img>, <IMG_CONTEXT>, <|im_start|>...) are
    # parsed as single ids; Qwen2 adds no BOS.
    ids = tok.encode(expanded, add_special_tokens=True).ids
    proj = None
    if images:
        pv = torch.cat([pixels[i] for i in images]).float()
        proj = ref.image_embeds(pv)["projector"]
    emb = ref.input_embeds(ids, proj)
    pre = ref.prefill(emb)
    gen = ref.generate_greedy(emb, GEN_TOKENS)
    last = pre["logits"][-1]
    # generate()'s first step recomputes the same prefill; the two must agree (same code path).
    assert torch.allclose(gen["first_step_logits"], last, atol=1e-4, rtol=0), "generate vs forward differ"

    V = last.shape[0]
    allowed = last.clone()  # top-64 among the ids generation may pick (see generate_greedy)
    allowed[sailvl_hf.IMG_CONTEXT_ID] = -float("inf")
    allowed[sailvl_hf.TOKENIZER_SIZE:] = -float("inf")
    top = torch.topk(allowed, 64).indices.tolist()
    logit_ids = sorted(set(range(0, V, LOGITS_STRIDE)) | set(top))
    pos = tap_positions(len(ids))
    pt = torch.tensor(pos)
    tensors = {"embeds": np_f32(emb[pt]), "logits_last": np_f32(last[torch.tensor(logit_ids)]),
               "step_top_logits": np_f32(gen["top_logits"])}
    for i, h in enumerate(pre["layers"]):
        tensors[f"layer.{i}"] = np_f32(h[pt])
    meta = {"case": name, "images": [f"images/chat/{i}" for i in images], "max_num": MAX_NUM,
            "tiles_per_image": tiles, "system": SYSTEM_MESSAGE, "question": question,
            "history": [list(h) for h in history], "stored_question": stored_q, "query": query,
            "prompt_ids": ids, "num_prompt_tokens": len(ids),
            "hidden_positions": pos, "logits_stride": LOGITS_STRIDE, "logits_top_ids": top,
            "generated_ids": gen["ids"], "generated_text": tok.decode(gen["ids"], skip_special_tokens=True),
            "step_margins": gen["margins"], "step_top_ids": gen["top_ids"],
            "generation": {"max_new_tokens": GEN_TOKENS, "greedy": True, "stop_id": sailvl_hf.IM_END_ID,
                           "suppressed_ids": f"{sailvl_hf.IMG_CONTEXT_ID} and [{sailvl_hf.TOKENIZER_SIZE}, vocab)"}}
    return meta, tensors


def main(out_dir: str | Path | None = None, presets=PRESETS) -> None:
    out = Path(out_dir) if out_dir else REPO / "tests" / "data"
    torch.set_num_threads(2)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    import tokenizers
    tok = tokenizers.Tokenizer.from_file(str(REPO / "tests" / "data" / "sailvl-tokenizer" / "tokenizer.json"))
    sailvl_hf.check_pixel_shuffle_matches_spec()

    img_dir = out / "images" / "chat"
    chat_images.main(img_dir)
    pixels = {p.name: load_pixels(p) for p in sorted(img_dir.glob("*.png"))}
    _write_bf16_pixels(img_dir / "a_pixels.safetensors", pixels["a.png"])

    jobs = [(p, p, None, tuple(CASES), True) for p in presets]
    jobs += [(v, base, head, cases, False) for v, (base, head, cases) in VARIANTS.items() if base in presets]
    for preset, base, stored_head, cases, vision in jobs:
        cfg = checkpoint.load_config(REPO / "tests" / "data" / "configs" / f"{base}.json")
        state = checkpoint.make_state(cfg, seed=0, stored_head=stored_head)
        mdir = out / "models" / preset
        mdir.mkdir(parents=True, exist_ok=True)
        write_weights_json(mdir / "weights.json", preset, cfg, state)
        ref = SailVLReference(cfg, state)
        del state
        if vision:
            st = ref.image_embeds(pixels["a.png"].float())
            save_file({k: np_f32(v) for k, v in st.items()}, str(mdir / "vision_a.safetensors"),
                      metadata={"about": f"{preset} vision goldens of images/chat/a_pixels.safetensors"})
        for name in cases:
            meta, tensors = run_case(ref, tok, name, img_dir, pixels)
            save_file(tensors, str(mdir / f"{name}.safetensors"), metadata={"about": f"{preset} {name}"})
            dump_json(mdir / f"{name}.json", {"preset": preset, **meta})
            print(f"{preset} {name}: {meta['num_prompt_tokens']} tokens, generated {meta['generated_ids'][:8]}...",
                  file=sys.stderr)


def _write_bf16_pixels(path: Path, px: torch.Tensor) -> None:
    """safetensors.numpy has no bfloat16; write the BF16 tensor with safetensors.torch.
    Every file gets exactly one metadata key: the writer keeps metadata in a hash map whose order
    changes from run to run, so two keys would make the header bytes nondeterministic."""
    from safetensors.torch import save_file as save_torch
    save_torch({"pixels": px.contiguous()}, str(path), metadata={"about": f"card load_image(images/chat/a.png, max_num={MAX_NUM}) as BF16"})


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="tests/data directory to write (default: the repo's)")
    ap.add_argument("--preset", action="append", choices=PRESETS, help="only these presets (repeatable)")
    a = ap.parse_args()
    main(a.out, tuple(a.preset) if a.preset else PRESETS)
