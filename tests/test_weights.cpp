// WeightMap / WeightScope: sharded-index rules (docs/VALIDATION.md), the shape/dtype binder, and that
// opening a checkpoint maps it without reading it into memory.
#include <unistd.h>
#include <fstream>

#include "loader/weights.h"
#include "model/family.h"
#include "tests/testutil.h"

using namespace sailvl;
using namespace sailvl::loader;
namespace fs = std::filesystem;

namespace {

// A shard holding F32 tensors of the given names, each [2].
void write_shard(const fs::path& p, const std::vector<std::string>& names) {
  std::vector<std::pair<std::string, Tensor>> ts;
  for (const auto& n : names) ts.push_back({n, Tensor::from_floats({1, 2}, {2}, DType::F32)});
  write_safetensors(p.string(), ts);
}

void write_index(const fs::path& dir, const std::string& weight_map_json) {
  test::write_file(dir / "model.safetensors.index.json",
                   R"({"metadata":{"total_size":0},"weight_map":)" + weight_map_json + "}");
}

// WeightMap::open(dir) must fail with BadModel and a message containing every needle.
::testing::AssertionResult open_fails(const fs::path& dir, const std::vector<std::string>& needles) {
  try {
    WeightMap::open(dir.string());
  } catch (const Error& e) {
    const std::string m = e.what();
    if (e.kind() != ErrorKind::BadModel) return ::testing::AssertionFailure() << "wrong kind: " << m;
    for (const auto& n : needles)
      if (m.find(n) == std::string::npos)
        return ::testing::AssertionFailure() << "message lacks \"" << n << "\": " << m;
    return ::testing::AssertionSuccess() << m;
  }
  return ::testing::AssertionFailure() << "opened a bad checkpoint";
}

}  // namespace

TEST(WeightIndex, OpensAValidShardedCheckpoint) {
  fs::path d = test::temp_dir("idx");
  write_shard(d / "s1.safetensors", {"a.weight", "b.weight"});
  write_shard(d / "s2.safetensors", {"c.weight"});
  write_index(d, R"({"a.weight":"s1.safetensors","b.weight":"s1.safetensors","c.weight":"s2.safetensors"})");
  WeightMap w = WeightMap::open(d.string());
  EXPECT_EQ(w.names(), std::vector<std::string>({"a.weight", "b.weight", "c.weight"}));
  EXPECT_EQ(w.shards().size(), 2u);
  EXPECT_EQ(w.get("c.weight").to_floats(), std::vector<float>({1, 2}));
  EXPECT_EQ(w.total_bytes(), 24u);
}

TEST(WeightIndex, RejectsPathTraversalInShardName) {
  fs::path d = test::temp_dir("idx");
  write_shard(d / "s1.safetensors", {"a.weight"});
  write_index(d, R"({"a.weight":"../s1.safetensors"})");
  EXPECT_TRUE(open_fails(d, {"tensor \"a.weight\" maps to shard \"../s1.safetensors\"", "not a plain file name"}));
  write_index(d, R"({"a.weight":"/etc/passwd"})");
  EXPECT_TRUE(open_fails(d, {"\"/etc/passwd\"", "not a plain file name"}));
  write_index(d, R"({"a.weight":"sub\\s1.safetensors"})");
  EXPECT_TRUE(open_fails(d, {"not a plain file name"}));
}

TEST(WeightIndex, ListsAllMissingShards) {
  fs::path d = test::temp_dir("idx");
  write_shard(d / "s1.safetensors", {"a.weight"});
  write_index(d, R"({"a.weight":"s1.safetensors","b.weight":"s2.safetensors","c.weight":"s3.safetensors"})");
  EXPECT_TRUE(open_fails(d, {"2 of 3 shards missing", "\"s2.safetensors\", \"s3.safetensors\""}));
}

TEST(WeightIndex, RejectsTensorInWrongShard) {
  fs::path d = test::temp_dir("idx");
  write_shard(d / "s1.safetensors", {"a.weight", "b.weight"});
  write_shard(d / "s2.safetensors", {"c.weight"});
  write_index(d, R"({"a.weight":"s1.safetensors","b.weight":"s2.safetensors","c.weight":"s2.safetensors"})");
  EXPECT_TRUE(open_fails(
      d, {"s1.safetensors", "tensor \"b.weight\" is in the wrong shard: the index says \"s2.safetensors\""}));
}

TEST(WeightIndex, RejectsTensorInTwoShards) {
  fs::path d = test::temp_dir("idx");
  write_shard(d / "s1.safetensors", {"a.weight", "b.weight"});
  write_shard(d / "s2.safetensors", {"b.weight"});
  write_index(d, R"({"a.weight":"s1.safetensors","b.weight":"s2.safetensors"})");
  EXPECT_TRUE(open_fails(d, {"tensor \"b.weight\" is in two shards: \"s1.safetensors\" and \"s2.safetensors\""}));
}

TEST(WeightIndex, RejectsIndexedTensorAbsentFromItsShard) {
  fs::path d = test::temp_dir("idx");
  write_shard(d / "s1.safetensors", {"a.weight"});
  write_index(d, R"({"a.weight":"s1.safetensors","ghost.weight":"s1.safetensors"})");
  EXPECT_TRUE(open_fails(d, {"tensor \"ghost.weight\" is not in shard \"s1.safetensors\""}));
}

TEST(WeightIndex, RejectsShardTensorMissingFromIndex) {
  fs::path d = test::temp_dir("idx");
  write_shard(d / "s1.safetensors", {"a.weight", "extra.weight"});
  write_index(d, R"({"a.weight":"s1.safetensors"})");
  EXPECT_TRUE(open_fails(d, {"tensor \"extra.weight\" is not listed in"}));
}

