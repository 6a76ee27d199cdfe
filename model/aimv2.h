// AIMv2-Huge ("SAILViT-Huge"), the vision tower of SAIL-VL-1d5-2B and -1d6-8B (docs/MODEL.md §5).
//
// Source: the AIMv2 remote code shipped with SAIL-VL (modeling_aimv2.py: AIMv2ViTPreprocessor,
// AIMv2PatchEmbed, AIMv2Attention, AIMv2SwiGLUFFN, AIMv2Block, AIMv2Transformer) and
// SailVLModel.extract_feature.
//
//   x = RMSNorm(Conv2d_{14×14, stride 14}(pixels)) + pos   [1024, C]   no CLS token
//   for each block:
//     x = x + proj(MHA(RMSNorm_1(x)))                      [1024, C]   bidirectional, heads of 128
//     x = x + fc2(silu(fc1(y)) ⊙ fc3(y)),  y = RMSNorm_2(x)
//   feature = post_trunk_norm(x)                           [1024, C]   (select_layer == -1)
//
// RMSNorm here is AIMv2's: y = cast(x · rsqrt(mean(x²) + eps)) · w (ops::rms_norm).
//
// select_layer: with -1 SAIL takes `last_hidden_state`, which is the post_trunk_norm output (ports
// that skip that norm are wrong for SAIL). For any other value extract_feature takes
// `hidden_states[select_layer]`; AIMv2Transformer collects one entry per block output (no
// embeddings entry) *before* post_trunk_norm, so our reading for k <= -2 is: run L + k + 1 blocks,
// no final norm; for k >= 0: run k + 1 blocks, no final norm. Only -1 is used by released
// checkpoints and only -1 is tested against the oracle.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "loader/weights.h"
#include "model/config.h"
#include "model/family.h"
#include "tensor/tensor.h"

namespace sailvl::model {

// One AIMv2Block; names relative to vision_model.trunk.blocks.{i}.
struct Aimv2Block {
  Tensor norm_1;                              // norm_1.weight                        [C]
  ops::Weight qkv_w;                          // attn.qkv.weight: rows 0:C q, C:2C k, 2C:3C v  [3C, C]
  std::optional<Tensor> qkv_b;                // attn.qkv.bias (qkv_bias only)        [3C]
  ops::Weight proj_w;                         // attn.proj.weight                     [C, C]
  std::optional<Tensor> proj_b;               // attn.proj.bias (use_bias only)       [C]
  Tensor norm_2;                              // norm_2.weight                        [C]
  ops::Weight fc1_w, fc3_w;                   // mlp.fc1 (gate), mlp.fc3 (up)         [F, C]
  ops::Weight fc2_w;                          // mlp.fc2 (down)                       [C, F]
  std::optional<Tensor> fc1_b, fc3_b, fc2_b;  // (use_bias only)
};

class Aimv2 : public VisionTower {
 public:
  static Aimv2 load(const loader::WeightMap& weights, const model::VisionConfig& cfg, int64_t select_layer,
                    const Device& device);

  // pixels [T, 3, S, S] -> features [T, (S/P)², C]; tiles run in passes of
  // vision_tiles_per_pass() tiles that share each GEMM.
  Tensor forward(const Tensor& pixels, const RunControl& ctl = {}) const override;

  int64_t channels() const { return cfg_.hidden; }
  int64_t grid() const { return cfg_.image_size / cfg_.patch_size; }
  int64_t blocks_run() const { return static_cast<int64_t>(blocks_.size()); }
  bool applies_post_norm() const { return post_norm_.has_value(); }

 private:
  model::VisionConfig cfg_;
  Device device_;
  Tensor patch_w, patch_b;  // preprocessor.patchifier.proj.{weight,bias}  [C, 3, P, P], [C]
  Tensor patch_norm;        // preprocessor.patchifier.norm.weight         [C]
  Tensor pos;               // preprocessor.pos_embed  [G², C] (activation dtype)
  std::vector<Aimv2Block> blocks_;
  std::optional<Tensor> post_norm_;  // trunk.post_trunk_norm.weight [C] (select_layer == -1 only)
};

// The family entry (model/families.cpp): vision_config.model_type "aimv2".
VisionFamily aimv2_family();

}  // namespace sailvl::model
