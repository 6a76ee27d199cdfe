// Watching a run: --profile (runtime/profile.h) and --trace (runtime/trace.h) through the observer
// hook (tensor/observe.h), on the tiny models, CPU:
//   - a profile of an image question lists, per stage, exactly the op kinds and call counts the
//     model code makes (the expected table is written from model/*.cpp, not from a profile), the
//     decode stage counts its forward steps and samples, the shares of each stage and of the span
//     add up to 100 % and no stage holds more op time than its own wall time;
//   - the bytes and FLOPs of a linear row are the hand-computed 2·M·N·K and x + W + b + y at their
//     dtypes, also for q8/q4 weights (the packed codes + the F16 scales), and % of limit is the
//     roofline of those numbers;
//   - a trace prints each layer's ops in the order of the layer's code with shapes from the config,
//     the output statistic only in the first and last layer, and --trace-layers keeps only the
//     layers asked for plus one "not shown" line per stack;
//   - the CLI: --profile in run/chat/bench (--json under "profile"), --trace on stderr, and the
//     usage errors (exit 2) of the flags that do not go together (on the CPU: --device cpu).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "model/sail_vl.h"
#include "ops/op_cost.h"
#include "ops/ops.h"
#include "ops/quant.h"
#include "runtime/profile.h"
#include "runtime/session.h"
#include "runtime/trace.h"
#include "tensor/observe.h"
#include "tensor/stage.h"
#include "tests/testutil.h"

namespace sailvl {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Calls = std::map<std::string, int64_t>;

const char* const kPresets[] = {"tiny-internvit", "tiny-aimv2"};
std::string preset_name(std::string n) {
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
}

const runtime::ProfileStage* stage_of(const runtime::Profile& p, const std::string& name) {
  for (const auto& st : p.stages)
    if (st.name == name) return &st;
  return nullptr;
}

Calls calls_of(const runtime::ProfileStage& st) {
  Calls c;
  for (const auto& o : st.ops) c[o.op] = o.calls;
  return c;
}

// The ops each stage makes and how often, read off the model code for a turn with T tiles (on the
// CPU one tile per vision pass: model::vision_tiles_per_pass), one prefill chunk, `steps` decode
// forward steps and `samples` sampling steps:
//   session.cpp  preprocess: one host step "resize+normalize" per image
//   intern_vit.cpp per pass: patch_embed, add (position, per tile); per layer: layer_norm, linear
//                (qkv), attention, linear (proj), add_scaled, layer_norm, linear (fc1), gelu_erf,
//                linear (fc2), add_scaled
//   aimv2.cpp    per pass: patch_embed, rms_norm, add (position, per tile), rms_norm (post_trunk_norm,
//                select_layer -1); per block: rms_norm, linear (qkv), attention, linear (proj), add,
//                rms_norm, linear (fc1), linear (fc3), silu_mul, linear (fc2), add
//   projector.cpp pixel_shuffle_v2, layer_norm, linear, gelu_erf, linear
//   sail_vl.cpp  embed_slice: embedding, scatter_rows (the image rows; prefill only)
//   qwen2.cpp    per layer: rms_norm, linear (q), rope, linear (k), linear (v), rope, attention,
//                linear (o), add, rms_norm, linear (gate), linear (up), silu_mul, linear (down), add;
//                then rms_norm and linear (the head) on the last row
//   generate.cpp one sample per sampling step
std::map<std::string, Calls> expected_calls(const model::SailVL& m, int64_t T, int64_t steps, int64_t samples) {
  const auto& c = m.config();
  const int64_t Lv = c.vision.layers, L = c.llm.layers;  // select_layer -1: the tower runs every layer
  std::map<std::string, Calls> e;
  e["preprocess"] = {{"resize+normalize", 1}};
  if (c.vision.model_type == "aimv2")
    e["vision"] = {{"patch_embed", T},     {"rms_norm", T * (2 + 2 * Lv)}, {"add", T + T * 2 * Lv},
                   {"linear", T * 5 * Lv}, {"attention", T * Lv},          {"silu_mul", T * Lv}};
  else
    e["vision"] = {{"patch_embed", T},         {"add", T},
                   {"layer_norm", T * 2 * Lv}, {"linear", T * 4 * Lv},
                   {"attention", T * Lv},      {"add_scaled", T * 2 * Lv},
                   {"gelu_erf", T * Lv}};
  e["projector"] = {{"pixel_shuffle_v2", 1}, {"layer_norm", 1}, {"linear", 2}, {"gelu_erf", 1}};
  auto llm = [L](int64_t passes) {
    return Calls{{"rms_norm", passes * (2 * L + 1)},
                 {"linear", passes * (7 * L + 1)},
                 {"rope", passes * 2 * L},
                 {"attention", passes * L},
                 {"add", passes * 2 * L},
                 {"silu_mul", passes * L},
                 {"embedding", passes}};
  };
  e["prefill"] = llm(1);
  e["prefill"]["scatter_rows"] = 1;
  e["decode"] = llm(steps);
  e["decode"]["sample"] = samples;
  return e;
}

class ProfileCpu : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override { ops::set_num_threads(2); }
};

