// CPU ops (ops/cpu/*.cpp) against independent naive double-precision implementations written here.
//
// Inputs are random with fixed seeds and deliberately odd sizes (K = 77, N = 129, T = 5 ...) so that
// vector tails, panel tails and tile tails are all exercised. Tolerances are derived per test from
// the F32 rounding-error bound of the computation (u = 2^-24 is the F32 unit roundoff):
// a K-term F32 dot product has |err| <= K·u·Σ|x_k||w_k| (worst case; the typical error is far smaller).
#include <cmath>
#include <map>
#include <ostream>
#include <random>
#include <set>
#include <vector>

#include "ops/cpu/cpu_ops.h"
#include "ops/ops.h"
#include "tests/testutil.h"

using namespace sailvl;
namespace cpu = sailvl::ops::cpu;
using sailvl::ops::AttentionParams;
using sailvl::ops::SamplingParams;

namespace {

constexpr double kU = 1.0 / 16777216.0;  // 2^-24

std::vector<float> rand_vec(int64_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(g);
  return v;
}

Tensor rand_tensor(const Shape& s, uint32_t seed, DType dt = DType::F32, float lo = -1.0f, float hi = 1.0f) {
  return Tensor::from_floats(rand_vec(shape_numel(s), seed, lo, hi), s, dt);
}

std::vector<double> dvals(const Tensor& t) {
  const std::vector<float> f = t.to_floats();
  return std::vector<double>(f.begin(), f.end());
}

Tensor from_doubles(const std::vector<double>& v, const Shape& s) {
  return Tensor::from_floats(std::vector<float>(v.begin(), v.end()), s);
}

template <typename F>
ErrorKind error_kind(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.kind();
  }
  ADD_FAILURE() << "expected an exception";
  return ErrorKind::Usage;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// linear

struct LinearCase {
  int64_t M, N, K;
  DType wt;
  bool bias;
};

void PrintTo(const LinearCase& c, std::ostream* os) {
  *os << "M=" << c.M << " N=" << c.N << " K=" << c.K << " w=" << dtype_name(c.wt) << (c.bias ? " +bias" : "");
}

class LinearTest : public ::testing::TestWithParam<LinearCase> {};

TEST_P(LinearTest, MatchesNaiveDouble) {
  const auto c = GetParam();
  const uint32_t seed = static_cast<uint32_t>(c.M * 1000003 + c.N * 101 + c.K + static_cast<int>(c.wt) * 7);
  Tensor x = rand_tensor({c.M, c.K}, seed);
  Tensor w = rand_tensor({c.N, c.K}, seed + 1, c.wt);
  Tensor b = rand_tensor({c.N}, seed + 2, DType::BF16);
  Tensor out = Tensor::empty({c.M, c.N}, DType::F32);
  cpu::linear(out, x, w, c.bias ? std::optional<Tensor>(b) : std::nullopt);

  const auto xv = dvals(x), wv = dvals(w), bv = dvals(b);  // w's values exactly as stored
  std::vector<double> ref(static_cast<size_t>(c.M * c.N));
  double worst_abs_sum = 0;
  for (int64_t m = 0; m < c.M; ++m)
    for (int64_t n = 0; n < c.N; ++n) {
      double s = 0, a = 0;
      for (int64_t k = 0; k < c.K; ++k) {
        s += xv[m * c.K + k] * wv[n * c.K + k];
        a += std::abs(xv[m * c.K + k] * wv[n * c.K + k]);
      }
      ref[m * c.N + n] = s + (c.bias ? bv[n] : 0.0);
      worst_abs_sum = std::max(worst_abs_sum, a + 1.0);
    }
  // F32 dot-product bound K·u·Σ|x||w| (+1 for the bias add and the final rounding).
  const double atol = (c.K + 2) * kU * worst_abs_sum;
  EXPECT_CLOSE(out, from_doubles(ref, {c.M, c.N}), atol, 0.0);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, LinearTest,
    ::testing::Values(LinearCase{1, 129, 77, DType::BF16, true}, LinearCase{2, 129, 77, DType::BF16, false},
                      LinearCase{3, 129, 77, DType::BF16, true}, LinearCase{4, 131, 256, DType::BF16, true},
                      LinearCase{1, 37, 256, DType::F32, true}, LinearCase{1, 40, 64, DType::F16, false},
                      LinearCase{4, 9, 7, DType::F16, true},       // K < 8: pure scalar tail
                      LinearCase{5, 129, 77, DType::BF16, true},   // smallest GEMM
                      LinearCase{33, 300, 64, DType::BF16, true},  // several panels + a tail panel
                      LinearCase{70, 129, 77, DType::F32, true}, LinearCase{17, 50, 40, DType::F16, false},
                      // the packed GEMM's block edges: M past one 120-row block with a 6-row tail
                      // of 4, N over several column blocks with a 16-column strip tail, K over two
                      // 256-deep blocks with a tail that is not a multiple of 8
                      LinearCase{130, 1030, 600, DType::BF16, true}, LinearCase{127, 70, 513, DType::F32, true},
                      LinearCase{13, 35, 300, DType::F16, false}, LinearCase{6, 16, 256, DType::BF16, false},
                      // the batched-decode GEMV (5 <= M <= 16): full and partial groups of 4 x rows
                      LinearCase{16, 129, 77, DType::F32, true}, LinearCase{11, 131, 264, DType::BF16, false}),
    [](const auto& info) {
      const auto& c = info.param;
      return "M" + std::to_string(c.M) + "_N" + std::to_string(c.N) + "_K" + std::to_string(c.K) + "_" +
             dtype_name(c.wt) + (c.bias ? "_bias" : "");
    });

TEST(Linear, StridedAndBatchedViews) {
  // x is a column slice of a wider matrix (row stride K+5), out a slice of a wider output, and
  // a 3-D [2, 3, K] input flattens to 6 rows. Both the GEMV (M <= 4) and GEMM paths.
  const int64_t K = 77, N = 45;
  Tensor w = rand_tensor({N, K}, 11, DType::BF16);
  for (int64_t M : {3, 9}) {
    Tensor xw = rand_tensor({M, K + 5}, 12 + static_cast<uint32_t>(M));
    Tensor x = xw.narrow(1, 2, K);
    Tensor ow = Tensor::zeros({M, N + 3}, DType::F32);
    Tensor out = ow.narrow(1, 1, N);
    cpu::linear(out, x, w, std::nullopt);
    Tensor want = Tensor::empty({M, N}, DType::F32);
    cpu::linear(want, x.contiguous(), w, std::nullopt);
    EXPECT_CLOSE(out, want, 0.0, 0.0);  // same kernel, same order: bit-identical
    // The padding columns were not touched.
    for (int64_t m = 0; m < M; ++m) {
      EXPECT_EQ(ow.item_f32({m, 0}), 0.0f);
      EXPECT_EQ(ow.item_f32({m, N + 1}), 0.0f);
      EXPECT_EQ(ow.item_f32({m, N + 2}), 0.0f);
    }
  }
  Tensor x3 = rand_tensor({2, 3, K}, 13);
  Tensor o3 = Tensor::empty({2, 3, N}, DType::F32);
  cpu::linear(o3, x3, w, std::nullopt);
  Tensor o2 = Tensor::empty({6, N}, DType::F32);
  cpu::linear(o2, x3.reshape({6, K}), w, std::nullopt);
  EXPECT_CLOSE(o3.reshape({6, N}), o2, 0.0, 0.0);
}

TEST(Linear, GemvAndGemmAgree) {
  // The same rows through both paths: M = 4 (GEMV) vs those 4 rows inside an M = 12 GEMM.
  const int64_t K = 1536, N = 96;
  Tensor w = rand_tensor({N, K}, 21, DType::BF16);
  Tensor x = rand_tensor({12, K}, 22);
  Tensor big = Tensor::empty({12, N}, DType::F32), small = Tensor::empty({4, N}, DType::F32);
  cpu::linear(big, x, w, std::nullopt);
  cpu::linear(small, x.narrow(0, 0, 4), w, std::nullopt);
  // Both are F32 sums of 1536 terms of size <= 1 in different orders: |diff| <= 2·K·u·Σ|xw|,
  // Σ|xw| ~ K/4 for uniform [-1, 1] inputs.
  EXPECT_CLOSE(small, big.narrow(0, 0, 4), 2.0 * K * kU * (K / 4.0), 0.0);
}

TEST(Linear, BatchedDecodeRowsEqualSingleRows) {
  // Continuous batching runs one GEMV for B sequences (M = B <= 16). Each row's dot products are
  // formed in the same order whatever M is, so a row's output is bit-identical to the M = 1 call:
  // batching cannot change a sequence's logits through the linears.
  const int64_t K = 1544, N = 97;  // K % 8 != 0 (the scalar tail), N odd (the 1-row tail block)
  for (const DType wt : {DType::BF16, DType::F16, DType::F32}) {
    Tensor w = rand_tensor({N, K}, 31, wt);
    for (int64_t M : {2, 3, 4, 5, 8, 16}) {
      SCOPED_TRACE(::testing::Message() << dtype_name(wt) << " M=" << M);
      Tensor x = rand_tensor({M, K}, 32 + static_cast<uint32_t>(M));
      Tensor all = Tensor::empty({M, N}, DType::F32);
      cpu::linear(all, x, w, std::nullopt);
      for (int64_t m = 0; m < M; ++m) {
        Tensor one = Tensor::empty({1, N}, DType::F32);
        cpu::linear(one, x.narrow(0, m, 1), w, std::nullopt);
        EXPECT_CLOSE(all.narrow(0, m, 1), one, 0.0, 0.0);
      }
    }
  }
}

TEST(Linear, RejectsBadShapes) {
  Tensor x = rand_tensor({2, 8}, 1), w = rand_tensor({3, 9}, 2, DType::BF16), out = Tensor::empty({2, 3}, DType::F32);
  EXPECT_EQ(error_kind([&] { cpu::linear(out, x, w, std::nullopt); }), ErrorKind::Internal);
  Tensor w2 = rand_tensor({3, 8}, 2, DType::BF16);
  Tensor bad_out = Tensor::empty({2, 4}, DType::F32);
  EXPECT_EQ(error_kind([&] { cpu::linear(bad_out, x, w2, std::nullopt); }), ErrorKind::Internal);
  Tensor xt = rand_tensor({8, 2}, 3).transpose(0, 1);  // last dim not contiguous
  EXPECT_EQ(error_kind([&] { cpu::linear(out, xt, w2, std::nullopt); }), ErrorKind::Internal);
}

// ---------------------------------------------------------------------------------------------
// norms

TEST(LayerNorm, MatchesNaiveDouble) {
  for (int64_t D : {77, 1024}) {
    const int64_t R = 5;
    Tensor x = rand_tensor({R, D}, 31, DType::F32, -3.0f, 5.0f);  // mean far from 0
    Tensor w = rand_tensor({D}, 32, DType::BF16, 0.5f, 1.5f), b = rand_tensor({D}, 33, DType::BF16);
    Tensor out = Tensor::empty({R, D}, DType::F32);
    const float eps = 1e-6f;
    cpu::layer_norm(out, x, w, b, eps);
    const auto xv = dvals(x), wv = dvals(w), bv = dvals(b);
    std::vector<double> ref(xv.size());
    for (int64_t r = 0; r < R; ++r) {
      double mean = 0, var = 0;
      for (int64_t c = 0; c < D; ++c) mean += xv[r * D + c];
      mean /= D;
      for (int64_t c = 0; c < D; ++c) var += (xv[r * D + c] - mean) * (xv[r * D + c] - mean);
      var /= D;
      for (int64_t c = 0; c < D; ++c) ref[r * D + c] = (xv[r * D + c] - mean) / std::sqrt(var + eps) * wv[c] + bv[c];
    }
    // |x - mean| <= 8, normalised values <= ~3, |w| <= 1.5: a handful of F32 roundings of values
    // below ~12 gives < 8 ulp(12) ≈ 8e-6.
    EXPECT_CLOSE(out, from_doubles(ref, {R, D}), 8e-6, 0.0);
    // In place.
    Tensor y = x.clone();
    cpu::layer_norm(y, y, w, b, eps);
    EXPECT_CLOSE(y, out, 0.0, 0.0);
  }
}

TEST(RmsNorm, MatchesNaiveDouble) {
  for (DType wt : {DType::BF16, DType::F32}) {
    const int64_t R = 6, D = 1536 + 3;
    Tensor x = rand_tensor({2, 3, D}, 41, DType::F32, -4.0f, 4.0f);
    Tensor w = rand_tensor({D}, 42, wt, 0.5f, 1.5f);
    Tensor out = Tensor::empty({2, 3, D}, DType::F32);
    cpu::rms_norm(out, x, w, 1e-6f);
    const auto xv = dvals(x), wv = dvals(w);
    std::vector<double> ref(xv.size());
    for (int64_t r = 0; r < R; ++r) {
      double ss = 0;
      for (int64_t c = 0; c < D; ++c) ss += xv[r * D + c] * xv[r * D + c];
      const double inv = 1.0 / std::sqrt(ss / D + 1e-6);
      for (int64_t c = 0; c < D; ++c) ref[r * D + c] = xv[r * D + c] * inv * wv[c];
    }
    // |x·inv| <= ~2, |w| <= 1.5: ~4 F32 roundings of values below 3: 4·ulp(3)·... < 2e-6.
    EXPECT_CLOSE(out, from_doubles(ref, {2, 3, D}), 2e-6, 0.0);
  }
}

// ---------------------------------------------------------------------------------------------
// rope

namespace {
// HF's float32 recipe (docs/MODEL.md §7, ops.h): the angle is computed in float32 exactly as HF does,
// the rotation in double.
std::vector<double> rope_ref(const std::vector<double>& x, const std::vector<int64_t>& pos, int64_t H, int64_t Dh,
                             double theta) {
  const int64_t T = static_cast<int64_t>(pos.size()), half = Dh / 2;
  std::vector<double> y(x.size());
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const float inv = 1.0f / std::pow(static_cast<float>(theta), static_cast<float>(2 * i) / static_cast<float>(Dh));
      const float f = static_cast<float>(pos[t]) * inv;
      const double c = static_cast<float>(std::cos(static_cast<double>(f)));
      const double s = static_cast<float>(std::sin(static_cast<double>(f)));
      for (int64_t h = 0; h < H; ++h) {
        const int64_t o = (t * H + h) * Dh;
        y[o + i] = x[o + i] * c - x[o + i + half] * s;
        y[o + i + half] = x[o + i + half] * c + x[o + i] * s;
      }
    }
  return y;
}
}  // namespace

