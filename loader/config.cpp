// config.json -> ModelConfig (docs/MODEL.md §1-§2).
//
// Sources of the defaults used when a key is missing (the class defaults of the Python configs):
//   top level  InternVLChatConfig / SAIL's configuration_sailvl.py: downsample_ratio 0.5,
//              force_image_size None (-> vision image_size), min/max_dynamic_patch 1/6,
//              dynamic_image_size False, use_thumbnail False, ps_version "v1", select_layer -4
//              (docs/MODEL.md §2); template None (we only implement "sailvl-chat").
//   InternViT  InternVisionConfig: hidden 3200, intermediate 12800, 48 layers, 25 heads, image 224,
//              patch 14, qkv_bias False, qk_normalization True, norm_type "rms_norm",
//              layer_norm_eps 1e-6, hidden_act "gelu" (the InternViT-6B defaults).
//   AIMv2      AIMv2Config: hidden 1024, intermediate 2816, 24 layers, 8 heads, image 224, patch 14,
//              rms_norm_eps 1e-5, qkv_bias False, use_bias False.
//   Qwen2      Qwen2Config: vocab 151936, hidden 4096, intermediate 22016, 32 layers, 32 heads,
//              num_key_value_heads = heads, max_position_embeddings 32768, rms_norm_eps 1e-6,
//              rope_theta 10000, tie_word_embeddings False, hidden_act "silu".
// Validation: ints positive and bounded, hidden % heads == 0, heads % kv_heads == 0, image % patch
// == 0, the pixel-shuffle grid divisible, eps/theta finite > 0, special ids < vocab. Only the
// architectures this runtime implements are accepted (gelu InternViT with LayerNorm, no qk-norm;
// AIMv2 without biases; Qwen2 with silu).
#include "loader/config.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "loader/json_strict.h"

namespace sailvl::loader {

using nlohmann::json;

namespace {

// Typed, checked access to one JSON object; `where` prefixes every message ("config.json: vision_config").
struct Obj {
  const json& j;
  std::string where;

  bool has(const char* key) const { return j.contains(key) && !j[key].is_null(); }
  std::string key_name(const char* key) const { return where + "." + key; }

