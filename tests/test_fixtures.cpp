// The oracle's fixtures (tools/reference/make_model_goldens.py) are what every correctness test
// compares against, so they get their own checks:
//
//  * Fixtures.MakeModelMatchesOraclePRNG — `sailvl make-model` (C++) and the oracle's numpy PRNG
//    (tools/reference/prng.py) implement docs/CHECKPOINTS.md independently; every tensor of the
//    checkpoint must have the same name, shape, dtype and FNV-1a-64 of its BF16 bytes as
//    tests/data/models/<preset>/weights.json. If they agree, the goldens computed from the oracle's
//    weights apply to the checkpoints the C++ tests load.
//  * Fixtures.*Shapes — every committed model golden parses with our safetensors reader and has
//    the shapes its config implies, so a stale or truncated fixture fails here, not as a confusing
//    numeric mismatch in a model test.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "loader/safetensors.h"
#include "loader/weights.h"
#include "tests/testutil.h"

namespace {

using json = nlohmann::json;
using sailvl::DType;
using sailvl::Shape;
using sailvl::Tensor;
namespace loader = sailvl::loader;
namespace test = sailvl::test;

const char* kPresets[] = {"tiny-internvit", "tiny-aimv2"};
const char* kCases[] = {"a_text", "b_one_image", "c_two_images", "d_second_turn"};
constexpr int64_t kImgContext = 151667;     // <IMG_CONTEXT> (docs/MODEL.md §8)
constexpr int64_t kTokenizerSize = 151674;  // ids >= this are padding rows (docs/MODEL.md §10)

json read_json(const std::string& rel) { return json::parse(test::read_file(test::data_path(rel))); }

// docs/CHECKPOINTS.md fnv1a64, printed as 16 lower-case hex digits like weights.json.
std::string fnv1a64_hex(const uint8_t* p, size_t n) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001B3ull;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

Shape shape_of(const json& j) { return j.get<std::vector<int64_t>>(); }

// The named tensor of a golden file, checked for dtype and shape.
Tensor golden(const loader::SafetensorsFile& f, const std::string& name, DType dtype, const Shape& shape) {
  const loader::TensorInfo* info = f.find(name);
  if (!info) throw std::runtime_error(f.path() + ": no tensor " + name);
  EXPECT_EQ(info->dtype, dtype) << f.path() << " " << name;
  EXPECT_EQ(info->shape, shape) << f.path() << " " << name << " is " << sailvl::shape_str(info->shape) << ", want "
                                << sailvl::shape_str(shape);
  return f.tensor(*info);
}

void expect_finite(const Tensor& t, const std::string& what) {
  const std::vector<float> v = t.to_floats();
  const auto bad = std::count_if(v.begin(), v.end(), [](float x) { return !std::isfinite(x); });
  EXPECT_EQ(bad, 0) << what << " has non-finite values";
}

}  // namespace

TEST(Fixtures, MakeModelMatchesOraclePRNG) {
  for (const char* preset : {"tiny-internvit", "tiny-aimv2", "tiny-internvit-stored-head"}) {
    SCOPED_TRACE(preset);
    const json manifest = read_json(std::string("models/") + preset + "/weights.json");
    ASSERT_EQ(manifest.at("seed").get<int>(), 0);  // tiny_model() uses make-model's default seed
    const auto dir = test::golden_model(preset);
    const loader::WeightMap w = loader::WeightMap::open(dir.string());

    std::set<std::string> want_names;
    int mismatches = 0;
    for (const json& t : manifest.at("tensors")) {
      const std::string name = t.at("name").get<std::string>();
      want_names.insert(name);
      if (!w.contains(name)) {
        ADD_FAILURE() << "make-model did not write " << name;
        continue;
      }
      const loader::TensorInfo& info = w.info(name);
      EXPECT_EQ(info.dtype, DType::BF16) << name;
      EXPECT_EQ(info.shape, shape_of(t.at("shape"))) << name;
      if (info.dtype != DType::BF16 || info.shape != shape_of(t.at("shape"))) continue;
      const Tensor x = w.get(name).contiguous();  // safetensors bytes are little-endian, as is the host
      const std::string got = fnv1a64_hex(static_cast<const uint8_t*>(x.raw_data()), x.nbytes());
      if (got != t.at("fnv1a64").get<std::string>() && ++mismatches <= 10) {
        const std::vector<float> v = x.to_floats();
        ADD_FAILURE() << name << ": FNV-1a-64 " << got << ", oracle " << t.at("fnv1a64").get<std::string>()
                      << " (first values " << v[0] << ", " << (v.size() > 1 ? v[1] : 0.f) << ")";
      }
    }
    EXPECT_EQ(mismatches, 0) << "tensors whose bytes differ from the oracle PRNG";
    for (const std::string& n : w.names())
      EXPECT_TRUE(want_names.count(n)) << "make-model wrote " << n << ", which the oracle does not have";
  }
}

