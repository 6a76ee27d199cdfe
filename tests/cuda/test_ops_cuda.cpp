// Every CUDA op against its CPU twin (ops/cpu), on random inputs with odd sizes, row-strided views,
// BF16 and F32 activations where the kernel takes both, and NaN-poisoned outputs (an element the
// kernel forgot to write stays NaN and fails the comparison). Inputs are drawn in F32 and rounded
// to BF16 once, so the CPU twin and the GPU see identical values; the CPU computes in F32.
//
// Tolerances: a BF16 store rounds to nearest, relative error <= 2^-9. Where the GPU follows HF's
// BF16 rounding points that the F32 CPU twin does not have (rms_norm's cast before × w, silu then
// × up, ls·y then +, rope's products) there are up to three such roundings; GEMM-like sums add an
// F32 accumulation-order error far below that. Each test states its bound.
// All tests skip cleanly (GTEST_SKIP) where no CUDA device answers.
#ifndef SAILVL_HAS_CUDA
// CPU-only build: the CUDA kernels are not compiled, so there is nothing to compare.
#include <gtest/gtest.h>
TEST(CudaOps, NotBuilt) { GTEST_SKIP() << "built without the CUDA backend"; }
#else
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "ops/cpu/cpu_ops.h"
#include "ops/cuda/context.h"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/dev/attention_wmma.h"
#include "tensor/cuda/upload.h"
#include "tensor/cuda_runtime.h"
#include "tests/testutil.h"

using namespace sailvl;
namespace cpu = sailvl::ops::cpu;
namespace gpu = sailvl::ops::cuda;

namespace {
// After the last test every tensor is gone: destroy the op contexts and hand the allocator's cache
// back, so compute-sanitizer's leak check (scripts/gpu-check.sh) sees every byte freed.
class ReleaseDeviceMemory : public ::testing::Environment {
 public:
  void TearDown() override {
    if (!sailvl::cuda::available()) return;
    gpu::Context::release_all();
    sailvl::cuda::release_upload_staging();
    sailvl::cuda::empty_cache();
  }
};
[[maybe_unused]] ::testing::Environment* const kRelease = ::testing::AddGlobalTestEnvironment(new ReleaseDeviceMemory);
}  // namespace

#define REQUIRE_GPU()                                                            \
  do {                                                                           \
    if (!cuda::available()) GTEST_SKIP() << "no GPU: " << cuda::status().reason; \
  } while (0)

namespace {

constexpr double kBf16 = 1.0 / 256;  // 2^-8: twice the worst relative rounding error of one BF16 store

// Host F32 tensor, uniform in [-scale, scale), rounded through BF16 (so both sides see the same values).
Tensor rnd(const Shape& shape, uint32_t seed, float scale = 1.f, float offset = 0.f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> v(static_cast<size_t>(shape_numel(shape)));
  for (float& x : v) x = offset + scale * u(g);
  return Tensor::from_floats(v, shape).to(DType::BF16).to(DType::F32);
}

Tensor dev(const Tensor& host, DType t) { return host.to(t).to(Device::cuda()); }

Tensor poisoned(const Shape& shape, DType t) {
  std::vector<float> v(static_cast<size_t>(shape_numel(shape)), std::numeric_limits<float>::quiet_NaN());
  return Tensor::from_floats(v, shape).to(t).to(Device::cuda());
}

[[maybe_unused]] double max_abs(const Tensor& t) {
  double m = 0;
  for (float x : t.to_floats()) m = std::max(m, std::fabs(static_cast<double>(x)));
  return m;
}

const DType kActs[] = {DType::BF16, DType::F32};

}  // namespace

// ---------------------------------------------------------------- elementwise

