// InternViT-300M-448px, the vision tower of SAIL-VL-2B / -8B / -1d5-8B (docs/MODEL.md §4).
//
// Source: InternVL's modeling_intern_vit.py (InternVisionEmbeddings, InternAttention._naive_attn,
// InternVisionEncoderLayer) and InternVLChatModel.extract_feature for the layer selection.
//
//   x   = Conv2d_{14×14, stride 14}(pixels)            [1024, C]   one tile, patches row-major
//   h   = [cls ; x] + pos                              [1025, C]
//   for each layer:
//     h = h + ls1 ⊙ proj(MHA(LN1(h)))                  [1025, C]   bidirectional, heads of 64
//     h = h + ls2 ⊙ fc2(GELU(fc1(LN2(h))))             [1025, C]
//   feature = hidden_states[select_layer][1:]          [1024, C]   CLS dropped, no final norm
//
// hidden_states has layers + 1 entries (index 0 = the embeddings) and select_layer indexes it the
// Python way, so -1 is the last layer's output and -4 the output of layer L-3; the layers after
// the selected one are never run.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "loader/weights.h"
#include "model/config.h"
#include "model/family.h"
#include "tensor/tensor.h"

namespace sailvl::model {

// One InternVisionEncoderLayer; names relative to vision_model.encoder.layers.{i}.
struct InternVitLayer {
  Tensor norm1_w, norm1_b;      // norm1.{weight,bias}        [C]
  ops::Weight qkv_w;            // attn.qkv.weight: rows 0:C q, C:2C k, 2C:3C v   [3C, C]
  std::optional<Tensor> qkv_b;  // attn.qkv.bias, same order  [3C] (qkv_bias)
  ops::Weight proj_w;           // attn.proj.weight
  Tensor proj_b;                // attn.proj.bias    [C, C], [C]
  Tensor ls1, ls2;              // layer scale                [C]
  Tensor norm2_w, norm2_b;      // norm2.{weight,bias}        [C]
  ops::Weight fc1_w;            // mlp.fc1.weight             [F, C]
  Tensor fc1_b;                 // mlp.fc1.bias               [F]
  ops::Weight fc2_w;            // mlp.fc2.weight             [C, F]
  Tensor fc2_b;                 // mlp.fc2.bias               [C]
};

class InternViT : public VisionTower {
 public:
  // Binds vision_model.* by Hugging Face name with shapes. `select_layer` is the config's value.
  static InternViT load(const loader::WeightMap& weights, const model::VisionConfig& cfg, int64_t select_layer,
                        const Device& device);

  // pixels [T, 3, S, S] (any float dtype, S = image_size) -> features [T, (S/P)², C].
  // Tiles are independent; they run in passes of vision_tiles_per_pass() tiles (all of them share
  // each GEMM) through buffers allocated once.
  Tensor forward(const Tensor& pixels, const RunControl& ctl = {}) const override;

  int64_t channels() const { return cfg_.hidden; }
  int64_t grid() const { return cfg_.image_size / cfg_.patch_size; }  // G: patches per side
  int64_t layers_run() const { return layers_run_; }

 private:
  model::VisionConfig cfg_;
  Device device_;
  int64_t layers_run_ = 0;  // how many layers feed the selected hidden state
  Tensor patch_w, patch_b;  // embeddings.patch_embedding.{weight,bias}  [C, 3, P, P], [C]
  Tensor cls;               // embeddings.class_embedding  [1, C] (activation dtype)
  Tensor pos;               // embeddings.position_embedding  [G² + 1, C] (activation dtype)
  std::vector<InternVitLayer> layers_;
};

// The family entry (model/families.cpp): vision_config.model_type "intern_vit_6b".
VisionFamily internvit_family();

}  // namespace sailvl::model
