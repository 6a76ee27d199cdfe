// GPU tests skip cleanly where no CUDA device answers (this CI machine), and run on gpu-check.
#include "tensor/cuda_runtime.h"
#include "tests/testutil.h"

using namespace sailvl;

#define REQUIRE_GPU()                                                             \
  do {                                                                            \
    if (!cuda::available()) GTEST_SKIP() << "no GPU: " << cuda::status().reason; \
  } while (0)

TEST(CudaRuntime, RoundTripAndAllocatorStats) {
  REQUIRE_GPU();
  Tensor x = Tensor::from_floats({1, 2, 3, 4, 5}, {5}, DType::BF16);
  cuda::reset_peak();
  const auto before = cuda::mem_stats().in_use;
  {
    Tensor d = x.to(Device::cuda());
    EXPECT_TRUE(d.device().is_cuda());
    EXPECT_GT(cuda::mem_stats().in_use, before);
    EXPECT_EQ(d.to(Device::cpu()).to_floats(), x.to_floats());
    Tensor f = d.to(DType::F32);  // converting copy on the device
    EXPECT_EQ(f.to_floats(), x.to_floats());
  }
  EXPECT_EQ(cuda::mem_stats().in_use, before);
  EXPECT_GT(cuda::mem_stats().peak, before);
}