TEST(Rope, MatchesHfFloat32Recipe) {
  const int64_t T = 5, H = 3, Dh = 128;
  const std::vector<int64_t> pos = {0, 1, 7, 1000, 32767};
  Tensor x = rand_tensor({T, H, Dh}, 51);
  const auto ref = rope_ref(dvals(x), pos, H, Dh, 1e6);
  Tensor p64 = Tensor::empty({T}, DType::I64);
  for (int64_t t = 0; t < T; ++t) p64.data<int64_t>()[t] = pos[t];
  Tensor y = x.clone();
  cpu::rope(y, p64, 1e6);
  // Two products and a sum of values below 1: < 3 ulp(1) = 4e-7.
  EXPECT_CLOSE(y, from_doubles(ref, {T, H, Dh}), 4e-7, 0.0);
  // I32 positions give the same result.
  Tensor p32 = p64.to(DType::I32);
  Tensor y32 = x.clone();
  cpu::rope(y32, p32, 1e6);
  EXPECT_CLOSE(y32, y, 0.0, 0.0);
}

TEST(Rope, SmallPositionsMatchExactRotation) {
  // For small positions the float32 angle is accurate to ~pos·2^-23 rad, so an exact (double)
  // rotation agrees within that: a sanity check that does not copy the float32 recipe.
  const int64_t T = 4, H = 2, Dh = 64;
  Tensor x = rand_tensor({T, H, Dh}, 52);
  Tensor pos = Tensor::empty({T}, DType::I64);
  for (int64_t t = 0; t < T; ++t) pos.data<int64_t>()[t] = 3 * t;
  Tensor y = x.clone();
  cpu::rope(y, pos, 10000.0);
  const auto xv = dvals(x);
  std::vector<double> ref(xv.size());
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < Dh / 2; ++i) {
        const double a = 3.0 * t / std::pow(10000.0, 2.0 * i / Dh);
        const int64_t o = (t * H + h) * Dh;
        ref[o + i] = xv[o + i] * std::cos(a) - xv[o + i + Dh / 2] * std::sin(a);
        ref[o + i + Dh / 2] = xv[o + i + Dh / 2] * std::cos(a) + xv[o + i] * std::sin(a);
      }
  // angle error <= 9·2^-23 ≈ 1.1e-6 rad, times |x| <= 1 (twice), plus rounding.
  EXPECT_CLOSE(y, from_doubles(ref, {T, H, Dh}), 3e-6, 0.0);
}

