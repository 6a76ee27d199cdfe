// config.json parsing: the five SAIL-VL variants (values from docs/MODEL.md §1-§2), the tiny
// presets, the class defaults for missing keys, and validation errors that name the key.
#include "model/config.h"
#include "tests/testutil.h"

using namespace sailvl;
using namespace sailvl::model;

static ModelConfig parse_fixture(const std::string& name) {
  return parse_config(test::read_file(test::data_path("configs/" + name)), name);
}

struct VariantCase {
  const char* file;
  std::string arch;  // vision_config.model_type: the family
  int64_t vit_hidden, vit_heads, vit_head_dim, llm_hidden, heads, kv_heads, inter, vocab, mlp1_in;
  bool tied;
  const char* describe_prefix;
};

TEST(Config, ParsesAllFiveVariants) {
  // docs/MODEL.md §1 table and §2 (ViT 1024 InternViT / 1536 AIMv2; Qwen2.5 1.5B / 7B).
  const VariantCase cases[] = {
      {"sailvl-2b.json", "intern_vit_6b", 1024, 16, 64, 1536, 12, 2, 8960, 151936, 4096, true, "SAIL-VL-2B-like"},
      {"sailvl-8b.json", "intern_vit_6b", 1024, 16, 64, 3584, 28, 4, 18944, 152064, 4096, false, "SAIL-VL-8B or"},
      {"sailvl-1d5-2b.json", "aimv2", 1536, 12, 128, 1536, 12, 2, 8960, 151936, 6144, true, "SAIL-VL-1d5-2B-like"},
      {"sailvl-1d5-8b.json", "intern_vit_6b", 1024, 16, 64, 3584, 28, 4, 18944, 152064, 4096, false,
       "SAIL-VL-8B or SAIL-VL-1d5-8B"},
      {"sailvl-1d6-8b.json", "aimv2", 1536, 12, 128, 3584, 28, 4, 18944, 152064, 6144, false, "SAIL-VL-1d6-8B-like"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.file);
    const ModelConfig m = parse_fixture(c.file);
    EXPECT_EQ(m.vision.model_type, c.arch);
    EXPECT_EQ(m.vision.hidden, c.vit_hidden);
    EXPECT_EQ(m.vision.intermediate, 4096);
    EXPECT_EQ(m.vision.layers, 24);
    EXPECT_EQ(m.vision.heads, c.vit_heads);
    EXPECT_EQ(m.vision.head_dim, c.vit_head_dim);
    EXPECT_EQ(m.vision.image_size, 448);
    EXPECT_EQ(m.vision.patch_size, 14);
    EXPECT_EQ(m.vision.norm_eps, c.arch == std::string("aimv2") ? 1e-5 : 1e-6);
    EXPECT_EQ(m.vision.qkv_bias, c.arch == std::string("intern_vit_6b"));
    EXPECT_EQ(m.vision.hidden * 4, c.mlp1_in);
    EXPECT_EQ(m.llm.hidden, c.llm_hidden);
    EXPECT_EQ(m.llm.layers, 28);
    EXPECT_EQ(m.llm.heads, c.heads);
    EXPECT_EQ(m.llm.kv_heads, c.kv_heads);
    EXPECT_EQ(m.llm.head_dim, 128);
    EXPECT_EQ(m.llm.intermediate, c.inter);
    EXPECT_EQ(m.llm.vocab, c.vocab);
    EXPECT_EQ(m.llm.rms_norm_eps, 1e-6);
    EXPECT_EQ(m.llm.rope_theta, 1e6);
    EXPECT_EQ(m.llm.max_position_embeddings, 32768);
    EXPECT_EQ(m.llm.tie_word_embeddings, c.tied);
    EXPECT_EQ(m.llm.eos_token_id, 151645);
    // Top level as SAIL-VL-1d6-8B's config.json (docs/MODEL.md §2).
    EXPECT_EQ(m.downsample_ratio, 0.5);
    EXPECT_EQ(m.force_image_size, 448);
    EXPECT_EQ(m.max_dynamic_patch, 12);
    EXPECT_TRUE(m.use_thumbnail);
    EXPECT_EQ(m.ps_version, "v2");
    EXPECT_EQ(m.select_layer, -1);
    EXPECT_EQ(m.template_name, "sailvl-chat");
    EXPECT_EQ(m.num_image_token, 256);  // (448/14)^2 * 0.5^2
    EXPECT_EQ(m.describe().rfind(c.describe_prefix, 0), 0u) << m.describe();
  }
}

