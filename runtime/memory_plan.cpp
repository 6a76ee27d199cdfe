// Memory preflight: see memory_plan.h for the formulas and where each comes from.
#include "runtime/memory_plan.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "model/cost.h"
#include "model/family.h"
#include "model/model.h"
#include "ops/workspace.h"
#include "tensor/cuda_runtime.h"
#include "tensor/error.h"

namespace sailvl::runtime {

namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;

constexpr uint64_t kCudaMarginBytes = 256 * kMiB;  // allocator rounding, driver/library growth
constexpr uint64_t kCpuMarginBytes = 64 * kMiB;    // heap fragmentation, thread stacks
constexpr uint64_t kMarginPercent = 5;

uint64_t u(int64_t v) { return static_cast<uint64_t>(std::max<int64_t>(v, 0)); }

// Rows the KV cache and one prefill chunk are planned for (see the header).
void token_bounds(const model::ModelConfig& cfg, const Device& device, const Workload& w, int64_t& kv_tokens,
                  int64_t& prefill_tokens) {
  const int64_t context = w.context > 0 ? w.context : cfg.llm.max_position_embeddings;
  const int64_t max_new = std::max<int64_t>(w.max_new_tokens, 1);
  kv_tokens = w.prompt_tokens > 0 ? std::min(context, w.prompt_tokens + max_new) : context;
  const int64_t prompt = w.prompt_tokens > 0 ? std::min(w.prompt_tokens, context) : context;
  prefill_tokens = std::min(prompt, prefill_chunk_tokens(device));
}

}  // namespace

int64_t prefill_chunk_tokens(const Device& device) {
  // CPU: 512-row GEMMs already run at the packed kernel's speed, and a chunk bounds the memory and
  // the time to notice Ctrl-C. CUDA: large chunks keep the GPU busy (a 7-tile prompt is one chunk).
  return device.is_cpu() ? 512 : 8192;
}

const char* mem_part_name(MemPart p) {
  switch (p) {
    case MemPart::Weights: return "weights";
    case MemPart::KvCache: return "KV cache";
    case MemPart::Vision: return "vision activations";
    case MemPart::Prefill: return "LLM prefill activations";
    case MemPart::Logits: return "logits";
    case MemPart::Workspaces: return "library workspaces";
    case MemPart::Margin: return "safety margin";
    case MemPart::kCount: break;
  }
  return "?";
}

uint64_t MemoryPlan::total() const {
  uint64_t t = 0;
  for (uint64_t b : bytes) t += b;
  return t;
}

uint64_t MemoryPlan::needed() const { return total() - (weights_in_page_cache() ? (*this)[MemPart::Weights] : 0); }

MemoryPlan plan_memory(const model::ModelConfig& cfg, const Device& device, DType act, const Workload& w,
                       uint64_t weight_bytes) {
  const model::LlmConfig& l = cfg.llm;
  const uint64_t a = dtype_size(act);
  MemoryPlan p;
  p.device = device;
  p.act = act;
  p.tiles = std::max<int64_t>(w.tiles, 0);
  p.sequences = std::max<int64_t>(w.sequences, 1);
  token_bounds(cfg, device, w, p.kv_tokens, p.prefill_tokens);
  auto set = [&p](MemPart part, uint64_t bytes, std::string detail) {
    p.bytes[static_cast<size_t>(part)] = bytes;
    p.detail[static_cast<size_t>(part)] = std::move(detail);
  };

  set(MemPart::Weights, weight_bytes,
      device.is_cpu() ? "as stored; mmapped, so page cache: not counted against free memory" : "as stored");
  set(MemPart::KvCache, u(p.sequences) * u(p.kv_tokens) * model::kv_bytes_per_token(cfg, act),
      str_cat(p.sequences > 1 ? str_cat(p.sequences, " sequences x ") : std::string(), "2 (K, V) x ", l.layers,
              " layers x ", p.kv_tokens, " tokens x ", l.kv_heads, " KV heads x ", l.head_dim, " x ", dtype_name(act)));
  const int64_t per_pass = model::vision_tiles_per_pass(p.tiles, device);
  const model::VisionMemory vm = model::vision_memory(cfg, p.tiles, per_pass, a);
  set(MemPart::Vision, vm.peak(),
      p.tiles == 0 ? std::string("no images")
                   : str_cat(p.tiles, " tiles: the larger of the tower (", format_bytes(vm.tower),
                             ") and the projector (", format_bytes(vm.projector), ")"));
  set(MemPart::Prefill, model::prefill_memory(cfg, p.prefill_tokens, a),
      str_cat("a prefill chunk of ", p.prefill_tokens, " tokens (workspace, embeddings, positions)"));
  set(MemPart::Logits, 4 * u(l.vocab) * u(p.sequences), str_cat(p.sequences, " x ", l.vocab, " x F32"));

  ops::WorkspaceQuery q;
  q.threads = w.cpu_threads;
  q.llm_keys = p.kv_tokens;
  q.llm_heads = l.heads;
  q.llm_head_dim = l.head_dim;
  q.vocab = l.vocab;
  if (p.tiles > 0) {
    const model::VisionShape vs = model::vision_family(cfg).shape(cfg);
    q.vision_tokens = vs.tokens;
    q.vision_head_dim = cfg.vision.head_dim;
    q.im2col_rows = per_pass * vs.patches;
    q.im2col_cols = cfg.vision.num_channels * cfg.vision.patch_size * cfg.vision.patch_size;
  }
  const ops::WorkspaceBytes ws = ops::workspace_bytes(device, q);
  set(MemPart::Workspaces, ws.bytes, ws.detail);

  // Margin: a floor for what is not modelled, plus a share of what is (the weights only on CUDA).
  const uint64_t counted = p.needed();
  const uint64_t floor = device.is_cuda() ? kCudaMarginBytes : kCpuMarginBytes;
  set(MemPart::Margin, floor + counted * kMarginPercent / 100,
      str_cat(format_bytes(floor), " + ", kMarginPercent, "% (",
              device.is_cuda() ? "allocator rounding, driver, fragmentation" : "heap fragmentation, stacks", ")"));
  return p;
}