TEST(Rope, StridedSliceOfFusedQkv) {
  // q = first H heads of a fused [T, 3H, Dh] buffer: row stride 3H·Dh. Only q's columns change.
  const int64_t T = 5, H = 2, Dh = 32;
  Tensor qkv = rand_tensor({T, 3 * H, Dh}, 53);
  Tensor before = qkv.clone();
  Tensor pos = Tensor::empty({T}, DType::I32);
  for (int64_t t = 0; t < T; ++t) pos.data<int32_t>()[t] = static_cast<int32_t>(10 + t);
  Tensor q = qkv.narrow(1, H, H);  // the middle block, to be sure the offset is honoured
  cpu::rope(q, pos, 1e6);
  Tensor want = before.narrow(1, H, H).contiguous();
  cpu::rope(want, pos, 1e6);
  EXPECT_CLOSE(q, want, 0.0, 0.0);
  EXPECT_CLOSE(qkv.narrow(1, 0, H), before.narrow(1, 0, H), 0.0, 0.0);
  EXPECT_CLOSE(qkv.narrow(1, 2 * H, H), before.narrow(1, 2 * H, H), 0.0, 0.0);
}

// ---------------------------------------------------------------------------------------------
// attention

namespace {
std::vector<double> attention_ref(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p) {
  const int64_t T = q.size(0), H = q.size(1), Dh = q.size(2), S = k.size(0), Hkv = k.size(1);
  const auto qv = dvals(q), kv = dvals(k), vv = dvals(v);  // to_floats makes them contiguous
  const double scale = p.scale != 0 ? p.scale : 1.0 / std::sqrt(static_cast<double>(Dh));
  std::vector<double> out(static_cast<size_t>(T * H * Dh), 0.0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / (H / Hkv);
      const int64_t lim = p.causal ? std::min(S, p.q_offset + t + 1) : S;
      std::vector<double> s(static_cast<size_t>(lim));
      double mx = -1e300, z = 0;
      for (int64_t j = 0; j < lim; ++j) {
        double d = 0;
        for (int64_t e = 0; e < Dh; ++e) d += qv[(t * H + h) * Dh + e] * kv[(j * Hkv + g) * Dh + e];
        s[j] = d * scale;
        mx = std::max(mx, s[j]);
      }
      for (auto& x : s) z += (x = std::exp(x - mx));
      for (int64_t j = 0; j < lim; ++j)
        for (int64_t e = 0; e < Dh; ++e) out[(t * H + h) * Dh + e] += s[j] / z * vv[(j * Hkv + g) * Dh + e];
    }
  return out;
}

struct AttnCase {
  int64_t T, S, H, Hkv, Dh;
  bool causal;
  int64_t q_offset;
  bool views;  // k/v as a prefix of a larger cache, q as a slice of a fused QKV buffer
};
void PrintTo(const AttnCase& c, std::ostream* os) {
  *os << "T=" << c.T << " S=" << c.S << " H=" << c.H << " Hkv=" << c.Hkv << " Dh=" << c.Dh
      << (c.causal ? " causal q_offset=" + std::to_string(c.q_offset) : " bidirectional") << (c.views ? " views" : "");
}
}  // namespace

