// `sailvl inspect -m DIR`: what a checkpoint is and what running it costs, without loading weights.
//
// Reads config.json and the safetensors headers only (the data stays mapped, untouched), then prints
//   variant     ModelConfig::describe(): which SAIL-VL release the config looks like
//   parameters  per tower, counted from the tensors actually stored: vision_model.*, mlp1.*,
//               language_model.* (embed_tokens and lm_head shown apart; a tied head counts once)
//   dtypes      element type -> tensors, bytes
//   shards      file -> tensors, bytes
//   memory      weights as stored; KV cache per token and for --ctx tokens; activations of one ViT
//               tile and one prefill chunk (F32); all from the cost model (model/cost.h)
//   cost        FLOPs of one image tile and of a --ctx-token prefill, bytes read per decoded token
//   preflight   the memory plan `run` checks before loading (runtime/memory_plan.h) for a prompt
//               filling --ctx tokens and one image of --max-tiles tiles + thumbnail: every part on
//               CUDA (BF16), and what the CPU needs besides the mmapped weights
// With --json the same as one JSON object on stdout.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/common.h"
#include "loader/weights.h"
#include "model/config.h"
#include "model/cost.h"
#include "model/family.h"
#include "runtime/memory_plan.h"

using namespace sailvl;

static void setup_inspect(cli::Args& a) {
  a.usage_line = "sailvl inspect -m DIR [--json] [-c N]";
  a.option("-m,--model", "DIR",
           "checkpoint directory (config.json + safetensors), or ORG/NAME in the local Hugging Face cache");
  a.option("-c,--ctx-size,--ctx", "N", "context length for the KV-cache and activation estimates", "4096");
  a.option("--max-tiles", "N", "tiles of one image for the preflight plan (as sailvl run)", "10");
  a.flag("--json", "print one JSON object instead of text");
  a.examples = {"sailvl inspect -m ~/models/SAIL-VL-1d6-8B",
                "sailvl inspect -m BytedanceDouyinContent/SAIL-VL-2B -c 8192",
                "sailvl inspect -m DIR --json | jq .preflight"};
}

static std::string human_bytes(double b) {
  char buf[32];
  if (b >= 1e9)
    std::snprintf(buf, sizeof buf, "%.2f GB", b / 1e9);
  else if (b >= 1e6)
    std::snprintf(buf, sizeof buf, "%.1f MB", b / 1e6);
  else
    std::snprintf(buf, sizeof buf, "%.1f KB", b / 1e3);
  return buf;
}

