// InternViT forward: see intern_vit.h for the math and its source.
#include "model/intern_vit.h"

#include <algorithm>
#include <string>

#include "model/linear_weight.h"
#include "model/model.h"
#include "ops/ops.h"
#include "tensor/stage.h"

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

// hidden_states[select_layer] (Python indexing over layers + 1 entries) needs this many layers.
int64_t layers_run(const VisionConfig& v, int64_t select_layer) {
  return select_layer < 0 ? v.layers + 1 + select_layer : select_layer;
}

// h = h + ls1 ⊙ proj(MHA(LN1(h)))
void attention_block(Scratch& s, const InternVitLayer& L, const model::VisionConfig& cfg, int64_t N) {
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
void mlp_block(Scratch& s, const InternVitLayer& L, const model::VisionConfig& cfg) {
  const float eps = static_cast<float>(cfg.norm_eps);
  ops::layer_norm(s.n, s.h, L.norm2_w, L.norm2_b, eps);  // n = LN2(h)                 [M, C]
  ops::linear(s.f, s.n, L.fc1_w, L.fc1_b);               // f = fc1(n)                  [M, F]
  ops::gelu_erf(s.f, s.f);                               // f = GELU(f)   (erf form)    [M, F]
  ops::linear(s.y, s.f, L.fc2_w, L.fc2_b);               // y = fc2(f)                  [M, C]
  ops::add_scaled(s.h, s.h, L.ls2, s.y);                 // h = h + ls2 ⊙ y             [M, C]
}

}  // namespace

InternViT InternViT::load(const loader::WeightMap& weights, const model::VisionConfig& cfg, int64_t select_layer,
                          const Device& device) {
  SAILVL_CHECK(cfg.model_type == "intern_vit_6b", Internal, "InternViT::load on a ", cfg.model_type, " config");
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
  m.layers_run_ = model::layers_run(cfg, select_layer);

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
    L.qkv_w = linear_weight(W, "attn.qkv.weight", 3 * C, C, cfg.quant, device);
    if (cfg.qkv_bias) L.qkv_b = place_as_activation(W.require("attn.qkv.bias", {3 * C}), device);
    L.proj_w = linear_weight(W, "attn.proj.weight", C, C, cfg.quant, device);
    L.proj_b = place_as_activation(W.require("attn.proj.bias", {C}), device);
    L.ls1 = place_as_activation(W.require("ls1", {C}), device);
    L.ls2 = place_as_activation(W.require("ls2", {C}), device);
    L.norm2_w = place_as_activation(W.require("norm2.weight", {C}), device);
    L.norm2_b = place_as_activation(W.require("norm2.bias", {C}), device);
    L.fc1_w = linear_weight(W, "mlp.fc1.weight", F, C, cfg.quant, device);
    L.fc1_b = place_as_activation(W.require("mlp.fc1.bias", {F}), device);
    L.fc2_w = linear_weight(W, "mlp.fc2.weight", C, F, cfg.quant, device);
    L.fc2_b = place_as_activation(W.require("mlp.fc2.bias", {C}), device);
    m.layers_.push_back(std::move(L));
  }
  return m;
}

Tensor InternViT::forward(const Tensor& pixels, const RunControl& ctl) const {
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

    const int64_t nl = static_cast<int64_t>(layers_.size()), passes = (T + P - 1) / P;
    for (int64_t l = 0; l < nl; ++l) {
      ctl.check();              // cancelled: stop before the next layer
      LayerScope layer(l, nl);  // for an observer (--profile, --trace)
      attention_block(v, layers_[static_cast<size_t>(l)], cfg_, N);
      mlp_block(v, layers_[static_cast<size_t>(l)], cfg_);
      ctl.report((t0 / P) * nl + l + 1, passes * nl);
    }
    for (int64_t i = 0; i < p; ++i)
      out.select(0, t0 + i).copy_from(v.h.narrow(0, i * N + 1, G * G));  // drop CLS    [G², C]
  }
  return out;
}

// ---- the family (model/family.h) ----

