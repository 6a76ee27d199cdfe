"""Measure the rounding noise of each stage, to justify the tolerances in tests/data/README.md.

The same HF modules run the one-image chat case (b_one_image) and the text case (a_text) three
ways: float64 (a stand-in for exact arithmetic), float32 (the oracle and our CPU path) and
bfloat16 (HF's BF16 behaviour, which the CUDA path mirrors). Two float32 implementations that each
round correctly differ from each other by at most the sum of their distances to the exact result,
so |f32 - f64| per stage is the scale a CPU test's tolerance must cover; likewise |bf16 - f64| for
a GPU test. Writes tools/reference/results/tolerances.json.

    tools/reference/.venv/bin/python tools/reference/measure_tolerances.py [--preset P]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import checkpoint  # noqa: E402
import make_model_goldens as mg  # noqa: E402
from sailvl_hf import SailVLReference  # noqa: E402


def stats(x: torch.Tensor, ref: torch.Tensor) -> dict:
    d = (x.double() - ref).abs()
    scale = ref.abs()
    return {"max_abs": float(d.max()), "max_abs_ref": float(scale.max()), "rms_ref": float(ref.pow(2).mean().sqrt()),
            "max_rel_to_rms": float(d.max() / ref.pow(2).mean().sqrt()),
            "rel_l2": float(d.pow(2).sum().sqrt() / ref.pow(2).sum().sqrt())}


def run(ref: SailVLReference, dtype: torch.dtype, pixels: torch.Tensor, ids_img: list[int], ids_txt: list[int]) -> dict:
    m = copy.deepcopy(ref)
    for mod in (m.vision, m.projector, m.llm):
        mod.to(dtype)
    st = m.image_embeds(pixels.to(dtype))
    out = {k: v for k, v in st.items()}
    for tag, ids, proj in (("img", ids_img, st["projector"]), ("txt", ids_txt, None)):
        pre = m.prefill(m.input_embeds(ids, proj))
        for i, h in enumerate(pre["layers"]):
            out[f"{tag}.layer.{i}"] = h
        out[f"{tag}.logits_last"] = pre["logits"][-1]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", action="append", choices=mg.PRESETS)
    a = ap.parse_args()
    torch.set_num_threads(2)
    import tokenizers
    tok = tokenizers.Tokenizer.from_file(str(mg.REPO / "tests/data/sailvl-tokenizer/tokenizer.json"))
    img = mg.REPO / "tests/data/images/chat/a.png"
    pixels = mg.load_pixels(img).double()
    res = {}
    for preset in a.preset or mg.PRESETS:
        cfg = checkpoint.load_config(mg.REPO / "tests/data/configs" / f"{preset}.json")
        ref = SailVLReference(cfg, checkpoint.make_state(cfg))
        ids = {}
        for name in ("a_text", "b_one_image"):
            images, q, hist = mg.CASES[name]
            _, query = mg.render_prompt(q, hist, bool(images))
            ids[name] = tok.encode(mg.expand_images(query, [1] * len(images), ref.num_image_token)).ids
        r64 = run(ref, torch.float64, pixels, ids["b_one_image"], ids["a_text"])
        res[preset] = {}
        for dt, name in ((torch.float32, "f32"), (torch.bfloat16, "bf16")):
            r = run(ref, dt, pixels, ids["b_one_image"], ids["a_text"])
            res[preset][name] = {k: stats(r[k], r64[k].double()) for k in r64}
        print(json.dumps(res[preset], indent=1))
    out = HERE / "results" / "tolerances.json"
    out.write_text(json.dumps({"torch": torch.__version__, "threads": 2, "stages": res}, indent=1) + "\n")


if __name__ == "__main__":
    main()
