// The generation loop: images → prompt embeddings → prefill → decode, one token at a time.
//
// What Hugging Face's generate() does for SAIL-VL's chat() (inputs_embeds only, so the output holds
// only new tokens and the repetition penalty sees only generated tokens), made explicit:
//
//   check   prompt + max_new_tokens <= context           (before any compute: ContextOverflow)
//   check   #<IMG_CONTEXT> == 256 × tiles                (before any compute: Usage)
//   rows    = projector(vision(pixels))                  [T·256, D]
//   E       = embed(ids) with rows scattered in          [S, D]
//   logits  = qwen2(E)             (prefill: fills K/V rows 0..S-1)
//   repeat: token = sample(logits) (greedy or temperature/top-k/top-p/repetition penalty; padding
//           rows ≥ tokenizer size and <IMG_CONTEXT> are never chosen)
//           stream its text; stop on <|im_end|>, max_new_tokens or cancellation
//           logits = qwen2(embed(token))   (decode: one K/V row per step)
//
// Every buffer (KV cache for prompt + max_new tokens, activations, logits) is allocated before the
// prefill; the decode loop allocates nothing. Non-finite logits stop with ErrorKind::NonFinite
// naming the step.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "model/sail_vl.h"
#include "runtime/taps.h"
#include "tensor/tensor.h"

namespace sailvl::runtime {

// HF GenerationConfig semantics: do_sample = false is greedy whatever the other fields say.
struct SamplingOptions {
  bool do_sample = false;
  float temperature = 1.0f;         // > 0 when sampling
  int64_t top_k = 50;               // 0 = off
  float top_p = 1.0f;               // 1 = off
  float repetition_penalty = 1.0f;  // 1 = off; applied in greedy mode too, as HF does
  uint64_t seed = 0;                // the draw at step i is a function of (seed, i) only
};

struct GenerationOptions {
  int64_t max_new_tokens = 1024;
  SamplingOptions sampling;
  int64_t context_size = 0;  // 0 = llm_config.max_position_embeddings
  // Called once per generated token with the text it completes (may be empty while a multi-byte
  // character is incomplete; special tokens give no text). Not called for the stop token.
  std::function<void(int64_t id, const std::string& text)> on_token;
  // Checked before every decode step; when it reads true, generation stops (StopReason::Cancelled).
  const std::atomic<bool>* cancel = nullptr;
  // Write the per-stage taps (runtime/taps.h) of this generation.
  const Taps* taps = nullptr;
  // Teacher forcing (tests against a reference): when set, decode step i feeds (*forced)[i] to the
  // model instead of the token it chose, and generation ends after forced->size() tokens (or at a
  // forced <|im_end|>). `tokens` still records what the model chose at every step, so each step
  // can be compared with the reference's choice even after an earlier near-tie went the other way.
  const std::vector<int64_t>* forced = nullptr;
};

enum class StopReason { EndOfTurn, MaxTokens, Cancelled };
const char* stop_reason_name(StopReason r);

struct Timings {
  double vision_ms = 0;          // vision tower, all tiles
  double projector_ms = 0;       // pixel shuffle + mlp1
  double prefill_ms = 0;         // embeddings + scatter + model::Qwen2 over the prompt (to the first logits)
  double decode_ms = 0;          // all decode steps (sample + forward)
  std::vector<double> token_ms;  // per decode step
  int64_t prompt_tokens = 0;
  int64_t image_tiles = 0;
  int64_t new_tokens = 0;
  double decode_tokens_per_s() const;
};

struct GenerationResult {
  std::vector<int64_t> tokens;  // generated ids, including the final <|im_end|> if reached
  std::string text;             // their decoded text, special tokens skipped (streamed pieces joined)
  StopReason stop = StopReason::MaxTokens;
  Timings timings;
};

// prompt: token ids (with 256 × tiles <IMG_CONTEXT>); pixels: [T, 3, S, S] or undefined for text.
GenerationResult generate(const model::SailVL& model, std::span<const int64_t> prompt, const Tensor& pixels,
                          const GenerationOptions& opt);

}  // namespace sailvl::runtime
