// q8 / q4 weights (ops/quant.h, docs/QUANTIZATION.md): the quantiser against hand-checked blocks and
// an independent re-statement of the rounding rules, the stored-layout checks, and every kernel
// (GEMV on each instruction set this CPU has, the packed GEMM, the portable paths) against its
// reference twin: dequantize() then a double-precision dot product.
//
// Tolerance of the kernels: they multiply x by w' = dequantize()'s exact values, so they differ
// from the exact dot product only by F32 summation: |err| <= (K + 2)·2^-24·Σ_k |w'_k||x_k| (+1 for
// the bias add and the final rounding), the bound tests/test_ops_cpu.cpp uses for BF16 weights.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/quant_gemv.h"
#include "ops/ops.h"
#include "ops/quant.h"
#include "tests/testutil.h"

using namespace sailvl;
using ops::QuantOptions;
using ops::QuantType;
using ops::Weight;
namespace cpu = sailvl::ops::cpu;

namespace {

constexpr double kU = 1.0 / 16777216.0;  // 2^-24

template <typename F>
std::string error_of(ErrorKind want, F&& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), want) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected an exception";
  return "";
}

// A float weight [N, K] (BF16 by default) whose blocks of 32 exercise the corners: Gaussian rows
// of different magnitudes, an all-zero block, a block with one huge value, a block of equal values,
// a constant negative block and values at rounding ties.
Tensor corner_weight(int64_t N, int64_t K, uint32_t seed, DType dt = DType::BF16) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(N * K));
  for (int64_t n = 0; n < N; ++n) {
    const float row_scale = std::ldexp(1.0f, static_cast<int>(n % 7) - 8);
    for (int64_t k = 0; k < K; ++k) {
      const int64_t blk = (n * (K / 32) + k / 32) % 9;
      float x = nd(g) * row_scale;
      if (blk == 1) x = 0;                                                        // all-zero block
      if (blk == 2 && k % 32 == 5) x = 40 * row_scale;                            // one outlier
      if (blk == 3) x = 0.75f * row_scale;                                        // all equal
      if (blk == 4) x = -0.5f * row_scale;                                        // all equal, negative
      if (blk == 5) x = (static_cast<float>(k % 32) - 16.0f) * 0.5f * row_scale;  // many halves
      v[static_cast<size_t>(n * K + k)] = x;
    }
  }
  return Tensor::from_floats(v, {N, K}, dt);
}

// Random codes over the full range and random F16 scales (some zero, some negative): a Weight in
// the stored layout made directly, so the kernels see every code value.
Weight random_codes(QuantType t, int64_t N, int64_t K, int64_t G, bool asym, uint32_t seed) {
  std::mt19937 g(seed);
  Weight w;
  w.type = t;
  w.group = G;
  const int64_t cpb = ops::quant_codes_per_byte(t);
  w.data = Tensor::empty({N, K / cpb}, t == QuantType::Q8 ? DType::I8 : DType::U8);
  auto* c = static_cast<uint8_t*>(w.data.raw_data());
  for (int64_t i = 0; i < N * K / cpb; ++i) {
    if (t == QuantType::Q8)
      c[i] = static_cast<uint8_t>(static_cast<int8_t>(static_cast<int>(g() % 255) - 127));
    else
      c[i] = static_cast<uint8_t>(g() & 0xff);
  }
  std::uniform_real_distribution<float> sd(-0.05f, 0.05f);
  const auto scales = [&] {
    Tensor s = Tensor::empty({N, K / G}, DType::F16);
    for (int64_t i = 0; i < N * K / G; ++i) s.data<uint16_t>()[i] = f32_to_f16(i % 11 == 3 ? 0.0f : sd(g));
    return s;
  };
  w.scale = scales();
  if (asym) w.zero = scales();
  return w;
}

struct Reference {
  std::vector<double> y;  // [M, N]
  double worst_abs = 0;   // max over outputs of Σ|w'||x| (+1)
};

Reference reference(const Tensor& x2d, const Weight& w, const Tensor* bias) {
  const Tensor wd = ops::dequantize(w);
  const std::vector<float> xv = x2d.contiguous().to_floats(), wv = wd.to_floats();
  const std::vector<float> bv = bias ? bias->to_floats() : std::vector<float>();
  const int64_t M = x2d.size(0), N = w.rows(), K = w.cols();
  Reference r;
  r.y.resize(static_cast<size_t>(M * N));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double s = 0, a = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double p = static_cast<double>(xv[m * K + k]) * wv[n * K + k];
        s += p;
        a += std::fabs(p);
      }
      r.y[m * N + n] = s + (bias ? bv[n] : 0.0);
      r.worst_abs = std::max(r.worst_abs, a + 1.0);
    }
  return r;
}

