// `sailvl make-model` and `sailvl inspect`: the checkpoint PRNG against hand-computed values, preset
// configs equal to the committed fixtures, generated tiny checkpoints load and bind every tensor
// with its real name and shape, sharding, tying, seeds, and the embedded tokenizer files.
#include <set>

#include <nlohmann/json.hpp>

#include "checkpoint/embedded_tokenizer.h"
#include "checkpoint/presets.h"
#include "checkpoint/prng.h"
#include "loader/weights.h"
#include "model/config.h"
#include "tests/testutil.h"

using namespace sailvl;
namespace fs = std::filesystem;

// Expected values computed with an independent scalar Python snippet written from
// docs/CHECKPOINTS.md (Python ints with & (2**64-1) for mix/fnv; struct.pack('<f') for f32 RNE;
// (u + 0x7fff + ((u >> 16) & 1)) >> 16 for bf16 RNE), not from this code:
//   mix(1) = 0x5692161d100b05e5, fnv1a64(b"a") = 0xaf63dc4c8601ec8c (published FNV test vector),
//   base("mlp1.0.weight", 0) = 0xace16736617109c9
//   (name, seed, offset, scale, i) -> 24-bit draw, bf16 bits
TEST(CheckpointPrng, MatchesHandComputedValues) {
  EXPECT_EQ(prng::mix(0), 0u);
  EXPECT_EQ(prng::mix(1), 0x5692161d100b05e5ull);
  EXPECT_EQ(prng::fnv1a64(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(prng::fnv1a64("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(prng::base("mlp1.0.weight", 0), 0xace16736617109c9ull);
  EXPECT_EQ(prng::base("language_model.model.embed_tokens.weight", 7), 0xf246a6cc02558a47ull);

  struct Case {
    const char* name;
    uint64_t seed;
    Shape shape;
    uint64_t i;
    uint32_t draw24;
    uint16_t bf16;
  };
  const Case cases[] = {
      {"mlp1.0.weight", 0, {512}, 0, 7340846, 0x3f7d},
      {"mlp1.0.weight", 0, {512}, 1, 4033925, 0x3f73},
      {"mlp1.0.weight", 0, {512}, 1000, 6392851, 0x3f7a},
      {"language_model.model.embed_tokens.weight", 0, {151936, 256}, 0, 12294585, 0x3d3f},
      {"language_model.model.embed_tokens.weight", 0, {151936, 256}, 1, 13623999, 0x3d80},
      {"language_model.model.embed_tokens.weight", 0, {151936, 256}, 1000, 1974528, 0xbd9d},
      {"language_model.model.embed_tokens.weight", 7, {151936, 256}, 0, 7908709, 0xbbbb},
      {"language_model.model.embed_tokens.weight", 7, {151936, 256}, 1000, 5930795, 0xbcf0},
      {"vision_model.encoder.layers.0.ls1", 0, {128}, 0, 15676905, 0x3f16},
      {"vision_model.encoder.layers.0.ls1", 0, {128}, 1000, 2816333, 0x3ede},
      {"mlp1.1.weight", 0, {256, 512}, 0, 1501433, 0xbd15},  // scale f32(1/sqrt(512))
      {"mlp1.1.weight", 0, {256, 512}, 1000, 9078791, 0x3b6e},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.name) + " i=" + std::to_string(c.i));
    const uint64_t b = prng::base(c.name, c.seed);
    EXPECT_EQ(prng::uniform_pm1(b, c.i), 2.0 * (c.draw24 / 16777216.0) - 1.0);
    uint16_t got = 0;
    checkpoint::generate_bf16(c.name, c.shape, c.seed, c.i, 1, &got);
    EXPECT_EQ(got, c.bf16);
  }
}

TEST(CheckpointPrng, InitRulesFollowTheTable) {
  auto is = [](const char* n, Shape s, float off, float scale) {
    const prng::Init i = prng::init_for(n, s);
    return i.offset == off && i.scale == scale;
  };
  EXPECT_TRUE(is("language_model.lm_head.weight", {10, 4}, 0, 0.1f));
  EXPECT_TRUE(is("language_model.model.layers.0.input_layernorm.weight", {4}, 1, 0.1f));
  EXPECT_TRUE(is("vision_model.trunk.post_trunk_norm.weight", {4}, 1, 0.1f));
  EXPECT_TRUE(is("mlp1.0.weight", {4}, 1, 0.1f));
  EXPECT_TRUE(is("mlp1.0.bias", {4}, 0, 0.02f));
  EXPECT_TRUE(is("vision_model.encoder.layers.1.norm2.bias", {4}, 0, 0.02f));
  EXPECT_TRUE(is("vision_model.encoder.layers.1.ls2", {4}, 0.5f, 0.1f));
  EXPECT_TRUE(is("vision_model.embeddings.class_embedding", {1, 1, 4}, 0, 0.1f));
  EXPECT_TRUE(is("vision_model.preprocessor.pos_embed", {1, 16, 4}, 0, 0.1f));
  EXPECT_TRUE(is("vision_model.embeddings.patch_embedding.weight", {4, 3, 14, 14}, 0,
                 static_cast<float>(1 / std::sqrt(588.0))));
  EXPECT_TRUE(is("language_model.model.layers.0.mlp.down_proj.weight", {256, 512}, 0,
                 static_cast<float>(1 / std::sqrt(512.0))));
}

// The tiny presets' config.json equals the committed fixtures (as parsed JSON), and so do the
// full-size ones (tests/data/configs/sailvl-*.json are the benchmark configs of docs/MODEL.md §1-§2).
TEST(MakeModel, PresetConfigsEqualFixtures) {
  for (const std::string p :
       {"tiny-internvit", "tiny-aimv2", "sailvl-2b", "sailvl-8b", "sailvl-1d5-2b", "sailvl-1d5-8b", "sailvl-1d6-8b"}) {
    SCOPED_TRACE(p);
    const auto want = nlohmann::json::parse(test::read_file(test::data_path("configs/" + p + ".json")));
    const auto got = nlohmann::json::parse(checkpoint::preset_config(p).dump());
    EXPECT_EQ(got, want) << got.dump(2);
  }
  EXPECT_THROW(checkpoint::preset_config("tiny-nope"), Error);
}

// Bind every tensor of the canonical list through the scoped binder, with its shape and dtype;
// and nothing else is stored.
static void expect_all_bound(const fs::path& dir, bool stored_head) {
  const model::ModelConfig cfg = model::load_config(dir.string());
  const loader::WeightMap w = loader::WeightMap::open(dir.string());
  const auto specs = model::checkpoint_tensors(cfg, stored_head);
  std::set<std::string> expected;
  for (const auto& s : specs) {
    const size_t dot = s.name.find('.');
    const Tensor t = w.scope(s.name.substr(0, dot)).require(s.name.substr(dot + 1), s.shape, DType::BF16);
    EXPECT_EQ(t.shape(), s.shape) << s.name;
    expected.insert(s.name);
  }
  const auto names = w.names();
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), expected);
}

