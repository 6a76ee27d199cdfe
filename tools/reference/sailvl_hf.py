"""SAIL-VL assembled from Hugging Face transformers' own model classes (the oracle's model math).

Nothing here re-implements a layer. The pieces are:
  vision tower  transformers.InternVLVisionModel  (InternViT-300M family)
                transformers.Aimv2VisionModel     (AIMv2-Huge, "SAILViT")
  pixel shuffle transformers.InternVLModel.pixel_shuffle (a pure reshape/permute; checked against
                docs/MODEL.md §6's index formula in `check_pixel_shuffle_matches_spec`)
  projector     transformers...InternVLMultiModalProjector (LayerNorm -> Linear -> GELU -> Linear)
  LLM           transformers.Qwen2ForCausalLM
Glue (listed in tools/reference/README.md): SAIL checkpoint names -> HF parameter names (fused qkv
split into q/k/v, renamed modules), dropping the InternViT CLS token, the chat template and
`<image>` expansion of SAIL's `chat()`, the scatter of projector rows into the `<IMG_CONTEXT>`
embeddings, and masking never-sampled ids during greedy generation.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import (Aimv2VisionConfig, Aimv2VisionModel, InternVLConfig, InternVLVisionConfig,
                          InternVLVisionModel, Qwen2Config, Qwen2ForCausalLM)
from transformers.models.internvl.modeling_internvl import InternVLModel, InternVLMultiModalProjector

import checkpoint

IMG_CONTEXT_ID = 151667
IM_END_ID = 151645
TOKENIZER_SIZE = 151674  # ids >= this are embedding padding rows (docs/MODEL.md §10)
SYSTEM_MESSAGE = "你是由抖音内容理解组开发的多模态大模型，英文名叫UniVL, 是一个有用无害的人工智能助手。"


def _f32(state: dict, name: str) -> torch.Tensor:
    """A checkpoint tensor as float32 (exact: BF16 -> F32 is a widening)."""
    return checkpoint.to_torch_bf16(state[name]).float()


def _load_exact(module: torch.nn.Module, sd: dict[str, torch.Tensor], allow_missing: tuple[str, ...] = ()):
    """load_state_dict(strict) with every mapped name used exactly once: a mapping slip is an error."""
    missing, unexpected = module.load_state_dict(sd, strict=False)
    missing = [m for m in missing if m not in allow_missing]
    if missing or unexpected:
        raise RuntimeError(f"weight mapping mismatch: missing {missing}, unexpected {unexpected}")


# ---------------------------------------------------------------- vision towers

def build_internvit(cfg: dict, state: dict) -> InternVLVisionModel:
    v = cfg["vision_config"]
    hc = InternVLVisionConfig(
        hidden_size=v["hidden_size"], num_hidden_layers=v["num_hidden_layers"],
        num_attention_heads=v["num_attention_heads"], intermediate_size=v["intermediate_size"],
        attention_bias=v.get("qkv_bias", True),  # InternViT's fused qkv has a bias
        use_qk_norm=v.get("qk_normalization", False),  # False for InternViT-300M
        hidden_act=v["hidden_act"],  # "gelu" -> ACT2FN's erf GELU
        norm_type=v.get("norm_type", "layer_norm"), layer_norm_eps=v["layer_norm_eps"],
        image_size=(v["image_size"],) * 2, patch_size=(v["patch_size"],) * 2, num_channels=v["num_channels"],
        use_mask_token=False, use_absolute_position_embeddings=True,
        # use_mean_pooling=True makes InternVLVisionModel.layernorm an Identity: InternViT-300M has no
        # final norm (docs/MODEL.md §4); layer_scale_init_value only sets the init, overwritten below.
        use_mean_pooling=True, layer_scale_init_value=0.1,
        attention_dropout=0.0, projection_dropout=0.0, hidden_dropout_prob=0.0)
    hc._attn_implementation = "eager"
    model = InternVLVisionModel(hc).eval()
    C = v["hidden_size"]
    sd = {"embeddings.cls_token": _f32(state, "vision_model.embeddings.class_embedding"),
          "embeddings.position_embeddings": _f32(state, "vision_model.embeddings.position_embedding"),
          "embeddings.patch_embeddings.projection.weight": _f32(state, "vision_model.embeddings.patch_embedding.weight"),
          "embeddings.patch_embeddings.projection.bias": _f32(state, "vision_model.embeddings.patch_embedding.bias")}
    for i in range(v["num_hidden_layers"]):
        s, d = f"vision_model.encoder.layers.{i}.", f"encoder.layer.{i}."
        # InternViT's fused qkv rows are [q; k; v] (InternAttention: qkv.reshape(B,N,3,H,Dh)).
        qkv_w, qkv_b = _f32(state, s + "attn.qkv.weight"), _f32(state, s + "attn.qkv.bias")
        for j, n in enumerate("qkv"):
            sd[d + f"attention.{n}_proj.weight"] = qkv_w[j * C:(j + 1) * C]
            sd[d + f"attention.{n}_proj.bias"] = qkv_b[j * C:(j + 1) * C]
        sd[d + "attention.projection_layer.weight"] = _f32(state, s + "attn.proj.weight")
        sd[d + "attention.projection_layer.bias"] = _f32(state, s + "attn.proj.bias")
        sd[d + "lambda_1"] = _f32(state, s + "ls1")
        sd[d + "lambda_2"] = _f32(state, s + "ls2")
        for a, b in (("norm1", "layernorm_before"), ("norm2", "layernorm_after")):
            sd[d + b + ".weight"] = _f32(state, s + a + ".weight")
            sd[d + b + ".bias"] = _f32(state, s + a + ".bias")
        for n in ("fc1", "fc2"):
            sd[d + f"mlp.{n}.weight"] = _f32(state, s + f"mlp.{n}.weight")
            sd[d + f"mlp.{n}.bias"] = _f32(state, s + f"mlp.{n}.bias")
    _load_exact(model, sd)
    return model


def build_aimv2(cfg: dict, state: dict) -> Aimv2VisionModel:
    v = cfg["vision_config"]
    hc = Aimv2VisionConfig(
        hidden_size=v["hidden_size"], intermediate_size=v["intermediate_size"],
        num_hidden_layers=v["num_hidden_layers"], num_attention_heads=v["num_attention_heads"],
        num_channels=v["num_channels"], image_size=v["image_size"], patch_size=v["patch_size"],
        hidden_act="silu", rms_norm_eps=v["rms_norm_eps"], qkv_bias=v.get("qkv_bias", False),
        mlp_bias=v.get("use_bias", False), attention_dropout=0.0,
        use_head=False,   # SAIL keeps the token sequence; no attention-pooling head
        is_native=False)  # learned pos_embed (448 px), not the sin-cos "native" variant
    hc._attn_implementation = "eager"
    model = Aimv2VisionModel(hc).eval()
    C = v["hidden_size"]
    pre = "vision_model.preprocessor."
    sd = {"embeddings.patch_embed.weight": _f32(state, pre + "patchifier.proj.weight"),
          "embeddings.patch_embed.bias": _f32(state, pre + "patchifier.proj.bias"),
          "embeddings.rms_norm.weight": _f32(state, pre + "patchifier.norm.weight"),
          # SAIL stores pos_embed as [1, N, C]; HF keeps an nn.Embedding(N, C) indexed 0..N-1.
          "embeddings.position_embedding.weight": _f32(state, pre + "pos_embed")[0],
          # Aimv2VisionModel.rms_norm is applied to the last layer's output: AIMv2's post_trunk_norm.
          "rms_norm.weight": _f32(state, "vision_model.trunk.post_trunk_norm.weight")}
    for i in range(v["num_hidden_layers"]):
        s, d = f"vision_model.trunk.blocks.{i}.", f"encoder.layers.{i}."
        qkv = _f32(state, s + "attn.qkv.weight")  # AIMv2 Attention: qkv.reshape(B,N,3,H,Dh) -> [q; k; v]
        for j, n in enumerate("qkv"):
            sd[d + f"attention.{n}_proj.weight"] = qkv[j * C:(j + 1) * C]
        sd[d + "attention.out_proj.weight"] = _f32(state, s + "attn.proj.weight")
        sd[d + "rms_norm1.weight"] = _f32(state, s + "norm_1.weight")
        sd[d + "rms_norm2.weight"] = _f32(state, s + "norm_2.weight")
        # AIMv2 SwiGLU: fc2(silu(fc1(x)) * fc3(x)); HF: down(act(gate(x)) * up(x)).
        sd[d + "ffn.gate_proj.weight"] = _f32(state, s + "mlp.fc1.weight")
        sd[d + "ffn.up_proj.weight"] = _f32(state, s + "mlp.fc3.weight")
        sd[d + "ffn.down_proj.weight"] = _f32(state, s + "mlp.fc2.weight")
    _load_exact(model, sd)
    return model


# ---------------------------------------------------------------- projector and LLM

def build_projector(cfg: dict, state: dict) -> InternVLMultiModalProjector:
    v, l = cfg["vision_config"], cfg["llm_config"]
    ic = InternVLConfig(vision_config=InternVLVisionConfig(hidden_size=v["hidden_size"]),
                        text_config={"model_type": "qwen2", "hidden_size": l["hidden_size"]},
                        downsample_ratio=cfg["downsample_ratio"], projector_hidden_act="gelu")
    proj = InternVLMultiModalProjector(ic).eval()
    # mlp1 = Sequential(LayerNorm, Linear, GELU, Linear): indices 0, 1, (2 = GELU), 3. LayerNorm eps is
    # torch's default 1e-5 in both SAIL's mlp1 and HF's projector.
    assert proj.layer_norm.eps == 1e-5
    _load_exact(proj, {"layer_norm.weight": _f32(state, "mlp1.0.weight"), "layer_norm.bias": _f32(state, "mlp1.0.bias"),
                       "linear_1.weight": _f32(state, "mlp1.1.weight"), "linear_1.bias": _f32(state, "mlp1.1.bias"),
                       "linear_2.weight": _f32(state, "mlp1.3.weight"), "linear_2.bias": _f32(state, "mlp1.3.bias")})
    return proj


def build_qwen2(cfg: dict, state: dict) -> Qwen2ForCausalLM:
    l = cfg["llm_config"]
    keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "hidden_act", "max_position_embeddings", "max_window_layers", "rms_norm_eps", "rope_theta",
            "sliding_window", "use_sliding_window", "tie_word_embeddings", "vocab_size", "bos_token_id",
            "eos_token_id", "attention_dropout")
    # The LM head (docs/MODEL.md, "The LM head"): a stored language_model.lm_head.weight is the head even
    # when tie_word_embeddings is true. SAIL-VL's remote code (modeling_sailvl.py, transformers 4.45) builds
    # its nested Qwen2 inside from_pretrained's no-init context and never re-ties it, so the stored tensor
    # is loaded into an untied lm_head. We reproduce that by building HF's Qwen2 untied whenever a head is
    # stored (the math is the same module; only where lm_head's weight comes from differs).
    stored_head = "language_model.lm_head.weight" in state
    args = {k: l[k] for k in keys if k in l}
    args["tie_word_embeddings"] = not stored_head
    qc = Qwen2Config(**args)
    qc._attn_implementation = "eager"
    model = Qwen2ForCausalLM(qc).eval()
    sd = {n[len("language_model."):]: _f32(state, n) for n in state if n.startswith("language_model.")}
    _load_exact(model, sd, allow_missing=() if stored_head else ("lm_head.weight",))
    if stored_head:
        assert torch.equal(model.lm_head.weight, _f32(state, "language_model.lm_head.weight"))
        assert not torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)
    else:
        model.tie_weights()
        # No stored head: the LM head *is* embed_tokens (an untied config without a head is read the same way).
        assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)
    return model


# ---------------------------------------------------------------- the assembled model

class SailVLReference:
    def __init__(self, cfg: dict, state: dict):
        assert cfg["ps_version"] == "v2" and cfg["select_layer"] == -1
        self.cfg = cfg
        self.kind = checkpoint.vision_kind(cfg)
        self.vision = build_internvit(cfg, state) if self.kind == "internvit" else build_aimv2(cfg, state)
        self.projector = build_projector(cfg, state)
        self.llm = build_qwen2(cfg, state)
        self.num_image_token = checkpoint.num_image_token(cfg)

    @torch.no_grad()
    def vision_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """[T,3,448,448] -> [T,1024,C]: select_layer -1 output (InternViT: CLS dropped, no norm;
        AIMv2: post_trunk_norm applied, as Aimv2VisionModel.last_hidden_state is post-norm)."""
        out = self.vision(pixel_values=pixels).last_hidden_state
        if self.kind == "internvit":
            out = out[:, 1:, :]  # glue: SAIL's extract_feature drops the CLS token
        return out

    @staticmethod
    def pixel_shuffle(feats: torch.Tensor, scale: float = 0.5) -> torch.Tensor:
        """[T,N,C] -> [T,N/4,4C] with HF InternVLModel.pixel_shuffle (same as InternVL's v2)."""
        T, N, C = feats.shape
        g = int(N ** 0.5)
        # .contiguous(): HF pixel_shuffle uses .view(); AIMv2 features keep the conv output's
        # transposed strides through the elementwise ops, so they need a copy first (layout only).
        x = InternVLModel.pixel_shuffle(None, feats.contiguous().reshape(T, g, g, C), scale_factor=scale)
        return x.reshape(T, -1, x.shape[-1])

    @torch.no_grad()
    def project(self, shuffled: torch.Tensor) -> torch.Tensor:
        return self.projector(shuffled)

    @torch.no_grad()
    def image_embeds(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.vision_features(pixels)
        s = self.pixel_shuffle(f, self.cfg["downsample_ratio"])
        return {"features": f, "pixel_shuffle": s, "projector": self.project(s)}

    @torch.no_grad()
    def input_embeds(self, ids: list[int], proj_rows: torch.Tensor | None) -> torch.Tensor:
        """embed_tokens(ids), with the <IMG_CONTEXT> positions replaced in order by projector rows
        (glue: SAIL's generate() does input_embeds[selected] = vit_embeds)."""
        ids_t = torch.tensor(ids, dtype=torch.long)
        emb = self.llm.get_input_embeddings()(ids_t).clone()
        sel = ids_t == IMG_CONTEXT_ID
        n = int(sel.sum())
        rows = 0 if proj_rows is None else proj_rows.shape[0] * proj_rows.shape[1]
        if n != rows:
            raise ValueError(f"{n} <IMG_CONTEXT> tokens but {rows} image rows")
        if n:
            emb[sel] = proj_rows.reshape(-1, proj_rows.shape[-1]).to(emb.dtype)
        return emb

    @torch.no_grad()
    def prefill(self, embeds: torch.Tensor) -> dict[str, torch.Tensor]:
        """One forward over the prompt: hidden state after each decoder layer and the logits."""
        outs: list[torch.Tensor] = []
        hooks = [layer.register_forward_hook(lambda m, a, o: outs.append((o[0] if isinstance(o, tuple) else o)[0]))
                 for layer in self.llm.model.layers]
        try:
            r = self.llm(inputs_embeds=embeds[None], use_cache=False)
        finally:
            for h in hooks:
                h.remove()
        assert len(outs) == len(self.llm.model.layers)
        return {"layers": outs, "logits": r.logits[0]}

    @torch.no_grad()
    def generate_greedy(self, embeds: torch.Tensor, max_new_tokens: int) -> dict:
        """HF generate() on inputs_embeds, greedy, stop on <|im_end|>. Padding rows (>= tokenizer
        size) and <IMG_CONTEXT> are never sampled: generate's own `suppress_tokens` sets them to -inf
        before the argmax (glue: SAIL's chat() does not do this, random weights need it)."""
        suppress = [IMG_CONTEXT_ID] + list(range(TOKENIZER_SIZE, self.cfg["llm_config"]["vocab_size"]))
        g = self.llm.generate(inputs_embeds=embeds[None], attention_mask=torch.ones(1, embeds.shape[0], dtype=torch.long),
                              max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                              eos_token_id=IM_END_ID, pad_token_id=IM_END_ID, suppress_tokens=suppress,
                              output_logits=True, output_scores=True, return_dict_in_generate=True,
                              temperature=None, top_p=None, top_k=None)
        ids = g.sequences[0].tolist()
        margins, top_ids, top_vals = [], [], []
        for step, sc in enumerate(g.scores):  # scores: logits after suppression, one row per step
            top = torch.topk(sc[0], 8)
            assert int(top.indices[0]) == ids[step]
            margins.append(float(top.values[0] - top.values[1]))
            top_ids.append(top.indices.tolist())
            top_vals.append(top.values)
        return {"ids": ids, "margins": margins, "top_ids": top_ids, "top_logits": torch.stack(top_vals),
                "first_step_logits": g.logits[0][0]}


def check_pixel_shuffle_matches_spec(C: int = 3) -> None:
    """docs/MODEL.md §6: out[t, i*16+j, (2*dy+dx)*C + c] = in[t, row=2i+dy, col=2j+dx, c]."""
    T = 2
    x = torch.arange(T * 32 * 32 * C, dtype=torch.float32).reshape(T, 32 * 32, C)
    y = SailVLReference.pixel_shuffle(x)
    g = x.reshape(T, 32, 32, C)
    want = torch.empty(T, 256, 4 * C)
    for i in range(16):
        for j in range(16):
            for dy in range(2):
                for dx in range(2):
                    want[:, i * 16 + j, (2 * dy + dx) * C:(2 * dy + dx + 1) * C] = g[:, 2 * i + dy, 2 * j + dx, :]
    assert torch.equal(y, want), "HF pixel_shuffle differs from docs/MODEL.md §6"


def bf16_round(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.bfloat16).float()


def np_f32(x: torch.Tensor) -> np.ndarray:
    return x.detach().to(torch.float32).contiguous().numpy()