Tensor from_doubles(const std::vector<double>& v, const Shape& s) {
  return Tensor::from_floats(std::vector<float>(v.begin(), v.end()), s);
}

Tensor rand_x(int64_t M, int64_t K, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(M * K));
  for (auto& e : v) e = nd(g);
  return Tensor::from_floats(v, {M, K});
}

std::vector<cpu::QuantIsa> supported_isas() {
  std::vector<cpu::QuantIsa> v{cpu::QuantIsa::Scalar};
  if (cpu::quant_isa_best() >= cpu::QuantIsa::Avx2) v.push_back(cpu::QuantIsa::Avx2);
  if (cpu::quant_isa_best() >= cpu::QuantIsa::Avx512) v.push_back(cpu::QuantIsa::Avx512);
  return v;
}

// Restores the best instruction set when a test ends.
struct IsaGuard {
  ~IsaGuard() { cpu::set_quant_isa(cpu::quant_isa_best()); }
};

uint16_t f16_bits(const Tensor& t, int64_t i) { return t.data<const uint16_t>()[i]; }

}  // namespace

// ---------------------------------------------------------------------------------------------
// The formats

TEST(QuantFormat, Names) {
  EXPECT_STREQ(ops::quant_type_name(QuantType::Q8), "q8");
  EXPECT_STREQ(ops::quant_type_name(QuantType::Q4), "q4");
  EXPECT_EQ(ops::quant_type_from_name("q4"), QuantType::Q4);
  EXPECT_EQ(ops::quant_type_from_name("none"), QuantType::None);
  EXPECT_FALSE(ops::quant_type_from_name("Q4").has_value());
  EXPECT_EQ(ops::quant_scale_name("model.layers.0.mlp.down_proj.weight"), "model.layers.0.mlp.down_proj.weight_scale");
  EXPECT_EQ(ops::quant_group(QuantType::Q8), 32);
  EXPECT_EQ(ops::quant_group(QuantType::Q4), 32);
  EXPECT_EQ(dtype_from_name("I8"), DType::I8);
  EXPECT_STREQ(dtype_name(DType::I8), "I8");
  EXPECT_EQ(dtype_size(DType::I8), 1u);
}

TEST(QuantFormat, WeightFromTensorAndStored) {
  Tensor f = Tensor::zeros({6, 64}, DType::BF16);
  const Weight w = f;  // implicit
  EXPECT_FALSE(w.quantized());
  EXPECT_EQ(w.rows(), 6);
  EXPECT_EQ(w.cols(), 64);
  EXPECT_EQ(w.nbytes(), 6u * 64 * 2);

  const Weight q4 = ops::quantize(f, QuantType::Q4);
  EXPECT_EQ(q4.data.describe(), "U8[6, 32] cpu");
  EXPECT_EQ(q4.scale.describe(), "F16[6, 2] cpu");
  EXPECT_EQ(q4.cols(), 64);
  EXPECT_EQ(q4.nbytes(), 6u * 32 + 6u * 2 * 2);
  EXPECT_EQ(q4.describe(), "q4[6, 64] g32 cpu");
  const Weight s4 = Weight::from_stored(QuantType::Q4, q4.data, q4.scale, "a.weight");
  EXPECT_EQ(s4.group, 32);
  EXPECT_EQ(s4.cols(), 64);
  const Weight q8 = ops::quantize(f, QuantType::Q8);
  EXPECT_EQ(q8.data.describe(), "I8[6, 64] cpu");
  EXPECT_EQ(Weight::from_stored(QuantType::Q8, q8.data, q8.scale, "b.weight").rows(), 6);

  // The stored layout is checked with BadModel and the tensor's name.
  std::string m =
      error_of(ErrorKind::BadModel, [&] { Weight::from_stored(QuantType::Q8, q4.data, q4.scale, "c.weight"); });
  EXPECT_NE(m.find("c.weight"), std::string::npos) << m;
  EXPECT_NE(m.find("I8"), std::string::npos) << m;
  m = error_of(ErrorKind::BadModel, [&] {
    Weight::from_stored(QuantType::Q4, q4.data, Tensor::zeros({6, 4}, DType::F16), "d.weight");
  });
  EXPECT_NE(m.find("d.weight_scale"), std::string::npos) << m;
  error_of(ErrorKind::BadModel,
           [&] { Weight::from_stored(QuantType::Q4, q4.data, q4.scale.to(DType::F32), "e.weight"); });
  // A group of 64 (scales [6, 1]) is not the stored q4 format.
  error_of(ErrorKind::BadModel, [&] {
    Weight::from_stored(QuantType::Q4, q4.data, Tensor::zeros({6, 1}, DType::F16), "f.weight");
  });
  error_of(ErrorKind::BadModel, [&] { Weight::from_stored(QuantType::Q4, Tensor(), q4.scale, "g.weight"); });
}

