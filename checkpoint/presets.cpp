// Presets and the streaming checkpoint writer (plan in presets.h).
#include "checkpoint/presets.h"

#include <omp.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "checkpoint/embedded_tokenizer.h"
#include "checkpoint/prng.h"
#include "loader/safetensors.h"
#include "model/family.h"

namespace sailvl::checkpoint {

using nlohmann::ordered_json;
namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// config.json builders: the key sets of SAIL-VL's published configs.

namespace {

struct VisionDims {
  bool aimv2;
  int64_t hidden, intermediate, layers, heads;
};
struct LlmDims {
  int64_t hidden, intermediate, layers, heads, kv_heads, vocab, max_window_layers;
  bool tie;
};

ordered_json internvit_config(const VisionDims& v) {
  ordered_json j;
  j["architectures"] = {"InternVisionModel"};
  j["model_type"] = "intern_vit_6b";
  j["hidden_size"] = v.hidden;
  j["intermediate_size"] = v.intermediate;
  j["num_hidden_layers"] = v.layers;
  j["num_attention_heads"] = v.heads;
  j["num_channels"] = 3;
  j["image_size"] = 448;
  j["patch_size"] = 14;
  j["hidden_act"] = "gelu";
  j["norm_type"] = "layer_norm";
  j["layer_norm_eps"] = 1e-06;
  j["qkv_bias"] = true;
  j["qk_normalization"] = false;
  j["use_flash_attn"] = false;
  j["attention_dropout"] = 0.0;
  j["dropout"] = 0.0;
  j["drop_path_rate"] = 0.0;
  j["initializer_factor"] = 1.0;
  j["initializer_range"] = 0.02;
  j["torch_dtype"] = "bfloat16";
  return j;
}

ordered_json aimv2_config(const VisionDims& v) {
  ordered_json j;
  j["architectures"] = {"AIMv2Model"};
  j["model_type"] = "aimv2";
  j["hidden_size"] = v.hidden;
  j["intermediate_size"] = v.intermediate;
  j["num_hidden_layers"] = v.layers;
  j["num_attention_heads"] = v.heads;
  j["num_channels"] = 3;
  j["image_size"] = 448;
  j["patch_size"] = 14;
  j["rms_norm_eps"] = 1e-05;
  j["attention_dropout"] = 0.0;
  j["projection_dropout"] = 0.0;
  j["qkv_bias"] = false;
  j["use_bias"] = false;
  j["torch_dtype"] = "bfloat16";
  return j;
}

ordered_json qwen2_config(const LlmDims& l) {
  ordered_json j;
  j["architectures"] = {"Qwen2ForCausalLM"};
  j["model_type"] = "qwen2";
  j["hidden_size"] = l.hidden;
  j["intermediate_size"] = l.intermediate;
  j["num_hidden_layers"] = l.layers;
  j["num_attention_heads"] = l.heads;
  j["num_key_value_heads"] = l.kv_heads;
  j["hidden_act"] = "silu";
  j["max_position_embeddings"] = 32768;
  j["max_window_layers"] = l.max_window_layers;
  j["rms_norm_eps"] = 1e-06;
  j["rope_theta"] = 1000000.0;
  j["sliding_window"] = 32768;
  j["use_sliding_window"] = false;
  j["tie_word_embeddings"] = l.tie;
  j["vocab_size"] = l.vocab;
  j["bos_token_id"] = 151643;
  j["eos_token_id"] = 151645;
  j["attention_dropout"] = 0.0;
  j["initializer_range"] = 0.02;
  j["use_cache"] = true;
  j["torch_dtype"] = "bfloat16";
  return j;
}

// The top level as in SAIL-VL-1d6-8B's config.json (docs/MODEL.md §2).
ordered_json sailvl_config(const VisionDims& v, const LlmDims& l) {
  ordered_json j;
  j["architectures"] = {"SailVLModel"};
  j["model_type"] = "internvl_chat";
  j["downsample_ratio"] = 0.5;
  j["dynamic_image_size"] = true;
  j["force_image_size"] = 448;
  j["min_dynamic_patch"] = 1;
  j["max_dynamic_patch"] = 12;
  j["use_thumbnail"] = true;
  j["ps_version"] = "v2";
  j["select_layer"] = -1;
  j["template"] = "sailvl-chat";
  j["torch_dtype"] = "bfloat16";
  j["vision_config"] = v.aimv2 ? aimv2_config(v) : internvit_config(v);
  j["llm_config"] = qwen2_config(l);
  return j;
}

struct PresetDef {
  const char* name;
  VisionDims vision;
  LlmDims llm;
  int shards;
  bool stored_head;  // the checkpoint stores language_model.lm_head.weight (whatever llm.tie says)
};

// Qwen2.5 sizes (docs/MODEL.md §2); max_window_layers as in the Qwen2.5 configs (21 for 1.5B, 28 for 7B).
constexpr LlmDims kQwen15B{1536, 8960, 28, 12, 2, 151936, 21, true};
constexpr LlmDims kQwen7B{3584, 18944, 28, 28, 4, 152064, 28, false};
constexpr VisionDims kInternViT300M{false, 1024, 4096, 24, 16};
constexpr VisionDims kAIMv2Huge{true, 1536, 4096, 24, 12};

// LM heads (docs/MODEL.md, "The LM head"): SAIL-VL-2B keeps Qwen2.5-1.5B's config
// (tie_word_embeddings true) but stores a head (its file size says so), which is then the head;
// the 8B variants are untied with a stored head; 1d5-2B is unknown, so it gets Qwen2.5-1.5B's own
// tied head without a stored tensor (make-model --lm-head stored / --untie give the other shapes).
const std::vector<PresetDef>& presets() {
  static const std::vector<PresetDef> p = {
      {"tiny-internvit", {false, 128, 256, 2, 2}, {256, 512, 3, 2, 1, 151936, 3, true}, 1, false},
      {"tiny-aimv2", {true, 256, 512, 2, 2}, {256, 512, 3, 2, 1, 151936, 3, false}, 3, true},
      {"sailvl-2b", kInternViT300M, kQwen15B, 2, true},
      {"sailvl-8b", kInternViT300M, kQwen7B, 4, true},
      {"sailvl-1d5-2b", kAIMv2Huge, kQwen15B, 2, false},
      {"sailvl-1d5-8b", kInternViT300M, kQwen7B, 4, true},
      {"sailvl-1d6-8b", kAIMv2Huge, kQwen7B, 4, true},
  };
  return p;
}

const PresetDef& find_preset(const std::string& name) {
  for (const auto& p : presets())
    if (name == p.name) return p;
  std::string list;
  for (const auto& p : presets()) list += std::string(list.empty() ? "" : ", ") + p.name;
  fail(ErrorKind::Usage, "unknown preset \"", escape_for_print(name), "\" (presets: ", list, ")");
}

}  // namespace

const std::vector<std::string>& preset_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& p : presets()) n.push_back(p.name);
    return n;
  }();
  return names;
}