static std::string human_count(int64_t n) {
  char buf[32];
  if (n >= 1'000'000'000)
    std::snprintf(buf, sizeof buf, "%.3f B", n / 1e9);
  else
    std::snprintf(buf, sizeof buf, "%.2f M", n / 1e6);
  return buf;
}

// JSON key of a plan part.
static const char* plan_key(runtime::MemPart p) {
  switch (p) {
    case runtime::MemPart::Weights: return "weights_bytes";
    case runtime::MemPart::KvCache: return "kv_cache_bytes";
    case runtime::MemPart::Vision: return "vision_bytes";
    case runtime::MemPart::Prefill: return "prefill_bytes";
    case runtime::MemPart::Logits: return "logits_bytes";
    case runtime::MemPart::Workspaces: return "workspaces_bytes";
    case runtime::MemPart::Margin: return "margin_bytes";
    case runtime::MemPart::kCount: break;
  }
  return "?";
}

static int run_inspect(cli::Args& a) {
  const std::string dir = cli::resolve_model_dir(a.get("model"));
  const int64_t ctx = a.get_int("ctx-size", 1, 1 << 24);
  const model::ModelConfig cfg = model::load_config(dir);
  std::error_code ec;
  if (std::filesystem::exists(std::filesystem::path(dir) / "RANDOM_WEIGHTS", ec))
    std::fprintf(stderr, "sailvl: warning: %s holds random weights (made by sailvl make-model)\n", dir.c_str());
  const loader::WeightMap w = loader::WeightMap::open(dir);
  model::check_against_config(w, cfg);

  // ---- parameters by tower (model/cost.h), dtypes, the LM head ----
  const model::ParamCounts pc = model::count_parameters(w);
  const int64_t vision = pc.vision, projector = pc.projector, llm = pc.llm, embed = pc.embed_tokens, head = pc.lm_head,
                other = pc.other, total = pc.total();
  std::map<std::string, std::pair<int64_t, uint64_t>> dtypes;  // name -> (tensors, bytes)
  for (const std::string& name : w.names()) {
    const loader::TensorInfo& ti = w.info(name);
    auto& d = dtypes[dtype_name(ti.dtype)];
    d.first += 1;
    d.second += ti.end - ti.begin;
  }
  // Quantised linears (docs/QUANTIZATION.md): codes (I8/U8 "X.weight") and their F16 "X.weight_scale".
  int64_t q_linears = 0;
  uint64_t q_code_bytes = 0, q_scale_bytes = 0;
  for (const std::string& name : w.names()) {
    const loader::TensorInfo& ti = w.info(name);
    if ((ti.dtype == DType::I8 || ti.dtype == DType::U8) && w.contains(ops::quant_scale_name(name))) {
      const loader::TensorInfo& si = w.info(ops::quant_scale_name(name));
      ++q_linears;
      q_code_bytes += ti.end - ti.begin;
      q_scale_bytes += si.end - si.begin;
    }
  }
  const uint64_t head_bytes =
      head ? w.info("language_model.lm_head.weight").end - w.info("language_model.lm_head.weight").begin : 0;
  const model::LmHeadSource head_src =
      model::lm_head_source(w.contains("language_model.lm_head.weight"), cfg.llm.tie_word_embeddings);
  const bool tied = head_src != model::LmHeadSource::Stored;
  const char* head_key = head_src == model::LmHeadSource::Stored ? "stored"
                         : head_src == model::LmHeadSource::Tied ? "tied"
                                                                 : "absent";

  // ---- memory ----
  const auto& L = cfg.llm;
  const auto& V = cfg.vision;
  const uint64_t weights = w.total_bytes();
  const uint64_t kv_tok_bf16 = model::kv_bytes_per_token(cfg, DType::BF16);
  const uint64_t kv_tok_f32 = model::kv_bytes_per_token(cfg, DType::F32);
  // Activations (model/cost.h): one ViT tile and one prefill chunk of min(ctx, chunk) tokens, F32.
  const uint64_t act_vit = model::vision_memory(cfg, 1, 1, 4).peak();
  const int64_t chunk = std::min<int64_t>(ctx, runtime::prefill_chunk_tokens(Device::cpu()));
  const uint64_t act_llm = model::prefill_memory(cfg, chunk, 4);
  // Work per stage (model/cost.h): FLOPs of one tile and of a ctx-token prefill, bytes per decoded token.
  const double tile_gflop = (model::vision_flops_per_tile(cfg) + model::projector_flops_per_tile(cfg)) / 1e9;
  const double prefill_gflop = model::prefill_flops(cfg, ctx) / 1e9;
  const uint64_t decode_bytes = model::decode_weight_bytes(cfg, &w);

  // ---- the preflight plan (runtime/memory_plan.h), as `sailvl run` would check it ----
  const int64_t max_tiles = a.get_int("max-tiles", 1, 40);
  runtime::Workload wl;
  wl.context = ctx;
  wl.max_new_tokens = 1;
  wl.tiles = max_tiles > 1 ? max_tiles + 1 : 1;  // + thumbnail
  const runtime::MemoryPlan plan_cuda = runtime::plan_memory(cfg, Device::cuda(0), DType::BF16, wl, weights);
  const runtime::MemoryPlan plan_cpu = runtime::plan_memory(cfg, Device::cpu(), DType::F32, wl, weights);

  if (a.on("json")) {
    nlohmann::ordered_json j;
    j["dir"] = dir;
    j["variant"] = cfg.describe();
    j["vision_arch"] = model::vision_family(cfg).name;
    j["llm_arch"] = model::llm_family(cfg).name;
    j["parameters"] = {{"vision", vision}, {"projector", projector}, {"llm", llm},     {"embed_tokens", embed},
                       {"lm_head", head},  {"other", other},         {"total", total}, {"tied_lm_head", tied}};
    nlohmann::ordered_json dt = nlohmann::ordered_json::object();
    for (const auto& [n, v] : dtypes) dt[n] = {{"tensors", v.first}, {"bytes", v.second}};
    j["lm_head"] = {{"source", head_key},
                    {"why", model::lm_head_source_text(head_src)},
                    {"config_tie_word_embeddings", cfg.llm.tie_word_embeddings},
                    {"parameters", head},
                    {"bytes", head_bytes}};
    j["dtypes"] = dt;
    if (cfg.quantized())
      j["quantization"] = {{"format", ops::quant_type_name(cfg.llm.quant)},
                           {"group_size", ops::quant_group(cfg.llm.quant)},
                           {"vision", cfg.vision.quant != ops::QuantType::None},
                           {"linears", q_linears},
                           {"code_bytes", q_code_bytes},
                           {"scale_bytes", q_scale_bytes}};
    nlohmann::ordered_json sh = nlohmann::ordered_json::array();
    for (const auto& s : w.shards())
      sh.push_back({{"file", std::filesystem::path(s->path()).filename().string()},
                    {"tensors", s->header().tensors.size()},
                    {"bytes", s->file_size()}});
    j["shards"] = sh;
    j["memory"] = {{"weights_bytes", weights},
                   {"kv_bytes_per_token_bf16", kv_tok_bf16},
                   {"kv_bytes_per_token_f32", kv_tok_f32},
                   {"ctx", ctx},
                   {"kv_bytes_ctx_bf16", kv_tok_bf16 * ctx},
                   {"kv_bytes_ctx_f32", kv_tok_f32 * ctx},
                   {"activations_vit_tile_bytes", act_vit},
                   {"activations_llm_prefill_chunk_bytes", act_llm},
                   {"prefill_chunk_tokens", chunk}};
    j["cost"] = {{"vision_projector_gflop_per_tile", tile_gflop},
                 {"prefill_gflop_ctx", prefill_gflop},
                 {"decode_bytes_per_token", decode_bytes}};
    nlohmann::ordered_json pf;
    pf["ctx"] = ctx;
    pf["tiles"] = wl.tiles;
    if (!cfg.quantized()) {  // quantised checkpoints run on the CPU only
      for (size_t i = 0; i < plan_cuda.bytes.size(); ++i)
        pf["cuda_bf16"][plan_key(static_cast<runtime::MemPart>(i))] = plan_cuda.bytes[i];
      pf["cuda_bf16"]["total_bytes"] = plan_cuda.total();
    }
    pf["cpu_f32_needed_bytes"] = plan_cpu.needed();  // besides the mmapped weights
    j["preflight"] = pf;
    std::cout << j.dump(2) << "\n";
    return 0;
  }

  std::printf("%s\n", dir.c_str());
  std::printf("variant     %s\n", cfg.describe().c_str());
  std::printf("vision      %s: hidden %lld, %lld layers, %lld heads x %lld, MLP %lld, %lldpx / patch %lld\n",
              V.model_type.c_str(), (long long)V.hidden, (long long)V.layers, (long long)V.heads, (long long)V.head_dim,
              (long long)V.intermediate, (long long)V.image_size, (long long)V.patch_size);
  std::printf("llm         %s: hidden %lld, %lld layers, %lld heads / %lld KV x %lld, MLP %lld, vocab %lld, %s\n",
              L.model_type.c_str(), (long long)L.hidden, (long long)L.layers, (long long)L.heads, (long long)L.kv_heads,
              (long long)L.head_dim, (long long)L.intermediate, (long long)L.vocab,
              tied ? "lm_head = embed_tokens" : "lm_head stored");
  std::printf("lm_head     %s", model::lm_head_source_text(head_src));
  if (!tied) std::printf(": %s, %s", human_count(head).c_str(), human_bytes(static_cast<double>(head_bytes)).c_str());
  std::printf("\n");
  std::printf("image       ps %s, select_layer %lld, %lld tokens/tile, tiles %lld..%lld, thumbnail %s\n",
              cfg.ps_version.c_str(), (long long)cfg.select_layer, (long long)cfg.num_image_token,
              (long long)cfg.min_dynamic_patch, (long long)cfg.max_dynamic_patch, cfg.use_thumbnail ? "yes" : "no");
  std::printf("parameters  total %s (%lld)\n", human_count(total).c_str(), (long long)total);
  std::printf("  vision    %s\n", human_count(vision).c_str());
  std::printf("  projector %s\n", human_count(projector).c_str());
  std::printf("  llm       %s (embed_tokens %s, lm_head %s)\n", human_count(llm).c_str(), human_count(embed).c_str(),
              tied ? "tied" : human_count(head).c_str());
  if (other) std::printf("  other     %s (outside vision_model / mlp1 / language_model)\n", human_count(other).c_str());
  std::printf("dtypes     ");
  for (const auto& [n, v] : dtypes)
    std::printf(" %s: %lld tensors, %s;", n.c_str(), (long long)v.first, human_bytes(v.second).c_str());
  std::printf("\n");
  if (cfg.quantized())
    std::printf(
        "quantized   %s, groups of %lld weights with F16 scales: the language model's linears and LM head%s; "
        "%lld linears, %s of codes + %s of scales; CPU only\n",
        ops::quant_type_name(cfg.llm.quant), (long long)ops::quant_group(cfg.llm.quant),
        cfg.vision.quant != ops::QuantType::None ? ", the vision tower's and projector's" : "", (long long)q_linears,
        human_bytes(q_code_bytes).c_str(), human_bytes(q_scale_bytes).c_str());
  std::printf("shards      %zu\n", w.shards().size());
  for (const auto& s : w.shards())
    std::printf("  %-40s %5zu tensors  %s\n", std::filesystem::path(s->path()).filename().string().c_str(),
                s->header().tensors.size(), human_bytes(s->file_size()).c_str());
  std::printf("memory      weights %s\n", human_bytes(weights).c_str());
  std::printf("  KV cache  %s/token BF16 (CUDA), %s/token F32 (CPU); %lld tokens: %s BF16, %s F32\n",
              human_bytes(kv_tok_bf16).c_str(), human_bytes(kv_tok_f32).c_str(), (long long)ctx,
              human_bytes(kv_tok_bf16 * ctx).c_str(), human_bytes(kv_tok_f32 * ctx).c_str());
  std::printf("  activations (F32) one ViT tile %s; one LLM prefill chunk of %lld tokens %s\n",
              human_bytes(act_vit).c_str(), (long long)chunk, human_bytes(act_llm).c_str());
  std::printf(
      "cost        %.1f GFLOP per image tile (vision + projector); %.1f GFLOP for a %lld-token prefill; "
      "%s read per decoded token\n",
      tile_gflop, prefill_gflop, (long long)ctx, human_bytes(static_cast<double>(decode_bytes)).c_str());
  if (cfg.quantized())
    std::printf("preflight   CUDA: none (quantised weights have CPU kernels only), %lld-token context, %lld tiles\n",
                (long long)ctx, (long long)wl.tiles);
  else
    std::printf("preflight   CUDA (BF16), %lld-token context, %lld tiles:\n%s", (long long)ctx, (long long)wl.tiles,
                runtime::format_plan(plan_cuda, std::nullopt).c_str());
  std::printf("  CPU (F32) needs %s besides the mmapped weights\n", runtime::format_bytes(plan_cpu.needed()).c_str());
  return 0;
}

SAILVL_COMMAND(inspect, "print a checkpoint's variant, parameter counts, shards and memory needs", setup_inspect,
               run_inspect);