TEST_P(ProfileCpu, ListsEveryOpKindTheModelCallsPerStage) {
  const model::SailVL& m = test::golden_sailvl(GetParam());
  runtime::TurnResult r;
  const runtime::Profile p = test::profile_turn(m, 4, runtime::Limits{}, &r);

  ASSERT_EQ(r.generation.timings.image_tiles, 1);
  // Every sampled token was sampled once; every token but the last was fed back by a forward step.
  const int64_t samples = static_cast<int64_t>(r.generation.tokens.size());
  ASSERT_GE(samples, 1);
  std::vector<std::string> names;
  for (const auto& st : p.stages) names.push_back(st.name);
  EXPECT_EQ(names, (std::vector<std::string>{"preprocess", "vision", "projector", "prefill", "decode"}));
  const auto want = expected_calls(m, 1, samples - 1, samples);
  for (const auto& [stage, calls] : want) {
    const runtime::ProfileStage* st = stage_of(p, stage);
    ASSERT_NE(st, nullptr) << stage;
    EXPECT_EQ(calls_of(*st), calls) << GetParam() << " " << stage;
    EXPECT_EQ(st->launches, 0u) << "no kernel launches on the CPU";
  }
  const runtime::ProfileStage& dec = *stage_of(p, "decode");
  EXPECT_EQ(dec.steps, samples - 1);
  EXPECT_EQ(dec.samples, samples);
}

TEST_P(ProfileCpu, SharesAddUpAndEveryOpFitsInItsStage) {
  const model::SailVL& m = test::golden_sailvl(GetParam());
  runtime::TurnResult r;
  const runtime::Profile p = test::profile_turn(m, 3, runtime::Limits{}, &r);

  double stage_shares = 0, stage_ms = 0;
  for (const auto& st : p.stages) {
    double op_shares = 0, op_ms = 0;
    for (const auto& o : st.ops) {
      op_shares += o.share;
      op_ms += o.ms;
      EXPECT_GE(o.ms, 0) << st.name << " " << o.op;
      EXPECT_EQ(o.percent_of_limit, -1) << "no limits given, no % of limit";
    }
    EXPECT_NEAR(op_shares + st.outside_share, 100.0, 0.01) << st.name;
    // The ops were timed inside the stage's own clock readings: they cannot add up to more.
    EXPECT_GE(st.outside_ms, 0) << st.name;
    EXPECT_NEAR(op_ms + st.outside_ms, st.ms, 1e-6 * st.ms) << st.name;
    // The slowest op first.
    for (size_t i = 1; i < st.ops.size(); ++i) EXPECT_GE(st.ops[i - 1].ms, st.ops[i].ms) << st.name;
    stage_shares += st.share;
    stage_ms += st.ms;
  }
  EXPECT_NEAR(stage_shares + p.outside_share, 100.0, 0.01);
  EXPECT_GE(p.outside_ms, 0);
  EXPECT_NEAR(stage_ms + p.outside_ms, p.span_ms, 1e-6 * p.span_ms);
  // The stages sit inside the session's own timings of the same regions (its clock is read outside
  // the stage scopes).
  EXPECT_GT(stage_of(p, "vision")->ms, 0);
  EXPECT_LE(stage_of(p, "vision")->ms, r.generation.timings.vision_ms);
  EXPECT_LE(stage_of(p, "projector")->ms, r.generation.timings.projector_ms);
  EXPECT_LE(stage_of(p, "decode")->ms, r.generation.timings.decode_ms);
}

