// GPU tests skip cleanly where no CUDA device answers (this CI machine), and run on gpu-check.
#include "tensor/cuda_runtime.h"
#include "tests/testutil.h"

using namespace sailvl;

#define REQUIRE_GPU()                                                            \
  do {                                                                           \
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

// A strided view of a device tensor (a column slice, a transpose) copies to the host, to a
// contiguous device clone and to another dtype without going through itself again.
TEST(CudaRuntime, StridedDeviceViewsCopy) {
  REQUIRE_GPU();
  std::vector<float> v(24);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i) - 7.5f;
  const Tensor x = Tensor::from_floats(v, {4, 6});
  const Tensor d = x.to(Device::cuda());
  const Tensor cols = d.narrow(1, 1, 3);  // [4, 3], strides (6, 1)
  const std::vector<float> want = x.narrow(1, 1, 3).contiguous().to_floats();
  EXPECT_FALSE(cols.is_contiguous());
  EXPECT_EQ(cols.to(Device::cpu()).to_floats(), want);
  const Tensor c = cols.contiguous();
  EXPECT_TRUE(c.device().is_cuda());
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_EQ(c.to_floats(), want);
  EXPECT_EQ(cols.to(DType::BF16).to_floats(), want);  // exact: every value is a multiple of 0.5 < 256
  const Tensor t = d.transpose(0, 1);                 // [6, 4], strides (1, 6)
  EXPECT_EQ(t.to_floats(), x.transpose(0, 1).contiguous().to_floats());
}
