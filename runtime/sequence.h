// A token sequence held in a KV cache: what a conversation (or a server slot) has computed so far,
// and the one way to extend it.
//
//   Sequence seq(model, context);
//   seq.prefill(ids, rows_from, logits, ctl);   // the cache now holds exactly ids; logits of the last
//   seq.step(token, logits);                    // one decode step: token appended, next logits
//
// prefill() keeps the longest common prefix of `ids` with the tokens the cache already holds, drops
// the rest and runs the remainder through the LLM in chunks of prefill_chunk_tokens(device) rows
// (each chunk embeds its own slice: embed_tokens, <IMG_CONTEXT> rows from the image rows). A chat
// turn re-renders the whole conversation, so only its new text is prefilled; a cancelled or failed
// prefill leaves the cache holding a valid prefix of `ids` (the chunks that completed), which a
// retry reuses.
//
// Every <IMG_CONTEXT> placeholder has the same token id, so a prefix of ids alone does not say
// which picture filled it: each placeholder also carries a tag (the caller's: a hash of its image
// and row), and a cached placeholder counts as common only when its tag matches too.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "model/family.h"
#include "model/sail_vl.h"
#include "tensor/tensor.h"

namespace sailvl::runtime {

// The rows that replace a prompt's <IMG_CONTEXT> placeholders from the `first`-th one on:
// rows [K, D] (or [T, 256, D]); undefined when no image row is needed.
struct ImageRows {
  Tensor rows;
  int64_t first = 0;
};

struct PrefillStats {
  int64_t reused = 0;     // tokens whose K/V rows were already in the cache
  int64_t prefilled = 0;  // tokens run through the LLM now
  int64_t chunks = 0;
};

class Sequence {
 public:
  // `context`: the most tokens this sequence may hold (0: the model's max_position_embeddings);
  // `chunk`: rows per prefill call (0: prefill_chunk_tokens(device)); `ws`: a workspace shared with
  // other sequences used from the same thread (the server's slots), or nullptr for its own.
  Sequence(const model::SailVL& m, int64_t context = 0, int64_t chunk = 0,
           std::shared_ptr<model::LlmWorkspace> ws = nullptr);

  int64_t context() const { return context_; }
  int64_t length() const { return static_cast<int64_t>(ids_.size()); }
  const std::vector<int64_t>& ids() const { return ids_; }     // the tokens the cache holds
  const std::vector<uint64_t>& tags() const { return tags_; }  // one per cached placeholder
  model::KvCache& cache() { return cache_; }
  int64_t chunk() const { return chunk_; }

  // Length of the common prefix of `ids` (whose placeholders carry `tags`, in order; empty: all 0)
  // and the cached tokens.
  int64_t common_prefix(std::span<const int64_t> ids, std::span<const uint64_t> tags = {}) const;
  // Room for `rows` tokens (at most the context) now, so a turn that knows its bound allocates
  // before it computes: an allocation failure comes first, not in the middle of the answer.
  void reserve(int64_t rows) { ensure_capacity(std::min(rows, context_)); }
  // Forget every token from `n` on (their K/V rows become free).
  void truncate(int64_t n);
  void clear() { truncate(0); }

  // Make the cache hold exactly `ids` (1 <= size <= context, else ErrorKind::ContextOverflow):
  // reuse the common prefix, prefill the rest. `rows_from(k0)` gives the image rows from the k0-th
  // placeholder on (called once, only when the part to prefill has placeholders). Writes the
  // logits [V] (F32, on the model's device) of the last position; an undefined `logits` skips the
  // LM head (a partial prefill: the server prefills a long prompt a chunk per iteration by calling
  // this with growing prefixes of it). Progress: tokens done / total.
  // `all_layers` (taps): one chunk for the whole remainder, every layer output in opt.layer_outputs.
  // `tags`: one per placeholder of `ids` (empty: all 0, for a sequence that never changes images).
  PrefillStats prefill(std::span<const int64_t> ids, std::span<const uint64_t> tags,
                       const std::function<ImageRows(int64_t k0)>& rows_from, const Tensor& logits,
                       const model::RunControl& ctl = {}, std::vector<Tensor>* layer_outputs = nullptr);

  // Append one token and compute the logits [V] of the next position (a decode step).
  void step(int64_t token, const Tensor& logits);
  // One decode step for several sequences at once (continuous batching): tokens[b] is appended to
  // seqs[b], logits [B, V] get each one's next-position logits; one forward over B rows.
  static void step_batch(std::span<Sequence* const> seqs, std::span<const int64_t> tokens, model::LlmWorkspace& ws,
                         const Tensor& logits);

 private:
  void ensure_capacity(int64_t rows);

  const model::SailVL* m_;
  int64_t context_ = 0;
  int64_t chunk_ = 0;
  model::KvCache cache_;
  std::shared_ptr<model::LlmWorkspace> ws_;
  std::vector<int64_t> ids_;
  std::vector<uint64_t> tags_;  // tags of the cached placeholders, in order
  Tensor step_id_;              // [1] I64 on the host: the decode input
  Tensor step_emb_;             // [1, D] its embedding
};

}  // namespace sailvl::runtime