class AttentionTest : public ::testing::TestWithParam<AttnCase> {};

TEST_P(AttentionTest, MatchesNaiveDouble) {
  const auto c = GetParam();
  const uint32_t seed = static_cast<uint32_t>(c.T * 31 + c.S * 7 + c.H * 3 + c.Hkv + c.Dh);
  Tensor q, k, v;
  if (c.views) {
    Tensor fused = rand_tensor({c.T, 3 * c.H, c.Dh}, seed);
    q = fused.narrow(1, c.H, c.H);
    Tensor kc = rand_tensor({c.S + 9, c.Hkv, c.Dh}, seed + 1);
    Tensor vc = rand_tensor({c.S + 9, c.Hkv, c.Dh}, seed + 2);
    k = kc.narrow(0, 0, c.S);
    v = vc.narrow(0, 0, c.S);
  } else {
    q = rand_tensor({c.T, c.H, c.Dh}, seed);
    k = rand_tensor({c.S, c.Hkv, c.Dh}, seed + 1);
    v = rand_tensor({c.S, c.Hkv, c.Dh}, seed + 2);
  }
  AttentionParams p;
  p.causal = c.causal;
  p.q_offset = c.q_offset;
  Tensor out = Tensor::empty({c.T, c.H, c.Dh}, DType::F32);
  cpu::attention(out, q, k, v, p);
  // Scores: Dh-term F32 dot products of values in [-1, 1]: |err| <= Dh·u·Σ|qk|·scale, and
  // Σ|qk| <= Dh, so <= Dh^1.5·u (7.5e-5 for Dh = 128; random inputs sit ~sqrt(Dh) lower). The
  // softmax turns a score error δ into relative weight errors <= 2δ, and out is a convex
  // combination of |v| <= 1, plus S-term F32 sums in P·V. 2e-5 is ~20x the typical error.
  EXPECT_CLOSE(out, from_doubles(attention_ref(q, k, v, p), {c.T, c.H, c.Dh}), 2e-5, 0.0);
}

INSTANTIATE_TEST_SUITE_P(Cases, AttentionTest,
                         ::testing::Values(AttnCase{5, 5, 2, 2, 16, false, 0, false},   // bidirectional, ratio 1
                                           AttnCase{70, 70, 3, 3, 64, false, 0, true},  // ViT-like, two query tiles
                                           AttnCase{5, 5, 4, 2, 32, true, 0, false},    // causal prefill, ratio 2
                                           AttnCase{5, 12, 14, 2, 64, true, 7, true},   // causal with q_offset, ratio 7
                                           AttnCase{130, 130, 2, 1, 16, true, 0, false},  // causal, many tiles, ratio 2
                                           AttnCase{1, 300, 12, 2, 128, true, 299, true},  // decode over a cache prefix
                                           AttnCase{1, 33, 7, 1, 128, true, 32, false},    // decode, ratio 7
                                           AttnCase{3, 9, 6, 3, 8, false, 0, true}),       // bidirectional with views
                         [](const auto& info) {
                           const auto& c = info.param;
                           return "T" + std::to_string(c.T) + "_S" + std::to_string(c.S) + "_H" + std::to_string(c.H) +
                                  "_Hkv" + std::to_string(c.Hkv) + "_D" + std::to_string(c.Dh) +
                                  (c.causal ? "_causal" : "_bidir") + "_off" + std::to_string(c.q_offset) +
                                  (c.views ? "_views" : "");
                         });