TEST(WeightIndex, RejectsDuplicateKeysAndBadShapeOfIndex) {
  fs::path d = test::temp_dir("idx");
  write_shard(d / "s1.safetensors", {"a.weight"});
  write_index(d, R"({"a.weight":"s1.safetensors","a.weight":"s1.safetensors"})");
  EXPECT_TRUE(open_fails(d, {"model.safetensors.index.json", "duplicate JSON key \"a.weight\""}));
  test::write_file(d / "model.safetensors.index.json", R"({"metadata":{}})");
  EXPECT_TRUE(open_fails(d, {"\"weight_map\" object"}));
}

TEST(WeightIndex, RejectsDirectoryWithoutWeights) {
  fs::path d = test::temp_dir("idx");
  EXPECT_TRUE(open_fails(d, {"no model.safetensors or model.safetensors.index.json"}));
  EXPECT_TRUE(open_fails(d / "nope", {"not a directory"}));
}

TEST(WeightScope, BindsByPrefixWithShapeAndDtypeChecks) {
  fs::path d = test::temp_dir("scope");
  write_safetensors((d / "model.safetensors").string(),
                    {{"language_model.model.layers.3.self_attn.q_proj.weight", Tensor::zeros({4, 2}, DType::BF16)},
                     {"language_model.model.layers.3.self_attn.q_proj.bias", Tensor::zeros({4}, DType::BF16)},
                     {"ids", Tensor::zeros({3}, DType::I32)}});
  WeightMap w = WeightMap::open(d.string());
  WeightScope L = w.scope("language_model.model.layers.3");
  EXPECT_EQ(L.full_name("self_attn.q_proj.weight"), "language_model.model.layers.3.self_attn.q_proj.weight");
  EXPECT_EQ(L.scope("self_attn").full_name("q_proj.bias"), "language_model.model.layers.3.self_attn.q_proj.bias");
  Tensor q = L.require("self_attn.q_proj.weight", {4, 2});
  EXPECT_EQ(q.shape(), Shape({4, 2}));
  EXPECT_EQ(q.dtype(), DType::BF16);
  EXPECT_NO_THROW(L.require("self_attn.q_proj.bias", {4}, DType::BF16));

  auto msg = [](auto&& fn) {
    try {
      fn();
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::BadModel);
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_NE(
      msg([&] {
        L.require("self_attn.q_proj.weight", {2, 4});
      }).find("tensor \"language_model.model.layers.3.self_attn.q_proj.weight\" has shape [4, 2], expected [2, 4]"),
      std::string::npos);
  EXPECT_NE(msg([&] {
              L.require("self_attn.k_proj.weight", {4, 2});
            }).find("tensor \"language_model.model.layers.3.self_attn.k_proj.weight\" is missing"),
            std::string::npos);
  EXPECT_NE(msg([&] { L.require("self_attn.q_proj.bias", {4}, DType::F32); }).find("has dtype BF16, expected F32"),
            std::string::npos);
  EXPECT_NE(msg([&] { w.scope("").require("ids", {3}); }).find("expected a floating type"), std::string::npos);

  EXPECT_FALSE(w.scope("language_model").optional("lm_head.weight", {4, 2}).has_value());
  EXPECT_TRUE(L.optional("self_attn.q_proj.weight", {4, 2}).has_value());
  EXPECT_THROW(L.optional("self_attn.q_proj.weight", {4, 3}), Error);  // present but misshapen
}

static size_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  size_t pages = 0, resident = 0;
  f >> pages >> resident;
  return resident * static_cast<size_t>(::sysconf(_SC_PAGESIZE));
}

TEST(WeightMapRss, OpenMapsWithoutReading) {
  const fs::path dir = test::tiny_model("tiny-aimv2");  // ~163 MB in 3 shards
  const size_t before = rss_bytes();
  WeightMap w = WeightMap::open(dir.string());
  std::vector<Tensor> views;
  for (const auto& n : w.names()) views.push_back(w.get(n));  // views: nothing is read
  const size_t after = rss_bytes();
  const uint64_t ckpt = w.total_bytes();
  ASSERT_GT(ckpt, 150'000'000u);
  const size_t grew = after > before ? after - before : 0;
  EXPECT_LT(grew, ckpt / 20) << "RSS grew by " << grew << " bytes for a " << ckpt << "-byte checkpoint";
  for (const auto& t : views) EXPECT_NE(dynamic_cast<MappedFile*>(t.storage().get()), nullptr);
}

TEST(WeightMapConfig, LayerCountMustMatchConfig) {
  const fs::path dir = test::tiny_model("tiny-internvit");
  const WeightMap w = WeightMap::open(dir.string());
  model::ModelConfig c = model::load_config(dir.string());
  EXPECT_NO_THROW(model::check_against_config(w, c));
  auto msg = [&](const model::ModelConfig& cc) {
    try {
      model::check_against_config(w, cc);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  model::ModelConfig fewer = c;
  fewer.llm.layers = 2;  // the checkpoint has 3: the third would be silently ignored
  EXPECT_NE(msg(fewer).find("llm_config.num_hidden_layers = 2 but the checkpoint has 3 layers"), std::string::npos)
      << msg(fewer);
  model::ModelConfig more = c;
  more.vision.layers = 3;
  EXPECT_NE(msg(more).find("vision_config.num_hidden_layers = 3 but the checkpoint has 2 layers"), std::string::npos)
      << msg(more);
  model::ModelConfig vocab = c;
  vocab.llm.vocab = 152064;
  EXPECT_NE(msg(vocab).find("[151936, 256] but llm_config.vocab_size is 152064"), std::string::npos) << msg(vocab);
}