TEST(CudaOps, ElementwiseMatchCpu) {
  REQUIRE_GPU();
  struct Layout {
    int64_t width, off, len;
  };
  // [37, 300] with the slice [:, 5:134]: the scalar kernels (odd widths, 2-byte aligned rows);
  // [37, 264] with the slice [:, 8:136]: the 8-wide BF16 kernels (16-byte aligned rows).
  for (const Layout L : {Layout{300, 5, 129}, Layout{264, 8, 128}})
    for (DType t : kActs) {
      SCOPED_TRACE(::testing::Message() << dtype_name(t) << " width " << L.width);
      const bool bf = t == DType::BF16;
      const int64_t W = L.width, n = L.len;
      Tensor a = rnd({37, W}, 1, 4.f), b = rnd({37, W}, 2, 4.f), s = rnd({n}, 3, 0.1f, 0.5f);
      Tensor av = a.narrow(1, L.off, n), bv = b.narrow(1, L.off, n);
      Tensor da = dev(a, t), db = dev(b, t);
      Tensor dav = da.narrow(1, L.off, n), dbv = db.narrow(1, L.off, n);
      Tensor ds = dev(s, DType::BF16);
      {
        Tensor want = Tensor::empty({37, n}, DType::F32), got = poisoned({37, n}, t);
        cpu::gelu_erf(want, av);
        gpu::gelu_erf(got, dav);
        EXPECT_CLOSE(got, want, bf ? 1e-3 : 1e-6, bf ? kBf16 : 1e-5);
      }
      {
        Tensor want = Tensor::empty({37, n}, DType::F32), got = poisoned({37, n}, t);
        cpu::silu_mul(want, av, bv);
        gpu::silu_mul(got, dav, dbv);
        EXPECT_CLOSE(got, want, bf ? 1e-3 : 1e-6, bf ? 2 * kBf16 : 1e-5);  // two BF16 roundings
      }
      {
        Tensor want = Tensor::empty({37, W}, DType::F32), got = poisoned({37, W}, t);
        cpu::add(want, a, b);
        gpu::add(got, da, db);
        EXPECT_CLOSE(got, want, bf ? 1e-3 : 1e-6, bf ? kBf16 : 1e-6);
      }
      {
        Tensor want = Tensor::empty({37, n}, DType::F32), got = poisoned({37, n}, t);
        cpu::add_scaled(want, av, s, bv);
        gpu::add_scaled(got, dav, ds, dbv);
        EXPECT_CLOSE(got, want, bf ? 2e-2 : 1e-6, bf ? 2 * kBf16 : 1e-6);  // ls·y rounded, then the sum
      }
      {  // in place: out aliases a
        Tensor want = Tensor::empty({37, W}, DType::F32);
        cpu::add(want, a, b);
        Tensor inplace = dev(a, t);
        gpu::add(inplace, inplace, db);
        EXPECT_CLOSE(inplace, want, bf ? 1e-3 : 1e-6, bf ? kBf16 : 1e-6);
      }
    }
}

// ---------------------------------------------------------------- norms

TEST(CudaOps, NormsMatchCpu) {
  REQUIRE_GPU();
  for (DType t : kActs) {
    for (int64_t D : {1000, 1536, 6144 + 3}) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " D=" + std::to_string(D));
      const bool bf = t == DType::BF16;
      Tensor x = rnd({19, D + 16}, 10, 3.f, 0.5f).narrow(1, 8, D);  // row-strided view
      Tensor w = rnd({D}, 11, 0.1f, 1.f), b = rnd({D}, 12, 0.02f);
      Tensor dx = dev(rnd({19, D + 16}, 10, 3.f, 0.5f), t).narrow(1, 8, D);
      Tensor dw = dev(w, DType::BF16), db = dev(b, DType::BF16);
      {
        Tensor want = Tensor::empty({19, D}, DType::F32), got = poisoned({19, D}, t);
        cpu::layer_norm(want, x, w, b, 1e-6f);
        gpu::layer_norm(got, dx, dw, db, 1e-6f);
        EXPECT_CLOSE(got, want, bf ? 1e-2 : 2e-5, bf ? kBf16 : 2e-5);  // |out| up to ~4: atol covers it
      }
      {
        Tensor want = Tensor::empty({19, D}, DType::F32), got = poisoned({19, D}, t);
        cpu::rms_norm(want, x, w, 1e-6f);
        gpu::rms_norm(got, dx, dw, 1e-6f);
        EXPECT_CLOSE(got, want, bf ? 1e-2 : 2e-5, bf ? 2 * kBf16 : 2e-5);  // cast, then × w: two roundings
      }
    }
  }
}

// ---------------------------------------------------------------- rope

