// The memory preflight and the stage context on a real GPU: cudaMemGetInfo through the runtime
// layer, a refused load that uploads nothing, the plan bounding the allocator's measured peak of a
// whole generation, and a failing CUDA call naming its stage. Skips cleanly without a GPU.
#ifndef SAILVL_HAS_CUDA
#include <gtest/gtest.h>
TEST(CudaPreflight, NotBuilt) { GTEST_SKIP() << "built without the CUDA backend"; }
#else
#include <random>
#include <vector>

#include "model/sail_vl.h"
#include "runtime/chat_template.h"
#include "runtime/generate.h"
#include "runtime/memory_plan.h"
#include "tensor/cuda/check.h"
#include "tensor/cuda_runtime.h"
#include "tensor/stage.h"
#include "tests/testutil.h"

using namespace sailvl;

#define REQUIRE_GPU()                                                            \
  do {                                                                           \
    if (!cuda::available()) GTEST_SKIP() << "no GPU: " << cuda::status().reason; \
  } while (0)

TEST(CudaPreflight, DeviceMemoryReportsFreeAndTotal) {
  REQUIRE_GPU();
  const cuda::DeviceMemory m = cuda::device_memory(0);
  EXPECT_GT(m.free, 0u);
  EXPECT_LE(m.free, m.total);
  EXPECT_GT(runtime::free_memory(Device::cuda(0)).value_or(0), 0u);
}

TEST(CudaPreflight, RefusedLoadUploadsNothing) {
  REQUIRE_GPU();
  model::LoadOptions opt;
  runtime::Workload w;
  w.context = 1024;
  w.max_new_tokens = 16;
  w.tiles = 7;
  opt.before_weights = runtime::preflight(Device::cuda(0), w, 1000);
  const size_t before = cuda::mem_stats().in_use;
  try {
    model::SailVL::load(test::tiny_model("tiny-internvit").string(), Device::cuda(0), opt);
    FAIL() << "expected ErrorKind::OutOfMemory";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::OutOfMemory);
    EXPECT_NE(std::string(e.what()).find("cuda:0"), std::string::npos) << e.what();
  }
  EXPECT_EQ(cuda::mem_stats().in_use, before);
}

TEST(CudaPreflight, PlanBoundsTheMeasuredPeakOfAGeneration) {
  REQUIRE_GPU();
  const std::string dir = test::tiny_model("tiny-internvit").string();
  const int64_t tiles = 7;
  runtime::ChatRequest req;
  req.question = "Describe the image.";
  req.tiles = {tiles};
  runtime::Workload w;
  w.context = 4096;
  w.max_new_tokens = 16;
  w.tiles = tiles;

  cuda::empty_cache();
  cuda::reset_peak();
  const size_t base = cuda::mem_stats().in_use;
  model::LoadOptions opt;
  opt.before_weights = runtime::preflight(Device::cuda(0), w);
  const model::SailVL m = model::SailVL::load(dir, Device::cuda(0), opt);
  const runtime::ChatPrompt prompt = runtime::build_chat_prompt(m.tokenizer(), req);
  w.prompt_tokens = static_cast<int64_t>(prompt.ids.size());
  const runtime::MemoryPlan plan =
      runtime::plan_memory(m.config(), Device::cuda(0), DType::BF16, w, m.weights().total_bytes());

  std::vector<float> px(static_cast<size_t>(tiles * 3 * 448 * 448));
  std::mt19937 g(1);
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  for (float& x : px) x = u(g);
  const Tensor pixels = Tensor::from_floats(px, {tiles, 3, 448, 448});
  runtime::GenerationOptions go;
  go.max_new_tokens = w.max_new_tokens;
  go.context_size = w.context;
  const std::vector<int64_t> ids(prompt.ids.begin(), prompt.ids.end());
  runtime::generate(m, ids, pixels, go);

  const size_t peak = cuda::mem_stats().peak - base;
  std::printf("allocator peak %s, plan total %s (margin %s)\n", runtime::format_bytes(peak).c_str(),
              runtime::format_bytes(plan.total()).c_str(),
              runtime::format_bytes(plan[runtime::MemPart::Margin]).c_str());
  EXPECT_LE(peak, plan.total());
}

TEST(CudaStage, FailingCallNamesTheStage) {
  REQUIRE_GPU();
  try {
    StageScope s("vision");
    CUDA_CHECK(cudaSetDevice(1 << 20));  // no such device: a clean, non-sticky error
    FAIL() << "expected ErrorKind::Cuda";
  } catch (const Error& e) {
    cudaGetLastError();
    EXPECT_EQ(e.kind(), ErrorKind::Cuda);
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind("CUDA error during vision: cudaErrorInvalidDevice in cudaSetDevice", 0), 0u) << msg;
    EXPECT_NE(msg.find("sticky"), std::string::npos) << msg;
  }
  CUDA_CHECK(cudaSetDevice(0));
}
#endif
