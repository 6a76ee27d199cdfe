// InternViT forward: see intern_vit.h for the math and its source.
#include "model/intern_vit.h"

#include <string>

#include "model/model.h"
#include "ops/ops.h"

namespace sailvl::model {

namespace {

// Buffers for one tile, allocated once per forward() and reused by every tile and layer.
struct Scratch {
  Tensor px;       // [1, 3, S, S]  this tile's pixels in the activation dtype
  Tensor patches;  // [1, G², C]
  Tensor h;        // [N, C]  the residual stream, N = G² + 1 (CLS first)
  Tensor n;        // [N, C]  normed input of a sub-block
  Tensor q, k, v;  // [N, C]  = [N, H, Dh]
  Tensor a;        // [N, C]  attention output (heads concatenated)
  Tensor y;        // [N, C]  sub-block output before the layer scale
  Tensor f;        // [N, F]  MLP hidden
};

// h = h + ls1 ⊙ proj(MHA(LN1(h)))
void attention_block(Scratch& s, const InternVitLayer& L, const loader::VisionConfig& cfg) {
  const int64_t N = s.h.size(0), H = cfg.heads, Dh = cfg.head_dim;
  const float eps = static_cast<float>(cfg.norm_eps);
  ops::layer_norm(s.n, s.h, L.norm1_w, L.norm1_b, eps);     // n = LN1(h)                 [N, C]
  ops::linear(s.q, s.n, L.wq, L.bq);                        // q = n·Wqᵀ + bq              [N, H·Dh]
  ops::linear(s.k, s.n, L.wk, L.bk);                        // k = n·Wkᵀ + bk              [N, H·Dh]
  ops::linear(s.v, s.n, L.wv, L.bv);                        // v = n·Wvᵀ + bv              [N, H·Dh]
  ops::attention(s.a.reshape({N, H, Dh}), s.q.reshape({N, H, Dh}), s.k.reshape({N, H, Dh}),
                 s.v.reshape({N, H, Dh}), {.causal = false});  // a = softmax(q·kᵀ/√Dh)·v   [N, H, Dh]
  ops::linear(s.y, s.a, L.proj_w, L.proj_b);                // y = a·Woᵀ + bo              [N, C]
  ops::add_scaled(s.h, s.h, L.ls1, s.y);                    // h = h + ls1 ⊙ y             [N, C]
}

// h = h + ls2 ⊙ fc2(GELU(fc1(LN2(h))))
void mlp_block(Scratch& s, const InternVitLayer& L, const loader::VisionConfig& cfg) {
  const float eps = static_cast<float>(cfg.norm_eps);
  ops::layer_norm(s.n, s.h, L.norm2_w, L.norm2_b, eps);     // n = LN2(h)                 [N, C]
  ops::linear(s.f, s.n, L.fc1_w, L.fc1_b);                  // f = fc1(n)                  [N, F]
  ops::gelu_erf(s.f, s.f);                                  // f = GELU(f)   (erf form)    [N, F]
  ops::linear(s.y, s.f, L.fc2_w, L.fc2_b);                  // y = fc2(f)                  [N, C]
  ops::add_scaled(s.h, s.h, L.ls2, s.y);                    // h = h + ls2 ⊙ y             [N, C]
}

}  // namespace

InternViT InternViT::load(const loader::WeightMap& weights, const loader::VisionConfig& cfg, int64_t select_layer,
                          const Device& device) {
  SAILVL_CHECK(cfg.arch == loader::VisionArch::InternViT, Internal, "InternViT::load on a non-InternViT config");
  SAILVL_CHECK(cfg.norm_type == "layer_norm", BadModel, "config.json: vision_config.norm_type \"", cfg.norm_type,
               "\" is not supported (InternViT-300M uses layer_norm)");
  SAILVL_CHECK(!cfg.qk_normalization, BadModel,
               "config.json: vision_config.qk_normalization = true is not supported (InternViT-300M has none)");
  SAILVL_CHECK(cfg.hidden_act == "gelu", BadModel, "config.json: vision_config.hidden_act \"", cfg.hidden_act,
               "\" is not supported (InternViT uses gelu)");
  SAILVL_CHECK(cfg.image_size % cfg.patch_size == 0, BadModel, "config.json: image_size ", cfg.image_size,
               " is not a multiple of patch_size ", cfg.patch_size);
  SAILVL_CHECK(select_layer < 0 ? -select_layer <= cfg.layers + 1 : select_layer <= cfg.layers, BadModel,
               "config.json: select_layer ", select_layer, " is outside the ", cfg.layers + 1,
               " hidden states of a ", cfg.layers, "-layer vision tower");

  InternViT m;
  m.cfg_ = cfg;
  m.device_ = device;
  // hidden_states[k], Python indexing over layers + 1 entries; entry i is the output of i layers.
  m.layers_run_ = select_layer < 0 ? cfg.layers + 1 + select_layer : select_layer;

  const int64_t C = cfg.hidden, F = cfg.intermediate, P = cfg.patch_size, G = cfg.image_size / P;
  auto E = weights.scope("vision_model.embeddings");
  m.patch_w = place(E.require("patch_embedding.weight", {C, cfg.num_channels, P, P}), device);
  m.patch_b = place_as_activation(E.require("patch_embedding.bias", {C}), device);
  m.cls = place_as_activation(E.require("class_embedding", {1, 1, C}).reshape({1, C}), device);
  // At 448 px the 32×32 grid of position embeddings is used as stored: HF's bicubic resize to the
  // same grid (align_corners=False, scale 1) samples every source point exactly. Other grids would
  // need that interpolation, which we do not implement; the shape check refuses them.
  m.pos = place_as_activation(E.require("position_embedding", {1, G * G + 1, C}).reshape({G * G + 1, C}), device);

  for (int64_t i = 0; i < m.layers_run_; ++i) {
    auto W = weights.scope("vision_model.encoder.layers." + std::to_string(i));
    InternVitLayer L;
    L.norm1_w = place_as_activation(W.require("norm1.weight", {C}), device);
    L.norm1_b = place_as_activation(W.require("norm1.bias", {C}), device);
    const Tensor qkv = place(W.require("attn.qkv.weight", {3 * C, C}), device);
    L.wq = qkv.narrow(0, 0, C);      // rows [0, C)    -> q
    L.wk = qkv.narrow(0, C, C);      // rows [C, 2C)   -> k
    L.wv = qkv.narrow(0, 2 * C, C);  // rows [2C, 3C)  -> v
    if (cfg.qkv_bias) {
      const Tensor b = place_as_activation(W.require("attn.qkv.bias", {3 * C}), device);
      L.bq = b.narrow(0, 0, C);
      L.bk = b.narrow(0, C, C);
      L.bv = b.narrow(0, 2 * C, C);
    }
    L.proj_w = place(W.require("attn.proj.weight", {C, C}), device);
    L.proj_b = place_as_activation(W.require("attn.proj.bias", {C}), device);
    L.ls1 = place_as_activation(W.require("ls1", {C}), device);
    L.ls2 = place_as_activation(W.require("ls2", {C}), device);
    L.norm2_w = place_as_activation(W.require("norm2.weight", {C}), device);
    L.norm2_b = place_as_activation(W.require("norm2.bias", {C}), device);
    L.fc1_w = place(W.require("mlp.fc1.weight", {F, C}), device);
    L.fc1_b = place_as_activation(W.require("mlp.fc1.bias", {F}), device);
    L.fc2_w = place(W.require("mlp.fc2.weight", {C, F}), device);
    L.fc2_b = place_as_activation(W.require("mlp.fc2.bias", {C}), device);
    m.layers_.push_back(std::move(L));
  }
  return m;
}

Tensor InternViT::forward(const Tensor& pixels) const {
  const int64_t S = cfg_.image_size, C = cfg_.hidden, F = cfg_.intermediate, G = grid();
  SAILVL_CHECK(pixels.dim() == 4 && pixels.size(1) == cfg_.num_channels && pixels.size(2) == S && pixels.size(3) == S,
               Usage, "InternViT expects pixels [T, ", cfg_.num_channels, ", ", S, ", ", S, "], got ",
               pixels.describe(), " (other tile sizes would need the position-embedding interpolation)");
  const int64_t T = pixels.size(0), N = G * G + 1;
  const DType act = activation_dtype(device_);

  Tensor out = Tensor::empty({T, G * G, C}, act, device_);  // features, CLS dropped
  Scratch s;
  s.px = Tensor::empty({1, cfg_.num_channels, S, S}, act, device_);
  s.patches = Tensor::empty({1, G * G, C}, act, device_);
  for (Tensor* t : {&s.h, &s.n, &s.q, &s.k, &s.v, &s.a, &s.y}) *t = Tensor::empty({N, C}, act, device_);
  s.f = Tensor::empty({N, F}, act, device_);

  for (int64_t t = 0; t < T; ++t) {
    // Embeddings: h = [cls ; Conv(pixels)] + pos
    s.px.copy_from(pixels.narrow(0, t, 1));
    ops::patch_embed(s.patches, s.px, patch_w, patch_b);     // patches = Conv2d(px)     [1, G², C]
    s.h.narrow(0, 0, 1).copy_from(cls);                       // h[0]   = cls             [1, C]
    s.h.narrow(0, 1, G * G).copy_from(s.patches.select(0, 0));  // h[1:] = patches       [G², C]
    ops::add(s.h, s.h, pos);                                  // h = h + pos              [N, C]

    for (const InternVitLayer& L : layers_) {
      attention_block(s, L, cfg_);
      mlp_block(s, L, cfg_);
    }
    out.select(0, t).copy_from(s.h.narrow(0, 1, G * G));      // drop CLS                 [G², C]
  }
  return out;
}

}  // namespace sailvl::model
