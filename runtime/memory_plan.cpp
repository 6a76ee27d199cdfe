// Memory preflight: see memory_plan.h for the formulas and where each comes from.
#include "runtime/memory_plan.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "checkpoint/presets.h"
#include "model/model.h"
#include "ops/ops.h"
#include "tensor/cuda_runtime.h"
#include "tensor/error.h"

namespace sailvl::runtime {

namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;

constexpr uint64_t kCudaMarginBytes = 256 * kMiB;  // allocator rounding, driver/library growth
constexpr uint64_t kCpuMarginBytes = 64 * kMiB;    // heap fragmentation, thread stacks
constexpr uint64_t kMarginPercent = 5;

// CPU op scratch kept per thread (ops/cpu): GEMM weight panels / packing buffers (capped near
// 2 MiB each) and the attention score rows of one task (64 query rows).
constexpr uint64_t kCpuPanelBytesPerThread = 4 * kMiB;
constexpr uint64_t kCpuAttentionRows = 64;

// ops/cuda/sample.cu per vocabulary id: logits copy (4), mask (1), sort keys in/out (8), values
// in/out (8), weights (8) = 29 bytes, + cub's radix-sort alternate keys and values (8).
constexpr uint64_t kCudaSampleBytesPerId = 37;

uint64_t u(int64_t v) { return static_cast<uint64_t>(std::max<int64_t>(v, 0)); }

// Rows the KV cache and the prefill workspace are allocated for (see the header).
void token_bounds(const loader::ModelConfig& cfg, const Workload& w, int64_t& kv_tokens, int64_t& prefill_tokens) {
  const int64_t context = w.context > 0 ? w.context : cfg.llm.max_position_embeddings;
  const int64_t max_new = std::max<int64_t>(w.max_new_tokens, 1);
  const int64_t max_prompt = std::max<int64_t>(context - max_new, 1);  // generate(): S + max_new <= context
  prefill_tokens = w.prompt_tokens > 0 ? std::min(w.prompt_tokens, max_prompt) : max_prompt;
  kv_tokens = std::min(context, prefill_tokens + max_new);
}

// 2 (K, V) · L · K_tok · Hkv · Dh · a
uint64_t kv_cache_bytes(const loader::LlmConfig& l, int64_t kv_tokens, uint64_t a) {
  return 2 * u(l.layers) * u(kv_tokens) * u(l.kv_heads) * u(l.head_dim) * a;
}

// Peak of the image path for T tiles run `pass` at a time: max(tower, projector), see the header.
uint64_t vision_bytes(const loader::ModelConfig& cfg, int64_t tiles, int64_t pass, uint64_t a, uint64_t* tower_out,
                      uint64_t* projector_out) {
  if (tiles <= 0) return 0;
  const loader::VisionConfig& v = cfg.vision;
  const bool intern = v.arch == loader::VisionArch::InternViT;
  const uint64_t T = u(tiles), C = u(v.hidden), Fv = u(v.intermediate), G = u(v.image_size / v.patch_size);
  const uint64_t N = G * G, Nv = N + (intern ? 1 : 0), S = u(v.image_size), D = u(cfg.llm.hidden);
  const uint64_t mlp = intern ? Nv * Fv : 2 * N * Fv;  // InternViT fc1 output; AIMv2 gate and up
  // features [T, N, C] + one pass's scratch: pixels, patches, h/n/qkv/a/y [Nv, 7C], MLP hidden
  const uint64_t tower = a * (T * N * C + u(pass) * (u(v.num_channels) * S * S + N * C + 7 * Nv * C + mlp));
  // features, shuffle and LayerNorm output ([T, N/4, 4C] = T·N·C each), GELU input and rows [T, N/4, D]
  const uint64_t projector = a * T * (3 * N * C + 2 * (N / 4) * D);
  *tower_out = tower;
  *projector_out = projector;
  return std::max(tower, projector);
}

// a · (P · (4D + 2·H·Dh + 2F) + D) + 24 · P
uint64_t prefill_bytes(const loader::LlmConfig& l, int64_t prefill_tokens, uint64_t a) {
  const uint64_t P = u(prefill_tokens), D = u(l.hidden), HD = u(l.heads) * u(l.head_dim), F = u(l.intermediate);
  return a * (P * (4 * D + 2 * HD + 2 * F) + D) + 24 * P;
}

// One pass's im2col columns [pass · N, 3·P²] in `elem` bytes (0 without images).
uint64_t im2col_bytes(const loader::VisionConfig& v, int64_t pass, uint64_t elem) {
  if (pass <= 0) return 0;
  const uint64_t G = u(v.image_size / v.patch_size), P = u(v.patch_size);
  return u(pass) * G * G * u(v.num_channels) * P * P * elem;
}

uint64_t cuda_workspace_bytes(const loader::ModelConfig& cfg, int64_t tiles, int64_t kv_tokens) {
  const loader::LlmConfig& l = cfg.llm;
  auto slot = [](uint64_t n) { return std::max<uint64_t>(n, ops::kCudaScratchMinBytes); };
  const uint64_t splits = (u(kv_tokens) + 63) / 64;  // decode attention splits <= ceil(keys / 64)
  uint64_t total = ops::kCudaLtWorkspaceBytes;
  total += slot(splits * u(l.heads) * (u(l.head_dim) + 2) * 4);  // attention partials (F32)
  total += slot(kCudaSampleBytesPerId * u(l.vocab) + kMiB);      // sampling
  if (tiles > 0)
    total += slot(im2col_bytes(cfg.vision, model::vision_tiles_per_pass(tiles, Device::cuda()), 2));  // BF16
  return total;
}

uint64_t cpu_workspace_bytes(const loader::ModelConfig& cfg, int64_t tiles, int64_t kv_tokens, int64_t threads) {
  const loader::VisionConfig& v = cfg.vision;
  const int64_t G = v.image_size / v.patch_size;
  const uint64_t keys = u(std::max<int64_t>(kv_tokens, G * G + 1));  // LLM keys or vision tokens
  const uint64_t dh = u(std::max(cfg.llm.head_dim, v.head_dim));
  const uint64_t per_thread = kCpuPanelBytesPerThread + kCpuAttentionRows * (keys + 2 * dh) * 4;
  return u(std::max<int64_t>(threads, 1)) * per_thread +
         im2col_bytes(v, model::vision_tiles_per_pass(tiles, Device::cpu()), 4);
}

}  // namespace

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