TEST(MakeModel, TinyInternVitLoadsAndBindsEveryTensor) {
  const fs::path dir = test::tiny_model("tiny-internvit");
  EXPECT_TRUE(fs::exists(dir / "model.safetensors"));
  EXPECT_FALSE(fs::exists(dir / "model.safetensors.index.json"));
  EXPECT_EQ(nlohmann::json::parse(test::read_file(dir / "config.json")),
            nlohmann::json::parse(test::read_file(test::data_path("configs/tiny-internvit.json"))));
  expect_all_bound(dir, /*stored_head=*/false);
  const loader::WeightMap w = loader::WeightMap::open(dir.string());
  EXPECT_FALSE(w.contains("language_model.lm_head.weight"));  // tied
  const size_t per_layer = 14;                                // ls1, ls2, qkv w+b, proj w+b, fc1/fc2 w+b, norm1/2 w+b
  EXPECT_EQ(w.names().size(), 4 + 2 * per_layer + 1 + 3 * 12 + 1 + 6);
  // Values: the PRNG's, element by element (cases of CheckpointPrng.MatchesHandComputedValues).
  const Tensor emb = w.get("language_model.model.embed_tokens.weight");
  EXPECT_EQ(emb.data<uint16_t>()[0], 0x3d3f);
  EXPECT_EQ(emb.data<uint16_t>()[1000], 0xbd9d);
  EXPECT_EQ(w.get("mlp1.0.weight").data<uint16_t>()[1], 0x3f73);
  EXPECT_EQ(w.get("vision_model.encoder.layers.0.ls1").data<uint16_t>()[0], 0x3f16);
}