// The projector's linear row (two calls: mlp1's W1 [D, 4C] and W3 [D, D], each with a bias) of a
// one-tile turn, by hand. On the CPU activations and biases are F32 (model::activation_dtype), the
// weights BF16 as the checkpoint stores them.
TEST_P(ProfileCpu, LinearRowBytesAndFlopsAreTheHandComputedValues) {
  const model::SailVL& m = test::golden_sailvl(GetParam());
  const runtime::Profile p = test::profile_turn(m, 1, runtime::Limits{});
  const runtime::ProfileStage* st = stage_of(p, "projector");
  ASSERT_NE(st, nullptr);
  const runtime::ProfileOp* lin = nullptr;
  for (const auto& o : st->ops)
    if (o.op == "linear") lin = &o;
  ASSERT_NE(lin, nullptr);

  const double M = 256, K1 = 4.0 * m.config().vision.hidden, D = m.config().llm.hidden;  // 1 tile, 256 rows
  const double f32 = 4, bf16 = 2;
  const double flops = 2 * M * D * K1 + 2 * M * D * D;
  const double bytes = (M * K1 * f32 + D * K1 * bf16 + D * f32 + M * D * f32)   // h = z·W1ᵀ + b1
                       + (M * D * f32 + D * D * bf16 + D * f32 + M * D * f32);  // out = h·W3ᵀ + b3
  EXPECT_EQ(lin->calls, 2);
  EXPECT_DOUBLE_EQ(lin->flops, flops);
  EXPECT_DOUBLE_EQ(lin->bytes, bytes);
  ASSERT_GT(lin->ms, 0);
  EXPECT_NEAR(lin->gbs, bytes / (lin->ms / 1e3) / 1e9, 1e-9 * lin->gbs);
  EXPECT_NEAR(lin->gflops, flops / (lin->ms / 1e3) / 1e9, 1e-9 * lin->gflops);
}

INSTANTIATE_TEST_SUITE_P(Tiny, ProfileCpu, ::testing::ValuesIn(kPresets),
                         [](const auto& info) { return preset_name(info.param); });

runtime::Limits limits(double gbs, double gflops) {
  runtime::Limits l;
  l.memory_gbs = gbs;
  l.compute_gflops = gflops;
  return l;
}

// One linear call at a known shape: x F32 [M, K], w [N, K] as BF16, q8 or q4, bias F32 [N].
struct OneLinear {
  runtime::ProfileOp row;
  std::string trace_line;
};

OneLinear profile_one_linear(ops::QuantType type, int64_t M, int64_t N, int64_t K) {
  std::vector<float> wv(static_cast<size_t>(N * K)), xv(static_cast<size_t>(M * K)), bv(static_cast<size_t>(N));
  for (size_t i = 0; i < wv.size(); ++i) wv[i] = static_cast<float>(static_cast<int64_t>(i % 17) - 8) / 16.f;
  for (size_t i = 0; i < xv.size(); ++i) xv[i] = static_cast<float>(static_cast<int64_t>(i % 5) - 2);
  const Tensor wf = Tensor::from_floats(wv, {N, K}, DType::BF16);
  const ops::Weight w = type == ops::QuantType::None ? ops::Weight(wf) : ops::quantize(wf, type);
  const Tensor x = Tensor::from_floats(xv, {M, K}), b = Tensor::from_floats(bv, {N});
  const Tensor y = Tensor::empty({M, N}, DType::F32);

  runtime::Profiler prof(Device::cpu());
  std::FILE* f = std::tmpfile();
  runtime::Tracer tracer(f);
  prof.begin();
  {
    ObserverScope watch(&prof);
    StageScope stage("prefill");
    ops::linear(y, x, w, b);
  }
  {
    ObserverScope watch(&tracer);
    StageScope stage("prefill");
    ops::linear(y, x, w, b);
  }
  prof.end();
  std::rewind(f);
  std::string text;
  for (int c; (c = std::fgetc(f)) != EOF;) text += static_cast<char>(c);
  std::fclose(f);

  OneLinear r;
  const runtime::Profile p = prof.result(limits(10, 100));
  EXPECT_EQ(p.stages.size(), 1u);
  EXPECT_EQ(p.stages[0].ops.size(), 1u);
  if (!p.stages.empty() && !p.stages[0].ops.empty()) r.row = p.stages[0].ops[0];
  const size_t at = text.find("linear");
  EXPECT_NE(at, std::string::npos) << text;
  if (at != std::string::npos) r.trace_line = text.substr(at, text.find("  |", at) - at);
  return r;
}