TEST(CudaOps, RopeMatchesCpu) {
  REQUIRE_GPU();
  for (DType t : kActs) {
    SCOPED_TRACE(dtype_name(t));
    const bool bf = t == DType::BF16;
    const int64_t T = 13, Dh = 128;
    std::vector<float> posv(T);
    for (int64_t i = 0; i < T; ++i) posv[i] = static_cast<float>((i * 7919) % 32000);
    Tensor pos = Tensor::from_floats(posv, {T}).to(DType::I64);
    Tensor base = rnd({T, 5, Dh}, 20, 2.f);
    Tensor want = base.clone();
    Tensor wv = want.narrow(1, 1, 3);  // heads 1..3 of 5: strided view, like q inside a fused QKV
    cpu::rope(wv, pos, 1e6);
    Tensor d = dev(base, t);
    gpu::rope(d.narrow(1, 1, 3), pos.to(Device::cuda()), 1e6);
    // F32: the same F32 operations in the same order (cos/sin in double on both) -> near-exact.
    // BF16: HF rounds cos/sin, both products and the sum: three roundings of values <= ~2.
    EXPECT_CLOSE(d, want, bf ? 2e-2 : 1e-6, bf ? 3 * kBf16 : 1e-6);
    // I32 positions give the same result.
    Tensor d32 = dev(base, t);
    gpu::rope(d32.narrow(1, 1, 3), pos.to(DType::I32).to(Device::cuda()), 1e6);
    EXPECT_CLOSE(d32, d, 0, 0);
  }
}

// ---------------------------------------------------------------- linear

struct LinearCase {
  int64_t M, N, K;
  bool bias;
  DType out;
  bool strided_x;
};

TEST(CudaOps, LinearMatchesCpu) {
  REQUIRE_GPU();
  const LinearCase cases[] = {
      {1, 256, 1536, true, DType::BF16, false},   // decode K/V projection shape (GEMV, split rows)
      {1, 1000, 520, false, DType::F32, false},   // GEMV, F32 out
      {3, 129, 264, true, DType::BF16, true},     // GEMV, M=3, strided x, odd N
      {4, 77, 8, true, DType::F32, false},        // GEMV, tiny K
      {1, 50, 300, true, DType::BF16, false},     // K % 8 != 0 -> cuBLASLt even for M=1
      {5, 333, 264, true, DType::BF16, false},    // cuBLASLt, bias in the epilogue
      {37, 256, 1536, true, DType::F32, true},    // cuBLASLt, BF16 bias + F32 out -> bias kernel
      {300, 129, 96, false, DType::BF16, false},  // cuBLASLt, odd N
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(::testing::Message() << "M=" << c.M << " N=" << c.N << " K=" << c.K << " bias=" << c.bias
                                      << " out=" << dtype_name(c.out) << " strided=" << c.strided_x);
    const int64_t ldx = c.strided_x ? c.K + 24 : c.K;
    Tensor xb = rnd({c.M, ldx}, 30, 1.f);
    Tensor x = xb.narrow(1, 0, c.K);
    Tensor w = rnd({c.N, c.K}, 31, 1.f / std::sqrt(static_cast<float>(c.K))).to(DType::BF16);
    Tensor b = rnd({c.N}, 32, 0.5f).to(DType::BF16);
    Tensor want = Tensor::empty({c.M, c.N}, DType::F32);
    cpu::linear(want, x, w, c.bias ? std::optional<Tensor>(b) : std::nullopt);
    Tensor dx = dev(xb, DType::BF16).narrow(1, 0, c.K);
    Tensor got = poisoned({c.M, c.N}, c.out);
    gpu::linear(got, dx, w.to(Device::cuda()), c.bias ? std::optional<Tensor>(b.to(Device::cuda())) : std::nullopt);
    // |y| ~ 1; F32 accumulation in another order: ~K·2^-24 relative to Σ|x·w| (< 1e-4). BF16 out:
    // one rounding (2^-9 relative); a separate bias kernel on F32 output adds no rounding.
    if (c.out == DType::BF16)
      EXPECT_CLOSE(got, want, 1e-4, kBf16);
    else
      EXPECT_CLOSE(got, want, 1e-4, 1e-4);
  }
}

// ---------------------------------------------------------------- attention

struct AttnCase {
  int64_t T, S, H, Hkv, D;
  bool causal;
  int64_t q_offset;
  int64_t cache_rows;  // k/v are prefixes of a [cache_rows, Hkv, D] cache (>= S)
};