TEST(Attention, ExplicitScaleAndErrors) {
  Tensor q = rand_tensor({4, 2, 8}, 61), k = rand_tensor({6, 2, 8}, 62), v = rand_tensor({6, 2, 8}, 63);
  AttentionParams p;
  p.scale = 0.7f;
  Tensor out = Tensor::empty({4, 2, 8}, DType::F32);
  cpu::attention(out, q, k, v, p);
  EXPECT_CLOSE(out, from_doubles(attention_ref(q, k, v, p), {4, 2, 8}), 2e-6, 0.0);
  Tensor k3 = rand_tensor({6, 3, 8}, 64), v3 = rand_tensor({6, 3, 8}, 65);
  EXPECT_EQ(error_kind([&] { cpu::attention(out, q, k3, v3, p); }), ErrorKind::Internal);  // 2 % 3 != 0
}

// batch = 3 through the dispatcher: each sequence of 5 queries sees only its own 7 keys, so the
// result equals three separate calls (bit for bit: the same kernel runs each sequence).
TEST(Attention, BatchedSequencesAttendOnlyToThemselves) {
  Tensor q = rand_tensor({15, 2, 8}, 66), k = rand_tensor({21, 2, 8}, 67), v = rand_tensor({21, 2, 8}, 68);
  AttentionParams p;
  p.batch = 3;
  Tensor got = Tensor::empty({15, 2, 8}, DType::F32), want = Tensor::empty({15, 2, 8}, DType::F32);
  ops::attention(got, q, k, v, p);
  for (int64_t b = 0; b < 3; ++b)
    cpu::attention(want.narrow(0, 5 * b, 5), q.narrow(0, 5 * b, 5), k.narrow(0, 7 * b, 7), v.narrow(0, 7 * b, 7), {});
  EXPECT_CLOSE(got, want, 0.0, 0.0);
  p.batch = 4;  // 15 rows do not split into 4 sequences
  EXPECT_EQ(error_kind([&] { ops::attention(got, q, k, v, p); }), ErrorKind::Internal);
}

// ---------------------------------------------------------------------------------------------
// elementwise

TEST(Elementwise, GeluErf) {
  Tensor x = rand_tensor({7, 33}, 71, DType::F32, -6.0f, 6.0f);
  Tensor out = Tensor::empty({7, 33}, DType::F32);
  cpu::gelu_erf(out, x);
  auto xv = dvals(x);
  for (auto& a : xv) a = 0.5 * a * (1.0 + std::erf(a / std::sqrt(2.0)));
  // A few F32 roundings (erf to < 1 ulp): relative 4u plus an absolute floor near the zero of gelu.
  EXPECT_CLOSE(out, from_doubles(xv, {7, 33}), 1e-7, 4 * 16 * kU);
}

TEST(Elementwise, GeluErfDenseGrid) {
  // Every x in [-20, 20) at step 2^-9 (20480 points; the AVX2 polynomial pieces switch at
  // |x| = 0.84·√2 and 2.22·√2), against double. The negative tail goes to 0, so the bound is
  // relative: ~11 units of 2^-24 by the error budget in ops/cpu/gelu_erf.cpp (+ the 1e-37 floor
  // where e^{-x²/2} underflows).
  const int64_t n = 20480;
  std::vector<float> xs(n);
  for (int64_t i = 0; i < n; ++i) xs[i] = -20.0f + static_cast<float>(i) / 512.0f;
  Tensor x = Tensor::from_floats(xs, {n});
  Tensor out = Tensor::empty({n}, DType::F32);
  cpu::gelu_erf(out, x);
  std::vector<double> ref(n);
  for (int64_t i = 0; i < n; ++i) ref[i] = 0.5 * xs[i] * std::erfc(-static_cast<double>(xs[i]) / std::sqrt(2.0));
  EXPECT_CLOSE(out, from_doubles(ref, {n}), 1e-37, 16 * kU);
}

TEST(Elementwise, SiluMulInPlace) {
  Tensor g = rand_tensor({5, 130}, 72, DType::F32, -8.0f, 8.0f), u = rand_tensor({5, 130}, 73);
  const auto gv = dvals(g), uv = dvals(u);
  std::vector<double> ref(gv.size());
  for (size_t i = 0; i < gv.size(); ++i) ref[i] = gv[i] / (1.0 + std::exp(-gv[i])) * uv[i];
  cpu::silu_mul(g, g, u);  // out aliases gate
  EXPECT_CLOSE(g, from_doubles(ref, {5, 130}), 1e-7, 8 * kU * 16);
}

TEST(Elementwise, AddAndAddScaled) {
  Tensor a = rand_tensor({3, 4, 29}, 74), b = rand_tensor({3, 4, 29}, 75);
  Tensor s = rand_tensor({29}, 76, DType::BF16, 0.4f, 0.6f);
  Tensor out = Tensor::empty({3, 4, 29}, DType::F32);
  cpu::add(out, a, b);
  auto av = dvals(a), bv = dvals(b), sv = dvals(s);
  std::vector<double> ref(av.size()), ref2(av.size());
  for (size_t i = 0; i < av.size(); ++i) {
    ref[i] = av[i] + bv[i];
    ref2[i] = av[i] + sv[i % 29] * bv[i];
  }
  EXPECT_CLOSE(out, from_doubles(ref, {3, 4, 29}), 0.0, kU);         // one rounding
  cpu::add_scaled(a, a, s, b);                                       // in place: h += s ⊙ y
  EXPECT_CLOSE(a, from_doubles(ref2, {3, 4, 29}), 2 * kU * 2, 0.0);  // two roundings of values < 2
  Tensor s_bad = rand_tensor({28}, 77);
  EXPECT_EQ(error_kind([&] { cpu::add_scaled(out, a, s_bad, b); }), ErrorKind::Internal);
  Tensor b_bad = rand_tensor({3, 4, 28}, 78);
  EXPECT_EQ(error_kind([&] { cpu::add(out, a, b_bad); }), ErrorKind::Internal);
}

