// config.json -> ModelConfig (docs/MODEL.md §1-§2): the top level here, the vision_config and
// llm_config sections by their families (model/family.h; each family file documents its keys and
// the class defaults of its Python config).
//
// Top-level defaults when a key is missing (InternVLChatConfig / SAIL's configuration_sailvl.py):
// downsample_ratio 0.5, force_image_size None (-> the vision image_size), min/max_dynamic_patch
// 1/6, dynamic_image_size False, use_thumbnail False, ps_version "v1", select_layer -4
// (docs/MODEL.md §2); template None (we only implement "sailvl-chat").
// Validation after the families: hidden % heads == 0 and heads % kv_heads == 0 (both sections),
// image % patch == 0, the pixel-shuffle grid divisible, special ids < vocab, select_layer inside the
// tower's hidden states.
#include "model/config.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "loader/json_strict.h"
#include "model/family.h"

namespace sailvl::model {

using nlohmann::json;

namespace {

constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxImage = 1 << 14;

// model_type values of SAIL-VL's top-level config (InternVL's chat class, which SAIL-VL reuses).
bool is_sail_model_type(const std::string& t) { return t == "internvl_chat" || t == "sailvl" || t == "sail_vl"; }

void check_heads(const std::string& where, int64_t hidden, int64_t heads) {
  SAILVL_CHECK(hidden % heads == 0, BadModel, where, ": hidden_size ", hidden,
               " is not divisible by num_attention_heads ", heads);
}

}  // namespace

ModelConfig parse_config(std::string_view json_text, const std::string& display_name) {
  const json j = loader::parse_json_strict(json_text, display_name);
  SAILVL_CHECK(j.is_object(), BadModel, display_name, ": not a JSON object");
  const loader::JsonObject top{j, display_name};

  // Another model's checkpoint (Qwen2-VL, LLaVA, a plain LLM) must say so, not fail on a missing key.
  const std::string top_type = top.string("model_type", "");
  SAILVL_CHECK(top_type.empty() || is_sail_model_type(top_type), BadModel, display_name,
               ": not a SAIL-VL checkpoint (model_type \"", escape_for_print(top_type),
               "\"; SAIL-VL's config.json says \"internvl_chat\" and has vision_config and llm_config)");
  SAILVL_CHECK(top.has("vision_config") || top.has("llm_config"), BadModel, display_name,
               ": not a SAIL-VL checkpoint (it has neither vision_config nor llm_config)");

  ModelConfig c;
  const loader::JsonObject v = top.child("vision_config");
  c.vision.model_type = v.string("model_type", "");
  vision_family(c.vision.model_type).parse(v, c.vision);
  check_heads(v.where, c.vision.hidden, c.vision.heads);
  c.vision.head_dim = c.vision.hidden / c.vision.heads;
  SAILVL_CHECK(c.vision.image_size % c.vision.patch_size == 0, BadModel, v.where, ": image_size ", c.vision.image_size,
               " is not divisible by patch_size ", c.vision.patch_size);

  const loader::JsonObject l = top.child("llm_config");
  c.llm.model_type = l.string("model_type", "qwen2");
  llm_family(c.llm.model_type).parse(l, c.llm);
  check_heads(l.where, c.llm.hidden, c.llm.heads);
  c.llm.head_dim = c.llm.hidden / c.llm.heads;
  SAILVL_CHECK(c.llm.heads % c.llm.kv_heads == 0, BadModel, l.where, ": num_attention_heads ", c.llm.heads,
               " is not divisible by num_key_value_heads ", c.llm.kv_heads);
  SAILVL_CHECK(c.llm.bos_token_id < c.llm.vocab, BadModel, l.key_name("bos_token_id"), " = ", c.llm.bos_token_id,
               " is not below vocab_size ", c.llm.vocab);
  SAILVL_CHECK(c.llm.eos_token_id < c.llm.vocab, BadModel, l.key_name("eos_token_id"), " = ", c.llm.eos_token_id,
               " is not below vocab_size ", c.llm.vocab);

  c.downsample_ratio = top.positive("downsample_ratio", 0.5);
  c.force_image_size = top.integer("force_image_size", c.vision.image_size, 1, kMaxImage);
  c.min_dynamic_patch = top.integer("min_dynamic_patch", 1, 1, 1024);
  c.max_dynamic_patch = top.integer("max_dynamic_patch", 6, 1, 1024);
  c.dynamic_image_size = top.boolean("dynamic_image_size", false);
  c.use_thumbnail = top.boolean("use_thumbnail", false);
  c.ps_version = top.string("ps_version", "v1");
  c.select_layer = top.integer("select_layer", -4, -kMaxLayers - 1, kMaxLayers);
  c.template_name = top.string("template", "sailvl-chat");

  SAILVL_CHECK(c.min_dynamic_patch <= c.max_dynamic_patch, BadModel, display_name, ": min_dynamic_patch ",
               c.min_dynamic_patch, " > max_dynamic_patch ", c.max_dynamic_patch);
  SAILVL_CHECK(c.ps_version == "v1" || c.ps_version == "v2", BadModel, display_name, ".ps_version = \"",
               escape_for_print(c.ps_version), "\" (expected \"v1\" or \"v2\")");
  // hidden_states has layers + 1 entries (embeddings first), indexed like a Python list.
  const int64_t n_states = c.vision.layers + 1;
  SAILVL_CHECK(c.select_layer >= -n_states && c.select_layer < n_states, BadModel, display_name,
               ".select_layer = ", c.select_layer, " is outside the ", n_states, " hidden states of the vision tower");
  SAILVL_CHECK(c.downsample_ratio <= 1, BadModel, display_name, ".downsample_ratio = ", c.downsample_ratio,
               " must be in (0, 1]");
  SAILVL_CHECK(c.force_image_size % c.vision.patch_size == 0, BadModel, display_name, ".force_image_size ",
               c.force_image_size, " is not divisible by the patch size ", c.vision.patch_size);
  // Pixel shuffle merges (1/r)x(1/r) patches: the grid side times r must be a whole number.
  const int64_t grid = c.force_image_size / c.vision.patch_size;
  const double side = static_cast<double>(grid) * c.downsample_ratio;
  SAILVL_CHECK(
      side >= 1 && side == std::floor(side) && std::floor(1.0 / c.downsample_ratio) * c.downsample_ratio == 1.0,
      BadModel, display_name, ": downsample_ratio ", c.downsample_ratio, " does not evenly divide the ", grid, "x",
      grid, " patch grid");
  c.num_image_token = static_cast<int64_t>(side) * static_cast<int64_t>(side);

  // quantization_config: only sailvl's own formats load. AWQ/GPTQ/bitsandbytes repacks of SAIL-VL
  // store other layouts under other names; say so instead of failing on a missing tensor later.
  if (top.has("quantization_config")) {
    const loader::JsonObject q = top.child("quantization_config");
    const std::string method = q.string("quant_method", "");
    SAILVL_CHECK(method == "sailvl", BadModel, q.key_name("quant_method"), " = \"", escape_for_print(method),
                 "\": only checkpoints written by `sailvl quantize` (quant_method \"sailvl\") load; for AWQ, GPTQ "
                 "or bitsandbytes repacks use the BF16 release and `sailvl quantize` it");
    const std::string format = q.string("format", "");
    const std::optional<ops::QuantType> t = ops::quant_type_from_name(format);
    SAILVL_CHECK(t && *t != ops::QuantType::None, BadModel, q.key_name("format"), " = \"", escape_for_print(format),
                 "\" (expected \"q8\" or \"q4\")");
    const int64_t group = q.integer("group_size", ops::quant_group(*t), 1, 1 << 20);
    SAILVL_CHECK(group == ops::quant_group(*t), BadModel, q.key_name("group_size"), " = ", group, ": the ", format,
                 " format has groups of ", ops::quant_group(*t), " weights");
    c.llm.quant = *t;
    if (q.boolean("vision", false)) c.vision.quant = *t;
  }
  return c;
}

ModelConfig load_config(const std::string& model_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_regular_file(model_dir, ec)) {
    const std::string ext = fs::path(model_dir).extension().string();
    SAILVL_CHECK(ext != ".gguf", BadModel, model_dir,
                 " is a GGUF file: sailvl reads Hugging Face checkpoints (a directory with config.json and "
                 "*.safetensors), not GGUF");
    fail(ErrorKind::BadModel, model_dir,
         " is a file; -m takes a checkpoint directory (config.json, *.safetensors and the tokenizer files)");
  }
  const fs::path p = fs::path(model_dir) / "config.json";
  std::ifstream f(p, std::ios::binary);
  SAILVL_CHECK(f.good(), BadModel, p.string(), ": cannot open (is ", model_dir, " a SAIL-VL checkpoint directory?)");
  std::ostringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  SAILVL_CHECK(text.size() <= (16u << 20), BadModel, p.string(), ": larger than 16 MiB");
  return parse_config(text, p.string());
}

// describe(): which published release a config looks like (docs/MODEL.md §1 table).
std::string ModelConfig::describe() const {
  const std::string v = vision_family(vision.model_type).describe(vision);
  const std::string l = llm_family(llm.model_type).describe(llm);
  std::string release;
  if (v == "InternViT-300M" && l == "Qwen2.5-1.5B")
    release = "SAIL-VL-2B";
  else if (v == "InternViT-300M" && l == "Qwen2.5-7B")
    release = "SAIL-VL-8B or SAIL-VL-1d5-8B";
  else if (v == "AIMv2-Huge" && l == "Qwen2.5-1.5B")
    release = "SAIL-VL-1d5-2B";
  else if (v == "AIMv2-Huge" && l == "Qwen2.5-7B")
    release = "SAIL-VL-1d6-8B";
  else
    return "custom SAIL-VL-architecture model: " + v + " + " + l;
  return release + "-like: " + v + " + " + l;
}

}  // namespace sailvl::model