TEST(CudaOps, AttentionMatchesCpu) {
  REQUIRE_GPU();
  const AttnCase cases[] = {
      {77, 77, 3, 3, 64, false, 0, 77},        // ViT-like (InternViT head dim), odd length
      {130, 130, 2, 2, 128, false, 0, 130},    // ViT-like (AIMv2 head dim), two query tiles + tail
      {70, 89, 6, 2, 128, true, 19, 128},      // causal GQA prefill after 19 cached tokens
      {5, 5, 4, 1, 128, true, 0, 16},          // short causal prompt (T > 1, not the decode kernel)
      {1, 700, 6, 1, 128, true, 699, 1024},    // decode, G = 6 (Qwen2.5-1.5B grouping)
      {1, 2048, 7, 1, 128, true, 2047, 2048},  // decode, G = 7 (Qwen2.5-7B grouping), many splits
      {1, 3, 2, 2, 64, false, 0, 8},           // decode, tiny S, D = 64
      {200, 200, 4, 2, 64, true, 0, 200},      // causal prefill, D = 64, four query blocks + tail
      {64, 64, 2, 2, 128, true, 0, 64},        // exactly one query block and one key tile
      {1, 40, 12, 1, 128, true, 39, 64},       // T = 1 with 12 heads per KV head: the prefill kernel
      {150, 1100, 3, 1, 128, false, 0, 1100},  // many key tiles (double buffering), S % 64 != 0
  };
  for (const bool wmma : {false, true})
    for (const auto& c : cases) {
      gpu::dev::use_wmma_prefill(wmma);
      SCOPED_TRACE(::testing::Message() << (wmma ? "wmma" : "mma") << " T=" << c.T << " S=" << c.S << " H=" << c.H
                                        << " Hkv=" << c.Hkv << " D=" << c.D << " causal=" << c.causal
                                        << " q_offset=" << c.q_offset);
      Tensor q = rnd({c.T, c.H, c.D}, 40, 2.f);
      Tensor kc = rnd({c.cache_rows, c.Hkv, c.D}, 41, 2.f), vc = rnd({c.cache_rows, c.Hkv, c.D}, 42, 1.f);
      Tensor k = kc.narrow(0, 0, c.S), v = vc.narrow(0, 0, c.S);
      ops::AttentionParams p;
      p.causal = c.causal;
      p.q_offset = c.q_offset;
      Tensor want = Tensor::empty({c.T, c.H, c.D}, DType::F32);
      cpu::attention(want, q, k, v, p);
      Tensor dk = dev(kc, DType::BF16).narrow(0, 0, c.S), dv = dev(vc, DType::BF16).narrow(0, 0, c.S);
      Tensor got = poisoned({c.T, c.H, c.D}, DType::BF16);
      gpu::attention(got, dev(q, DType::BF16), dk, dv, p);
      // Prefill rounds P to BF16 (each weight within 2^-9, renormalised by the same rounded sum) and
      // the output once: error <= ~2·2^-9·max|v| (max|v| = 1) plus 2^-9·|out|.
      EXPECT_CLOSE(got, want, 6e-3, kBf16);
    }
  gpu::dev::use_wmma_prefill(false);
}

// Several sequences in one launch (the tiles of a vision pass): q/k/v are head slices of one fused
// [B·T, 3H, Dh] QKV output, as the vision towers pass them; each sequence sees only its own keys.
TEST(CudaOps, BatchedAttentionMatchesCpuPerSequence) {
  REQUIRE_GPU();
  for (const bool wmma : {false, true}) {
    gpu::dev::use_wmma_prefill(wmma);
    for (const int64_t D : {64, 128}) {
      const int64_t B = 3, T = 97, H = 2;
      SCOPED_TRACE(::testing::Message() << (wmma ? "wmma" : "mma") << " D=" << D);
      Tensor qkv = rnd({B * T, 3 * H, D}, 70 + D, 2.f);
      Tensor want = Tensor::empty({B * T, H, D}, DType::F32);
      for (int64_t b = 0; b < B; ++b) {
        const Tensor s = qkv.narrow(0, b * T, T);
        cpu::attention(want.narrow(0, b * T, T), s.narrow(1, 0, H), s.narrow(1, H, H), s.narrow(1, 2 * H, H), {});
      }
      const Tensor d = dev(qkv, DType::BF16);
      Tensor got = poisoned({B * T, H, D}, DType::BF16);
      ops::AttentionParams p;
      p.batch = B;
      gpu::attention(got, d.narrow(1, 0, H), d.narrow(1, H, H), d.narrow(1, 2 * H, H), p);
      EXPECT_CLOSE(got, want, 6e-3, kBf16);
    }
  }
  gpu::dev::use_wmma_prefill(false);
}

