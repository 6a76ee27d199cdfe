// InternViT forward: see intern_vit.h for the math and its source.
#include "model/intern_vit.h"

#include <algorithm>
#include <string>

#include "model/model.h"
#include "ops/ops.h"

namespace sailvl::model {

namespace {

// Buffers for one pass of P tiles (M = P·N rows, N = G² + 1), allocated once per forward() and
// reused by every pass and layer. The tiles of a pass share every GEMM; attention stays within
// each tile.
struct Scratch {
  Tensor px;       // [P, 3, S, S]  the pass's pixels in the activation dtype
  Tensor patches;  // [P, G², C]
  Tensor h;        // [M, C]  the residual stream, tile i in rows [i·N, (i+1)·N), CLS first
  Tensor n;        // [M, C]  normed input of a sub-block
  Tensor qkv;      // [M, 3C] = [M, 3H, Dh]: heads 0..H-1 q, H..2H-1 k, 2H..3H-1 v
  Tensor a;        // [M, C]  attention output (heads concatenated)
  Tensor y;        // [M, C]  sub-block output before the layer scale
  Tensor f;        // [M, F]  MLP hidden
};

// h = h + ls1 ⊙ proj(MHA(LN1(h)))
void attention_block(Scratch& s, const InternVitLayer& L, const loader::VisionConfig& cfg, int64_t N) {
  const int64_t M = s.h.size(0), H = cfg.heads, Dh = cfg.head_dim;
  const float eps = static_cast<float>(cfg.norm_eps);
  ops::layer_norm(s.n, s.h, L.norm1_w, L.norm1_b, eps);  // n = LN1(h)                 [M, C]
  ops::linear(s.qkv, s.n, L.qkv_w, L.qkv_b);             // [q k v] = n·Wqkvᵀ + b       [M, 3·H·Dh]
  const Tensor heads = s.qkv.reshape({M, 3 * H, Dh});
  ops::attention(s.a.reshape({M, H, Dh}), heads.narrow(1, 0, H), heads.narrow(1, H, H), heads.narrow(1, 2 * H, H),
                 {.causal = false, .batch = M / N});  // a = softmax(q·kᵀ/√Dh)·v per tile  [M, H, Dh]
  ops::linear(s.y, s.a, L.proj_w, L.proj_b);          // y = a·Woᵀ + bo              [M, C]
  ops::add_scaled(s.h, s.h, L.ls1, s.y);              // h = h + ls1 ⊙ y             [M, C]
}

// h = h + ls2 ⊙ fc2(GELU(fc1(LN2(h))))
void mlp_block(Scratch& s, const InternVitLayer& L, const loader::VisionConfig& cfg) {
  const float eps = static_cast<float>(cfg.norm_eps);
  ops::layer_norm(s.n, s.h, L.norm2_w, L.norm2_b, eps);  // n = LN2(h)                 [N, C]
  ops::linear(s.f, s.n, L.fc1_w, L.fc1_b);               // f = fc1(n)                  [N, F]
  ops::gelu_erf(s.f, s.f);                               // f = GELU(f)   (erf form)    [N, F]
  ops::linear(s.y, s.f, L.fc2_w, L.fc2_b);               // y = fc2(f)                  [N, C]
  ops::add_scaled(s.h, s.h, L.ls2, s.y);                 // h = h + ls2 ⊙ y             [N, C]
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
               "config.json: select_layer ", select_layer, " is outside the ", cfg.layers + 1, " hidden states of a ",
               cfg.layers, "-layer vision tower");

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
    L.qkv_w = place(W.require("attn.qkv.weight", {3 * C, C}), device);
    if (cfg.qkv_bias) L.qkv_b = place_as_activation(W.require("attn.qkv.bias", {3 * C}), device);
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

  Tensor out = Tensor::empty({T, G * G, C}, act, device_);         // features, CLS dropped
  const int64_t P = vision_tiles_per_pass(T, device_), M = P * N;  // tiles per pass, their rows
  Scratch s;
  s.px = Tensor::empty({P, cfg_.num_channels, S, S}, act, device_);
  s.patches = Tensor::empty({P, G * G, C}, act, device_);
  for (Tensor* t : {&s.h, &s.n, &s.a, &s.y}) *t = Tensor::empty({M, C}, act, device_);
  s.qkv = Tensor::empty({M, 3 * C}, act, device_);
  s.f = Tensor::empty({M, F}, act, device_);

  for (int64_t t0 = 0; t0 < T; t0 += P) {
    const int64_t p = std::min(P, T - t0), m = p * N;  // the last pass may be short
    Scratch v = s;                                     // views of the first m rows
    v.px = s.px.narrow(0, 0, p);
    v.patches = s.patches.narrow(0, 0, p);
    for (Tensor* x : {&v.h, &v.n, &v.qkv, &v.a, &v.y, &v.f}) *x = x->narrow(0, 0, m);
    // Embeddings: h = [cls ; Conv(pixels)] + pos, per tile
    v.px.copy_from(pixels.narrow(0, t0, p));
    ops::patch_embed(v.patches, v.px, patch_w, patch_b);  // patches = Conv2d(px)     [p, G², C]
    for (int64_t i = 0; i < p; ++i) {
      Tensor hi = v.h.narrow(0, i * N, N);
      hi.narrow(0, 0, 1).copy_from(cls);                         // h[0]   = cls             [1, C]
      hi.narrow(0, 1, G * G).copy_from(v.patches.select(0, i));  // h[1:] = patches      [G², C]
      ops::add(hi, hi, pos);                                     // h = h + pos              [N, C]
    }

    for (const InternVitLayer& L : layers_) {
      attention_block(v, L, cfg_, N);
      mlp_block(v, L, cfg_);
    }
    for (int64_t i = 0; i < p; ++i)
      out.select(0, t0 + i).copy_from(v.h.narrow(0, i * N + 1, G * G));  // drop CLS    [G², C]
  }
  return out;
}

}  // namespace sailvl::model