TEST(QuantFormat, RefusesKNotAMultipleOfTheGroup) {
  Tensor w = Tensor::zeros({4, 48}, DType::BF16);
  for (QuantType t : {QuantType::Q8, QuantType::Q4}) {
    const std::string m = error_of(ErrorKind::BadModel, [&] { ops::quantize(w, t); });
    EXPECT_NE(m.find("not a multiple"), std::string::npos) << m;
    EXPECT_NE(m.find("48"), std::string::npos) << m;
  }
  error_of(ErrorKind::BadModel, [&] {
    ops::quantize(Tensor::zeros({4, 96}, DType::BF16), QuantType::Q4, {64, false});
  });
  error_of(ErrorKind::Internal, [&] { ops::quantize(w, QuantType::Q4, {48, false}); });  // not a multiple of 32
}

TEST(QuantFormat, RefusesNonFiniteAndOverflowingScales) {
  std::vector<float> v(64, 0.5f);
  v[40] = NAN;
  const std::string m = error_of(ErrorKind::BadModel, [&] {
    ops::quantize(Tensor::from_floats(v, {2, 32}), QuantType::Q8);
  });
  EXPECT_NE(m.find("row 1"), std::string::npos) << m;
  v[40] = 1e7f;  // 1e7 / 127 > 65504: no F16 scale
  error_of(ErrorKind::BadModel, [&] { ops::quantize(Tensor::from_floats(v, {2, 32}), QuantType::Q8); });
  v[40] = 1e6f;  // 1e6 / 8 > 65504
  error_of(ErrorKind::BadModel, [&] { ops::quantize(Tensor::from_floats(v, {2, 32}), QuantType::Q4); });
  EXPECT_NO_THROW(ops::quantize(Tensor::from_floats(v, {2, 32}), QuantType::Q8));
}

TEST(QuantFormat, Q8HandCheckedBlock) {
  // s = 127·2^-7 / 127 = 2^-7 exactly: codes are w·128 rounded half to even.
  std::vector<float> v(32, 0.0f);
  v[0] = 127.0f / 128;   // the maximum: +127
  v[1] = -127.0f / 128;  // -127
  v[2] = 2.5f / 128;     // tie -> 2
  v[3] = 3.5f / 128;     // tie -> 4
  v[4] = -2.5f / 128;    // tie -> -2
  v[5] = 1.25f / 128;    // -> 1
  v[6] = 0.5f / 128;     // tie -> 0
  const Weight q = ops::quantize(Tensor::from_floats(v, {1, 32}), QuantType::Q8);
  EXPECT_EQ(f16_bits(q.scale, 0), f32_to_f16(1.0f / 128));
  const int8_t* c = q.data.data<const int8_t>();
  EXPECT_EQ(c[0], 127);
  EXPECT_EQ(c[1], -127);
  EXPECT_EQ(c[2], 2);
  EXPECT_EQ(c[3], 4);
  EXPECT_EQ(c[4], -2);
  EXPECT_EQ(c[5], 1);
  EXPECT_EQ(c[6], 0);
  EXPECT_EQ(c[7], 0);
  EXPECT_EQ(ops::dequantize(q).to_floats()[3], 4.0f / 128);
}