// ---------------------------------------------------------------------------------------------
// patch embedding, pixel shuffle, embedding, scatter

TEST(PatchEmbed, MatchesDirectConvolution) {
  struct C {
    int64_t T, S, P, Cout;
    DType wt;
  };
  for (const C c : {C{2, 28, 7, 5, DType::BF16}, C{1, 14, 7, 9, DType::F32}, C{2, 42, 14, 33, DType::BF16}}) {
    Tensor px = rand_tensor({c.T, 3, c.S, c.S}, 81, DType::F32, -2.0f, 2.0f);
    Tensor w = rand_tensor({c.Cout, 3, c.P, c.P}, 82, c.wt, -0.1f, 0.1f);
    Tensor b = rand_tensor({c.Cout}, 83, DType::BF16);
    const int64_t G = c.S / c.P;
    Tensor out = Tensor::empty({c.T, G * G, c.Cout}, DType::F32);
    cpu::patch_embed(out, px, w, b);
    const auto pv = dvals(px), wv = dvals(w), bv = dvals(b);
    std::vector<double> ref(static_cast<size_t>(c.T * G * G * c.Cout));
    double worst = 0;
    for (int64_t t = 0; t < c.T; ++t)
      for (int64_t gy = 0; gy < G; ++gy)
        for (int64_t gx = 0; gx < G; ++gx)
          for (int64_t o = 0; o < c.Cout; ++o) {
            double s = bv[o], a = 0;
            for (int64_t ch = 0; ch < 3; ++ch)
              for (int64_t ky = 0; ky < c.P; ++ky)
                for (int64_t kx = 0; kx < c.P; ++kx) {
                  const double term = pv[((t * 3 + ch) * c.S + gy * c.P + ky) * c.S + gx * c.P + kx] *
                                      wv[((o * 3 + ch) * c.P + ky) * c.P + kx];
                  s += term;
                  a += std::abs(term);
                }
            ref[((t * G + gy) * G + gx) * c.Cout + o] = s;
            worst = std::max(worst, a + 1.0);
          }
    const double K = 3.0 * c.P * c.P;
    EXPECT_CLOSE(out, from_doubles(ref, {c.T, G * G, c.Cout}), (K + 2) * kU * worst, 0.0);
  }
}

TEST(PixelShuffleV2, HandCheckedGrid) {
  // G = 4, C = 1, in[t, n] = 100·t + n. Output token (i, j) takes grid cells (2i+dy, 2j+dx) in the
  // channel order (dy, dx) = (0,0), (0,1), (1,0), (1,1).
  Tensor in = Tensor::empty({2, 16, 1}, DType::F32);
  for (int64_t t = 0; t < 2; ++t)
    for (int64_t n = 0; n < 16; ++n) in.data<float>()[t * 16 + n] = static_cast<float>(100 * t + n);
  Tensor out = Tensor::empty({2, 4, 4}, DType::F32);
  cpu::pixel_shuffle_v2(out, in);
  const std::vector<float> want = {0,   1,   4,   5,   2,   3,   6,   7,   8,   9,   12,  13,  10,  11,  14,  15,
                                   100, 101, 104, 105, 102, 103, 106, 107, 108, 109, 112, 113, 110, 111, 114, 115};
  EXPECT_EQ(out.to_floats(), want);
}

TEST(PixelShuffleV2, ChannelBlocksFollowSpecFormula) {
  const int64_t T = 2, G = 6, C = 5;
  Tensor in = rand_tensor({T, G * G, C}, 91);
  Tensor out = Tensor::empty({T, G * G / 4, 4 * C}, DType::F32);
  cpu::pixel_shuffle_v2(out, in);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < G / 2; ++i)
      for (int64_t j = 0; j < G / 2; ++j)
        for (int64_t dy = 0; dy < 2; ++dy)
          for (int64_t dx = 0; dx < 2; ++dx)
            for (int64_t c = 0; c < C; ++c)
              ASSERT_EQ(out.item_f32({t, i * (G / 2) + j, (2 * dy + dx) * C + c}),
                        in.item_f32({t, (2 * i + dy) * G + (2 * j + dx), c}));
  Tensor odd = rand_tensor({1, 25, 2}, 92), odd_out = Tensor::empty({1, 6, 8}, DType::F32);
  EXPECT_EQ(error_kind([&] { cpu::pixel_shuffle_v2(odd_out, odd); }), ErrorKind::Internal);
}

TEST(Embedding, GathersRowsAndChecksIds) {
  const int64_t V = 50, D = 33;
  Tensor table = rand_tensor({V, D}, 101, DType::BF16);
  const std::vector<int64_t> ids = {0, 49, 7, 7, 23};
  Tensor i64 = Tensor::empty({5}, DType::I64);
  for (int64_t t = 0; t < 5; ++t) i64.data<int64_t>()[t] = ids[t];
  const auto tv = table.to_floats();
  std::vector<float> want;
  for (int64_t id : ids) want.insert(want.end(), tv.begin() + id * D, tv.begin() + (id + 1) * D);
  for (DType it : {DType::I64, DType::I32}) {
    Tensor out = Tensor::empty({5, D}, DType::F32);
    cpu::embedding(out, i64.to(it), table);
    EXPECT_EQ(out.to_floats(), want);  // BF16 -> F32 is exact
  }
  Tensor out = Tensor::empty({1, D}, DType::F32);
  Tensor bad = Tensor::empty({1}, DType::I64);
  bad.data<int64_t>()[0] = V;
  EXPECT_EQ(error_kind([&] { cpu::embedding(out, bad, table); }), ErrorKind::Internal);
  bad.data<int64_t>()[0] = -1;
  EXPECT_EQ(error_kind([&] { cpu::embedding(out, bad, table); }), ErrorKind::Internal);
}