MemoryPlan plan_memory(const loader::ModelConfig& cfg, const Device& device, DType act, const Workload& w,
                       uint64_t weight_bytes) {
  const loader::LlmConfig& l = cfg.llm;
  const uint64_t a = dtype_size(act);
  MemoryPlan p;
  p.device = device;
  p.act = act;
  p.tiles = std::max<int64_t>(w.tiles, 0);
  token_bounds(cfg, w, p.kv_tokens, p.prefill_tokens);
  auto set = [&p](MemPart part, uint64_t bytes, std::string detail) {
    p.bytes[static_cast<size_t>(part)] = bytes;
    p.detail[static_cast<size_t>(part)] = std::move(detail);
  };

  set(MemPart::Weights, weight_bytes,
      device.is_cpu() ? "as stored; mmapped, so page cache: not counted against free memory" : "as stored");
  set(MemPart::KvCache, kv_cache_bytes(l, p.kv_tokens, a),
      str_cat("2 (K, V) x ", l.layers, " layers x ", p.kv_tokens, " tokens x ", l.kv_heads, " KV heads x ", l.head_dim,
              " x ", dtype_name(act)));
  uint64_t tower = 0, projector = 0;
  const uint64_t vision =
      vision_bytes(cfg, p.tiles, model::vision_tiles_per_pass(p.tiles, device), a, &tower, &projector);
  set(MemPart::Vision, vision,
      p.tiles == 0 ? std::string("no images")
                   : str_cat(p.tiles, " tiles: the larger of the tower (", format_bytes(tower), ") and the projector (",
                             format_bytes(projector), ")"));
  set(MemPart::Prefill, prefill_bytes(l, p.prefill_tokens, a),
      str_cat(p.prefill_tokens, " prompt tokens (workspace, embeddings, positions)"));
  set(MemPart::Logits, 4 * u(l.vocab), str_cat(l.vocab, " x F32"));
  if (device.is_cuda())
    set(MemPart::Workspaces, cuda_workspace_bytes(cfg, p.tiles, p.kv_tokens),
        str_cat("cuBLASLt ", format_bytes(ops::kCudaLtWorkspaceBytes), " + op scratch (attention, sampling",
                p.tiles > 0 ? ", im2col)" : ")"));
  else
    set(MemPart::Workspaces, cpu_workspace_bytes(cfg, p.tiles, p.kv_tokens, w.cpu_threads),
        str_cat(std::max<int64_t>(w.cpu_threads, 1), " threads x op scratch (GEMM panels, attention scores)",
                p.tiles > 0 ? " + im2col" : ""));

  // Margin: a floor for what is not modelled, plus a share of what is (the weights only on CUDA).
  const uint64_t counted = p.needed();
  const uint64_t floor = device.is_cuda() ? kCudaMarginBytes : kCpuMarginBytes;
  set(MemPart::Margin, floor + counted * kMarginPercent / 100,
      str_cat(format_bytes(floor), " + ", kMarginPercent, "% (",
              device.is_cuda() ? "allocator rounding, driver, fragmentation" : "heap fragmentation, stacks", ")"));
  return p;
}

uint64_t bf16_checkpoint_bytes(const loader::ModelConfig& cfg, std::optional<bool> stored_head) {
  uint64_t n = 0;
  for (const checkpoint::TensorSpec& t : checkpoint::checkpoint_tensors(cfg, stored_head))
    n += static_cast<uint64_t>(shape_numel(t.shape)) * 2;
  return n;
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