// ---------------------------------------------------------------- data movement

TEST(CudaOps, GathersAreExact) {
  REQUIRE_GPU();
  for (DType t : kActs) {
    SCOPED_TRACE(dtype_name(t));
    {
      Tensor in = rnd({2, 64, 24}, 50);  // G = 8
      Tensor want = Tensor::empty({2, 16, 96}, DType::F32);
      cpu::pixel_shuffle_v2(want, in);
      Tensor got = poisoned({2, 16, 96}, t);
      gpu::pixel_shuffle_v2(got, dev(in, t));
      EXPECT_CLOSE(got, want, 0, 0);
    }
    {
      Tensor table = rnd({1000, 72}, 51).to(DType::BF16);
      Tensor ids = Tensor::from_floats({5, 999, 0, 5, 123}, {5}).to(DType::I64);
      Tensor want = Tensor::empty({5, 72}, DType::F32);
      cpu::embedding(want, ids, table);
      Tensor dtable = table.to(Device::cuda());
      for (DType it : {DType::I64, DType::I32}) {
        Tensor got = poisoned({5, 72}, t);
        gpu::embedding(got, ids.to(it).to(Device::cuda()), dtable);
        EXPECT_CLOSE(got, want, 0, 0);
      }
      Tensor bad = Tensor::from_floats({1000}, {1}).to(DType::I64).to(Device::cuda());
      EXPECT_THROW(gpu::embedding(poisoned({1, 72}, t), bad, dtable), Error);
    }
    {
      Tensor dst = rnd({40, 33}, 52), src = rnd({3, 33}, 53);
      Tensor rows = Tensor::from_floats({7, 0, 39}, {3}).to(DType::I64);
      Tensor want = dst.clone();
      cpu::scatter_rows(want, rows, src);
      Tensor d = dev(dst, t);
      gpu::scatter_rows(d, rows.to(Device::cuda()), dev(src, t));
      EXPECT_CLOSE(d, want, 0, 0);
      Tensor bad = Tensor::from_floats({0, 40, 1}, {3}).to(DType::I64).to(Device::cuda());
      EXPECT_THROW(gpu::scatter_rows(d, bad, dev(src, t)), Error);
    }
  }
}

TEST(CudaOps, PatchEmbedMatchesCpu) {
  REQUIRE_GPU();
  Tensor pix = rnd({2, 3, 42, 42}, 60, 2.f);  // G = 3
  Tensor w = rnd({40, 3, 14, 14}, 61, 1.f / std::sqrt(588.f)).to(DType::BF16);
  Tensor b = rnd({40}, 62, 0.02f).to(DType::BF16);
  Tensor want = Tensor::empty({2, 9, 40}, DType::F32);
  cpu::patch_embed(want, pix, w, b);
  for (DType t : kActs) {
    SCOPED_TRACE(dtype_name(t));
    Tensor got = poisoned({2, 9, 40}, t);
    gpu::patch_embed(got, dev(pix, DType::BF16), w.to(Device::cuda()), b.to(Device::cuda()));
    EXPECT_CLOSE(got, want, 1e-4, t == DType::BF16 ? kBf16 : 1e-4);  // a K = 588 dot product, as linear
  }
}

// ---------------------------------------------------------------- sampling

namespace {
Tensor logits_host(int64_t V, uint32_t seed, float spread) {
  std::mt19937 g(seed);
  std::normal_distribution<float> n(0.f, spread);
  std::vector<float> v(static_cast<size_t>(V));
  for (float& x : v) x = n(g);
  return Tensor::from_floats(v, {V});
}
}  // namespace