ordered_json preset_config(const std::string& preset, std::optional<bool> tie) {
  const PresetDef& p = find_preset(preset);
  LlmDims l = p.llm;
  if (tie) l.tie = *tie;
  return sailvl_config(p.vision, l);
}

int default_shards(const std::string& preset) { return find_preset(preset).shards; }

bool default_stored_head(const std::string& preset, std::optional<bool> tie) {
  const PresetDef& p = find_preset(preset);
  // --untie without --lm-head means a stored head (an untied config without one is the odd case).
  if (tie && !*tie) return true;
  if (tie && *tie && !p.llm.tie) return false;  // --tie on an untied preset: the plain tied shape
  return p.stored_head;
}

std::vector<int> assign_shards(size_t count, int shards) {
  std::vector<int> s(count);
  for (size_t k = 0; k < count; ++k) s[k] = static_cast<int>(k * static_cast<size_t>(shards) / count);
  return s;
}

void generate_bf16(const std::string& name, const Shape& shape, uint64_t seed, uint64_t first, uint64_t n,
                   uint16_t* out) {
  const uint64_t b = prng::base(name, seed);
  const prng::Init init = prng::init_for(name, shape);
  const int64_t count = static_cast<int64_t>(n);
#pragma omp parallel for schedule(static) if (count > (1 << 16))
  for (int64_t k = 0; k < count; ++k)
    out[k] = prng::value_bf16(b, first + static_cast<uint64_t>(k), init.offset, init.scale);
}

// ---------------------------------------------------------------------------------------------
// The writer.

static void write_text(const fs::path& p, std::string_view bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  SAILVL_CHECK(f.good(), BadModel, p.string(), ": write failed");
}

static std::string shard_file_name(int k, int n) {
  if (n == 1) return "model.safetensors";
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05d-of-%05d.safetensors", k + 1, n);
  return buf;
}

