// Model families as data: what the rest of the runtime may know about a vision tower or a language
// model, and the tables that map config.json's model_type to the code that implements it.
//
//   config.json  vision_config.model_type "aimv2" ──► vision_family("aimv2") ──► model/aimv2.{h,cpp}
//                llm_config.model_type    "qwen2" ──► llm_family("qwen2")    ──► model/qwen2.{h,cpp}
//
// A family is one file pair that provides, through its entry in model/families.cpp:
//   parse    its section of config.json into the shared config struct (class defaults of the
//            original Python config for missing keys; what the implementation does not support is
//            refused there, with the key named);
//   tensors  the canonical checkpoint tensors of a config (names, shapes, state_dict order):
//            make-model writes them, the cost model counts them;
//   shape    the few numbers the cost model needs (rows per tile, layers that run, the linears of
//            one layer, heads, scratch per row): FLOPs, bytes per token and the memory plan follow
//            from them in model/cost.cpp, for every family alike;
//   load     bind the weights by Hugging Face name and return the module behind VisionTower or
//            LanguageModel.
// runtime/ (generation, the session engine, the memory plan), `inspect` and `bench` see only the
// interfaces and tables below; docs/CONTRIBUTING.md, "Adding a model family", walks through it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "loader/json_strict.h"
#include "loader/weights.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "tensor/tensor.h"

namespace sailvl::model {

// ---- the interfaces ----

// pixels [T, 3, S, S] (S = image_size, any float dtype) -> features [T, N, C]: the hidden state
// that select_layer picks, as SAIL's extract_feature takes it (N = (S/P)² patches).
class VisionTower {
 public:
  virtual ~VisionTower() = default;
  // Stops between layers when ctl's cancel flag is set (Error(Cancelled)); reports layers × passes.
  virtual Tensor forward(const Tensor& pixels, const RunControl& ctl = {}) const = 0;
};

// Where the LM head comes from (docs/MODEL.md, "The LM head"): a stored lm_head.weight is the head
// whatever tie_word_embeddings says; only without one is the head embed_tokens.
enum class LmHeadSource {
  Stored,      // the stored tensor is the head (the tie flag is ignored)
  Tied,        // none stored, tie_word_embeddings true: the head is embed_tokens
  TiedAbsent,  // none stored, tie_word_embeddings false: embed_tokens, with a warning (the remote
               // code would leave the head uninitialised; these are the only sensible weights)
};
LmHeadSource lm_head_source(bool head_stored, bool tie_word_embeddings);
// One line for `inspect` and logs: which head and why.
const char* lm_head_source_text(LmHeadSource s);

// Activation buffers of a language model for chunks of up to `max_tokens` rows, allocated once
// (before a prefill) and reused by every chunk and decode step.
struct LlmWorkspace {
  int64_t max_tokens = 0;
  Tensor x;               // [Tmax, D]      residual stream
  Tensor n;               // [Tmax, D]      normed input of a sub-block
  Tensor q;               // [Tmax, H·Dh]
  Tensor k, v;            // [Tmax, Hkv·Dh] new keys / values when a call spans several sequences
  Tensor a;               // [Tmax, H·Dh]   attention output
  Tensor y;               // [Tmax, D]      sub-block output
  Tensor gate, up;        // [Tmax, F]
  Tensor positions;       // [Tmax] I64 on the model's device
  Tensor positions_host;  // [Tmax] I64 on the host (staging for positions)
};

// One sequence's share of a forward call: the next `rows` rows of x continue the sequence whose
// keys and values `cache` holds (positions cache->length() ...). A prefill chunk is one SeqRows; a
// batched decode step is B of them with one row each.
struct SeqRows {
  KvCache* cache = nullptr;
  int64_t rows = 0;
};

struct ForwardOptions {
  // Logits for every row ([T, V]) instead of the last row of each sequence ([B, V], or [V] for one).
  bool all_logits = false;
  // false: no final norm and LM head at all (a prefill chunk that is not the prompt's last); the
  // logits tensor is then ignored and may be undefined.
  bool logits = true;
  // If set, receives the output of every decoder layer (copies, [T, D]): taps and tests.
  std::vector<Tensor>* layer_outputs = nullptr;
  // Cancellation and progress between layers (nullptr: none).
  const RunControl* control = nullptr;
};

class LanguageModel {
 public:
  virtual ~LanguageModel() = default;
  virtual const LlmConfig& config() const = 0;
  virtual const Device& device() const = 0;
  virtual LmHeadSource head_source() const = 0;
  virtual LlmWorkspace make_workspace(int64_t max_tokens) const = 0;
  // out [T, D] = embed_tokens[ids]; ids I64 [T] (host or device).
  virtual void embed(const Tensor& out, const Tensor& ids) const = 0;
  // Runs the decoder over x [T, D] = the rows of `seqs` in order, appends every row's key and value
  // to its sequence's cache and writes F32 logits (see ForwardOptions). T <= ws.max_tokens.
  virtual void forward(const Tensor& x, std::span<const SeqRows> seqs, LlmWorkspace& ws, const Tensor& logits,
                       const ForwardOptions& opt = {}) const = 0;