TEST(QuantFormat, Q4HandCheckedBlocks) {
  // Block 0: the largest magnitude is +8·2^-4 at k = 3 (the first of a tie with -8·2^-4 at k = 9),
  // so s = -2^-4: w = +0.5 -> c = -8 (nibble 0), w = -0.5 -> c = 8 -> clamped to 7 (nibble 15).
  // Block 1: all zero -> s = +0, every nibble 8. Block 2: largest is negative, -7·2^-3 -> s = 2^-3 · 7/8.
  std::vector<float> v(96, 0.0f);
  v[3] = 0.5f;
  v[9] = -0.5f;
  v[10] = 0.25f;      // 0.25 / -2^-4 = -4 -> nibble 4
  v[11] = 1.5f / 16;  // -1.5 -> tie -> -2 -> nibble 6
  v[12] = 2.5f / 16;  // -2.5 -> -2 -> nibble 6
  v[64] = -7.0f / 8;
  v[65] = 7.0f / 8;
  const Weight q = ops::quantize(Tensor::from_floats(v, {1, 96}), QuantType::Q4);
  ASSERT_EQ(q.scale.numel(), 3);
  EXPECT_EQ(f16_bits(q.scale, 0), f32_to_f16(-1.0f / 16));
  EXPECT_EQ(f16_bits(q.scale, 1), 0);  // +0
  EXPECT_EQ(f16_bits(q.scale, 2), f32_to_f16(7.0f / 64));
  const uint8_t* b = q.data.data<const uint8_t>();
  const auto nib = [&](int64_t k) { return k % 2 == 0 ? b[k / 2] & 0xf : b[k / 2] >> 4; };  // the documented order
  EXPECT_EQ(nib(3), 0);
  EXPECT_EQ(nib(9), 15);
  EXPECT_EQ(nib(10), 4);
  EXPECT_EQ(nib(11), 6);
  EXPECT_EQ(nib(12), 6);
  EXPECT_EQ(nib(0), 8);
  for (int64_t k = 32; k < 64; ++k) EXPECT_EQ(nib(k), 8) << k;
  EXPECT_EQ(nib(64), 0);   // -7/8 / (7/64) = -8
  EXPECT_EQ(nib(65), 15);  // +8 -> 7
  const std::vector<float> d = ops::dequantize(q).to_floats();
  EXPECT_EQ(d[3], 0.5f);
  EXPECT_EQ(d[9], -7.0f / 16);
  EXPECT_EQ(d[64], -7.0f / 8);
  EXPECT_EQ(d[65], 49.0f / 64);
}

// The rules of ops/quant.h restated independently (per element, no shared code) and compared code
// by code, scale bit by scale bit, on BF16, F16 and F32 inputs with corner blocks.
TEST(QuantFormat, MatchesTheStatedRulesExactly) {
  for (DType dt : {DType::BF16, DType::F16, DType::F32}) {
    const int64_t N = 23, K = 320;
    const Tensor wf = corner_weight(N, K, 7 + static_cast<uint32_t>(dt), dt);
    const std::vector<float> v = wf.to_floats();
    const Weight q8 = ops::quantize(wf, QuantType::Q8), q4 = ops::quantize(wf, QuantType::Q4);
    const Weight a4 = ops::quantize(wf, QuantType::Q4, {64, true});
    for (int64_t n = 0; n < N; ++n)
      for (int64_t b = 0; b < K / 32; ++b) {
        const float* blk = v.data() + n * K + b * 32;
        float amax = 0, m = 0;
        for (int k = 0; k < 32; ++k) {
          amax = std::max(amax, std::fabs(blk[k]));
          if (std::fabs(blk[k]) > std::fabs(m)) m = blk[k];
        }
        uint16_t s8 = f32_to_f16(amax / 127.0f), s4 = f32_to_f16(m / -8.0f);
        if ((s4 & 0x7fff) == 0) s4 = 0;
        ASSERT_EQ(f16_bits(q8.scale, n * (K / 32) + b), s8) << n << "," << b;
        ASSERT_EQ(f16_bits(q4.scale, n * (K / 32) + b), s4) << n << "," << b;
        for (int k = 0; k < 32; ++k) {
          const int64_t kk = b * 32 + k;
          const float sf8 = f16_to_f32(s8), sf4 = f16_to_f32(s4);
          const int want8 =
              sf8 == 0 ? 0 : static_cast<int>(std::max(-127.0f, std::min(127.0f, std::rint(blk[k] / sf8))));
          const int want4 =
              sf4 == 0 ? 8 : static_cast<int>(std::max(-8.0f, std::min(7.0f, std::rint(blk[k] / sf4)))) + 8;
          ASSERT_EQ(q8.data.data<const int8_t>()[n * K + kk], want8) << n << "," << kk;
          const uint8_t byte = q4.data.data<const uint8_t>()[n * (K / 2) + kk / 2];
          ASSERT_EQ(kk % 2 == 0 ? byte & 0xf : byte >> 4, want4) << n << "," << kk;
        }
      }
    // The asymmetric study variant, group 64.
    for (int64_t n = 0; n < N; ++n)
      for (int64_t b = 0; b < K / 64; ++b) {
        const float* blk = v.data() + n * K + b * 64;
        float lo = blk[0], hi = blk[0];
        for (int k = 0; k < 64; ++k) lo = std::min(lo, blk[k]), hi = std::max(hi, blk[k]);
        uint16_t zh = f32_to_f16(lo);
        if ((zh & 0x7fff) == 0) zh = 0;
        const float z = f16_to_f32(zh);
        uint16_t sh = f32_to_f16((hi - z) / 15.0f);
        if ((sh & 0x7fff) == 0) sh = 0;
        const float s = f16_to_f32(sh);
        ASSERT_EQ(f16_bits(a4.scale, n * (K / 64) + b), sh);
        ASSERT_EQ(f16_bits(a4.zero, n * (K / 64) + b), zh);
        for (int k = 0; k < 64; ++k) {
          const int64_t kk = b * 64 + k;
          const int want = s == 0 ? 0 : static_cast<int>(std::max(0.0f, std::min(15.0f, std::rint((blk[k] - z) / s))));
          const uint8_t byte = a4.data.data<const uint8_t>()[n * (K / 2) + kk / 2];
          ASSERT_EQ(kk % 2 == 0 ? byte & 0xf : byte >> 4, want) << n << "," << kk;
        }
      }
  }
}