TEST(Config, ParsesTinyPresets) {
  const ModelConfig a = parse_fixture("tiny-aimv2.json");
  EXPECT_EQ(a.vision.model_type, "aimv2");
  EXPECT_EQ(a.vision.hidden, 256);
  EXPECT_EQ(a.vision.head_dim, 128);
  EXPECT_EQ(a.llm.layers, 3);
  EXPECT_EQ(a.llm.kv_heads, 1);
  EXPECT_FALSE(a.llm.tie_word_embeddings);
  const ModelConfig i = parse_fixture("tiny-internvit.json");
  EXPECT_EQ(i.vision.model_type, "intern_vit_6b");
  EXPECT_EQ(i.vision.head_dim, 64);
  EXPECT_TRUE(i.llm.tie_word_embeddings);
  EXPECT_EQ(i.num_image_token, 256);
  EXPECT_EQ(i.describe().rfind("custom", 0), 0u) << i.describe();
}

// Only the model types: everything else takes the Python class defaults.
TEST(Config, MissingKeysTakeClassDefaults) {
  const ModelConfig m = parse_config(
      R"({"vision_config":{"model_type":"intern_vit_6b","norm_type":"layer_norm","qk_normalization":false},
          "llm_config":{"model_type":"qwen2"}})",
      "config.json");
  // InternVLChatConfig / docs/MODEL.md §2
  EXPECT_EQ(m.select_layer, -4);
  EXPECT_EQ(m.ps_version, "v1");
  EXPECT_EQ(m.max_dynamic_patch, 6);
  EXPECT_EQ(m.min_dynamic_patch, 1);
  EXPECT_FALSE(m.use_thumbnail);
  EXPECT_FALSE(m.dynamic_image_size);
  EXPECT_EQ(m.downsample_ratio, 0.5);
  // InternVisionConfig defaults (InternViT-6B): hidden 3200, 25 heads, 48 layers, image 224
  EXPECT_EQ(m.vision.hidden, 3200);
  EXPECT_EQ(m.vision.heads, 25);
  EXPECT_EQ(m.vision.layers, 48);
  EXPECT_EQ(m.vision.intermediate, 12800);
  EXPECT_EQ(m.vision.image_size, 224);
  EXPECT_FALSE(m.vision.qkv_bias);
  EXPECT_EQ(m.force_image_size, 224);  // None -> the vision tower's image size
  EXPECT_EQ(m.num_image_token, 64);    // (224/14)^2 / 4
  // Qwen2Config defaults
  EXPECT_EQ(m.llm.vocab, 151936);
  EXPECT_EQ(m.llm.hidden, 4096);
  EXPECT_EQ(m.llm.intermediate, 22016);
  EXPECT_EQ(m.llm.layers, 32);
  EXPECT_EQ(m.llm.heads, 32);
  EXPECT_EQ(m.llm.kv_heads, 32);  // None -> num_attention_heads
  EXPECT_EQ(m.llm.rope_theta, 10000.0);
  EXPECT_EQ(m.llm.rms_norm_eps, 1e-6);
  EXPECT_FALSE(m.llm.tie_word_embeddings);

  const ModelConfig a = parse_config(R"({"vision_config":{"model_type":"aimv2"},"llm_config":{}})", "config.json");
  // AIMv2Config defaults
  EXPECT_EQ(a.vision.hidden, 1024);
  EXPECT_EQ(a.vision.intermediate, 2816);
  EXPECT_EQ(a.vision.heads, 8);
  EXPECT_EQ(a.vision.layers, 24);
  EXPECT_EQ(a.vision.norm_eps, 1e-5);
}

