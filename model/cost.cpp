// The cost model: see cost.h.
#include "model/cost.h"

#include "model/projector.h"
#include "ops/quant.h"

namespace sailvl::model {

namespace {

uint64_t u(int64_t v) { return static_cast<uint64_t>(v > 0 ? v : 0); }

bool starts_with(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }

void add(ParamCounts& p, const std::string& name, int64_t n) {
  if (starts_with(name, "vision_model.")) {
    p.vision += n;
  } else if (starts_with(name, "mlp1.")) {
    p.projector += n;
  } else if (starts_with(name, "language_model.")) {
    p.llm += n;
    if (name == "language_model.model.embed_tokens.weight") p.embed_tokens = n;
    if (name == "language_model.lm_head.weight") p.lm_head = n;
  } else {
    p.other += n;
  }
}

double linears_flops(const std::vector<LinearShape>& ls, double rows) {
  double f = 0;
  for (const LinearShape& l : ls) f += 2.0 * rows * static_cast<double>(l.in) * static_cast<double>(l.out);
  return f;
}

}  // namespace

ParamCounts count_parameters(const loader::WeightMap& w) {
  ParamCounts p;
  for (const std::string& name : w.names()) {
    const loader::TensorInfo& ti = w.info(name);
    // A quantised linear (docs/QUANTIZATION.md) counts its weights, not its storage: q4 codes hold two
    // weights per byte, and the F16 scales beside them are not parameters of the model.
    const std::string codes = ops::quant_scale_owner(name);
    if (ti.dtype == DType::F16 && !codes.empty() && w.contains(codes) && !is_floating(w.info(codes).dtype)) continue;
    add(p, name, shape_numel(ti.shape) * (ti.dtype == DType::U8 ? 2 : 1));
  }
  return p;
}

ParamCounts count_parameters(const std::vector<TensorSpec>& tensors) {
  ParamCounts p;
  for (const TensorSpec& t : tensors) add(p, t.name, shape_numel(t.shape));
  return p;
}

double vision_flops_per_tile(const ModelConfig& c) {
  const VisionShape s = vision_family(c).shape(c);
  const double C = static_cast<double>(c.vision.hidden), P = static_cast<double>(c.vision.patch_size);
  const double rows = static_cast<double>(s.tokens);
  const double patch = 2.0 * static_cast<double>(s.patches) * (static_cast<double>(c.vision.num_channels) * P * P) * C;
  const double attention = 4.0 * rows * rows * static_cast<double>(s.heads * s.head_dim);  // q·kᵀ and p·v
  return patch + static_cast<double>(s.layers) * (linears_flops(s.layer_linears, rows) + attention);
}

double projector_flops_per_tile(const ModelConfig& c) {
  return linears_flops(projector_linears(c), static_cast<double>(c.num_image_token));
}

double prefill_flops(const ModelConfig& c, int64_t tokens, int64_t past, int64_t logit_rows) {
  const LlmShape s = llm_family(c).shape(c.llm);
  const double T = static_cast<double>(tokens), p = static_cast<double>(past);
  // Causal: row i (position past + i) sees past + i + 1 keys; Σ = T·past + T(T+1)/2.
  const double pairs = T * p + T * (T + 1) / 2;
  const double attention = 4.0 * pairs * static_cast<double>(s.heads * s.head_dim);
  const double head = 2.0 * static_cast<double>(logit_rows) * static_cast<double>(c.llm.hidden * c.llm.vocab);
  return static_cast<double>(s.layers) * (linears_flops(s.layer_linears, T) + attention) + head;
}

double decode_flops(const ModelConfig& c, int64_t context) { return prefill_flops(c, 1, context - 1, 1); }

uint64_t decode_weight_bytes(const ModelConfig& c, const loader::WeightMap* w) {
  const std::string embed = "language_model.model.embed_tokens.weight";
  uint64_t bytes = 0, embed_bytes = 0;
  bool head_stored = false;
  auto visit = [&](const std::string& name, uint64_t b) {
    if (!starts_with(name, "language_model.")) return;
    if (name == embed) {
      embed_bytes = b;
      return;
    }
    head_stored = head_stored || name == "language_model.lm_head.weight";
    bytes += b;
  };
  if (w) {
    for (const std::string& name : w->names()) {
      const loader::TensorInfo& ti = w->info(name);
      visit(name, ti.end - ti.begin);
    }
  } else {
    for (const TensorSpec& t : checkpoint_tensors(c)) visit(t.name, u(shape_numel(t.shape)) * 2);
  }
  // One embedding row per token; the whole table when it is also the head.
  const uint64_t row = embed_bytes / u(c.llm.vocab > 0 ? c.llm.vocab : 1);
  return bytes + row + (head_stored ? 0 : embed_bytes);
}

uint64_t kv_bytes_per_token(const ModelConfig& c, DType act) {
  return 2 * u(c.llm.layers) * u(c.llm.kv_heads) * u(c.llm.head_dim) * dtype_size(act);
}

VisionMemory vision_memory(const ModelConfig& c, int64_t tiles, int64_t per_pass, uint64_t a) {
  VisionMemory m;
  if (tiles <= 0) return m;
  const VisionShape s = vision_family(c).shape(c);
  const uint64_t T = u(tiles), N = u(s.patches), C = u(c.vision.hidden), S = u(c.vision.image_size);
  const uint64_t D = u(c.llm.hidden);
  m.tower =
      a * (T * N * C + u(per_pass) * (u(c.vision.num_channels) * S * S + N * C + u(s.tokens) * u(s.scratch_per_row)));
  m.projector = a * T * (3 * N * C + 2 * (N / 4) * D);
  return m;
}

uint64_t prefill_memory(const ModelConfig& c, int64_t rows, uint64_t a) {
  const LlmShape s = llm_family(c).shape(c.llm);
  return a * u(rows) * (u(s.scratch_per_row) + u(c.llm.hidden)) + a * u(c.llm.hidden) + 24 * u(rows);
}

}  // namespace sailvl::model
