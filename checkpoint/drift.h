// The drift report of `sailvl quantize`: how far a quantised checkpoint's next-token distributions
// are from its source's, on a fixed set of prompts (text only, and about the embedded demo photo).
//
// Method (teacher forcing): the source model answers each prompt greedily (up to `tokens` tokens);
// then the quantised model is fed the same prompt and the source's tokens, so both are scored at
// exactly the same positions even where a near-tie would have sent greedy decoding elsewhere. At
// each position, over the tokenizer's ids (the embedding's padding rows excluded):
//   top-1 agreement  the quantised model's greedy choice equals the source's
//   KL               KL(p_src || p_q) in nats of the two softmax distributions (float64)
//   logit error      max |logit_src - logit_q|
// Reported per prompt and overall (mean and max over all positions).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace sailvl::checkpoint {

struct DriftOptions {
  int64_t tokens = 16;    // greedy tokens per prompt (fewer when the source ends its answer)
  int64_t max_tiles = 1;  // tiles of the demo photo (1: one 448x448 tile, 256 image tokens)
  std::function<void(const std::string& what)> progress;  // "source: prompt 2/3", ...
};

struct DriftPrompt {
  std::string name;      // "text-1", "image"
  std::string question;  // as the user typed it
  bool image = false;    // about the embedded demo photo
  int64_t positions = 0;
  double top1 = 0;                     // fraction of positions where the greedy choices agree
  double mean_kl = 0, max_kl = 0;      // nats
  double max_logit_error = 0;          // over positions and ids
  std::vector<int64_t> source_tokens;  // the source's greedy answer (the forced tokens)
};

struct DriftReport {
  std::vector<DriftPrompt> prompts;
  int64_t positions = 0;
  double top1 = 0, mean_kl = 0, max_kl = 0, max_logit_error = 0;  // over every position
  nlohmann::ordered_json to_json() const;
  std::string table() const;  // the printed form
};

// Loads both checkpoints on the CPU (one after the other), asks each prompt, compares.
DriftReport measure_drift(const std::string& source_dir, const std::string& quantized_dir, const DriftOptions& opt);

// The fixed prompt set (questions and which one has the picture).
std::vector<DriftPrompt> drift_prompts();

}  // namespace sailvl::checkpoint