TEST(QuantFormat, DequantizeErrorWithinHalfAStep) {
  const int64_t N = 40, K = 256;
  const Tensor wf = corner_weight(N, K, 3, DType::F32);
  const std::vector<float> v = wf.to_floats();
  for (QuantType t : {QuantType::Q8, QuantType::Q4}) {
    const Weight q = ops::quantize(wf, t);
    const std::vector<float> d = ops::dequantize(q).to_floats();
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) {
        const double s = std::fabs(f16_to_f32(f16_bits(q.scale, n * (K / 32) + k / 32)));
        const double err = std::fabs(static_cast<double>(v[n * K + k]) - d[n * K + k]);
        // Half a step, plus the F16 rounding of the scale stretched over the largest code; q4's +8
        // clamp (a weight of the largest magnitude and the opposite sign) costs at most one step.
        const double bound = t == QuantType::Q8 ? 0.5 * s + 127 * s * 0x1p-11 : 1.0 * s + 8 * s * 0x1p-11;
        ASSERT_LE(err, bound * (1 + 1e-6)) << quant_type_name(t) << " " << n << "," << k;
        if (s == 0) {
          ASSERT_EQ(d[n * K + k], 0.0f);
        }
      }
  }
}

TEST(QuantFormat, ThreadCountDoesNotChangeTheResult) {
  const Tensor wf = corner_weight(97, 512, 5);
  const int before = ops::num_threads();
  ops::set_num_threads(1);
  const Weight a = ops::quantize(wf, QuantType::Q4);
  ops::set_num_threads(2);
  const Weight b = ops::quantize(wf, QuantType::Q4);
  ops::set_num_threads(before);
  EXPECT_EQ(std::memcmp(a.data.raw_data(), b.data.raw_data(), a.data.nbytes()), 0);
  EXPECT_EQ(std::memcmp(a.scale.raw_data(), b.scale.raw_data(), a.scale.nbytes()), 0);
}

// ---------------------------------------------------------------------------------------------
// The kernels against dequantize() + a double dot product

struct KernelCase {
  QuantType type;
  int64_t M, N, K, group;
  bool asym, random_codes, bias;
};

void PrintTo(const KernelCase& c, std::ostream* os) {
  *os << quant_type_name(c.type) << " M=" << c.M << " N=" << c.N << " K=" << c.K << " g" << c.group
      << (c.asym ? " asym" : "") << (c.random_codes ? " random codes" : " quantised") << (c.bias ? " +bias" : "");
}

class QuantLinear : public ::testing::TestWithParam<KernelCase> {};

TEST_P(QuantLinear, MatchesDequantizedReferenceOnEveryIsa) {
  const KernelCase c = GetParam();
  const uint32_t seed = static_cast<uint32_t>(c.M * 7919 + c.N * 131 + c.K + c.group + (c.asym ? 1 : 0));
  const Weight w = c.random_codes ? random_codes(c.type, c.N, c.K, c.group, c.asym, seed)
                                  : ops::quantize(corner_weight(c.N, c.K, seed), c.type, {c.group, c.asym});
  const Tensor x = rand_x(c.M, c.K, seed + 1);
  const Tensor b = rand_x(1, c.N, seed + 2).reshape({c.N});
  const Reference ref = reference(x, w, c.bias ? &b : nullptr);
  const double atol = (c.K + 2) * kU * ref.worst_abs;
  IsaGuard guard;
  for (cpu::QuantIsa isa : supported_isas()) {
    cpu::set_quant_isa(isa);
    SCOPED_TRACE(cpu::quant_isa_name(isa));
    Tensor out = Tensor::empty({c.M, c.N}, DType::F32);
    ops::linear(out, x, w, c.bias ? std::optional<Tensor>(b) : std::nullopt);
    EXPECT_CLOSE(out, from_doubles(ref.y, {c.M, c.N}), atol, 0.0);
  }
}