TEST(CudaOps, GreedyMatchesCpu) {
  REQUIRE_GPU();
  const int64_t V = 151936;
  Tensor l = logits_host(V, 70, 3.f);
  std::vector<float> lv = l.to_floats();
  // A tie for the maximum between ids 9000 and 4000: the lower id wins.
  lv[9000] = lv[4000] = 100.f;
  l = Tensor::from_floats(lv, {V});
  const std::vector<int64_t> banned = {151667};
  ops::SamplingParams p;
  p.allowed_vocab = 151674;
  p.banned = banned;
  EXPECT_EQ(gpu::sample(l.to(Device::cuda()), p, 0), 4000);
  EXPECT_EQ(cpu::sample(l, p, 0), 4000);
  // Ban the winner; penalise the runner-up through the history.
  const std::vector<int64_t> banned2 = {4000, 151667}, hist = {9000, 9000, 17};
  p.banned = banned2;
  p.history = hist;
  p.repetition_penalty = 1.3f;
  for (int k = 0; k < 3; ++k) {
    lv = logits_host(V, 71 + k, 3.f).to_floats();
    lv[4000] = 1e9f;
    lv[9000] = 60.f;
    Tensor lk = Tensor::from_floats(lv, {V});
    EXPECT_EQ(gpu::sample(lk.to(Device::cuda()), p, 0), cpu::sample(lk, p, 0));
  }
  lv[77] = std::numeric_limits<float>::quiet_NaN();
  try {
    gpu::sample(Tensor::from_floats(lv, {V}).to(Device::cuda()), p, 0);
    ADD_FAILURE() << "NaN logit not reported";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::NonFinite);
  }
}

TEST(CudaOps, SeededSamplingMatchesCpu) {
  REQUIRE_GPU();
  struct Case {
    int64_t V;
    float temp;
    int64_t top_k;
    float top_p;
    float rep;
  };
  const Case cases[] = {
      {151936, 1.0f, 50, 1.0f, 1.0f},  // HF defaults when sampling
      {151936, 0.7f, 20, 0.8f, 1.1f},
      {5000, 1.3f, 0, 0.9f, 1.0f},  // top-k off: full sort
      {3000, 1.0f, 0, 1.0f, 1.0f},  // plain softmax sampling
  };
  const std::vector<int64_t> hist = {1, 2, 3, 500, 2999};
  for (const auto& c : cases) {
    SCOPED_TRACE(::testing::Message() << "V=" << c.V << " T=" << c.temp << " k=" << c.top_k << " p=" << c.top_p);
    // Well separated: a few hundred candidates a few units apart, the rest far below, so float
    // rounding differences cannot move a draw across a boundary.
    std::vector<float> lv(static_cast<size_t>(c.V), -30.f);
    std::mt19937 g(80);
    for (int i = 0; i < 300; ++i) lv[g() % c.V] = static_cast<float>(g() % 97) * 0.1f;
    Tensor l = Tensor::from_floats(lv, {c.V});
    Tensor dl = l.to(Device::cuda());
    ops::SamplingParams p;
    p.temperature = c.temp;
    p.top_k = c.top_k;
    p.top_p = c.top_p;
    p.repetition_penalty = c.rep;
    p.history = hist;
    p.seed = 1234;
    for (uint64_t step = 0; step < 24; ++step) EXPECT_EQ(gpu::sample(dl, p, step), cpu::sample(l, p, step)) << step;
  }
}

// ---------------------------------------------------------------- upload

TEST(CudaOps, UploadRoundTripsWithProgress) {
  REQUIRE_GPU();
  const int64_t n = (int64_t{40} << 20) / 2 + 12345;  // > 2 staging chunks, odd tail
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<float>(i % 4099) - 2000.f;
  Tensor h = Tensor::from_floats(v, {n}).to(DType::BF16);
  size_t last = 0, calls = 0, total_seen = 0;
  bool monotone = true;
  Tensor d = cuda::upload(h, [&](size_t done, size_t total) {
    monotone = monotone && done >= last;
    last = done;
    total_seen = total;
    ++calls;
  });
  EXPECT_TRUE(d.device().is_cuda());
  EXPECT_TRUE(monotone);
  EXPECT_EQ(last, h.nbytes());
  EXPECT_EQ(total_seen, h.nbytes());
  EXPECT_GE(calls, 3u);
  EXPECT_CLOSE(d, h, 0, 0);
  // A strided host view uploads as its contiguous copy.
  Tensor m = Tensor::from_floats({1, 2, 3, 4, 5, 6}, {2, 3}).to(DType::BF16).transpose(0, 1);
  EXPECT_CLOSE(cuda::upload(m), m, 0, 0);
}

#endif  // SAILVL_HAS_CUDA
