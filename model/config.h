// config.json -> typed configuration for every SAIL-VL variant (docs/MODEL.md §1-§2).
//
// The one place that reads config.json and decides the model: the top level here, then
// vision_config and llm_config by the family their model_type names (model/family.h), each with
// the class defaults of its original Python config for missing keys. Every value is validated
// (positive bounded ints, divisibility of heads, finite positive eps/theta). Errors:
// ErrorKind::BadModel naming config.json and the key; a config that is not SAIL-VL's (Qwen2-VL,
// LLaVA, ...) says so.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "ops/quant.h"

namespace sailvl::model {

struct VisionConfig {
  std::string model_type;  // the family: "intern_vit_6b" (InternViT) or "aimv2"
  int64_t hidden = 0;      // C
  int64_t intermediate = 0;
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t head_dim = 0;  // hidden / heads
  int64_t image_size = 448;
  int64_t patch_size = 14;
  int64_t num_channels = 3;
  double norm_eps = 1e-6;  // layer_norm_eps (InternViT) or rms_norm_eps (AIMv2)
  bool qkv_bias = true;    // InternViT: true; AIMv2: false
  bool use_bias = false;   // AIMv2 linear biases
  bool qk_normalization = false;
  std::string norm_type = "layer_norm";
  std::string hidden_act = "gelu";
  ops::QuantType quant = ops::QuantType::None;  // stored format of the tower's and projector's linears
};

struct LlmConfig {
  std::string model_type = "qwen2";  // the family
  int64_t hidden = 0;                // D
  int64_t intermediate = 0;          // F
  int64_t layers = 0;                // L
  int64_t heads = 0;                 // H
  int64_t kv_heads = 0;              // Hkv
  int64_t head_dim = 0;              // Dh = D / H
  int64_t vocab = 0;                 // V (embedding rows; >= tokenizer size)
  int64_t max_position_embeddings = 32768;
  double rms_norm_eps = 1e-6;
  double rope_theta = 1e6;
  bool tie_word_embeddings = false;
  int64_t bos_token_id = 151643;
  int64_t eos_token_id = 151645;
  std::string hidden_act = "silu";
  ops::QuantType quant = ops::QuantType::None;  // stored format of the linear weights (LM head included)
};

struct ModelConfig {
  VisionConfig vision;
  LlmConfig llm;
  double downsample_ratio = 0.5;
  int64_t force_image_size = 448;
  int64_t min_dynamic_patch = 1;
  int64_t max_dynamic_patch = 6;
  bool dynamic_image_size = true;
  bool use_thumbnail = false;
  std::string ps_version = "v1";
  int64_t select_layer = -4;
  std::string template_name = "sailvl-chat";
  int64_t num_image_token = 256;  // (image/patch)^2 * downsample^2
  // config.json's quantization_config (written by `sailvl quantize`, docs/QUANTIZATION.md) sets
  // llm.quant, and vision.quant when it says "vision": true. The format is a checkpoint fact, not a
  // choice: it is what the files hold.
  bool quantized() const { return llm.quant != ops::QuantType::None; }

  // "SAIL-VL-1d5-2B-like: AIMv2 + Qwen2 1.5B" style one-line description for inspect/logs.
  std::string describe() const;
};

ModelConfig parse_config(std::string_view json_text, const std::string& display_name);
ModelConfig load_config(const std::string& model_dir);  // reads <dir>/config.json

}  // namespace sailvl::model
