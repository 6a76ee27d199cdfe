// SAIL-VL assembled: vision tower + projector + Qwen2, and the merge of image rows into the prompt.
//
// Source: SailVLModel / InternVLChatModel (extract_feature, generate) in SAIL-VL's remote code.
//
//   features = vision(pixels)                    [T, G², C]       InternViT or AIMv2 (config)
//   rows     = mlp1(pixel_shuffle(features))     [T, 256, D]
//   E        = embed_tokens(ids)                 [S, D]
//   E[k-th position with id <IMG_CONTEXT>] = rows[k]   (tiles in order: image 1's grid row-major,
//                                                       its thumbnail, then image 2 ...)
//   logits   = qwen2(E)                          [V]
//
// The <IMG_CONTEXT> count must be exactly 256 × total tiles; it is checked before anything runs.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "loader/weights.h"
#include "model/config.h"
#include "model/family.h"
#include "model/projector.h"
#include "tokenizer/tokenizer.h"

namespace sailvl::model {

// Special ids SAIL-VL's chat relies on (docs/MODEL.md §10), looked up in the tokenizer at load.
struct SpecialIds {
  int64_t im_end = 151645;       // <|im_end|>: the only stop token
  int64_t img_context = 151667;  // <IMG_CONTEXT>: placeholder rows replaced by image rows
};

// The image path's intermediate results (taps; tests compare each with the oracle).
struct ImageStages {
  Tensor features;  // [T, G², C]    vision tower output
  Tensor shuffled;  // [T, G²/4, 4C] pixel shuffle
  Tensor rows;      // [T, G²/4, D]  projector output
  double vision_ms = 0, projector_ms = 0;
};

// What SailVL::load lets its caller do while it loads.
struct LoadOptions {
  // Called after config.json, the safetensors headers and the tokenizer are read and checked, and
  // before the first weight is placed on the device: the runtime's memory preflight
  // (runtime/memory_plan.h) throws from here when the model and its workload do not fit.
  std::function<void(const ModelConfig&, const loader::WeightMap&)> before_weights;
  // Weight upload progress on a GPU: bytes placed so far and the checkpoint's bytes (an upper
  // bound: layers after select_layer are skipped; the last call has done = total).
  std::function<void(uint64_t done, uint64_t total)> progress;
};

class SailVL {
 public:
  // config.json -> ModelConfig; *.safetensors -> WeightMap; tokenizer files in the same directory.
  // Every tensor is bound by name with its shape; the layer counts in the config are checked
  // against the layers present in the checkpoint (a mismatch is ErrorKind::BadModel).
  static SailVL load(const std::string& model_dir, const Device& device = Device::cpu(), const LoadOptions& opt = {});

  const ModelConfig& config() const { return cfg_; }
  const tokenizer::Tokenizer& tokenizer() const { return *tok_; }
  const loader::WeightMap& weights() const { return *weights_; }
  const VisionTower& vision() const { return *vision_; }
  const LanguageModel& llm() const { return *llm_; }
  const Projector& projector() const { return *projector_; }
  const Device& device() const { return device_; }
  const SpecialIds& special() const { return special_; }
  int64_t image_tokens_per_tile() const { return cfg_.num_image_token; }

  // pixels [T, 3, S, S] -> features [T, G², C] (select_layer's output, as SAIL's extract_feature).
  Tensor vision_features(const Tensor& pixels, const RunControl& ctl = {}) const;
  // pixels -> projector rows [T, 256, D], keeping every intermediate in `stages` when given.
  Tensor encode_images(const Tensor& pixels, ImageStages* stages = nullptr, const RunControl& ctl = {}) const;

  // Throws Usage unless ids hold exactly image_tokens_per_tile() × tiles <IMG_CONTEXT> tokens.
  void check_image_tokens(std::span<const int64_t> ids, int64_t tiles) const;
  // E [S, D]: embed_tokens(ids) with the <IMG_CONTEXT> rows replaced, in order, by `image_rows`
  // ([T, 256, D] or [K, D]; undefined when there is no image). Checks the count first.
  Tensor embed_prompt(std::span<const int64_t> ids, const Tensor& image_rows) const;
  // out [n, D] = the embeddings of the slice ids[first, first + n) of a prompt: embed_tokens, with
  // the k-th <IMG_CONTEXT> of the whole prompt replaced by row k - rows_first of `image_rows`
  // ([K, D] or [T, 256, D]; it must cover every placeholder of the slice). A chunked prefill embeds
  // its chunks with this; embed_prompt is the slice [0, S).
  void embed_slice(const Tensor& out, std::span<const int64_t> ids, int64_t first, const Tensor& image_rows,
                   int64_t rows_first = 0) const;

 private:
  ModelConfig cfg_;
  Device device_;
  std::shared_ptr<loader::WeightMap> weights_;
  std::shared_ptr<tokenizer::Tokenizer> tok_;
  std::shared_ptr<VisionTower> vision_;
  std::shared_ptr<Projector> projector_;
  std::shared_ptr<LanguageModel> llm_;
  SpecialIds special_;
};

}  // namespace sailvl::model
