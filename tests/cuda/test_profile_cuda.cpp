// --profile and --trace on the GPU (runtime/profile.h, runtime/trace.h), the twin of
// tests/test_profile.cpp's CPU cases on the tiny models:
//   - the op rows are those of the CPU profile of the same turn (same model code, same op kinds and
//     calls), every CUDA op has a GPU time once its stage is over (events resolved after the stage,
//     no timing error) and the ops of a stage take no longer than the stage;
//   - kernel launches are counted: every op launches at least one kernel per call, and the decode
//     stage says how many one token takes;
//   - the device probes measure both limits, so % of limit is shown;
//   - a trace copies the outputs of the first layer to the host for its statistic.
// Skips cleanly without a GPU.
#include <algorithm>
#include <cstdio>
#include <map>

#include "model/sail_vl.h"
#include "ops/ops.h"
#include "runtime/profile.h"
#include "runtime/session.h"
#include "runtime/trace.h"
#include "tensor/cuda_runtime.h"
#include "tensor/observe.h"
#include "tests/testutil.h"

using namespace sailvl;

namespace {

#define REQUIRE_GPU()                                                            \
  do {                                                                           \
    if (!cuda::available()) GTEST_SKIP() << "no GPU: " << cuda::status().reason; \
  } while (0)

const runtime::ProfileStage* stage_of(const runtime::Profile& p, const std::string& name) {
  for (const auto& st : p.stages)
    if (st.name == name) return &st;
  return nullptr;
}

std::map<std::string, int64_t> calls_of(const runtime::ProfileStage& st) {
  std::map<std::string, int64_t> c;
  for (const auto& o : st.ops) c[o.op] = o.calls;
  return c;
}

class ProfileCuda : public ::testing::TestWithParam<const char*> {};

TEST_P(ProfileCuda, EveryOpHasItsGpuTimeAndLaunchesAfterItsStage) {
  REQUIRE_GPU();
  const model::SailVL& gpu = test::golden_sailvl(GetParam(), Device::cuda());
  const model::SailVL& cpu = test::golden_sailvl(GetParam(), Device::cpu());
  const runtime::Limits limits = runtime::measure_limits(Device::cuda());
  EXPECT_TRUE(limits.error.empty()) << limits.error;
  EXPECT_GT(limits.memory_gbs, 0);
  EXPECT_GT(limits.compute_gflops, 0);

  runtime::TurnResult rg, rc;
  const runtime::Profile pg = test::profile_turn(gpu, 4, limits, &rg);
  const runtime::Profile pc = test::profile_turn(cpu, 4, runtime::Limits{}, &rc);
  EXPECT_TRUE(pg.error.empty()) << pg.error;
  EXPECT_EQ(pg.device, "cuda:0");

  // The same model code on both devices: the same ops before decoding. (Decode follows the tokens
  // each device chose, which may differ in BF16; checked per step below.)
  for (const char* name : {"vision", "projector", "prefill"}) {
    ASSERT_NE(stage_of(pg, name), nullptr) << name;
    ASSERT_NE(stage_of(pc, name), nullptr) << name;
    EXPECT_EQ(calls_of(*stage_of(pg, name)), calls_of(*stage_of(pc, name))) << name;
  }

  for (const char* name : {"vision", "projector", "prefill", "decode"}) {
    const runtime::ProfileStage& st = *stage_of(pg, name);
    double op_ms = 0;
    for (const auto& o : st.ops) {
      EXPECT_GT(o.ms, 0) << name << " " << o.op << ": no GPU time (events not resolved)";
      EXPECT_GE(o.launches, static_cast<uint64_t>(o.calls)) << name << " " << o.op;
      if (o.bytes > 0 || o.flops > 0) {
        EXPECT_GT(o.percent_of_limit, 0) << name << " " << o.op;
      }
      op_ms += o.ms;
    }
    // Event times lie inside the stage's wall time (its end waits for the device); 1 % for the
    // events' own resolution.
    EXPECT_LE(op_ms, st.ms * 1.01 + 0.01) << name;
    EXPECT_GT(st.launches, 0u) << name;
  }

  const runtime::ProfileStage& dec = *stage_of(pg, "decode");
  const int64_t samples = static_cast<int64_t>(rg.generation.tokens.size());
  EXPECT_EQ(dec.samples, samples);
  EXPECT_EQ(dec.steps, samples - 1);
  const int64_t L = gpu.config().llm.layers;
  EXPECT_EQ(calls_of(dec)["linear"], dec.steps * (7 * L + 1));
  // At least one launch per op of a decode step, plus the sampler's.
  ASSERT_GT(dec.steps, 0) << "the tiny model's greedy answer ended at once";
  EXPECT_GE(dec.launches_per_token, static_cast<double>(15 * L + 3));
  EXPECT_NE(runtime::format_profile(pg).find("kernel launches/token"), std::string::npos);
}

TEST_P(ProfileCuda, TraceCopiesTheFirstLayersOutputsForTheirStatistic) {
  REQUIRE_GPU();
  const model::SailVL& gpu = test::golden_sailvl(GetParam(), Device::cuda());
  std::FILE* f = std::tmpfile();
  runtime::TraceOptions opt;
  opt.layers = {0};
  runtime::Tracer tracer(f, opt);
  (void)test::ask_watched(gpu, &tracer, 2);
  std::rewind(f);
  std::string text;
  for (int c; (c = std::fgetc(f)) != EOF;) text += static_cast<char>(c);
  std::fclose(f);
  // Activations are BF16 on the GPU; the layer-0 lines carry a finite statistic.
  EXPECT_NE(text.find("    rms_norm         x BF16["), std::string::npos) << text;
  EXPECT_NE(text.find("| mean "), std::string::npos) << text;
  EXPECT_EQ(text.find("no statistic"), std::string::npos) << text;
  EXPECT_EQ(text.find("nan"), std::string::npos) << text;
}

INSTANTIATE_TEST_SUITE_P(Tiny, ProfileCuda, ::testing::Values("tiny-internvit", "tiny-aimv2"), [](const auto& info) {
  std::string n = info.param;
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
});

}  // namespace
