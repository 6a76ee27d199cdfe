// The current-stage context of CUDA errors (tensor/stage.h): nesting, step numbers, threads, and
// the message a failed CUDA call throws. Runs without a GPU: nothing here calls CUDA.
#include <string>
#include <thread>

#include "tensor/stage.h"
#include "tests/testutil.h"

using namespace sailvl;

TEST(Stage, NestedScopesRestoreThePreviousStage) {
  EXPECT_EQ(current_stage().name, nullptr);
  EXPECT_EQ(stage_label(current_stage()), "");
  {
    StageScope outer("load weights");
    EXPECT_EQ(stage_label(current_stage()), "load weights");
    {
      StageScope inner("vision");
      EXPECT_EQ(stage_label(current_stage()), "vision");
      {
        StageScope innermost("decode", 12);
        EXPECT_EQ(stage_label(current_stage()), "decode step 12");
        EXPECT_EQ(current_stage().step, 12);
      }
      EXPECT_EQ(stage_label(current_stage()), "vision");
      EXPECT_EQ(current_stage().step, -1);
    }
    EXPECT_EQ(stage_label(current_stage()), "load weights");
  }
  EXPECT_EQ(current_stage().name, nullptr);
}

TEST(Stage, ScopeIsRestoredWhenAnExceptionLeavesIt) {
  try {
    StageScope s("prefill");
    throw std::runtime_error("boom");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(current_stage().name, nullptr);
}

TEST(Stage, EachThreadHasItsOwnStage) {
  StageScope s("sampling", 3);
  std::string other;
  std::thread t([&other] { other = stage_label(current_stage()); });
  t.join();
  EXPECT_EQ(other, "");
  EXPECT_EQ(stage_label(current_stage()), "sampling step 3");
}

TEST(Stage, CudaErrorMessageNamesTheStageAndSaysTheProcessExits) {
  std::string msg;
  {
    StageScope s("vision");
    msg = cuda_error_message("cudaErrorIllegalAddress", "cudaMemcpy(dst, src, n, kind)", "tensor/cuda/runtime.cpp", 42);
  }
  EXPECT_EQ(msg.rfind("CUDA error during vision: cudaErrorIllegalAddress in cudaMemcpy(dst, src, n, kind) at "
                      "tensor/cuda/runtime.cpp:42\n",
                      0),
            0u)
      << msg;
  EXPECT_NE(msg.find("sticky"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unusable"), std::string::npos) << msg;
  EXPECT_NE(msg.find("exits"), std::string::npos) << msg;

  {
    StageScope s("decode", 7);
    msg = cuda_error_message("CUBLAS_STATUS_EXECUTION_FAILED", "cublasLtMatmul(...)", "ops/cuda/linear.cu", 218);
  }
  EXPECT_EQ(msg.rfind("CUDA error during decode step 7: CUBLAS_STATUS_EXECUTION_FAILED", 0), 0u) << msg;

  // Outside any stage the message has no "during".
  msg = cuda_error_message("cudaErrorInvalidValue", "cudaSetDevice(9)", "x.cpp", 1);
  EXPECT_EQ(msg.rfind("CUDA error: cudaErrorInvalidValue in cudaSetDevice(9) at x.cpp:1\n", 0), 0u) << msg;
}