// A quantised weight moves its codes (q8: 1 byte, q4: half a byte per weight) and one F16 scale per
// 32 weights of a row (docs/QUANTIZATION.md), not its logical BF16 size; the FLOPs are the same.
TEST(ProfileOps, LinearBytesCountTheStoredWeight) {
  constexpr int64_t M = 3, N = 16, K = 64;
  const double x = M * K * 4, b = N * 4, y = M * N * 4, scales = N * (K / 32) * 2;
  const struct {
    ops::QuantType type;
    double w;
    const char* text;
  } cases[] = {{ops::QuantType::None, N * K * 2, "w BF16[16, 64]"},
               {ops::QuantType::Q8, N * K + scales, "w q8[16, 64] g32"},
               {ops::QuantType::Q4, N * K / 2 + scales, "w q4[16, 64] g32"}};
  for (const auto& c : cases) {
    const OneLinear r = profile_one_linear(c.type, M, N, K);
    EXPECT_EQ(r.row.op, "linear");
    EXPECT_EQ(r.row.calls, 1);
    EXPECT_DOUBLE_EQ(r.row.flops, 2.0 * M * N * K) << ops::quant_type_name(c.type);
    EXPECT_DOUBLE_EQ(r.row.bytes, x + c.w + b + y) << ops::quant_type_name(c.type);
    EXPECT_EQ(r.trace_line, std::string("linear           x F32[3, 64], ") + c.text + ", b F32[16] -> F32[3, 16]");
    // The roofline at 10 GB/s and 100 GFLOP/s: memory takes longer for this small GEMV.
    ASSERT_GT(r.row.ms, 0);
    const double t_mem = r.row.bytes / 10e9, t_cmp = r.row.flops / 100e9;
    ASSERT_GT(t_mem, t_cmp);
    EXPECT_EQ(r.row.bound, "memory");
    EXPECT_NEAR(r.row.percent_of_limit, 100.0 * t_mem / (r.row.ms / 1e3), 1e-9 * r.row.percent_of_limit);
  }
}

TEST(ProfileOps, ComputeBoundWhenTheFlopsTakeLonger) {
  // 64 rows reuse each weight 64 times: 2·64·N·K FLOPs at 100 GFLOP/s outlast the bytes at 1000 GB/s.
  runtime::Profiler prof(Device::cpu());
  const Tensor x = Tensor::zeros({64, 128}, DType::F32), w = Tensor::zeros({128, 128}, DType::BF16);
  const Tensor y = Tensor::empty({64, 128}, DType::F32);
  prof.begin();
  {
    ObserverScope watch(&prof);
    StageScope stage("vision");
    ops::linear(y, x, w);
  }
  prof.end();
  const runtime::Profile p = prof.result(limits(1000, 100));
  ASSERT_EQ(p.stages.size(), 1u);
  ASSERT_EQ(p.stages[0].ops.size(), 1u);
  const runtime::ProfileOp& o = p.stages[0].ops[0];
  EXPECT_EQ(o.bound, "compute");
  EXPECT_NEAR(o.percent_of_limit, 100.0 * (2.0 * 64 * 128 * 128 / 100e9) / (o.ms / 1e3), 1e-9 * o.percent_of_limit);
}

// Attention's FLOPs count the visible (query, key) pairs: all of them without a mask, the causal
// ramp with one (query i of a chunk after c cached keys sees c + i + 1 keys).
TEST(ProfileOps, AttentionPairsFollowTheMask) {
  ops::AttentionParams full;
  EXPECT_EQ(ops::attention_pairs(10, 10, full), 100);
  ops::AttentionParams causal;
  causal.causal = true;
  EXPECT_EQ(ops::attention_pairs(4, 4, causal), 1 + 2 + 3 + 4);
  causal.q_offset = 6;  // a 4-row chunk after 6 cached keys
  EXPECT_EQ(ops::attention_pairs(4, 10, causal), 7 + 8 + 9 + 10);
  causal.q_offset = 300;  // a decode step: one query sees every key
  EXPECT_EQ(ops::attention_pairs(1, 301, causal), 301);
}

// ---- the hook ----

struct CountingObserver final : Observer {
  int ops = 0;
  void op_end(const OpCall&) override { ++ops; }
};

TEST(Observe, NobodyWatchesByDefaultAndScopesRestoreThePreviousObserver) {
  EXPECT_EQ(observer(), nullptr);
  CountingObserver a, b;
  const Tensor x = Tensor::zeros({4}, DType::F32), y = Tensor::empty({4}, DType::F32);
  {
    ObserverScope wa(&a);
    ops::add(y, x, x);
    {
      ObserverScope wb(&b);
      ops::add(y, x, x);
      EXPECT_EQ(observer(), &b);
    }
    EXPECT_EQ(observer(), &a);
    // Another thread has its own (none): its ops are not seen.
    std::thread([&] {
      EXPECT_EQ(observer(), nullptr);
      ops::add(y, x, x);
    }).join();
  }
  EXPECT_EQ(observer(), nullptr);
  ops::add(y, x, x);
  EXPECT_EQ(a.ops, 1);
  EXPECT_EQ(b.ops, 1);
}

// ---- trace ----

struct TraceLine {
  int indent = 0;
  std::string text;  // without the indentation and without the statistic
  bool statistic = false;
};

struct LayerBlock {
  std::string stage;
  std::string header;  // "layer 0 of 3"
  std::vector<TraceLine> ops;
};

struct ParsedTrace {
  std::vector<TraceLine> lines;
  std::vector<LayerBlock> layers;
  std::vector<std::string> stages;  // in order, with the step ("decode step 0")
};