namespace {

// vision_config of InternViT. Missing keys take InternVisionConfig's class defaults (the
// InternViT-6B ones): hidden 3200, intermediate 12800, 48 layers, 25 heads, image 224, patch 14,
// qkv_bias False, qk_normalization True, norm_type "rms_norm", layer_norm_eps 1e-6, hidden_act
// "gelu". Only the InternViT-300M architecture is implemented: gelu, LayerNorm, no qk-norm.
void parse(const loader::JsonObject& v, VisionConfig& c) {
  constexpr int64_t kMaxDim = 1 << 20, kMaxLayers = 1024, kMaxHeads = 1024, kMaxImage = 1 << 14;
  c.hidden = v.integer("hidden_size", 3200, 1, kMaxDim);
  c.intermediate = v.integer("intermediate_size", 12800, 1, kMaxDim);
  c.layers = v.integer("num_hidden_layers", 48, 1, kMaxLayers);
  c.heads = v.integer("num_attention_heads", 25, 1, kMaxHeads);
  c.image_size = v.integer("image_size", 224, 1, kMaxImage);
  c.patch_size = v.integer("patch_size", 14, 1, kMaxImage);
  c.num_channels = v.integer("num_channels", 3, 1, 16);
  c.norm_eps = v.positive("layer_norm_eps", 1e-6);
  c.qkv_bias = v.boolean("qkv_bias", false);
  c.use_bias = true;  // InternViT's proj / fc1 / fc2 always have biases
  c.qk_normalization = v.boolean("qk_normalization", true);
  c.norm_type = v.string("norm_type", "rms_norm");
  c.hidden_act = v.string("hidden_act", "gelu");
  SAILVL_CHECK(c.norm_type == "layer_norm", BadModel, v.key_name("norm_type"), " = \"", escape_for_print(c.norm_type),
               "\" is not supported (InternViT-300M uses \"layer_norm\")");
  SAILVL_CHECK(!c.qk_normalization, BadModel, v.key_name("qk_normalization"),
               " = true is not supported (InternViT-300M has none)");
  SAILVL_CHECK(c.hidden_act == "gelu", BadModel, v.key_name("hidden_act"), " = \"", escape_for_print(c.hidden_act),
               "\" is not supported (expected \"gelu\")");
}

std::string describe(const VisionConfig& v) {
  return v.hidden == 1024 && v.layers == 24 ? "InternViT-300M"
                                            : str_cat("InternViT(C=", v.hidden, ", ", v.layers, "L)");
}

// docs/MODEL.md §9, in state_dict order (embeddings, then each layer).
void tensors(const VisionConfig& v, std::vector<TensorSpec>& out) {
  const int64_t C = v.hidden, F = v.intermediate, p = v.patch_size, g = v.image_size / v.patch_size;
  const std::string e = "vision_model.embeddings.";
  out.push_back({e + "class_embedding", {1, 1, C}});
  out.push_back({e + "position_embedding", {1, g * g + 1, C}});
  out.push_back({e + "patch_embedding.weight", {C, v.num_channels, p, p}});
  out.push_back({e + "patch_embedding.bias", {C}});
  for (int64_t i = 0; i < v.layers; ++i) {
    const std::string L = "vision_model.encoder.layers." + std::to_string(i) + ".";
    out.push_back({L + "ls1", {C}});
    out.push_back({L + "ls2", {C}});
    out.push_back({L + "attn.qkv.weight", {3 * C, C}, true});
    if (v.qkv_bias) out.push_back({L + "attn.qkv.bias", {3 * C}});
    out.push_back({L + "attn.proj.weight", {C, C}, true});
    out.push_back({L + "attn.proj.bias", {C}});
    out.push_back({L + "mlp.fc1.weight", {F, C}, true});
    out.push_back({L + "mlp.fc1.bias", {F}});
    out.push_back({L + "mlp.fc2.weight", {C, F}, true});
    out.push_back({L + "mlp.fc2.bias", {C}});
    out.push_back({L + "norm1.weight", {C}});
    out.push_back({L + "norm1.bias", {C}});
    out.push_back({L + "norm2.weight", {C}});
    out.push_back({L + "norm2.bias", {C}});
  }
}

VisionShape shape(const ModelConfig& c) {
  const VisionConfig& v = c.vision;
  const int64_t C = v.hidden, F = v.intermediate, G = v.image_size / v.patch_size;
  VisionShape s;
  s.patches = G * G;
  s.tokens = G * G + 1;  // + CLS
  s.layers = layers_run(v, c.select_layer);
  s.layer_linears = {{C, 3 * C}, {C, C}, {C, F}, {F, C}};  // qkv, proj, fc1, fc2
  s.heads = v.heads;
  s.head_dim = v.head_dim;
  s.scratch_per_row = 7 * C + F;  // h, n, qkv (3C), a, y; MLP hidden f
  return s;
}

std::unique_ptr<VisionTower> load(const loader::WeightMap& w, const ModelConfig& c, const Device& device) {
  return std::make_unique<InternViT>(InternViT::load(w, c.vision, c.select_layer, device));
}

}  // namespace

VisionFamily internvit_family() {
  return {"intern_vit_6b", "InternViT", "vision_model.encoder.layers.", parse, describe, tensors, shape, load};
}

}  // namespace sailvl::model