std::vector<KernelCase> kernel_cases() {
  std::vector<KernelCase> v;
  for (QuantType t : {QuantType::Q8, QuantType::Q4})
    for (int64_t M : {1, 2, 3, 4, 5, 17}) {
      // N not a multiple of any row block (8/4/2) and a single row; K at 1, 2, 16 and 17 groups
      // (the scale batches of 16 and a tail of one).
      v.push_back({t, M, 37, 32, 32, false, false, M % 2 == 1});
      v.push_back({t, M, 9, 64, 32, false, true, false});
      v.push_back({t, M, 1, 512, 32, false, false, true});
      v.push_back({t, M, 29, 544, 32, false, true, M == 1});
    }
  // Decode-like sizes, with the scale batches full.
  v.push_back({QuantType::Q8, 1, 256, 1536, 32, false, false, true});
  v.push_back({QuantType::Q4, 1, 256, 1536, 32, false, false, true});
  v.push_back({QuantType::Q4, 2, 130, 1024, 32, false, true, false});
  // The packed GEMM: two K blocks with a tail, several 16-column strips, a 6-row tail.
  v.push_back({QuantType::Q8, 130, 1030, 576, 32, false, false, true});
  v.push_back({QuantType::Q4, 127, 70, 544, 32, false, true, false});
  // The q4 study variants: other groups and the asymmetric code.
  for (int64_t G : {64, 128})
    for (int64_t M : {1, 3, 9}) v.push_back({QuantType::Q4, M, 19, 4 * G, G, false, false, false});
  for (int64_t M : {1, 2, 4, 7}) {
    v.push_back({QuantType::Q4, M, 21, 256, 32, true, false, true});
    v.push_back({QuantType::Q4, M, 13, 384, 128, true, true, false});
  }
  v.push_back({QuantType::Q8, 3, 11, 256, 64, false, true, false});  // q8 at another group (kernels allow it)
  return v;
}

INSTANTIATE_TEST_SUITE_P(Cases, QuantLinear, ::testing::ValuesIn(kernel_cases()), [](const auto& info) {
  const auto& c = info.param;
  return std::string(quant_type_name(c.type)) + "_M" + std::to_string(c.M) + "_N" + std::to_string(c.N) + "_K" +
         std::to_string(c.K) + "_g" + std::to_string(c.group) + (c.asym ? "_asym" : "") +
         (c.random_codes ? "_codes" : "") + (c.bias ? "_bias" : "");
});

TEST(QuantLinear, MaxMagnitudeCodes) {
  // Every code at its extreme (q8 ±127, q4 nibbles 0 and 15) with the largest scale seen in
  // practice and x of one sign: the sums are as large as they get, and each ISA must agree.
  const int64_t N = 11, K = 1024;
  for (QuantType t : {QuantType::Q8, QuantType::Q4}) {
    Weight w = random_codes(t, N, K, 32, false, 1);
    auto* c = static_cast<uint8_t*>(w.data.raw_data());
    for (int64_t i = 0; i < w.data.numel(); ++i)
      c[i] = t == QuantType::Q8 ? static_cast<uint8_t>(i % 3 == 0 ? -127 : 127) : (i % 3 == 0 ? 0x0f : 0xf0);
    for (int64_t i = 0; i < w.scale.numel(); ++i) w.scale.data<uint16_t>()[i] = f32_to_f16(i % 2 ? 0.5f : -0.25f);
    Tensor x = Tensor::from_floats(std::vector<float>(static_cast<size_t>(2 * K), 1.5f), {2, K});
    const Reference ref = reference(x, w, nullptr);
    IsaGuard guard;
    for (cpu::QuantIsa isa : supported_isas()) {
      cpu::set_quant_isa(isa);
      Tensor out = Tensor::empty({2, N}, DType::F32);
      ops::linear(out, x, w);
      EXPECT_CLOSE(out, from_doubles(ref.y, {2, N}), (K + 2) * kU * ref.worst_abs, 0.0) << cpu::quant_isa_name(isa);
    }
  }
}