  int64_t integer(const char* key, int64_t def, int64_t lo, int64_t hi) const {
    if (!has(key)) return def;
    const json& v = j[key];
    SAILVL_CHECK(v.is_number_integer(), BadModel, key_name(key), " must be an integer, got ", v.dump());
    SAILVL_CHECK(!v.is_number_unsigned() || v.get<uint64_t>() <= static_cast<uint64_t>(hi), BadModel, key_name(key),
                 " = ", v.dump(), " is out of range [", lo, ", ", hi, "]");
    const int64_t x = v.get<int64_t>();
    SAILVL_CHECK(x >= lo && x <= hi, BadModel, key_name(key), " = ", x, " is out of range [", lo, ", ", hi, "]");
    return x;
  }
  // An int, or a list of ints whose first element is used (eos_token_id may be a list).
  int64_t id(const char* key, int64_t def) const {
    if (has(key) && j[key].is_array()) {
      SAILVL_CHECK(!j[key].empty(), BadModel, key_name(key), " is an empty list");
      json one = json::object();
      one[key] = j[key][0];
      return Obj{one, where}.integer(key, def, 0, int64_t{1} << 31);
    }
    return integer(key, def, 0, int64_t{1} << 31);
  }
  double positive(const char* key, double def) const {
    if (!has(key)) return def;
    const json& v = j[key];
    SAILVL_CHECK(v.is_number(), BadModel, key_name(key), " must be a number, got ", v.dump());
    const double x = v.get<double>();
    SAILVL_CHECK(std::isfinite(x) && x > 0, BadModel, key_name(key), " = ", v.dump(), " must be finite and > 0");
    return x;
  }
  bool boolean(const char* key, bool def) const {
    if (!has(key)) return def;
    SAILVL_CHECK(j[key].is_boolean(), BadModel, key_name(key), " must be true or false, got ", j[key].dump());
    return j[key].get<bool>();
  }
  std::string string(const char* key, const std::string& def) const {
    if (!has(key)) return def;
    SAILVL_CHECK(j[key].is_string(), BadModel, key_name(key), " must be a string, got ", j[key].dump());
    return j[key].get<std::string>();
  }
  Obj child(const char* key) const {
    SAILVL_CHECK(has(key), BadModel, key_name(key), " is missing");
    SAILVL_CHECK(j[key].is_object(), BadModel, key_name(key), " must be a JSON object");
    return Obj{j[key], key_name(key)};
  }
};

constexpr int64_t kMaxDim = 1 << 20;  // hidden / intermediate sizes
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxHeads = 1024;
constexpr int64_t kMaxVocab = 1 << 24;
constexpr int64_t kMaxImage = 1 << 14;

void check_heads(const std::string& where, int64_t hidden, int64_t heads) {
  SAILVL_CHECK(hidden % heads == 0, BadModel, where, ": hidden_size ", hidden,
               " is not divisible by num_attention_heads ", heads);
}

VisionConfig parse_vision(const Obj& v) {
  VisionConfig c;
  c.model_type = v.string("model_type", "");
  if (c.model_type == "intern_vit_6b") {
    c.arch = VisionArch::InternViT;
    c.hidden = v.integer("hidden_size", 3200, 1, kMaxDim);
    c.intermediate = v.integer("intermediate_size", 12800, 1, kMaxDim);
    c.layers = v.integer("num_hidden_layers", 48, 1, kMaxLayers);
    c.heads = v.integer("num_attention_heads", 25, 1, kMaxHeads);
    c.image_size = v.integer("image_size", 224, 1, kMaxImage);
    c.patch_size = v.integer("patch_size", 14, 1, kMaxImage);
    c.num_channels = v.integer("num_channels", 3, 1, 16);
    c.norm_eps = v.positive("layer_norm_eps", 1e-6);
    c.qkv_bias = v.boolean("qkv_bias", false);
    c.use_bias = true;  // InternViT's proj / fc1 / fc2 always have biases
    c.qk_normalization = v.boolean("qk_normalization", true);
    c.norm_type = v.string("norm_type", "rms_norm");
    c.hidden_act = v.string("hidden_act", "gelu");
    SAILVL_CHECK(c.norm_type == "layer_norm", BadModel, v.key_name("norm_type"), " = \"", escape_for_print(c.norm_type),
                 "\" is not supported (InternViT-300M uses \"layer_norm\")");
    SAILVL_CHECK(!c.qk_normalization, BadModel, v.key_name("qk_normalization"),
                 " = true is not supported (InternViT-300M has none)");
    SAILVL_CHECK(c.hidden_act == "gelu", BadModel, v.key_name("hidden_act"), " = \"", escape_for_print(c.hidden_act),
                 "\" is not supported (expected \"gelu\")");
  } else if (c.model_type == "aimv2") {
    c.arch = VisionArch::AIMv2;
    c.hidden = v.integer("hidden_size", 1024, 1, kMaxDim);
    c.intermediate = v.integer("intermediate_size", 2816, 1, kMaxDim);
    c.layers = v.integer("num_hidden_layers", 24, 1, kMaxLayers);
    c.heads = v.integer("num_attention_heads", 8, 1, kMaxHeads);
    c.image_size = v.integer("image_size", 224, 1, kMaxImage);
    c.patch_size = v.integer("patch_size", 14, 1, kMaxImage);
    c.num_channels = v.integer("num_channels", 3, 1, 16);
    c.norm_eps = v.positive("rms_norm_eps", 1e-5);
    c.qkv_bias = v.boolean("qkv_bias", false);
    c.use_bias = v.boolean("use_bias", false);
    c.qk_normalization = false;
    c.norm_type = "rms_norm";
    c.hidden_act = "silu";  // SwiGLU MLP
    SAILVL_CHECK(!c.qkv_bias && !c.use_bias, BadModel, v.where,
                 ": AIMv2 with qkv_bias or use_bias is not supported (SAIL-VL's AIMv2-Huge has no biases)");
  } else {
    fail(ErrorKind::BadModel, v.key_name("model_type"), " = \"", escape_for_print(c.model_type),
         "\" is not a supported vision tower (expected \"intern_vit_6b\" or \"aimv2\")");
  }
  check_heads(v.where, c.hidden, c.heads);
  c.head_dim = c.hidden / c.heads;
  SAILVL_CHECK(c.image_size % c.patch_size == 0, BadModel, v.where, ": image_size ", c.image_size,
               " is not divisible by patch_size ", c.patch_size);
  return c;
}

LlmConfig parse_llm(const Obj& l) {
  LlmConfig c;
  const std::string mt = l.string("model_type", "qwen2");
  SAILVL_CHECK(mt == "qwen2", BadModel, l.key_name("model_type"), " = \"", escape_for_print(mt),
               "\" is not supported (expected \"qwen2\")");
  c.vocab = l.integer("vocab_size", 151936, 1, kMaxVocab);
  c.hidden = l.integer("hidden_size", 4096, 1, kMaxDim);
  c.intermediate = l.integer("intermediate_size", 22016, 1, kMaxDim);
  c.layers = l.integer("num_hidden_layers", 32, 1, kMaxLayers);
  c.heads = l.integer("num_attention_heads", 32, 1, kMaxHeads);
  c.kv_heads = l.integer("num_key_value_heads", c.heads, 1, kMaxHeads);
  c.max_position_embeddings = l.integer("max_position_embeddings", 32768, 1, int64_t{1} << 24);
  c.rms_norm_eps = l.positive("rms_norm_eps", 1e-6);
  c.rope_theta = l.positive("rope_theta", 10000.0);
  c.tie_word_embeddings = l.boolean("tie_word_embeddings", false);
  c.hidden_act = l.string("hidden_act", "silu");
  c.bos_token_id = l.id("bos_token_id", 151643);
  c.eos_token_id = l.id("eos_token_id", 151645);
  check_heads(l.where, c.hidden, c.heads);
  c.head_dim = c.hidden / c.heads;
  SAILVL_CHECK(c.heads % c.kv_heads == 0, BadModel, l.where, ": num_attention_heads ", c.heads,
               " is not divisible by num_key_value_heads ", c.kv_heads);
  SAILVL_CHECK(c.hidden_act == "silu", BadModel, l.key_name("hidden_act"), " = \"", escape_for_print(c.hidden_act),
               "\" is not supported (expected \"silu\")");
  SAILVL_CHECK(c.bos_token_id < c.vocab, BadModel, l.key_name("bos_token_id"), " = ", c.bos_token_id,
               " is not below vocab_size ", c.vocab);
  SAILVL_CHECK(c.eos_token_id < c.vocab, BadModel, l.key_name("eos_token_id"), " = ", c.eos_token_id,
               " is not below vocab_size ", c.vocab);
  SAILVL_CHECK(!l.boolean("use_sliding_window", false), BadModel, l.key_name("use_sliding_window"),
               " = true is not supported");
  return c;
}

}  // namespace

ModelConfig parse_config(std::string_view json_text, const std::string& display_name) {
  const json j = parse_json_strict(json_text, display_name);
  SAILVL_CHECK(j.is_object(), BadModel, display_name, ": not a JSON object");
  const Obj top{j, display_name};
  ModelConfig c;
  c.vision = parse_vision(top.child("vision_config"));
  c.llm = parse_llm(top.child("llm_config"));

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
  return c;
}

ModelConfig load_config(const std::string& model_dir) {
  const std::filesystem::path p = std::filesystem::path(model_dir) / "config.json";
  std::ifstream f(p, std::ios::binary);
  SAILVL_CHECK(f.good(), BadModel, p.string(), ": cannot open (is ", model_dir, " a SAIL-VL checkpoint directory?)");
  std::ostringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  SAILVL_CHECK(text.size() <= (16u << 20), BadModel, p.string(), ": larger than 16 MiB");
  return parse_config(text, p.string());
}

// ---------------------------------------------------------------------------------------------
// describe(): which published release a config looks like (docs/MODEL.md §1 table).

static std::string vision_name(const VisionConfig& v) {
  if (v.arch == VisionArch::InternViT)
    return v.hidden == 1024 && v.layers == 24 ? "InternViT-300M"
                                              : str_cat("InternViT(C=", v.hidden, ", ", v.layers, "L)");
  return v.hidden == 1536 && v.layers == 24 ? "AIMv2-Huge" : str_cat("AIMv2(C=", v.hidden, ", ", v.layers, "L)");
}

static std::string llm_name(const LlmConfig& l) {
  if (l.hidden == 1536 && l.layers == 28) return "Qwen2.5-1.5B";
  if (l.hidden == 3584 && l.layers == 28) return "Qwen2.5-7B";
  return str_cat("Qwen2(D=", l.hidden, ", ", l.layers, "L)");
}

std::string ModelConfig::describe() const {
  const std::string v = vision_name(vision), l = llm_name(llm);
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

}  // namespace sailvl::loader