ParsedTrace parse_trace(const std::string& text) {
  ParsedTrace t;
  std::string stage;
  LayerBlock* open = nullptr;
  size_t at = 0;
  while (at < text.size()) {
    size_t nl = text.find('\n', at);
    if (nl == std::string::npos) nl = text.size();
    const std::string line = text.substr(at, nl - at);
    at = nl + 1;
    const size_t sp = line.find_first_not_of(' ');
    if (sp == std::string::npos) continue;
    TraceLine l;
    l.indent = static_cast<int>(sp / 2);
    l.text = line.substr(sp);
    const size_t bar = l.text.find("  | ");
    l.statistic = bar != std::string::npos;
    if (l.statistic) l.text.resize(bar);
    t.lines.push_back(l);
    if (l.indent == 0) {
      stage = l.text;
      t.stages.push_back(stage);
      open = nullptr;
    } else if (l.indent == 1 && l.text.rfind("layer ", 0) == 0) {
      t.layers.push_back({stage, l.text, {}});
      open = &t.layers.back();
    } else if (l.indent == 1) {
      open = nullptr;
    } else if (l.indent == 2 && open) {
      open->ops.push_back(l);
    }
  }
  return t;
}

std::string trace_of(const model::SailVL& m, const runtime::TraceOptions& opt, int64_t tokens,
                     runtime::TurnResult* r = nullptr) {
  std::FILE* f = std::tmpfile();
  runtime::Tracer tracer(f, opt);
  runtime::TurnResult res = test::ask_watched(m, &tracer, tokens);
  if (r) *r = std::move(res);
  std::rewind(f);
  std::string text;
  for (int c; (c = std::fgetc(f)) != EOF;) text += static_cast<char>(c);
  std::fclose(f);
  return text;
}

std::string op_name(const TraceLine& l) { return l.text.substr(0, l.text.find(' ')); }

std::string shape(std::initializer_list<int64_t> dims) { return shape_str(std::vector<int64_t>(dims)); }

// The ops of one layer in the order of the layer's code (see expected_calls for the files).
const std::vector<std::string> kInternVitLayer = {"layer_norm", "linear", "attention", "linear", "add_scaled",
                                                  "layer_norm", "linear", "gelu_erf",  "linear", "add_scaled"};
const std::vector<std::string> kAimv2Block = {"rms_norm", "linear", "attention", "linear", "add", "rms_norm",
                                              "linear",   "linear", "silu_mul",  "linear", "add"};
const std::vector<std::string> kQwen2Layer = {"rms_norm", "linear",    "rope",     "linear", "linear",
                                              "rope",     "attention", "linear",   "add",    "rms_norm",
                                              "linear",   "linear",    "silu_mul", "linear", "add"};

class TraceCpu : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override { ops::set_num_threads(2); }
};