TEST(ScatterRows, WritesOnlyListedRows) {
  Tensor dst = Tensor::zeros({10, 7}, DType::F32);
  Tensor src = rand_tensor({3, 7}, 111);
  Tensor rows = Tensor::empty({3}, DType::I64);
  const int64_t r[3] = {3, 0, 9};
  for (int k = 0; k < 3; ++k) rows.data<int64_t>()[k] = r[k];
  cpu::scatter_rows(dst, rows, src);
  for (int64_t i = 0; i < 10; ++i)
    for (int64_t c = 0; c < 7; ++c) {
      float want = 0;
      for (int k = 0; k < 3; ++k)
        if (r[k] == i) want = src.item_f32({k, c});
      ASSERT_EQ(dst.item_f32({i, c}), want) << i << "," << c;
    }
  rows.data<int64_t>()[1] = 10;
  Tensor before = dst.clone();
  EXPECT_EQ(error_kind([&] { cpu::scatter_rows(dst, rows, src); }), ErrorKind::Internal);
  EXPECT_EQ(dst.to_floats(), before.to_floats());  // nothing written on error
}

// ---------------------------------------------------------------------------------------------
// sampling

namespace {
Tensor logits_of(const std::vector<float>& l) { return Tensor::from_floats(l, {static_cast<int64_t>(l.size())}); }

// Counts of `n` draws at steps 0..n-1.
std::map<int64_t, int64_t> histogram(const Tensor& logits, const SamplingParams& p, int64_t n) {
  std::map<int64_t, int64_t> h;
  for (int64_t s = 0; s < n; ++s) ++h[cpu::sample(logits, p, static_cast<uint64_t>(s))];
  return h;
}

// Frequencies within 4 standard deviations of the expected probabilities (ids not in `probs`
// must never appear).
void expect_frequencies(const std::map<int64_t, int64_t>& h, const std::map<int64_t, double>& probs, int64_t n) {
  for (const auto& [id, count] : h) EXPECT_TRUE(probs.count(id)) << "id " << id << " drawn " << count << " times";
  for (const auto& [id, pr] : probs) {
    const double expect = n * pr, sigma = std::sqrt(n * pr * (1 - pr));
    const int64_t got = h.count(id) ? h.at(id) : 0;
    EXPECT_NEAR(static_cast<double>(got), expect, 4 * sigma + 1) << "id " << id << " p=" << pr;
  }
}

std::map<int64_t, double> softmax_of(const std::vector<double>& l, const std::vector<int64_t>& ids) {
  double mx = -1e300, z = 0;
  for (int64_t i : ids) mx = std::max(mx, l[i]);
  for (int64_t i : ids) z += std::exp(l[i] - mx);
  std::map<int64_t, double> p;
  for (int64_t i : ids) p[i] = std::exp(l[i] - mx) / z;
  return p;
}
}  // namespace

TEST(Sample, GreedyTiesBansAndPadding) {
  SamplingParams p;                                             // temperature 0 = greedy
  EXPECT_EQ(cpu::sample(logits_of({1, 3, 2, 3, 0}), p, 0), 1);  // tie 1 vs 3 -> lowest id
  const int64_t ban[] = {1};
  p.banned = ban;
  EXPECT_EQ(cpu::sample(logits_of({1, 3, 2, 3, 0}), p, 0), 3);
  p.allowed_vocab = 3;  // ids 3, 4 are padding
  EXPECT_EQ(cpu::sample(logits_of({1, 3, 2, 3, 9}), p, 0), 2);
  const int64_t ban_all[] = {0, 1, 2};
  p.banned = ban_all;
  EXPECT_EQ(error_kind([&] { cpu::sample(logits_of({1, 3, 2, 3, 9}), p, 0); }), ErrorKind::Internal);
  SamplingParams q;
  EXPECT_EQ(error_kind([&] { cpu::sample(logits_of({1, NAN, 2}), q, 0); }), ErrorKind::NonFinite);
}

TEST(Sample, RepetitionPenaltySignRule) {
  // HF: positive logits are divided by r, negative ones multiplied; each distinct id once.
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  const int64_t hist[] = {0, 0, 0};
  p.history = hist;
  EXPECT_EQ(cpu::sample(logits_of({2.0f, 1.5f}), p, 0), 1);  // 2 -> 1 (once, not 0.25)
  EXPECT_EQ(cpu::sample(logits_of({1.9f, 1.0f}), p, 0), 1);  // 1.9 -> 0.95 < 1.0
  EXPECT_EQ(cpu::sample(logits_of({2.1f, 1.0f}), p, 0), 0);  // 2.1 -> 1.05 > 1.0
}

TEST(Sample, RepetitionPenaltyNegativeAndOnce) {
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  const int64_t hist[] = {0, 0};
  p.history = hist;
  // -0.5 -> -1.0 loses to -0.8; a (wrong) division would give -0.25 and win.
  EXPECT_EQ(cpu::sample(logits_of({-0.5f, -0.8f}), p, 0), 1);
  // 3 -> 1.5 beats 1.2; applying the penalty twice (0.75) would lose.
  EXPECT_EQ(cpu::sample(logits_of({3.0f, 1.2f}), p, 0), 0);
  // Sampling mode: logits {1, 1}, history {0}: p0 = e^0.5 / (e^0.5 + e^1).
  p.temperature = 1.0f;
  const int64_t n = 20000;
  expect_frequencies(histogram(logits_of({1.0f, 1.0f}), p, n), softmax_of({0.5, 1.0}, {0, 1}), n);
}

