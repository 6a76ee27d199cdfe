"""SAIL-VL tensor names and shapes from a config.json, and the PRNG weights of docs/CHECKPOINTS.md.

Names follow docs/MODEL.md §9 (SAIL-VL's own checkpoint names: InternVL2's InternViT, SAIL's AIMv2
port, `mlp1`, Qwen2 under `language_model.`). Shapes come from the config only, so this is the
oracle's independent statement of "what a checkpoint of this config contains"; the C++ make-model
must produce the same set with the same bytes (tests/test_fixtures.cpp checks it via weights.json).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

import prng


def load_config(path: str | Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def num_image_token(cfg: dict) -> int:
    v = cfg["vision_config"]
    grid = cfg["force_image_size"] // v["patch_size"]
    return int(grid * grid * cfg["downsample_ratio"] ** 2)


def vision_kind(cfg: dict) -> str:
    mt = cfg["vision_config"]["model_type"]
    if mt == "aimv2":
        return "aimv2"
    if mt in ("intern_vit_6b", "internvit"):
        return "internvit"
    raise ValueError(f"unknown vision model_type {mt}")


def tensor_specs(cfg: dict, stored_head: bool | None = None) -> list[tuple[str, tuple[int, ...]]]:
    """Every tensor of the checkpoint as (name, shape), in a fixed order. `language_model.lm_head.weight`
    is present when `stored_head` (default: when the config is untied); a stored head is the LM head
    whatever tie_word_embeddings says (docs/MODEL.md, "The LM head")."""
    v, l = cfg["vision_config"], cfg["llm_config"]
    C, I, P = v["hidden_size"], v["intermediate_size"], v["patch_size"]
    grid = v["image_size"] // P
    out: list[tuple[str, tuple[int, ...]]] = []
    if vision_kind(cfg) == "internvit":
        e = "vision_model.embeddings."
        out += [(e + "class_embedding", (1, 1, C)),
                (e + "position_embedding", (1, grid * grid + 1, C)),
                (e + "patch_embedding.weight", (C, v["num_channels"], P, P)),
                (e + "patch_embedding.bias", (C,))]
        for i in range(v["num_hidden_layers"]):
            p = f"vision_model.encoder.layers.{i}."
            out += [(p + "norm1.weight", (C,)), (p + "norm1.bias", (C,)),
                    (p + "attn.qkv.weight", (3 * C, C))]
            if v.get("qkv_bias", True):
                out += [(p + "attn.qkv.bias", (3 * C,))]
            if v.get("qk_normalization", False):
                raise NotImplementedError("qk_normalization (InternViT-6B) is not part of SAIL-VL")
            out += [(p + "attn.proj.weight", (C, C)), (p + "attn.proj.bias", (C,)),
                    (p + "ls1", (C,)), (p + "ls2", (C,)),
                    (p + "norm2.weight", (C,)), (p + "norm2.bias", (C,)),
                    (p + "mlp.fc1.weight", (I, C)), (p + "mlp.fc1.bias", (I,)),
                    (p + "mlp.fc2.weight", (C, I)), (p + "mlp.fc2.bias", (C,))]
    else:
        pre = "vision_model.preprocessor."
        out += [(pre + "patchifier.proj.weight", (C, v["num_channels"], P, P)),
                (pre + "patchifier.proj.bias", (C,)),
                (pre + "patchifier.norm.weight", (C,)),
                (pre + "pos_embed", (1, grid * grid, C))]
        if v.get("qkv_bias", False) or v.get("use_bias", False):
            raise NotImplementedError("AIMv2 with biases is not part of SAIL-VL")
        for i in range(v["num_hidden_layers"]):
            p = f"vision_model.trunk.blocks.{i}."
            out += [(p + "norm_1.weight", (C,)),
                    (p + "attn.qkv.weight", (3 * C, C)), (p + "attn.proj.weight", (C, C)),
                    (p + "norm_2.weight", (C,)),
                    (p + "mlp.fc1.weight", (I, C)), (p + "mlp.fc2.weight", (C, I)),
                    (p + "mlp.fc3.weight", (I, C))]
        out += [("vision_model.trunk.post_trunk_norm.weight", (C,))]

    D = l["hidden_size"]
    C4 = C * int(round(1 / cfg["downsample_ratio"])) ** 2
    out += [("mlp1.0.weight", (C4,)), ("mlp1.0.bias", (C4,)),
            ("mlp1.1.weight", (D, C4)), ("mlp1.1.bias", (D,)),
            ("mlp1.3.weight", (D, D)), ("mlp1.3.bias", (D,))]

    H, KV, Il, V = l["num_attention_heads"], l["num_key_value_heads"], l["intermediate_size"], l["vocab_size"]
    hd = l.get("head_dim", D // H)
    out += [("language_model.model.embed_tokens.weight", (V, D))]
    for i in range(l["num_hidden_layers"]):
        p = f"language_model.model.layers.{i}."
        out += [(p + "input_layernorm.weight", (D,)),
                (p + "self_attn.q_proj.weight", (H * hd, D)), (p + "self_attn.q_proj.bias", (H * hd,)),
                (p + "self_attn.k_proj.weight", (KV * hd, D)), (p + "self_attn.k_proj.bias", (KV * hd,)),
                (p + "self_attn.v_proj.weight", (KV * hd, D)), (p + "self_attn.v_proj.bias", (KV * hd,)),
                (p + "self_attn.o_proj.weight", (D, H * hd)),
                (p + "post_attention_layernorm.weight", (D,)),
                (p + "mlp.gate_proj.weight", (Il, D)), (p + "mlp.up_proj.weight", (Il, D)),
                (p + "mlp.down_proj.weight", (D, Il))]
    out += [("language_model.model.norm.weight", (D,))]
    if stored_head is None:
        stored_head = not l.get("tie_word_embeddings", False)
    if stored_head:
        out += [("language_model.lm_head.weight", (V, D))]
    return out


def make_state(cfg: dict, seed: int = 0, stored_head: bool | None = None) -> dict[str, np.ndarray]:
    """name -> BF16 bit patterns (uint16, shaped): the checkpoint that make-model writes."""
    return {name: prng.tensor_bf16_bits(name, shape, seed) for name, shape in tensor_specs(cfg, stored_head)}


def to_torch_bf16(bits: np.ndarray) -> torch.Tensor:
    """uint16 BF16 bit patterns -> torch.bfloat16 tensor with the same bits."""
    return torch.from_numpy(bits.astype(np.int16, copy=True)).view(torch.bfloat16)


def manifest(cfg: dict, state: dict[str, np.ndarray], seed: int = 0) -> dict:
    """weights.json: for each tensor its name, shape, dtype and FNV-1a-64 of its BF16 LE bytes."""
    tensors = []
    for name, shape in tensor_specs(cfg, "language_model.lm_head.weight" in state):
        bits = state[name]
        assert tuple(bits.shape) == shape
        tensors.append({"name": name, "shape": list(shape), "dtype": "BF16",
                        "fnv1a64": prng.fnv1a64_hex(bits.astype("<u2").tobytes())})
    return {"seed": seed,
            "hash": "FNV-1a-64 over the tensor's BF16 bytes, little-endian, C order (docs/CHECKPOINTS.md fnv1a64)",
            "num_tensors": len(tensors),
            "num_elements": int(sum(math.prod(t["shape"]) for t in tensors)),
            "tensors": tensors}