TEST_P(TraceCpu, EveryLayerPrintsTheOpsOfItsCodeWithTheConfigsShapes) {
  const model::SailVL& m = test::golden_sailvl(GetParam());
  const auto& c = m.config();
  runtime::TurnResult r;
  const ParsedTrace t = parse_trace(trace_of(m, {}, 2, &r));
  const int64_t S = r.generation.timings.prompt_tokens, samples = static_cast<int64_t>(r.generation.tokens.size());
  ASSERT_EQ(samples, 2) << "the tiny model's greedy answer to this question does not end at once";

  // Stages in the order of a turn; decode and sampling steps numbered.
  EXPECT_EQ(t.stages, (std::vector<std::string>{"preprocess", "vision", "projector", "prefill", "sampling step 0",
                                                "decode step 0", "sampling step 1"}));

  const bool aimv2 = c.vision.model_type == "aimv2";
  const std::vector<std::string>& vision_layer = aimv2 ? kAimv2Block : kInternVitLayer;
  std::map<std::string, int64_t> blocks;  // per stage
  for (const LayerBlock& b : t.layers) {
    const bool vision = b.stage == "vision";
    const int64_t n = vision ? c.vision.layers : c.llm.layers;
    const int64_t l = blocks[b.stage]++;
    EXPECT_EQ(b.header, str_cat("layer ", l, " of ", n)) << b.stage;
    std::vector<std::string> names;
    for (const TraceLine& o : b.ops) names.push_back(op_name(o));
    EXPECT_EQ(names, vision ? vision_layer : kQwen2Layer) << b.stage << " " << b.header;
    // Values for the first and the last layer of a stack only.
    for (const TraceLine& o : b.ops) EXPECT_EQ(o.statistic, l == 0 || l == n - 1) << b.stage << " " << b.header;
  }
  EXPECT_EQ(blocks["vision"], c.vision.layers);
  EXPECT_EQ(blocks["prefill"], c.llm.layers);
  EXPECT_EQ(blocks["decode step 0"], c.llm.layers);
  // Ops outside the layers always carry their statistic.
  for (const TraceLine& l : t.lines)
    if (l.indent == 1 && l.text.rfind("layer ", 0) != 0 && op_name(l) != "sample") {
      EXPECT_TRUE(l.statistic) << l.text;
    }

  // Shapes from the config: the first vision layer's qkv and attention, the LLM's attention in the
  // prefill (S prompt rows, no cache) and in decode step 0 (one row over S + 1 keys).
  const int64_t C = c.vision.hidden, Hv = c.vision.heads, G = c.vision.image_size / c.vision.patch_size;
  const int64_t Mv = G * G + (aimv2 ? 0 : 1);  // InternViT adds the class token
  const int64_t D = c.llm.hidden, H = c.llm.heads, Hkv = c.llm.kv_heads, Dh = D / H;
  auto in_block = [&](const std::string& stage, size_t layer, size_t op) -> std::string {
    for (const LayerBlock& b : t.layers)
      if (b.stage == stage && b.header.rfind(str_cat("layer ", layer, " "), 0) == 0 && op < b.ops.size())
        return b.ops[op].text;
    return "(missing)";
  };
  auto line = [](const char* op, const std::string& rest) {
    char name[32];
    std::snprintf(name, sizeof name, "%-17s", op);
    return name + rest;
  };
  const std::string qkv_bias = aimv2 ? "" : ", b F32" + shape({3 * C});
  EXPECT_EQ(in_block("vision", 0, 1), line("linear", "x F32" + shape({Mv, C}) + ", w BF16" + shape({3 * C, C}) +
                                                         qkv_bias + " -> F32" + shape({Mv, 3 * C})));
  EXPECT_EQ(in_block("vision", 0, 2),
            line("attention", "q F32" + shape({Mv, Hv, C / Hv}) + ", k F32" + shape({Mv, Hv, C / Hv}) + ", v F32" +
                                  shape({Mv, Hv, C / Hv}) + " -> F32" + shape({Mv, Hv, C / Hv}) + " (full)"));
  EXPECT_EQ(in_block("prefill", 0, 0),
            line("rms_norm", "x F32" + shape({S, D}) + ", w F32" + shape({D}) + " -> F32" + shape({S, D})));
  EXPECT_EQ(in_block("prefill", 0, 6),
            line("attention", "q F32" + shape({S, H, Dh}) + ", k F32" + shape({S, Hkv, Dh}) + ", v F32" +
                                  shape({S, Hkv, Dh}) + " -> F32" + shape({S, H, Dh}) + " (causal, 0 cached keys)"));
  EXPECT_EQ(in_block("decode step 0", 0, 6),
            line("attention", "q F32" + shape({1, H, Dh}) + ", k F32" + shape({S + 1, Hkv, Dh}) + ", v F32" +
                                  shape({S + 1, Hkv, Dh}) + " -> F32" + shape({1, H, Dh}) +
                                  str_cat(" (causal, ", S, " cached keys)")));
  // The sampled token is the one the turn returned.
  std::vector<std::string> samples_seen;
  for (const TraceLine& l : t.lines)
    if (op_name(l) == "sample") samples_seen.push_back(l.text);
  ASSERT_EQ(samples_seen.size(), 2u);
  EXPECT_EQ(samples_seen[0], line("sample", "logits F32" + shape({c.llm.vocab}) +
                                                str_cat(" -> token ", r.generation.tokens[0], " (greedy)")));
}