// The text of the 1d6-8B fixture with one edit; parsing must fail naming `needle`.
static ::testing::AssertionResult rejects_edit(const std::string& from, const std::string& to,
                                               const std::string& needle) {
  std::string text = test::read_file(test::data_path("configs/sailvl-1d6-8b.json"));
  const size_t at = text.find(from);
  if (at == std::string::npos) return ::testing::AssertionFailure() << "fixture lacks " << from;
  text.replace(at, from.size(), to);
  try {
    parse_config(text, "config.json");
  } catch (const Error& e) {
    const std::string m = e.what();
    if (e.kind() != ErrorKind::BadModel) return ::testing::AssertionFailure() << "wrong kind: " << m;
    if (m.find(needle) == std::string::npos)
      return ::testing::AssertionFailure() << "lacks \"" << needle << "\": " << m;
    return ::testing::AssertionSuccess() << m;
  }
  return ::testing::AssertionFailure() << "accepted " << to;
}

TEST(Config, RejectsInvalidValues) {
  EXPECT_TRUE(rejects_edit("\"num_attention_heads\": 28", "\"num_attention_heads\": 27",
                           "config.json.llm_config: hidden_size 3584 is not divisible by num_attention_heads 27"));
  EXPECT_TRUE(rejects_edit("\"num_key_value_heads\": 4", "\"num_key_value_heads\": 3",
                           "num_attention_heads 28 is not divisible by num_key_value_heads 3"));
  EXPECT_TRUE(rejects_edit("\"num_attention_heads\": 12", "\"num_attention_heads\": 7",
                           "config.json.vision_config: hidden_size 1536 is not divisible by num_attention_heads 7"));
  EXPECT_TRUE(rejects_edit("\"num_hidden_layers\": 28", "\"num_hidden_layers\": 0",
                           "config.json.llm_config.num_hidden_layers = 0 is out of range"));
  EXPECT_TRUE(rejects_edit("\"hidden_size\": 3584", "\"hidden_size\": -3584", "hidden_size = -3584 is out of range"));
  EXPECT_TRUE(rejects_edit("\"hidden_size\": 3584", "\"hidden_size\": 3584.5", "hidden_size must be an integer"));
  EXPECT_TRUE(rejects_edit("\"hidden_size\": 3584", "\"hidden_size\": 18446744073709551615",
                           "hidden_size = 18446744073709551615 is out of range"));
  EXPECT_TRUE(
      rejects_edit("\"rms_norm_eps\": 1e-06", "\"rms_norm_eps\": 0", "rms_norm_eps = 0 must be finite and > 0"));
  EXPECT_TRUE(rejects_edit("\"rope_theta\": 1000000.0", "\"rope_theta\": -1.0", "rope_theta = -1.0 must be finite"));
  EXPECT_TRUE(rejects_edit("\"eos_token_id\": 151645", "\"eos_token_id\": 152064",
                           "eos_token_id = 152064 is not below vocab_size 152064"));
  EXPECT_TRUE(rejects_edit("\"model_type\": \"aimv2\"", "\"model_type\": \"siglip\"",
                           "\"siglip\" is not a supported vision tower"));
  EXPECT_TRUE(rejects_edit("\"ps_version\": \"v2\"", "\"ps_version\": \"v3\"", "ps_version = \"v3\""));
  EXPECT_TRUE(rejects_edit("\"select_layer\": -1", "\"select_layer\": -26",
                           "select_layer = -26 is outside the 25 hidden states"));
  EXPECT_TRUE(
      rejects_edit("\"patch_size\": 14", "\"patch_size\": 15", "image_size 448 is not divisible by patch_size 15"));
  EXPECT_TRUE(rejects_edit("\"downsample_ratio\": 0.5", "\"downsample_ratio\": 0.3",
                           "downsample_ratio 0.3 does not evenly divide"));
  EXPECT_TRUE(rejects_edit("\"use_thumbnail\": true", "\"use_thumbnail\": 1", "use_thumbnail must be true or false"));
  EXPECT_TRUE(rejects_edit("\"llm_config\"", "\"llm_config_x\"", "config.json.llm_config is missing"));
  EXPECT_TRUE(rejects_edit("\"use_thumbnail\": true", "\"use_thumbnail\": true, \"use_thumbnail\": false",
                           "duplicate JSON key \"use_thumbnail\""));
  EXPECT_TRUE(rejects_edit("{", "[", "invalid JSON"));
}

TEST(Config, LoadConfigNamesTheFile) {
  try {
    load_config((test::temp_dir("cfg") / "missing").string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadModel);
    EXPECT_NE(std::string(e.what()).find("missing/config.json: cannot open"), std::string::npos) << e.what();
  }
}