TEST(Sample, UniformDrawFormula) {
  // The documented draw: u = (mix(seed ^ mix((step+1)·GOLDEN)) >> 40) · 2^-24, candidates by
  // probability descending. With two equal logits (p = 1/2 each, order id 0 then id 1), id 0 is
  // chosen iff u·W < 1 with W = 2, i.e. u < 0.5.
  auto mix = [](uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  SamplingParams p;
  p.temperature = 1.0f;
  for (uint64_t seed : {0ull, 1ull, 12345ull})
    for (uint64_t step = 0; step < 200; ++step) {
      p.seed = seed;
      const double u = static_cast<double>(mix(seed ^ mix((step + 1) * 0x9E3779B97F4A7C15ull)) >> 40) / 16777216.0;
      ASSERT_EQ(cpu::sample(logits_of({0.25f, 0.25f}), p, step), u < 0.5 ? 0 : 1) << seed << " " << step;
    }
}

TEST(Sample, ReproducibleForSeedAndStep) {
  std::vector<float> l = rand_vec(1000, 121, -3.0f, 3.0f);
  SamplingParams p;
  p.temperature = 0.8f;
  p.top_k = 50;
  p.top_p = 0.9f;
  p.seed = 42;
  std::set<int64_t> seen;
  for (uint64_t s = 0; s < 50; ++s) {
    const int64_t a = cpu::sample(logits_of(l), p, s), b = cpu::sample(logits_of(l), p, s);
    EXPECT_EQ(a, b);
    seen.insert(a);
  }
  EXPECT_GT(seen.size(), 5u);  // steps do change the draw
  SamplingParams p2 = p;
  p2.seed = 43;
  int differ = 0;
  for (uint64_t s = 0; s < 50; ++s) differ += cpu::sample(logits_of(l), p, s) != cpu::sample(logits_of(l), p2, s);
  EXPECT_GT(differ, 10);  // and so does the seed
}

TEST(Sample, FrequenciesMatchSoftmaxWithTemperature) {
  const std::vector<double> l = {1.0, 0.5, 0.0, -1.0, 2.0};
  const std::vector<float> lf(l.begin(), l.end());
  const int64_t n = 20000;
  for (float temp : {1.0f, 2.0f, 0.5f}) {
    SamplingParams p;
    p.temperature = temp;
    p.seed = 7;
    std::vector<double> scaled;
    for (double x : l) scaled.push_back(static_cast<double>(static_cast<float>(x) / temp));
    expect_frequencies(histogram(logits_of(lf), p, n), softmax_of(scaled, {0, 1, 2, 3, 4}), n);
  }
}

TEST(Sample, TopKKeepsKAndBoundaryTies) {
  const int64_t n = 20000;
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 2;
  p.seed = 3;
  const std::vector<double> l = {0.3, 2.0, -1.0, 1.2, 0.9};
  expect_frequencies(histogram(logits_of({0.3f, 2.0f, -1.0f, 1.2f, 0.9f}), p, n), softmax_of(l, {1, 3}), n);
  // Ties with the k-th value are kept (HF removes only logits < the k-th largest).
  const std::vector<double> t = {3.0, 2.0, 2.0, 1.0};
  expect_frequencies(histogram(logits_of({3.0f, 2.0f, 2.0f, 1.0f}), p, n), softmax_of(t, {0, 1, 2}), n);
}

TEST(Sample, TopPFollowsHfRule) {
  const int64_t n = 20000;
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 5;
  // probabilities 0.5, 0.3, 0.2: ascending cumulative 0.2, 0.5, 1.0; drop cum <= 1 - top_p.
  const std::vector<double> l = {std::log(0.2), std::log(0.5), std::log(0.3)};
  const std::vector<float> lf(l.begin(), l.end());
  p.top_p = 0.6f;  // 1 - p = 0.4: drop 0.2 only
  expect_frequencies(histogram(logits_of(lf), p, n), softmax_of(l, {1, 2}), n);
  p.top_p = 0.85f;  // 0.15: nothing dropped
  expect_frequencies(histogram(logits_of(lf), p, n), softmax_of(l, {0, 1, 2}), n);
  p.top_p = 0.45f;  // 0.55: drop 0.2 and 0.3 (cum 0.5), keep the top
  expect_frequencies(histogram(logits_of(lf), p, n), softmax_of(l, {1}), n);
  p.top_p = 0.0f;  // everything is <= 1: the top one is always kept
  expect_frequencies(histogram(logits_of(lf), p, n), softmax_of(l, {1}), n);
  // Exact boundary: four equal logits, p = 1/4 each (exact in binary); ascending order puts the
  // highest ids first. top_p = 0.75 -> 1 - p = 0.25: cum 0.25 <= 0.25 drops exactly one id (3).
  const std::vector<float> eq = {0.5f, 0.5f, 0.5f, 0.5f};
  p.top_p = 0.75f;
  expect_frequencies(histogram(logits_of(eq), p, n), {{0, 1.0 / 3}, {1, 1.0 / 3}, {2, 1.0 / 3}}, n);
  p.top_p = 0.5f;  // 0.5: cum 0.25, 0.5 dropped -> ids 0, 1
  expect_frequencies(histogram(logits_of(eq), p, n), {{0, 0.5}, {1, 0.5}}, n);
}

TEST(Sample, BannedAndPaddingNeverSampled) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.allowed_vocab = 8;
  const int64_t ban[] = {2, 5};
  p.banned = ban;
  std::vector<float> l(10, 0.0f);
  l[2] = 5.0f;  // banned ids carry the largest logits
  l[9] = 6.0f;  // and so does a padding id
  const int64_t n = 20000;
  std::map<int64_t, double> want;
  for (int64_t i : {0, 1, 3, 4, 6, 7}) want[i] = 1.0 / 6;
  expect_frequencies(histogram(logits_of(l), p, n), want, n);
}