TEST_P(TraceCpu, TraceLayersShowsOnlyThoseLayersAndOneNotShownLinePerStack) {
  const model::SailVL& m = test::golden_sailvl(GetParam());
  const auto& c = m.config();
  ASSERT_EQ(c.llm.layers, 3) << "the cases below are written for a 3-layer LLM";
  ASSERT_EQ(c.vision.layers, 2);
  const int64_t vision_ops =
      static_cast<int64_t>(c.vision.model_type == "aimv2" ? kAimv2Block.size() : kInternVitLayer.size());
  runtime::TraceOptions first_last;
  first_last.layers = runtime::parse_trace_layers("0,-1");
  runtime::TraceOptions middle;
  middle.layers = runtime::parse_trace_layers("1");
  struct Case {
    runtime::TraceOptions opt;
    std::vector<std::string> llm;  // per LLM forward: the layer lines and "not shown" lines in order
    std::vector<std::string> vision;
  } cases[] = {
      {first_last,
       {"layer 0 of 3", "... layer 1 not shown (15 ops)", "layer 2 of 3"},
       {"layer 0 of 2", "layer 1 of 2"}},
      {middle,
       {"... layer 0 not shown (15 ops)", "layer 1 of 3", "... layer 2 not shown (15 ops)"},
       {str_cat("... layer 0 not shown (", vision_ops, " ops)"), "layer 1 of 2"}},
  };
  for (const Case& k : cases) {
    const ParsedTrace t = parse_trace(trace_of(m, k.opt, 2));
    std::map<std::string, std::vector<std::string>> seen;  // stage -> its layer and "not shown" lines
    std::string stage;
    for (const TraceLine& l : t.lines) {
      if (l.indent == 0) stage = l.text;
      if (l.indent == 1 && (l.text.rfind("layer ", 0) == 0 || l.text.rfind("... layer", 0) == 0))
        seen[stage].push_back(l.text);
    }
    EXPECT_EQ(seen["vision"], k.vision);
    EXPECT_EQ(seen["prefill"], k.llm);
    EXPECT_EQ(seen["decode step 0"], k.llm);
    EXPECT_EQ(seen.size(), 3u) << "layers only in vision, prefill and the decode step";
    // The layers shown still print every op.
    for (const LayerBlock& b : t.layers)
      EXPECT_EQ(static_cast<int64_t>(b.ops.size()), b.stage == "vision" ? vision_ops : 15) << b.stage << b.header;
  }
}

INSTANTIATE_TEST_SUITE_P(Tiny, TraceCpu, ::testing::ValuesIn(kPresets),
                         [](const auto& info) { return preset_name(info.param); });

TEST(Trace, ParsesLayerLists) {
  EXPECT_EQ(runtime::parse_trace_layers("0,1,-1"), (std::vector<int64_t>{0, 1, -1}));
  EXPECT_EQ(runtime::parse_trace_layers("27"), (std::vector<int64_t>{27}));
  for (const char* bad : {"", "a", "1,,2", "1,", ",1", "0x1", "1.5", "99999999999"}) {
    try {
      (void)runtime::parse_trace_layers(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage) << bad;
      EXPECT_NE(std::string(e.what()).find("--trace-layers"), std::string::npos) << e.what();
    }
  }
}

// ---- the CLI ----

std::string bin() { return test::sailvl_binary(); }

std::vector<std::string> stage_names(const json& profile) {
  std::vector<std::string> v;
  for (const json& st : profile["stages"]) v.push_back(st["stage"].get<std::string>());
  return v;
}

const json& stage_json(const json& profile, const std::string& name) {
  for (const json& st : profile["stages"])
    if (st["stage"] == name) return st;
  static const json none;
  return none;
}

TEST(ProfileCli, RunJsonCarriesTheProfileAndStderrTheTable) {
  const fs::path model = test::tiny_model("tiny-internvit");
  const std::string img = test::data_path("images/chat/a.png").string();
  std::string out, err;
  ASSERT_EQ(test::run_command(bin() + " run --json -q -t 2 --device cpu --profile -m " + model.string() + " -i " + img +
                                  " --max-tiles 1 -n 3 -p 'What is it?'",
                              &out, &err),
            0)
      << err;
  const json j = json::parse(out);
  ASSERT_TRUE(j.contains("profile")) << out;
  const json& p = j["profile"];
  EXPECT_EQ(stage_names(p), (std::vector<std::string>{"preprocess", "vision", "projector", "prefill", "decode"}));
  const int64_t tokens = static_cast<int64_t>(j["tokens"].size());
  const json& dec = stage_json(p, "decode");
  EXPECT_EQ(dec["samples"].get<int64_t>(), tokens);
  EXPECT_EQ(dec["steps"].get<int64_t>(), tokens - 1);
  EXPECT_GT(p["limits"]["memory_GBps"].get<double>(), 0) << "the bandwidth probe ran";
  for (const json& st : p["stages"])
    for (const json& o : st["ops"])
      for (const char* k : {"op", "calls", "ms", "share", "bytes", "flops", "GBps", "GFLOPs", "percent_of_limit"})
        EXPECT_TRUE(o.contains(k)) << st["stage"] << " " << o.dump();
  // The table on stderr: the stages, then each stage's op rows.
  EXPECT_NE(err.find("profile: cpu, 2 threads"), std::string::npos) << err;
  EXPECT_NE(err.find("\ndecode "), std::string::npos) << err;
  EXPECT_NE(err.find("% limit"), std::string::npos) << err;
  // Without --profile there is no profile.
  ASSERT_EQ(
      test::run_command(bin() + " run --json -q -t 2 --device cpu -m " + model.string() + " -n 2 -p hi", &out, &err),
      0);
  EXPECT_FALSE(json::parse(out).contains("profile"));
  EXPECT_EQ(err.find("profile:"), std::string::npos) << err;
}

