// DType conversions (edge cases) and Tensor views/copies.
#include <cmath>
#include <limits>

#include "tensor/cuda_runtime.h"
#include "tests/testutil.h"

using namespace sailvl;

TEST(DTypeConvert, Bf16RoundTripsExactValues) {
  // Every bf16 bit pattern that is not NaN survives bf16 -> f32 -> bf16 unchanged.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = bf16_to_f32(static_cast<uint16_t>(h));
    if (!std::isnan(f)) {
      ASSERT_EQ(f32_to_bf16(f), h);
    }
  }
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_bf16(0.0f), 0x0000);
}

TEST(DTypeConvert, Bf16RoundsToNearestEven) {
  // 1 + 2^-8 is exactly halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
  EXPECT_EQ(f32_to_bf16(f32_from_bits(0x3f808000u)), 0x3f80);
  // 1 + 3*2^-8 is halfway between 1+2^-7 (odd) and 1+2^-6 (even): rounds up.
  EXPECT_EQ(f32_to_bf16(f32_from_bits(0x3f818000u)), 0x3f82);
  // Just above half rounds up, just below rounds down.
  EXPECT_EQ(f32_to_bf16(f32_from_bits(0x3f808001u)), 0x3f81);
  EXPECT_EQ(f32_to_bf16(f32_from_bits(0x3f807fffu)), 0x3f80);
  // Largest finite float rounds to Inf in bf16 (as torch does).
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);
}

TEST(DTypeConvert, Bf16SpecialValues) {
  EXPECT_EQ(f32_to_bf16(INFINITY), 0x7f80);
  EXPECT_EQ(f32_to_bf16(-INFINITY), 0xff80);
  const uint16_t n = f32_to_bf16(NAN);
  EXPECT_TRUE(std::isnan(bf16_to_f32(n)));
  // A NaN whose payload sits only in the low bits must not become Inf.
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(f32_from_bits(0x7f800001u)))));
  // Subnormal float32 values keep their bits (bf16 has the same exponent range).
  EXPECT_EQ(f32_to_bf16(f32_from_bits(0x00010000u)), 0x0001);
}

TEST(DTypeConvert, F16NormalsAndTies) {
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16(-2.0f), 0xc000);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65519.99f), 0x7bff);  // below the rounding boundary
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);   // ties to even -> Inf
  // 1 + 2^-11 is halfway between 1 and 1+2^-10: ties to even (1.0).
  EXPECT_EQ(f32_to_f16(1.0f + 1.0f / 2048), 0x3c00);
  EXPECT_EQ(f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const uint16_t hh = static_cast<uint16_t>(h);
    const float f = f16_to_f32(hh);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f))));
    } else {
      ASSERT_EQ(f32_to_f16(f), hh) << "round trip of half 0x" << std::hex << h;
    }
  }
}

TEST(DTypeConvert, F16Subnormals) {
  const float tiny = 5.9604644775390625e-8f;  // 2^-24, smallest half subnormal
  EXPECT_EQ(f32_to_f16(tiny), 0x0001);
  EXPECT_EQ(f32_to_f16(tiny * 0.5f), 0x0000);  // exact tie -> even (0)
  EXPECT_EQ(f32_to_f16(tiny * 1.5f), 0x0002);  // tie between 1 and 2 -> 2
  EXPECT_EQ(f32_to_f16(tiny * 0.50001f), 0x0001);
  EXPECT_EQ(f32_to_f16(-tiny), 0x8001);
  EXPECT_EQ(f16_to_f32(0x03ff), 1023 * tiny);       // largest subnormal
  EXPECT_EQ(f32_to_f16(6.103515625e-05f), 0x0400);  // smallest normal
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_f16(INFINITY), 0x7c00);
  EXPECT_EQ(f32_to_f16(-INFINITY), 0xfc00);
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(NAN))));
}

TEST(DTypeNames, RoundTrip) {
  for (DType t : {DType::F32, DType::BF16, DType::F16, DType::I32, DType::I64, DType::U8, DType::BOOL})
    EXPECT_EQ(dtype_from_name(dtype_name(t)), t);
  EXPECT_FALSE(dtype_from_name("F8_E4M3").has_value());
}

static Tensor iota(const Shape& s) {
  std::vector<float> v(static_cast<size_t>(shape_numel(s)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i);
  return Tensor::from_floats(v, s);
}

TEST(TensorViews, NarrowSelectTranspose) {
  Tensor x = iota({3, 4});  // row-major 0..11
  Tensor r = x.select(0, 1);
  EXPECT_EQ(r.shape(), (Shape{4}));
  EXPECT_EQ(r.item_f32({2}), 6.0f);
  Tensor c = x.narrow(1, 1, 2);
  EXPECT_FALSE(c.is_contiguous());
  EXPECT_EQ(c.item_f32({2, 1}), 10.0f);
  Tensor t = x.transpose(0, 1);
  EXPECT_EQ(t.shape(), (Shape{4, 3}));
  EXPECT_EQ(t.item_f32({3, 2}), 11.0f);
  Tensor tc = t.contiguous();
  EXPECT_TRUE(tc.is_contiguous());
  EXPECT_EQ(tc.to_floats(), (std::vector<float>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}));
  // Views share storage: writing through a view is seen by the base.
  x.select(0, 2).data<float>()[0] = 100.0f;
  EXPECT_EQ(t.item_f32({0, 2}), 100.0f);
}

TEST(TensorViews, PermuteReshapeUnsqueeze) {
  Tensor x = iota({2, 3, 4});
  Tensor p = x.permute({2, 0, 1});
  EXPECT_EQ(p.shape(), (Shape{4, 2, 3}));
  EXPECT_EQ(p.item_f32({1, 1, 2}), x.item_f32({1, 2, 1}));
  Tensor r = x.reshape({6, -1});
  EXPECT_EQ(r.shape(), (Shape{6, 4}));
  EXPECT_THROW(p.reshape({24}), Error);  // non-contiguous
  EXPECT_EQ(p.contiguous().reshape({24}).numel(), 24);
  EXPECT_EQ(x.unsqueeze(0).shape(), (Shape{1, 2, 3, 4}));
  EXPECT_THROW(x.narrow(1, 2, 2), Error);
  EXPECT_THROW(x.permute({0, 0, 1}), Error);
}

TEST(TensorCopy, DTypeConversionsThroughViews) {
  Tensor x = Tensor::from_floats({1.0f, -2.0f, 0.5f, 3.0f}, {2, 2});
  Tensor b = x.transpose(0, 1).to(DType::BF16);
  EXPECT_EQ(b.dtype(), DType::BF16);
  EXPECT_EQ(b.to_floats(), (std::vector<float>{1.0f, 0.5f, -2.0f, 3.0f}));
  Tensor i = x.to(DType::I64);
  EXPECT_EQ(i.data<int64_t>()[1], -2);
  Tensor h = x.to(DType::F16).to(DType::F32);
  EXPECT_EQ(h.to_floats(), x.to_floats());
  Tensor z = Tensor::zeros({3}, DType::I32);
  EXPECT_EQ(z.data<int32_t>()[2], 0);
}

TEST(TensorCopy, CudaDeviceReportsCleanlyWhenAbsent) {
  const auto& st = cuda::status();
  if (st.usable) GTEST_SKIP() << "a CUDA device is present; covered by tests/cuda";
  EXPECT_FALSE(st.reason.empty());
  EXPECT_THROW(Tensor::empty({4}, DType::F32, Device::cuda()), Error);
}
