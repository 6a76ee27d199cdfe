// AIMv2 forward: see aimv2.h for the math and its source.
#include "model/aimv2.h"

#include <algorithm>
#include <string>

#include "model/linear_weight.h"
#include "model/model.h"
#include "ops/ops.h"
#include "tensor/stage.h"

namespace sailvl::model {

namespace {

// Buffers for one pass of P tiles (M = P·N rows), allocated once per forward() and reused by every
// pass and block. The tiles of a pass share every GEMM; attention stays within each tile.
struct Scratch {
  Tensor px;       // [P, 3, S, S]
  Tensor patches;  // [P, N, C], N = G²
  Tensor x;        // [M, C]  the residual stream
  Tensor n;        // [M, C]  normed input of a sub-block
  Tensor qkv;      // [M, 3C] = [M, 3H, Dh]: heads 0..H-1 q, H..2H-1 k, 2H..3H-1 v
  Tensor a;        // [M, C]
  Tensor y;        // [M, C]
  Tensor g, u;     // [M, F]  SwiGLU gate and up
};

// x = x + proj(MHA(RMSNorm_1(x)))
void attention_block(Scratch& s, const Aimv2Block& B, const model::VisionConfig& cfg, int64_t N) {
  const int64_t M = s.x.size(0), H = cfg.heads, Dh = cfg.head_dim;
  const float eps = static_cast<float>(cfg.norm_eps);
  ops::rms_norm(s.n, s.x, B.norm_1, eps);     // n = RMSNorm_1(x)           [M, C]
  ops::linear(s.qkv, s.n, B.qkv_w, B.qkv_b);  // [q k v] = n·Wqkvᵀ           [M, 3·H·Dh]
  const Tensor heads = s.qkv.reshape({M, 3 * H, Dh});
  ops::attention(s.a.reshape({M, H, Dh}), heads.narrow(1, 0, H), heads.narrow(1, H, H), heads.narrow(1, 2 * H, H),
                 {.causal = false, .batch = M / N});  // a = softmax(q·kᵀ/√Dh)·v per tile  [M, H, Dh]
  ops::linear(s.y, s.a, B.proj_w, B.proj_b);          // y = a·Woᵀ                   [M, C]
  ops::add(s.x, s.x, s.y);                            // x = x + y                   [M, C]
}

// x = x + fc2(silu(fc1(y)) ⊙ fc3(y)),  y = RMSNorm_2(x)
void mlp_block(Scratch& s, const Aimv2Block& B, const model::VisionConfig& cfg) {
  const float eps = static_cast<float>(cfg.norm_eps);
  ops::rms_norm(s.n, s.x, B.norm_2, eps);   // n = RMSNorm_2(x)           [M, C]
  ops::linear(s.g, s.n, B.fc1_w, B.fc1_b);  // g = fc1(n)                  [M, F]
  ops::linear(s.u, s.n, B.fc3_w, B.fc3_b);  // u = fc3(n)                  [M, F]
  ops::silu_mul(s.g, s.g, s.u);             // g = silu(g) ⊙ u             [M, F]
  ops::linear(s.y, s.g, B.fc2_w, B.fc2_b);  // y = fc2(g)                  [M, C]
  ops::add(s.x, s.x, s.y);                  // x = x + y                   [M, C]
}

// Blocks feeding the selected output (see the header for the reading of select_layer != -1).
int64_t blocks_run(const VisionConfig& v, int64_t select_layer) {
  return select_layer == -1 ? v.layers : select_layer < 0 ? v.layers + select_layer + 1 : select_layer + 1;
}

std::optional<Tensor> optional_bias(const loader::WeightScope& W, bool present, const std::string& name, int64_t n,
                                    const Device& device) {
  if (!present) return std::nullopt;
  return place_as_activation(W.require(name, {n}), device);
}

}  // namespace

Aimv2 Aimv2::load(const loader::WeightMap& weights, const model::VisionConfig& cfg, int64_t select_layer,
                  const Device& device) {
  SAILVL_CHECK(cfg.model_type == "aimv2", Internal, "Aimv2::load on a ", cfg.model_type, " config");
  SAILVL_CHECK(cfg.image_size % cfg.patch_size == 0, BadModel, "config.json: image_size ", cfg.image_size,
               " is not a multiple of patch_size ", cfg.patch_size);
  SAILVL_CHECK(select_layer < 0 ? -select_layer <= cfg.layers : select_layer < cfg.layers, BadModel,
               "config.json: select_layer ", select_layer, " is outside the ", cfg.layers, " block outputs of a ",
               cfg.layers, "-block AIMv2 tower");

  Aimv2 m;
  m.cfg_ = cfg;
  m.device_ = device;
  const int64_t C = cfg.hidden, F = cfg.intermediate, P = cfg.patch_size, G = cfg.image_size / P;
  const int64_t blocks = model::blocks_run(cfg, select_layer);

  auto Pre = weights.scope("vision_model.preprocessor");
  m.patch_w = place(Pre.require("patchifier.proj.weight", {C, cfg.num_channels, P, P}), device);
  m.patch_b = place_as_activation(Pre.require("patchifier.proj.bias", {C}), device);
  m.patch_norm = place_as_activation(Pre.require("patchifier.norm.weight", {C}), device);
  m.pos = place_as_activation(Pre.require("pos_embed", {1, G * G, C}).reshape({G * G, C}), device);

  for (int64_t i = 0; i < blocks; ++i) {
    auto W = weights.scope("vision_model.trunk.blocks." + std::to_string(i));
    Aimv2Block B;
    B.norm_1 = place_as_activation(W.require("norm_1.weight", {C}), device);
    B.qkv_w = linear_weight(W, "attn.qkv.weight", 3 * C, C, cfg.quant, device);
    B.qkv_b = optional_bias(W, cfg.qkv_bias, "attn.qkv.bias", 3 * C, device);
    B.proj_w = linear_weight(W, "attn.proj.weight", C, C, cfg.quant, device);
    B.proj_b = optional_bias(W, cfg.use_bias, "attn.proj.bias", C, device);
    B.norm_2 = place_as_activation(W.require("norm_2.weight", {C}), device);
    B.fc1_w = linear_weight(W, "mlp.fc1.weight", F, C, cfg.quant, device);
    B.fc3_w = linear_weight(W, "mlp.fc3.weight", F, C, cfg.quant, device);
    B.fc2_w = linear_weight(W, "mlp.fc2.weight", C, F, cfg.quant, device);
    B.fc1_b = optional_bias(W, cfg.use_bias, "mlp.fc1.bias", F, device);
    B.fc3_b = optional_bias(W, cfg.use_bias, "mlp.fc3.bias", F, device);
    B.fc2_b = optional_bias(W, cfg.use_bias, "mlp.fc2.bias", C, device);
    m.blocks_.push_back(std::move(B));
  }
  if (select_layer == -1)
    m.post_norm_ =
        place_as_activation(weights.scope("vision_model.trunk").require("post_trunk_norm.weight", {C}), device);
  return m;
}

Tensor Aimv2::forward(const Tensor& pixels, const RunControl& ctl) const {
  const int64_t S = cfg_.image_size, C = cfg_.hidden, F = cfg_.intermediate, G = grid(), N = G * G;
  SAILVL_CHECK(pixels.dim() == 4 && pixels.size(1) == cfg_.num_channels && pixels.size(2) == S && pixels.size(3) == S,
               Usage, "AIMv2 expects pixels [T, ", cfg_.num_channels, ", ", S, ", ", S, "], got ", pixels.describe(),
               " (its position embedding is learned for exactly ", G, "x", G, " patches)");
  const int64_t T = pixels.size(0);
  const DType act = activation_dtype(device_);
  const float eps = static_cast<float>(cfg_.norm_eps);

  Tensor out = Tensor::empty({T, N, C}, act, device_);
  const int64_t P = vision_tiles_per_pass(T, device_), M = P * N;  // tiles per pass, their rows
  Scratch s;
  s.px = Tensor::empty({P, cfg_.num_channels, S, S}, act, device_);
  s.patches = Tensor::empty({P, N, C}, act, device_);
  for (Tensor* t : {&s.x, &s.n, &s.a, &s.y}) *t = Tensor::empty({M, C}, act, device_);
  s.qkv = Tensor::empty({M, 3 * C}, act, device_);
  for (Tensor* t : {&s.g, &s.u}) *t = Tensor::empty({M, F}, act, device_);

  for (int64_t t0 = 0; t0 < T; t0 += P) {
    const int64_t p = std::min(P, T - t0), m = p * N;  // the last pass may be short
    Scratch v = s;                                     // views of the first m rows
    v.px = s.px.narrow(0, 0, p);
    v.patches = s.patches.narrow(0, 0, p);
    for (Tensor* x : {&v.x, &v.n, &v.qkv, &v.a, &v.y, &v.g, &v.u}) *x = x->narrow(0, 0, m);
    // Preprocessor: x = RMSNorm(Conv(pixels)) + pos
    v.px.copy_from(pixels.narrow(0, t0, p));
    ops::patch_embed(v.patches, v.px, patch_w, patch_b);             // patches = Conv2d(px)     [p, N, C]
    ops::rms_norm(v.x, v.patches.reshape({m, C}), patch_norm, eps);  // x = RMSNorm(patches) [m, C]
    for (int64_t i = 0; i < p; ++i) {
      const Tensor xi = v.x.narrow(0, i * N, N);
      ops::add(xi, xi, pos);  // x = x + pos              [N, C]
    }

    const int64_t nb = static_cast<int64_t>(blocks_.size()), passes = (T + P - 1) / P;
    for (int64_t b = 0; b < nb; ++b) {
      ctl.check();              // cancelled: stop before the next block
      LayerScope layer(b, nb);  // for an observer (--profile, --trace)
      attention_block(v, blocks_[static_cast<size_t>(b)], cfg_, N);
      mlp_block(v, blocks_[static_cast<size_t>(b)], cfg_);
      ctl.report((t0 / P) * nb + b + 1, passes * nb);
    }
    Tensor dst = out.narrow(0, t0, p).reshape({m, C});
    if (post_norm_)
      ops::rms_norm(dst, v.x, *post_norm_, eps);  // feature = post_trunk_norm(x)  [m, C]
    else
      dst.copy_from(v.x);
  }
  return out;
}

// ---- the family (model/family.h) ----

namespace {

// vision_config of AIMv2. Missing keys take AIMv2Config's class defaults: hidden 1024,
// intermediate 2816, 24 layers, 8 heads, image 224, patch 14, rms_norm_eps 1e-5, qkv_bias False,
// use_bias False. SAIL-VL's AIMv2-Huge has no biases; a config with them is refused.
void parse(const loader::JsonObject& v, VisionConfig& c) {
  constexpr int64_t kMaxDim = 1 << 20, kMaxLayers = 1024, kMaxHeads = 1024, kMaxImage = 1 << 14;
  c.hidden = v.integer("hidden_size", 1024, 1, kMaxDim);
  c.intermediate = v.integer("intermediate_size", 2816, 1, kMaxDim);
  c.layers = v.integer("num_hidden_layers", 24, 1, kMaxLayers);
  c.heads = v.integer("num_attention_heads", 8, 1, kMaxHeads);
  c.image_size = v.integer("image_size", 224, 1, kMaxImage);
  c.patch_size = v.integer("patch_size", 14, 1, kMaxImage);
  c.num_channels = v.integer("num_channels", 3, 1, 16);
  c.norm_eps = v.positive("rms_norm_eps", 1e-5);
  c.qkv_bias = v.boolean("qkv_bias", false);
  c.use_bias = v.boolean("use_bias", false);
  c.qk_normalization = false;
  c.norm_type = "rms_norm";
  c.hidden_act = "silu";  // SwiGLU MLP
  SAILVL_CHECK(!c.qkv_bias && !c.use_bias, BadModel, v.where,
               ": AIMv2 with qkv_bias or use_bias is not supported (SAIL-VL's AIMv2-Huge has no biases)");
}

std::string describe(const VisionConfig& v) {
  return v.hidden == 1536 && v.layers == 24 ? "AIMv2-Huge" : str_cat("AIMv2(C=", v.hidden, ", ", v.layers, "L)");
}

// docs/MODEL.md §9, in state_dict order (preprocessor, each block, post_trunk_norm).
void tensors(const VisionConfig& v, std::vector<TensorSpec>& out) {
  const int64_t C = v.hidden, F = v.intermediate, p = v.patch_size, g = v.image_size / v.patch_size;
  const std::string pre = "vision_model.preprocessor.";
  out.push_back({pre + "pos_embed", {1, g * g, C}});
  out.push_back({pre + "patchifier.proj.weight", {C, v.num_channels, p, p}});
  out.push_back({pre + "patchifier.proj.bias", {C}});
  out.push_back({pre + "patchifier.norm.weight", {C}});
  for (int64_t i = 0; i < v.layers; ++i) {
    const std::string B = "vision_model.trunk.blocks." + std::to_string(i) + ".";
    out.push_back({B + "attn.qkv.weight", {3 * C, C}, true});
    out.push_back({B + "attn.proj.weight", {C, C}, true});
    out.push_back({B + "norm_1.weight", {C}});
    out.push_back({B + "mlp.fc1.weight", {F, C}, true});
    out.push_back({B + "mlp.fc2.weight", {C, F}, true});
    out.push_back({B + "mlp.fc3.weight", {F, C}, true});
    out.push_back({B + "norm_2.weight", {C}});
  }
  out.push_back({"vision_model.trunk.post_trunk_norm.weight", {C}});
}

VisionShape shape(const ModelConfig& c) {
  const VisionConfig& v = c.vision;
  const int64_t C = v.hidden, F = v.intermediate, G = v.image_size / v.patch_size;
  VisionShape s;
  s.patches = G * G;
  s.tokens = G * G;  // no CLS token
  s.layers = blocks_run(v, c.select_layer);
  s.layer_linears = {{C, 3 * C}, {C, C}, {C, F}, {C, F}, {F, C}};  // qkv, proj, fc1, fc3, fc2
  s.heads = v.heads;
  s.head_dim = v.head_dim;
  s.scratch_per_row = 7 * C + 2 * F;  // x, n, qkv (3C), a, y; SwiGLU gate and up
  s.post_norm = c.select_layer == -1;
  return s;
}

std::unique_ptr<VisionTower> load(const loader::WeightMap& w, const ModelConfig& c, const Device& device) {
  return std::make_unique<Aimv2>(Aimv2::load(w, c.vision, c.select_layer, device));
}

}  // namespace

VisionFamily aimv2_family() {
  return {"aimv2", "AIMv2", "vision_model.trunk.blocks.", parse, describe, tensors, shape, load};
}

}  // namespace sailvl::model