TEST(Fixtures, WeightsManifestMatchesConfig) {
  for (const char* preset : kPresets) {
    SCOPED_TRACE(preset);
    const json cfg = read_json(std::string("configs/") + preset + ".json");
    const json manifest = read_json(std::string("models/") + preset + "/weights.json");
    const json& l = cfg.at("llm_config");
    const int64_t V = l.at("vocab_size"), D = l.at("hidden_size");
    std::map<std::string, Shape> shapes;
    for (const json& t : manifest.at("tensors")) {
      EXPECT_EQ(t.at("dtype"), "BF16");
      EXPECT_EQ(t.at("fnv1a64").get<std::string>().size(), 16u);
      EXPECT_TRUE(shapes.emplace(t.at("name").get<std::string>(), shape_of(t.at("shape"))).second)
          << "duplicate " << t.at("name");
    }
    EXPECT_EQ(static_cast<int64_t>(shapes.size()), manifest.at("num_tensors").get<int64_t>());
    EXPECT_EQ(shapes.at("language_model.model.embed_tokens.weight"), (Shape{V, D}));
    const bool tied = l.at("tie_word_embeddings").get<bool>();
    EXPECT_EQ(shapes.count("language_model.lm_head.weight"), tied ? 0u : 1u);
    const int64_t layers = l.at("num_hidden_layers");
    EXPECT_TRUE(shapes.count("language_model.model.layers." + std::to_string(layers - 1) + ".mlp.down_proj.weight"));
    EXPECT_FALSE(shapes.count("language_model.model.layers." + std::to_string(layers) + ".mlp.down_proj.weight"));
  }
}

TEST(Fixtures, ChatPixelsShapes) {
  const auto f = loader::SafetensorsFile::open(test::data_path("images/chat/a_pixels.safetensors").string());
  const Tensor px = golden(*f, "pixels", DType::BF16, {1, 3, 448, 448});
  expect_finite(px, "a_pixels");
}

TEST(Fixtures, VisionGoldenShapes) {
  for (const char* preset : kPresets) {
    SCOPED_TRACE(preset);
    const json cfg = read_json(std::string("configs/") + preset + ".json");
    const int64_t C = cfg.at("vision_config").at("hidden_size"), D = cfg.at("llm_config").at("hidden_size");
    const int64_t grid =
        cfg.at("force_image_size").get<int64_t>() / cfg.at("vision_config").at("patch_size").get<int64_t>();
    const auto f = loader::SafetensorsFile::open(
        test::data_path(std::string("models/") + preset + "/vision_a.safetensors").string());
    EXPECT_EQ(f->header().tensors.size(), 3u);
    // select_layer -1 features: no CLS for either tower (docs/MODEL.md §4, §5).
    const Tensor feats = golden(*f, "features", DType::F32, {1, grid * grid, C});
    const Tensor ps = golden(*f, "pixel_shuffle", DType::F32, {1, grid * grid / 4, 4 * C});
    const Tensor proj = golden(*f, "projector", DType::F32, {1, grid * grid / 4, D});
    expect_finite(feats, "features");
    expect_finite(proj, "projector");
    // Pixel shuffle is a permutation (docs/MODEL.md §6): spot-check the index formula on the goldens,
    // so the fixture and the spec cannot drift apart.
    const std::vector<float> a = feats.to_floats(), b = ps.to_floats();
    for (int64_t i : {0, 5, 15})
      for (int64_t j : {0, 7, 15})
        for (int64_t dy : {0, 1})
          for (int64_t dx : {0, 1})
            for (int64_t c : {int64_t{0}, C - 1}) {
              const float want = a[((2 * i + dy) * grid + 2 * j + dx) * C + c];
              const float got = b[(i * (grid / 2) + j) * 4 * C + (2 * dy + dx) * C + c];
              ASSERT_EQ(got, want) << "i=" << i << " j=" << j << " dy=" << dy << " dx=" << dx << " c=" << c;
            }
  }
}