uint64_t bf16_checkpoint_bytes(const model::ModelConfig& cfg, std::optional<bool> stored_head) {
  uint64_t n = 0;
  for (const model::TensorSpec& t : model::checkpoint_tensors(cfg, stored_head)) n += u(shape_numel(t.shape)) * 2;
  return n;
}

std::function<void(const model::ModelConfig&, const loader::WeightMap&)> preflight(
    const Device& device, const Workload& w, std::optional<uint64_t> assumed_free) {
  return [device, w, assumed_free](const model::ModelConfig& c, const loader::WeightMap& weights) {
    const MemoryPlan plan = plan_memory(c, device, model::activation_dtype(device), w, weights.total_bytes());
    const std::optional<uint64_t> free = assumed_free ? assumed_free : free_memory(device);
    if (!free) return;  // the system does not say (no MemAvailable): nothing to compare with
    check_fits(plan, *free, assumed_free ? "assumed, not measured (SAILVL_FAKE_FREE_BYTES)" : "");
  };
}

std::optional<uint64_t> parse_mem_available(std::string_view meminfo) {
  // A line "MemAvailable:   12345678 kB" (always kB in /proc/meminfo).
  const std::string_view key = "MemAvailable:";
  size_t at = 0;
  while (at < meminfo.size()) {
    const size_t eol = std::min(meminfo.find('\n', at), meminfo.size());
    const std::string_view line = meminfo.substr(at, eol - at);
    at = eol + 1;
    if (line.substr(0, key.size()) != key) continue;
    size_t i = key.size();
    while (i < line.size() && line[i] == ' ') ++i;
    uint64_t kb = 0;
    const size_t first = i;
    while (i < line.size() && line[i] >= '0' && line[i] <= '9' && kb < (uint64_t{1} << 50))
      kb = kb * 10 + static_cast<uint64_t>(line[i++] - '0');
    if (i == first || line.substr(i) != " kB") return std::nullopt;
    return kb * 1024;
  }
  return std::nullopt;
}

std::optional<uint64_t> free_memory(const Device& device) {
  if (device.is_cuda()) return cuda::device_memory(device.index).free;
  std::ifstream f("/proc/meminfo");
  if (!f) return std::nullopt;
  std::ostringstream text;
  text << f.rdbuf();
  return parse_mem_available(text.str());
}

std::string format_bytes(uint64_t bytes) {
  char buf[32];
  const double b = static_cast<double>(bytes);
  if (bytes < 1024)
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  else if (bytes < kMiB)
    std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024);
  else if (bytes < (uint64_t{1} << 30))
    std::snprintf(buf, sizeof buf, "%.1f MiB", b / kMiB);
  else
    std::snprintf(buf, sizeof buf, "%.2f GiB", b / (uint64_t{1} << 30));
  return buf;
}

std::string format_plan(const MemoryPlan& plan, std::optional<uint64_t> free_bytes, std::string_view source) {
  std::string out;
  auto line = [&out](const std::string& name, uint64_t bytes, const std::string& detail) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "  %-24s %11s", name.c_str(), format_bytes(bytes).c_str());
    out += buf;
    if (!detail.empty()) out += "  " + detail;
    out += "\n";
  };
  for (size_t i = 0; i < plan.bytes.size(); ++i)
    line(mem_part_name(static_cast<MemPart>(i)), plan.bytes[i], plan.detail[i]);
  line("total", plan.total(), "");
  if (plan.weights_in_page_cache()) line("needed (without weights)", plan.needed(), "");
  if (free_bytes) {
    const char* own = plan.device.is_cuda() ? "cudaMemGetInfo" : "MemAvailable in /proc/meminfo";
    line(plan.device.is_cuda() ? "free" : "available", *free_bytes, source.empty() ? own : std::string(source));
  }
  return out;
}

void check_fits(const MemoryPlan& plan, uint64_t free_bytes, std::string_view source) {
  if (plan.needed() <= free_bytes) return;
  const bool cuda = plan.device.is_cuda();
  fail(ErrorKind::OutOfMemory, "not enough memory on ", plan.device.str(),
       " for this model and workload (checked before loading any weights):\n", format_plan(plan, free_bytes, source),
       "hint: fewer image tiles (--max-tiles; ", plan.tiles, " planned), a smaller context (-c; ", plan.kv_tokens,
       " tokens planned) or fewer new tokens (-n)", cuda ? ", or run on the CPU (--device cpu)" : "");
}

}  // namespace sailvl::runtime