TEST(MakeModel, TinyAimv2IsShardedWithALayerSplitAcrossShards) {
  const fs::path dir = test::tiny_model("tiny-aimv2");
  EXPECT_EQ(nlohmann::json::parse(test::read_file(dir / "config.json")),
            nlohmann::json::parse(test::read_file(test::data_path("configs/tiny-aimv2.json"))));
  expect_all_bound(dir, /*stored_head=*/true);
  const auto index = nlohmann::json::parse(test::read_file(dir / "model.safetensors.index.json"));
  std::map<std::string, std::set<std::string>> layer_shards;  // "language_model.model.layers.0" -> shards
  std::set<std::string> shards;
  for (const auto& [name, shard] : index["weight_map"].items()) {
    shards.insert(shard.get<std::string>());
    const size_t p = name.find(".layers.");
    if (p != std::string::npos) layer_shards[name.substr(0, name.find('.', p + 8))].insert(shard.get<std::string>());
  }
  EXPECT_EQ(shards, std::set<std::string>({"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                                           "model-00003-of-00003.safetensors"}));
  int split = 0;
  for (const auto& [layer, s] : layer_shards) split += s.size() > 1;
  EXPECT_GE(split, 1) << "no layer is split across shards";
  const loader::WeightMap w = loader::WeightMap::open(dir.string());
  EXPECT_TRUE(w.contains("language_model.lm_head.weight"));  // untied
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), w.total_bytes());
  // Tokenizer files are byte-identical to the committed ones.
  for (const auto& f : checkpoint::embedded_tokenizer_files()) {
    SCOPED_TRACE(f.name);
    const std::string want = test::read_file(test::data_path("sailvl-tokenizer/" + f.name));
    EXPECT_GT(want.size(), 0u);
    EXPECT_TRUE(test::read_file(dir / f.name) == want);
  }
}

TEST(MakeModel, TieUntieShardsAndSeedFlags) {
  const fs::path dir = test::tiny_model("tiny-aimv2", "--tie --shards 2 --seed 7", "-tie-s2-seed7");
  const model::ModelConfig cfg = model::load_config(dir.string());
  EXPECT_TRUE(cfg.llm.tie_word_embeddings);
  expect_all_bound(dir, /*stored_head=*/false);
  const loader::WeightMap w = loader::WeightMap::open(dir.string());
  EXPECT_FALSE(w.contains("language_model.lm_head.weight"));
  EXPECT_EQ(w.shards().size(), 2u);
  const Tensor emb = w.get("language_model.model.embed_tokens.weight");
  EXPECT_EQ(emb.data<uint16_t>()[0], 0xbbbb);  // seed 7 (hand-computed above)
  EXPECT_EQ(emb.data<uint16_t>()[1000], 0xbcf0);

  std::string err;
  const std::string bin = test::sailvl_binary();
  const fs::path out = test::temp_dir("mm");
  EXPECT_EQ(test::run_command(bin + " make-model --quiet --preset tiny-aimv2 --tie --untie --out " + out.string(),
                              nullptr, &err),
            2)
      << err;
  EXPECT_EQ(test::run_command(bin + " make-model --quiet --preset nope --out " + out.string(), nullptr, &err), 2)
      << err;
  EXPECT_NE(err.find("unknown preset \"nope\""), std::string::npos) << err;
}

TEST(Inspect, ReportsVariantCountsAndShards) {
  const fs::path dir = test::tiny_model("tiny-aimv2");
  std::string out, err;
  ASSERT_EQ(test::run_command(test::sailvl_binary() + " inspect --json -m " + dir.string(), &out, &err), 0) << err;
  const auto j = nlohmann::json::parse(out);
  const loader::WeightMap w = loader::WeightMap::open(dir.string());
  int64_t total = 0;
  for (const auto& n : w.names()) total += shape_numel(w.info(n).shape);
  EXPECT_EQ(j["parameters"]["total"].get<int64_t>(), total);
  EXPECT_EQ(j["parameters"]["vision"].get<int64_t>() + j["parameters"]["projector"].get<int64_t>() +
                j["parameters"]["llm"].get<int64_t>(),
            total);
  // mlp1: LN(1024) w+b, 1024->256 w+b, 256->256 w+b
  EXPECT_EQ(j["parameters"]["projector"].get<int64_t>(), 2 * 1024 + 1024 * 256 + 256 + 256 * 256 + 256);
  EXPECT_EQ(j["parameters"]["lm_head"].get<int64_t>(), 151936 * 256);
  EXPECT_EQ(j["shards"].size(), 3u);
  EXPECT_EQ(j["vision_arch"], "AIMv2");
  // KV per token in BF16: 2 (K, V) * 3 layers * 1 KV head * 128 * 2 bytes
  EXPECT_EQ(j["memory"]["kv_bytes_per_token_bf16"].get<uint64_t>(), 2u * 3 * 1 * 128 * 2);

  ASSERT_EQ(test::run_command(test::sailvl_binary() + " inspect -m " + dir.string(), &out, &err), 0) << err;
  EXPECT_NE(out.find("parameters"), std::string::npos);
  EXPECT_NE(out.find("model-00002-of-00003.safetensors"), std::string::npos);
}

// --sizes writes nothing and prints BF16 = 2 bytes per parameter, then the four quantised
// storages (their exactness against real files: test_quant_checkpoint, SizesPredicted...).
TEST(MakeModel, SizesFlagPrintsEveryStorage) {
  const fs::path dir = test::temp_dir("sizes-nothing-written");
  std::string out, err;
  ASSERT_EQ(test::run_command(test::sailvl_binary() + " make-model --preset sailvl-1d6-8b --sizes -o " + dir.string(),
                              &out, &err),
            0)
      << err;
  EXPECT_TRUE(fs::is_empty(dir));
  const auto cfg = model::parse_config(checkpoint::preset_config("sailvl-1d6-8b").dump(), "p");
  int64_t params = 0;
  for (const auto& t : model::checkpoint_tensors(cfg, checkpoint::default_stored_head("sailvl-1d6-8b")))
    params += shape_numel(t.shape);
  const size_t bf16 = out.find("  bf16 ");
  ASSERT_NE(bf16, std::string::npos) << out;
  const std::string line = out.substr(bf16, out.find('\n', bf16) - bf16);
  EXPECT_NE(line.find(" " + std::to_string(2 * params) + " bytes"), std::string::npos) << line;
  for (const char* s : {"q8 ", "q4 ", "q8 --vision", "q4 --vision"}) EXPECT_NE(out.find(s), std::string::npos) << s;

  ASSERT_EQ(test::run_command(test::sailvl_binary() + " inspect --json -m " + test::tiny_model("tiny-aimv2").string(),
                              &out, &err),
            0);
  const auto j = nlohmann::json::parse(out);
  EXPECT_GT(j["quantize_bytes"]["q8"]["llm"].get<uint64_t>(), j["quantize_bytes"]["q4"]["llm"].get<uint64_t>());
  EXPECT_GT(j["quantize_bytes"]["q4"]["llm"].get<uint64_t>(), j["quantize_bytes"]["q4"]["with_vision"].get<uint64_t>());
}

TEST(Inspect, BadDirectoryIsOneLineErrorWithExitCode3) {
  const fs::path dir = test::temp_dir("inspect-bad");
  test::write_file(dir / "config.json", "{\"vision_config\": 1}");
  std::string out, err;
  EXPECT_EQ(test::run_command(test::sailvl_binary() + " inspect -m " + dir.string(), &out, &err), 3);
  EXPECT_NE(err.find("vision_config must be a JSON object"), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_EQ(test::run_command(test::sailvl_binary() + " inspect -m " + (dir / "nope").string(), &out, &err), 3);
}

// Full-size presets, counted from the canonical tensor list (nothing is written). The LLM counts
// must equal the published ones of Qwen2.5 (the safetensors parameter counts on the Hugging Face
// pages of Qwen2.5-1.5B-Instruct and Qwen2.5-7B-Instruct: 1,543,714,304 tied and 7,615,616,512);
// the towers are checked against the published sizes (InternViT-300M, AIMv2-Huge ~0.68B).
TEST(MakeModel, FullSizePresetParameterCounts) {
  struct Want {
    const char* preset;
    int64_t llm;
    int64_t vision_lo, vision_hi;
  };
  const Want wants[] = {
      {"sailvl-2b", 1543714304 + 151936LL * 1536, 300'000'000, 310'000'000},  // lm_head stored
      {"sailvl-8b", 7615616512, 300'000'000, 310'000'000},
      {"sailvl-1d5-2b", 1543714304, 670'000'000, 690'000'000},
      {"sailvl-1d5-8b", 7615616512, 300'000'000, 310'000'000},
      {"sailvl-1d6-8b", 7615616512, 670'000'000, 690'000'000},
  };
  for (const Want& w : wants) {
    SCOPED_TRACE(w.preset);
    const auto cfg = model::parse_config(checkpoint::preset_config(w.preset).dump(), w.preset);
    int64_t llm = 0, vision = 0, proj = 0;
    for (const auto& t : model::checkpoint_tensors(cfg, checkpoint::default_stored_head(w.preset))) {
      const int64_t n = shape_numel(t.shape);
      if (t.name.rfind("language_model.", 0) == 0)
        llm += n;
      else if (t.name.rfind("vision_model.", 0) == 0)
        vision += n;
      else
        proj += n;
    }
    EXPECT_EQ(llm, w.llm);
    EXPECT_GE(vision, w.vision_lo);
    EXPECT_LE(vision, w.vision_hi);
    const int64_t c4 = 4 * cfg.vision.hidden, D = cfg.llm.hidden;
    EXPECT_EQ(proj, 2 * c4 + c4 * D + D + D * D + D);  // docs/MODEL.md §6: LN(4C), 4C->D, D->D
  }
}