TEST(QuantLinear, StridedViewsAndGemvGemmAgree) {
  // x a column slice of a wider matrix and a 3-D view; out a slice of a wider output. GEMV (M <= 4)
  // and GEMM (M > 4) see the same rows.
  const int64_t K = 256, N = 45;
  for (QuantType t : {QuantType::Q8, QuantType::Q4}) {
    const Weight w = ops::quantize(corner_weight(N, K, 21), t);
    for (int64_t M : {3, 9}) {
      Tensor xw = rand_x(M, K + 5, 30 + static_cast<uint32_t>(M));
      Tensor x = xw.narrow(1, 2, K);
      Tensor ow = Tensor::zeros({M, N + 3}, DType::F32);
      Tensor out = ow.narrow(1, 1, N);
      ops::linear(out, x, w);
      Tensor want = Tensor::empty({M, N}, DType::F32);
      ops::linear(want, x.contiguous(), w);
      EXPECT_CLOSE(out, want, 0.0, 0.0);  // same kernel, same order: bit-identical
      for (int64_t m = 0; m < M; ++m) {
        EXPECT_EQ(ow.item_f32({m, 0}), 0.0f);
        EXPECT_EQ(ow.item_f32({m, N + 1}), 0.0f);
      }
    }
    const Tensor x9 = rand_x(9, K, 40);
    Tensor big = Tensor::empty({9, N}, DType::F32), small = Tensor::empty({4, N}, DType::F32);
    ops::linear(big, x9, w);
    ops::linear(small, x9.narrow(0, 0, 4), w);
    const Reference ref = reference(x9, w, nullptr);
    EXPECT_CLOSE(big.narrow(0, 0, 4), small, 2 * (K + 2) * kU * ref.worst_abs, 0.0);
    Tensor o3 = Tensor::empty({2, 3, N}, DType::F32), o2 = Tensor::empty({6, N}, DType::F32);
    const Tensor x3 = rand_x(6, K, 41).reshape({2, 3, K});
    ops::linear(o3, x3, w);
    ops::linear(o2, x3.reshape({6, K}), w);
    EXPECT_CLOSE(o3.reshape({6, N}), o2, 0.0, 0.0);
  }
}

TEST(QuantLinear, AgreesWithTheFloatWeightItCameFrom) {
  // Not a tolerance of the kernel but of the format: y = x·w'ᵀ against x·wᵀ for a Gaussian weight,
  // relative RMS error (docs/QUANTIZATION.md: ~0.5 % for q8, ~9 % for q4 on Gaussian weights).
  const int64_t M = 4, N = 256, K = 1024;
  std::mt19937 g(9);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::vector<float> v(static_cast<size_t>(N * K));
  for (auto& e : v) e = nd(g);
  const Tensor wf = Tensor::from_floats(v, {N, K}, DType::BF16);
  const Tensor x = rand_x(M, K, 10);
  Tensor yf = Tensor::empty({M, N}, DType::F32);
  ops::linear(yf, x, wf);
  for (auto [t, limit] : {std::pair{QuantType::Q8, 0.008}, std::pair{QuantType::Q4, 0.11}}) {
    Tensor yq = Tensor::empty({M, N}, DType::F32);
    ops::linear(yq, x, ops::quantize(wf, t));
    const std::vector<float> a = yf.to_floats(), b = yq.to_floats();
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) num += (a[i] - b[i]) * (a[i] - b[i]), den += a[i] * a[i];
    EXPECT_LT(std::sqrt(num / den), limit) << quant_type_name(t);
    EXPECT_GT(std::sqrt(num / den), limit / 4) << quant_type_name(t);  // it did quantise
  }
}

TEST(QuantLinear, RunsTheBestInstructionSetTheCpuHas) {
  // The runtime dispatch: AVX-512 exactly when the CPU (and OS) report it, in any AVX2 build.
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
  __builtin_cpu_init();
  EXPECT_EQ(cpu::quant_isa_best(), __builtin_cpu_supports("avx512f") ? cpu::QuantIsa::Avx512 : cpu::QuantIsa::Avx2);
#else
  EXPECT_EQ(cpu::quant_isa_best(), cpu::QuantIsa::Scalar);
#endif
  EXPECT_EQ(cpu::quant_isa(), cpu::quant_isa_best());
  std::printf("quantised GEMV instruction set: %s\n", cpu::quant_isa_name(cpu::quant_isa()));
}

TEST(QuantLinear, RejectsInconsistentWeights) {
  const Tensor x = rand_x(1, 64, 1);
  Tensor out = Tensor::empty({1, 4}, DType::F32);
  Weight w = ops::quantize(Tensor::zeros({4, 64}, DType::BF16), QuantType::Q4);
  Weight bad = w;
  bad.group = 48;  // K % G != 0 and G not a multiple of 32
  EXPECT_NE(error_of(ErrorKind::Internal, [&] { ops::linear(out, x, bad); }).find("group"), std::string::npos);
  bad = w;
  bad.group = 64;  // scales [4, 2] do not match a group of 64
  error_of(ErrorKind::Internal, [&] { ops::linear(out, x, bad); });
  bad = w;
  bad.type = QuantType::Q8;  // U8 codes
  error_of(ErrorKind::Internal, [&] { ops::linear(out, x, bad); });
  bad = w;
  bad.scale = Tensor();
  error_of(ErrorKind::Internal, [&] { ops::linear(out, x, bad); });
  bad = w;
  bad.data = w.data.narrow(1, 0, 16);  // K = 32 no longer matches x
  error_of(ErrorKind::Internal, [&] { ops::linear(out, x, bad); });
  EXPECT_THROW(cpu::set_quant_isa(static_cast<cpu::QuantIsa>(3)), Error);
}