  // One sequence (a prefill chunk or a decode step): logits [V] (or [T, V] with all_logits).
  void forward(const Tensor& x, KvCache& cache, LlmWorkspace& ws, const Tensor& logits,
               const ForwardOptions& opt = {}) const;
  // K and V [S_max, Hkv, Dh] per layer in the activation dtype (model/kv_cache.h).
  KvCache make_cache(int64_t max_seq) const;
};

// ---- what the cost model needs (model/cost.h) ----

struct TensorSpec {
  std::string name;
  Shape shape;          // stored as BF16 in a full-precision checkpoint
  bool linear = false;  // the [N, K] weight of a linear layer: what `sailvl quantize` may quantise
};

struct LinearShape {
  int64_t in = 0, out = 0;  // one y[out] = W[out, in]·x[in] per row
};

struct VisionShape {
  int64_t tokens = 0;                      // rows per tile inside the layers (G², + 1 with a CLS token)
  int64_t patches = 0;                     // rows per tile in the features (G²)
  int64_t layers = 0;                      // layers that run for select_layer
  std::vector<LinearShape> layer_linears;  // the linears of one layer (q, k and v fused as one)
  int64_t heads = 0, head_dim = 0;
  int64_t scratch_per_row = 0;  // activation elements one pass keeps per row (residual, norm, qkv,
                                // attention, output, MLP hidden)
  bool post_norm = false;       // a final norm over the features
};

struct LlmShape {
  int64_t layers = 0;
  std::vector<LinearShape> layer_linears;  // per layer
  int64_t heads = 0, kv_heads = 0, head_dim = 0;
  int64_t scratch_per_row = 0;  // LlmWorkspace elements per row (x, n, q, k, v, a, y, gate, up)
};

// ---- the families ----

struct VisionFamily {
  const char* model_type;    // vision_config.model_type
  const char* name;          // "InternViT"
  const char* layer_prefix;  // tensors of layer i start with layer_prefix + i + "."
  void (*parse)(const loader::JsonObject& section, VisionConfig& out);
  std::string (*describe)(const VisionConfig& v);  // "InternViT-300M", or the sizes when unknown
  void (*tensors)(const VisionConfig& v, std::vector<TensorSpec>& out);
  VisionShape (*shape)(const ModelConfig& c);
  std::unique_ptr<VisionTower> (*load)(const loader::WeightMap& w, const ModelConfig& c, const Device& device);
};

struct LlmFamily {
  const char* model_type;    // llm_config.model_type
  const char* name;          // "Qwen2"
  const char* layer_prefix;  // "language_model.model.layers."
  void (*parse)(const loader::JsonObject& section, LlmConfig& out);
  std::string (*describe)(const LlmConfig& l);  // "Qwen2.5-1.5B"
  // The canonical tensors; the LM head last when `stored_head`.
  void (*tensors)(const LlmConfig& l, bool stored_head, std::vector<TensorSpec>& out);
  LlmShape (*shape)(const LlmConfig& l);
  std::unique_ptr<LanguageModel> (*load)(const loader::WeightMap& w, const LlmConfig& l, const Device& device);
};

// The registered families (model/families.cpp); lookups throw BadModel naming the known types.
std::span<const VisionFamily> vision_families();
std::span<const LlmFamily> llm_families();
const VisionFamily& vision_family(const std::string& model_type);
const LlmFamily& llm_family(const std::string& model_type);
inline const VisionFamily& vision_family(const ModelConfig& c) { return vision_family(c.vision.model_type); }
inline const LlmFamily& llm_family(const ModelConfig& c) { return llm_family(c.llm.model_type); }

// Every tensor a checkpoint of `c` holds, in state_dict order (vision tower, language model,
// projector); language_model.lm_head.weight when `stored_head` (default: when the config is
// untied). A stored head is the LM head whatever tie_word_embeddings says.
std::vector<TensorSpec> checkpoint_tensors(const ModelConfig& c, std::optional<bool> stored_head = std::nullopt);

// config.json's layer counts against the layers present in the checkpoint (the tower's and the
// LLM's layer_prefix: exactly indices 0..n-1) and embed_tokens' rows against vocab_size.
// ErrorKind::BadModel naming the directory, the key and what was found.
void check_against_config(const loader::WeightMap& w, const ModelConfig& c);

}  // namespace sailvl::model