TEST(Fixtures, ChatGoldenShapes) {
  // docs/MODEL.md §11: every prompt starts with the system turn and the open user turn.
  const std::vector<int64_t> prefix = {151644, 8948,  198,    56568,  104625, 108782, 43815,  101128, 40027,
                                       100013, 9370,  42140,  53772,  35243,  26288,  104949, 3837,   105205,
                                       109641, 91730, 30698,  11,     54851,  46944,  115404, 42192,  99441,
                                       100623, 48692, 100168, 110498, 1773,   151645, 151644, 872,    198};
  for (const char* preset : kPresets) {
    const json cfg = read_json(std::string("configs/") + preset + ".json");
    const json& l = cfg.at("llm_config");
    const int64_t D = l.at("hidden_size"), V = l.at("vocab_size"), layers = l.at("num_hidden_layers");
    for (const char* name : kCases) {
      SCOPED_TRACE(std::string(preset) + " " + name);
      const std::string base = std::string("models/") + preset + "/" + name;
      const json meta = read_json(base + ".json");
      const auto ids = meta.at("prompt_ids").get<std::vector<int64_t>>();
      const auto T = static_cast<int64_t>(ids.size());
      EXPECT_EQ(T, meta.at("num_prompt_tokens").get<int64_t>());
      ASSERT_GE(ids.size(), prefix.size());
      EXPECT_TRUE(std::equal(prefix.begin(), prefix.end(), ids.begin()));
      // Prompt ends with "<|im_end|><|im_start|>assistant\n".
      EXPECT_EQ(std::vector<int64_t>(ids.end() - 4, ids.end()), (std::vector<int64_t>{151645, 151644, 77091, 198}));
      int64_t tiles = 0;
      for (const json& t : meta.at("tiles_per_image")) tiles += t.get<int64_t>();
      EXPECT_EQ(std::count(ids.begin(), ids.end(), kImgContext), 256 * tiles);
      EXPECT_EQ(meta.at("images").size(), meta.at("tiles_per_image").size());

      const auto pos = meta.at("hidden_positions").get<std::vector<int64_t>>();
      const auto P = static_cast<int64_t>(pos.size());
      EXPECT_TRUE(std::is_sorted(pos.begin(), pos.end()));
      EXPECT_TRUE(!pos.empty() && pos.front() >= 0 && pos.back() == T - 1);
      // logits_last holds the last position's logits at ids {0, stride, 2*stride, ...} ∪ top-64, sorted.
      const int64_t stride = meta.at("logits_stride");
      std::set<int64_t> idset;
      for (int64_t v = 0; v < V; v += stride) idset.insert(v);
      const auto top_ids = meta.at("logits_top_ids").get<std::vector<int64_t>>();
      EXPECT_EQ(top_ids.size(), 64u);
      for (int64_t v : top_ids) {
        EXPECT_TRUE(v >= 0 && v < V);
        idset.insert(v);
      }
      const std::vector<int64_t> lids(idset.begin(), idset.end());
      const auto gen = meta.at("generated_ids").get<std::vector<int64_t>>();
      const auto G = static_cast<int64_t>(gen.size());
      EXPECT_TRUE(G >= 1 && G <= 32);
      for (int64_t g : gen) EXPECT_TRUE(g < kTokenizerSize && g != kImgContext) << g;
      EXPECT_EQ(static_cast<int64_t>(meta.at("step_margins").size()), G);
      EXPECT_EQ(static_cast<int64_t>(meta.at("step_top_ids").size()), G);

      const auto f = loader::SafetensorsFile::open(test::data_path(base + ".safetensors").string());
      EXPECT_EQ(static_cast<int64_t>(f->header().tensors.size()), 3 + layers);
      expect_finite(golden(*f, "embeds", DType::F32, {P, D}), "embeds");
      for (int64_t i = 0; i < layers; ++i)
        expect_finite(golden(*f, "layer." + std::to_string(i), DType::F32, {P, D}), "layer");
      const Tensor logits = golden(*f, "logits_last", DType::F32, {static_cast<int64_t>(lids.size())});
      expect_finite(logits, "logits_last");
      const Tensor top = golden(*f, "step_top_logits", DType::F32, {G, 8});
      // The first greedy token is the argmax of the last-position logits over the allowed ids.
      // `logits_last` comes from one forward pass and `step_top_logits` from HF generate(), which
      // slices the last position before lm_head: the same math in a different GEMM shape, so the two
      // agree to float32 rounding (|diff| ~ 2e-6 measured), not bit for bit.
      constexpr float kSameMath = 1e-5f;
      const std::vector<float> lv = logits.to_floats();
      const float top0 = top.to_floats()[0];
      for (size_t k = 0; k < lids.size(); ++k)
        if (lids[k] < kTokenizerSize && lids[k] != kImgContext) {
          EXPECT_LE(lv[k], top0 + kSameMath) << "id " << lids[k];
        }
      const auto it = std::find(lids.begin(), lids.end(), gen[0]);
      ASSERT_NE(it, lids.end()) << "the first generated id is among the stored logits (top-64)";
      EXPECT_NEAR(lv[static_cast<size_t>(it - lids.begin())], top0, kSameMath);
    }
  }
}