TEST(ProfileCli, ChatProfilesEachTurn) {
  const fs::path model = test::tiny_model("tiny-internvit");
  const std::string img = test::data_path("images/chat/a.png").string();
  const fs::path script = test::temp_dir("profile-chat") / "in.txt";
  test::write_file(script, "/image " + img + "\nWhat is it?\nAnd then?\n/exit\n");
  std::string out, err;
  ASSERT_EQ(test::run_command(bin() + " chat --json -q -t 2 --device cpu --profile -m " + model.string() +
                                  " --max-tiles 1 -n 2 < " + script.string(),
                              &out, &err),
            0)
      << err;
  std::vector<json> turns;
  for (size_t at = 0, nl; (nl = out.find('\n', at)) != std::string::npos; at = nl + 1)
    if (nl > at) turns.push_back(json::parse(out.substr(at, nl - at)));
  ASSERT_EQ(turns.size(), 2u) << out;
  // The first turn encodes the picture; the follow-up prefills only its new text.
  EXPECT_EQ(stage_names(turns[0]["profile"]),
            (std::vector<std::string>{"preprocess", "vision", "projector", "prefill", "decode"}));
  EXPECT_EQ(stage_names(turns[1]["profile"]), (std::vector<std::string>{"prefill", "decode"}));
}

TEST(ProfileCli, BenchJsonCarriesTheProfile) {
  const fs::path model = test::tiny_model("tiny-internvit");
  std::string out, err;
  ASSERT_EQ(
      test::run_command(bin() + " bench -m " + model.string() +
                            " -t 2 --device cpu --image-tiles 0 --prompt-tokens 64 --gen 3 --repeat 2 --json --profile",
                        &out, &err),
      0)
      << err;
  const json j = json::parse(out);
  ASSERT_TRUE(j.contains("profile")) << out;
  EXPECT_EQ(stage_names(j["profile"]), (std::vector<std::string>{"prefill", "decode"}));
  // Both repetitions: 3 tokens each, 2 forward steps each.
  const json& dec = stage_json(j["profile"], "decode");
  EXPECT_EQ(dec["samples"].get<int64_t>(), 6);
  EXPECT_EQ(dec["steps"].get<int64_t>(), 4);
  EXPECT_EQ(stage_json(j["profile"], "prefill")["entries"].get<int64_t>(), 2);
}

TEST(ProfileCli, TracePrintsTheForwardPassOnStderr) {
  const fs::path model = test::tiny_model("tiny-internvit");
  std::string out, err;
  ASSERT_EQ(test::run_command(
                bin() + " run -q -t 2 --device cpu -m " + model.string() + " -n 2 -p hi --trace --trace-layers 0,-1",
                &out, &err),
            0)
      << err;
  for (const char* want : {"\nprefill\n", "\n  layer 0 of 3\n", "\n  ... layer 1 not shown (15 ops)\n",
                           "\n  layer 2 of 3\n", "\nsampling step 0\n", "\ndecode step 0\n", "  sample  "})
    EXPECT_NE(("\n" + err).find(want), std::string::npos) << want << "\n" << err;
  EXPECT_EQ(out.find("layer"), std::string::npos) << "the trace stays off stdout: " << out;
}

TEST(ProfileCli, FlagsThatDoNotGoTogetherAreUsageErrors) {
  const fs::path model = test::tiny_model("tiny-internvit");
  const std::string m = " -m " + model.string();
  struct Case {
    std::string args, message;
  } cases[] = {
      {"run" + m + " -p hi --profile --trace", "--profile and --trace do not go together"},
      {"chat" + m + " --profile --trace", "--profile and --trace do not go together"},
      {"bench" + m + " --profile --trace", "--profile and --trace do not go together"},
      {"run" + m + " -p hi --trace-layers 0", "--trace-layers needs --trace"},
      {"run" + m + " -p hi --trace --trace-layers 0,x", "--trace-layers takes layer numbers"},
      {"bench" + m + " --serve 1 --profile", "--serve runs requests on the scheduler's"},
      {"bench" + m + " --serve 1 --trace", "--serve runs requests on the scheduler's"},
  };
  for (const Case& c : cases) {
    std::string out, err;
    EXPECT_EQ(test::run_command(bin() + " " + c.args + " < /dev/null", &out, &err), 2) << c.args;
    EXPECT_NE(err.find(c.message), std::string::npos) << c.args << ": " << err;
    EXPECT_EQ(err.find("loading"), std::string::npos) << "refused before loading: " << err;
  }
}

}  // namespace
}  // namespace sailvl
