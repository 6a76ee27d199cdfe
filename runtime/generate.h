// The generation loop: images → prompt embeddings → prefill → decode, one token at a time.
//
// What Hugging Face's generate() does for SAIL-VL's chat() (inputs_embeds only, so the output holds
// only new tokens and the repetition penalty sees only generated tokens), made explicit:
//
//   check   prompt <= context; #<IMG_CONTEXT> == 256 × tiles   (before any compute)
//   rows    = projector(vision(pixels))                         [T·256, D]
//   prefill the prompt in chunks (runtime/sequence.h)           K/V rows 0..S-1, logits of S-1
//   repeat: token = sample(logits)  (greedy or temperature/top-k/top-p/repetition penalty; padding
//           rows ≥ tokenizer size and <IMG_CONTEXT> are never chosen)
//           stop on <|im_end|>, a stop string, max_new_tokens, a full context or cancellation
//           stream its text; logits = decode step(token)       one K/V row per step
//
// -n (max_new_tokens) is a cap, not a promise: a prompt only has to fit the context, and the answer
// stops with StopReason::ContextFull when it fills it (finish reason "length" in the APIs).
// Non-finite logits stop with ErrorKind::NonFinite naming the step.
//
// Decoder is the per-answer state of that loop (sampling, stop rules, streamed text), shared by
// generate(), the session engine (runtime/session.h) and the server's batched scheduler.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "model/sail_vl.h"
#include "ops/ops.h"
#include "runtime/taps.h"
#include "tensor/tensor.h"
#include "tokenizer/tokenizer.h"

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
// Throws ErrorKind::Usage naming the bad value (NaN or out-of-range temperature, top_p, top_k, penalty).
void check_sampling(const SamplingOptions& s);

// Which long stage a progress report is about.
enum class Phase { Vision, Prefill };

struct GenerationOptions {
  int64_t max_new_tokens = 1024;  // a cap; 0 = prefill only (no token is generated)
  SamplingOptions sampling;
  int64_t context_size = 0;  // 0 = llm_config.max_position_embeddings
  // The answer ends before the first occurrence of any of these strings (the server's `stop`);
  // streamed text never includes them.
  std::vector<std::string> stop;
  // Called once per generated token with the text it completes (may be empty while a multi-byte
  // character is incomplete or while the text could still become a stop string; special tokens
  // give no text). Not called for the stop token.
  std::function<void(int64_t id, const std::string& text)> on_token;
  // Checked between layers, chunks and decode steps: vision and prefill stop with
  // Error(Cancelled); decode stops with StopReason::Cancelled and keeps the partial answer.
  const std::atomic<bool>* cancel = nullptr;
  // Progress of the long stages: work done / total (vision: layers × passes; prefill: tokens).
  std::function<void(Phase phase, int64_t done, int64_t total)> progress;
  // Write the per-stage taps (runtime/taps.h) of this generation.
  const Taps* taps = nullptr;
  // Called once with the prefill's logits [V] (the last prompt position), before any sampling.
  std::function<void(const Tensor& logits)> on_prefill_logits;
  // Called with the logits [V] of every decode step before it samples (tests, debugging).
  std::function<void(int64_t step, const Tensor& logits)> on_logits;
  // Teacher forcing (tests against a reference): when set, decode step i feeds (*forced)[i] to the
  // model instead of the token it chose, and generation ends after forced->size() tokens (or at a
  // forced <|im_end|>). `tokens` still records what the model chose at every step, so each step
  // can be compared with the reference's choice even after an earlier near-tie went the other way.
  const std::vector<int64_t>* forced = nullptr;
};

enum class StopReason { EndOfTurn, StopString, MaxTokens, ContextFull, Cancelled };
const char* stop_reason_name(StopReason r);    // "end_of_turn", "stop_string", ...
const char* finish_reason_name(StopReason r);  // OpenAI's: "stop" or "length" ("cancelled")

struct Timings {
  double vision_ms = 0;          // vision tower, all tiles encoded now
  double projector_ms = 0;       // pixel shuffle + mlp1
  double prefill_ms = 0;         // embeddings + scatter + the LLM over the new prompt tokens
  double decode_ms = 0;          // all decode steps (sample + forward)
  std::vector<double> token_ms;  // per decode step
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;  // prompt tokens whose K/V rows were reused from the cache
  int64_t image_tiles = 0;    // tiles in the prompt
  int64_t encoded_tiles = 0;  // tiles run through the vision tower now (the rest came from the cache)
  int64_t new_tokens = 0;
  double decode_tokens_per_s() const;
};

struct GenerationResult {
  std::vector<int64_t> tokens;  // generated ids, including the final <|im_end|> if reached
  std::string text;             // their decoded text, special tokens skipped (streamed pieces joined)
  StopReason stop = StopReason::MaxTokens;
  Timings timings;
};

// The decode loop's per-answer state.
//
//   Decoder d(model, opt, context);
//   for (;;) {                                       // logits: of the position after the sequence
//     const std::optional<int64_t> next = d.next(logits, seq.length());
//     if (!next) break;                              // d.result().stop says why
//     seq.step(*next, logits);
//   }
//   d.finish();
class Decoder {
 public:
  Decoder(const model::SailVL& m, const GenerationOptions& opt, int64_t context);

  // Sample from logits [V] (F32, device or host), record the choice, stream its text and apply the
  // stop rules. Returns the token to feed next, or nullopt when the answer is finished.
  // `seq_length`: the tokens the sequence holds (a full context ends the answer).
  std::optional<int64_t> next(const Tensor& logits, int64_t seq_length);
  // Ends the answer (flushes held-back text): call once after the last next().
  void finish();
  // Stop without sampling (cancelled between steps).
  void stop(StopReason r) { res_.stop = r; }
  GenerationResult& result() { return res_; }
  const GenerationResult& result() const { return res_; }

 private:
  void emit(int64_t id, std::string piece);

  const model::SailVL* m_;
  GenerationOptions opt_;
  int64_t context_;
  GenerationResult res_;
  ops::SamplingParams sp_;
  int64_t banned_[1];
  Tensor host_logits_;
  tokenizer::StreamDecoder stream_;
  std::string held_;  // text that may still turn into a stop string
  int64_t step_ = 0;
  bool done_ = false;
};

// prompt: token ids (with 256 × tiles <IMG_CONTEXT>); pixels: [T, 3, S, S] or undefined for text.
GenerationResult generate(const model::SailVL& model, std::span<const int64_t> prompt, const Tensor& pixels,
                          const GenerationOptions& opt);

}  // namespace sailvl::runtime