// ---------------------------------------------------------------------------------------------
// The q4 format study of docs/QUANTIZATION.md (not part of the suite: it prints a table).
//   build-q/test_quant --gtest_also_run_disabled_tests --gtest_filter='*Q4FormatStudy*'

namespace {

// Relative RMS error of w' against w, and of x·w'ᵀ against x·wᵀ for Gaussian x (16 rows).
std::pair<double, double> format_error(const Tensor& wf, const Weight& q, const Tensor& x) {
  const int64_t N = wf.size(0), K = wf.size(1), M = x.size(0);
  const std::vector<float> a = wf.to_floats(), b = ops::dequantize(q).to_floats(), xv = x.to_floats();
  double ew = 0, nw = 0, ey = 0, ny = 0;
  for (size_t i = 0; i < a.size(); ++i) ew += (double(a[i]) - b[i]) * (double(a[i]) - b[i]), nw += double(a[i]) * a[i];
#pragma omp parallel for reduction(+ : ey, ny) schedule(static)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t m = 0; m < M; ++m) {
      double y = 0, yq = 0;
      for (int64_t k = 0; k < K; ++k)
        y += double(xv[m * K + k]) * a[n * K + k], yq += double(xv[m * K + k]) * b[n * K + k];
      ey += (y - yq) * (y - yq);
      ny += y * y;
    }
  return {std::sqrt(ew / nw), std::sqrt(ey / ny)};
}

}  // namespace

TEST(QuantStudy, DISABLED_Q4FormatStudy) {
  const int64_t N = 1024, K = 4096;
  std::mt19937 g(2026);
  std::normal_distribution<float> gauss(0.0f, 0.02f);
  std::student_t_distribution<float> t4(4.0f);
  std::vector<float> vg(static_cast<size_t>(N * K)), vt(vg.size()), vo(vg.size());
  for (auto& e : vg) e = gauss(g);
  for (auto& e : vt) e = 0.02f / std::sqrt(2.0f) * t4(g);  // t(4) has variance 2: same RMS as the Gaussian
  vo = vt;
  std::vector<int64_t> cols;  // 16 outlier input columns (0.4 % of K), ×10
  for (int i = 0; i < 16; ++i) cols.push_back(static_cast<int64_t>(g() % K));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c : cols) vo[static_cast<size_t>(n * K + c)] *= 10;
  const Tensor x = rand_x(16, K, 77);
  struct Dist {
    const char* name;
    Tensor w;
  };
  const Dist dists[] = {{"gaussian", Tensor::from_floats(vg, {N, K}, DType::BF16)},
                        {"student-t4", Tensor::from_floats(vt, {N, K}, DType::BF16)},
                        {"t4 + 16 outlier columns x10", Tensor::from_floats(vo, {N, K}, DType::BF16)}};
  struct Cand {
    const char* name;
    QuantType t;
    QuantOptions o;
  };
  const Cand cands[] = {{"q8 g32", QuantType::Q8, {}},
                        {"q4 sym g32", QuantType::Q4, {32, false}},
                        {"q4 sym g64", QuantType::Q4, {64, false}},
                        {"q4 sym g128", QuantType::Q4, {128, false}},
                        {"q4 asym g32", QuantType::Q4, {32, true}},
                        {"q4 asym g64", QuantType::Q4, {64, true}},
                        {"q4 asym g128", QuantType::Q4, {128, true}}};
  std::printf("%-14s %6s", "format", "bits/w");
  for (const Dist& d : dists) std::printf(" | %-30s", d.name);
  std::printf("\n%-14s %6s", "", "");
  for (size_t i = 0; i < std::size(dists); ++i) std::printf(" | %-14s %-15s", "rms(w-w')/rms", "rms(y-y')/rms");
  std::printf("\n");
  for (const Cand& c : cands) {
    const Weight q0 = ops::quantize(dists[0].w, c.t, c.o);
    std::printf("%-14s %6.3f", c.name, 8.0 * q0.nbytes() / (N * K));
    for (const Dist& d : dists) {
      const auto [ew, ey] = format_error(d.w, ops::quantize(d.w, c.t, c.o), x);
      std::printf(" | %13.2f%% %14.2f%%", 100 * ew, 100 * ey);
    }
    std::printf("\n");
  }
}