MakeModelResult make_model(const MakeModelOptions& opt) {
  const ordered_json cfg_json = preset_config(opt.preset, opt.tie);
  const std::string cfg_text = cfg_json.dump(2) + "\n";
  const model::ModelConfig cfg = model::parse_config(cfg_text, opt.preset + " config.json");
  const std::vector<model::TensorSpec> tensors =
      model::checkpoint_tensors(cfg, opt.stored_head.value_or(default_stored_head(opt.preset, opt.tie)));
  const int n_shards = opt.shards > 0 ? opt.shards : default_shards(opt.preset);
  SAILVL_CHECK(static_cast<size_t>(n_shards) <= tensors.size(), Usage, "--shards ", n_shards, " exceeds the ",
               tensors.size(), " tensors of preset ", opt.preset);
  const std::vector<int> shard_of = assign_shards(tensors.size(), n_shards);

  const fs::path out(opt.out_dir);
  std::error_code ec;
  // An existing non-empty directory is someone's data: only --force lets us write into it.
  if (fs::is_directory(out, ec) && !fs::is_empty(out, ec))
    SAILVL_CHECK(opt.force, Usage, opt.out_dir, " is not empty; use --force to write the checkpoint into it anyway");
  SAILVL_CHECK(!fs::exists(out, ec) || fs::is_directory(out, ec), Usage, opt.out_dir, " exists and is not a directory");
  fs::create_directories(out, ec);
  SAILVL_CHECK(!ec && fs::is_directory(out), Usage, opt.out_dir, ": cannot create the output directory (", ec.message(),
               ")");
  // Remove what an earlier run with another shard count may have left, so the directory is one checkpoint.
  for (const auto& e : fs::directory_iterator(out)) {
    const std::string n = e.path().filename().string();
    if (n == "model.safetensors.index.json" || (n.size() > 12 && n.substr(n.size() - 12) == ".safetensors"))
      fs::remove(e.path());
  }
  write_text(out / "config.json", cfg_text);
  // The marker run/chat/inspect warn about: these weights are random, their words are noise.
  write_text(
      out / "RANDOM_WEIGHTS",
      "This checkpoint was written by `sailvl make-model --preset " + opt.preset +
          "`: the SAIL-VL format and architecture with random weights (docs/CHECKPOINTS.md). Its answers are noise.\n");
  for (const auto& f : embedded_tokenizer_files()) write_text(out / f.name, f.bytes);

  MakeModelResult res;
  uint64_t total_bytes = 0;
  for (const auto& t : tensors) total_bytes += static_cast<uint64_t>(shape_numel(t.shape)) * 2;
  const auto t0 = std::chrono::steady_clock::now();
  const bool tty = ::isatty(2) != 0;
  if (!opt.quiet && !tty)
    std::fprintf(stderr, "make-model %s: writing %.2f GB to %s ...\n", opt.preset.c_str(), total_bytes / 1e9,
                 opt.out_dir.c_str());
  constexpr uint64_t kChunk = uint64_t{1} << 22;  // elements per chunk (8 MiB of BF16)
  std::vector<uint16_t> buf;
  uint64_t done = 0;
  int last_pct = -1;
  ordered_json weight_map = ordered_json::object();
  for (int s = 0; s < n_shards; ++s) {
    const std::string file = shard_file_name(s, n_shards);
    std::vector<loader::SafetensorsWriter::Entry> entries;
    for (size_t k = 0; k < tensors.size(); ++k)
      if (shard_of[k] == s) {
        entries.push_back({tensors[k].name, DType::BF16, tensors[k].shape});
        weight_map[tensors[k].name] = file;
      }
    loader::SafetensorsWriter w((out / file).string(), entries, {{"format", "pt"}});
    for (const auto& e : entries) {
      const uint64_t n = static_cast<uint64_t>(shape_numel(e.shape));
      for (uint64_t first = 0; first < n; first += kChunk) {
        const uint64_t m = std::min(kChunk, n - first);
        buf.resize(m);
        generate_bf16(e.name, e.shape, opt.seed, first, m, buf.data());
        w.append(buf.data(), m * 2);
        done += m * 2;
        const int pct = static_cast<int>(100 * done / std::max<uint64_t>(total_bytes, 1));
        if (!opt.quiet && tty && pct != last_pct) {  // not a terminal: only the start and end lines
          last_pct = pct;
          std::fprintf(stderr, "\rmake-model %s: %3d%% (%s)", opt.preset.c_str(), pct, file.c_str());
          std::fflush(stderr);
        }
      }
      res.params += static_cast<int64_t>(n);
    }
    w.finish();
    res.files.push_back((out / file).string());
  }
  if (n_shards > 1) {
    ordered_json index;
    index["metadata"] = {{"total_size", total_bytes}};
    index["weight_map"] = weight_map;
    write_text(out / "model.safetensors.index.json", index.dump(2) + "\n");
  }
  res.bytes = total_bytes;
  if (!opt.quiet) {
    if (tty) std::fprintf(stderr, "\r\033[K");
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "make-model %s: %lld parameters, %.2f GB in %d file(s), %.1f s (%.0f MB/s) -> %s\n",
                 opt.preset.c_str(), static_cast<long long>(res.params), total_bytes / 1e9, n_shards, secs,
                 total_bytes / 1e6 / std::max(secs, 1e-9), opt.out_dir.c_str());
  }
  return res;
}

}  // namespace sailvl::checkpoint
