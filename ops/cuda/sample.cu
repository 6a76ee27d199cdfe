// Next-token choice on the GPU; only the chosen id (one int64) is copied back.
//
// Math: exactly the recipe of the CPU twin (ops/cpu/sample.cpp, whose header is the reference):
//   candidates = ids < allowed_vocab, not banned; repetition penalty per distinct history id
//   (l < 0 ? l·r : l/r, F32); greedy = largest l, ties to the lowest id; else l/temperature (F32),
//   top-k keeps l >= the k-th largest (ties kept), top-p walks the survivors ascending dropping
//   while the cumulative softmax <= 1 - top_p, and one draw with
//   u = (mix(seed ^ mix((step+1)·GOLDEN)) >> 40) · 2^-24 (computed on the host, same function),
//   returning the first id, in descending (l, then lower id) order, whose float64 running sum of
//   w = exp(l - lmax) exceeds u·Σw.
// Parallel plan:
//   init_kernel    grid-stride copy of the logits into a work buffer, zero the banned mask
//   lists_kernel   one thread per banned id (mask) and per distinct history id (penalty)
//   argmax_kernel  greedy: one block of 1024 threads, (value, id) reduction with the lowest-id tie
//                  break; NaN among the candidates is reported (ErrorKind::NonFinite)
//   temper_kernel  sampling: keys = l/temperature (banned -> -inf), values = ids, -0 -> +0
//   cub::DeviceRadixSort::SortPairsDescending  stable, so equal keys stay in ascending id order:
//                  the CPU's (l desc, id asc) order
//   select_kernel  one thread: top-k threshold -> survivor count
//   weight_kernel  grid-stride: w = exp(double(l) - lmax) for the survivors
//   draw_kernel    one thread: Σw, the top-p walk and the draw, sequential in the CPU's order so
//                  the float64 sums are formed in the same order (ops/sample_math.h: the very
//                  functions the CPU sampler calls)
// A banned id sorts as -inf with weight 0: it can never be drawn (a running sum only rises on a
// positive weight, and u·Σw < Σw), never moves the top-k threshold among finite logits, and is
// dropped first by the top-p walk, so the outcome equals the CPU's, which removes it up front.
// Remaining difference from the CPU: exp() in double may differ by one ulp between the CUDA and
// glibc libraries, so the two agree except when u·Σw lies within ~1e-16 (relative) of a boundary.
// Cost: greedy reads V floats once (~0.6 MB for 152K); sampling adds one radix sort of V pairs;
// the single-thread draw walks only the survivors (k of them with top-k on; V with top-k off,
// about a millisecond — HF's default top_k = 50 keeps it tiny).
// Preconditions (checked on the host, ErrorKind::Internal): logits F32 contiguous [V] on the
// device; parameters as for the CPU twin.
#include <cuda_runtime.h>
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/cuda/common.cuh"
#include "ops/cuda/context.h"
#include "ops/cuda/cuda_ops.h"
#include "ops/sample_math.h"

namespace sailvl::ops::cuda {

namespace {

constexpr int64_t kNone = INT64_MAX;
constexpr int64_t kErrNaN = -2;       // NaN (or +inf after temperature) among the candidates
constexpr int64_t kErrNoFinite = -3;  // no finite candidate logit

__global__ void init_kernel(float* l, const float* logits, uint8_t* mask, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    l[i] = logits[i];
    mask[i] = 0;
  }
}

// banned: any ids (< n marked); hist: distinct ids, each < V (those >= n are ignored, as on CPU).
__global__ void lists_kernel(float* l, uint8_t* mask, int64_t n, const int64_t* banned, int64_t nb, const int64_t* hist,
                             int64_t nh, float r) {
  const int64_t j = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (j < nb) {
    if (banned[j] < n) mask[banned[j]] = 1;
  } else if (j < nb + nh) {
    const int64_t id = hist[j - nb];
    if (id < n) l[id] = l[id] < 0 ? l[id] * r : l[id] / r;
  }
}

struct Best {
  float v;
  int64_t id;
};
__device__ __forceinline__ Best better(Best a, Best b) { return (a.v > b.v || (a.v == b.v && a.id < b.id)) ? a : b; }

constexpr int kArgmaxThreads = 1024;

__global__ void __launch_bounds__(kArgmaxThreads)
    argmax_kernel(const float* l, const uint8_t* mask, int64_t n, int64_t* result) {
  __shared__ float sv[32];
  __shared__ int64_t si[32];
  __shared__ int nan_seen;
  if (threadIdx.x == 0) nan_seen = 0;
  __syncthreads();
  Best b{-INFINITY, kNone};
  bool nan = false;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    if (mask[i]) continue;
    const float v = l[i];
    if (isnan(v))
      nan = true;
    else
      b = better(b, Best{v, i});  // ascending i: the first of equal values stays
  }
  if (nan) atomicOr(&nan_seen, 1);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const Best other{__shfl_xor_sync(0xffffffffu, b.v, o), __shfl_xor_sync(0xffffffffu, b.id, o)};
    b = better(b, other);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    sv[warp] = b.v;
    si[warp] = b.id;
  }
  __syncthreads();
  if (warp == 0) {
    b = lane < static_cast<int>(blockDim.x >> 5) ? Best{sv[lane], si[lane]} : Best{-INFINITY, kNone};
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const Best other{__shfl_xor_sync(0xffffffffu, b.v, o), __shfl_xor_sync(0xffffffffu, b.id, o)};
      b = better(b, other);
    }
    if (lane == 0) *result = nan_seen ? kErrNaN : b.id;  // kNone only if every id is banned (host-checked)
  }
}

__global__ void temper_kernel(const float* l, const uint8_t* mask, int64_t n, float temperature, float* keys,
                              int32_t* vals, int* bad) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    float v;
    if (mask[i]) {
      v = -INFINITY;
    } else {
      v = __fdiv_rn(l[i], temperature);
      if (isnan(v) || v == INFINITY) atomicOr(bad, 1);
      if (v == 0.0f) v = 0.0f;  // -0 and +0 compare equal on the CPU; give them one radix key
    }
    keys[i] = v;
    vals[i] = static_cast<int32_t>(i);
  }
}

// One thread: survivors after top-k (a prefix of the sorted keys). ncand = non-banned candidates.
__global__ void select_kernel(const float* keys, int64_t n, int64_t ncand, int64_t top_k, int64_t* count) {
  int64_t c = n;
  if (top_k > 0 && top_k < ncand) {
    const float kth = keys[top_k - 1];
    c = top_k;
    while (c < n && keys[c] >= kth) ++c;
  }
  *count = c;
}

__global__ void weight_kernel(const float* keys, const int64_t* count, double* w) {
  const int64_t c = *count;
  const double lmax = keys[0];
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < c; i += int64_t{gridDim.x} * blockDim.x)
    w[i] = exp(static_cast<double>(keys[i]) - lmax);
}

__global__ void draw_kernel(const float* keys, const int32_t* vals, const double* w, const int64_t* count,
                            const int* bad, float top_p, double u, int64_t* result) {
  if (*bad) {
    *result = kErrNaN;
    return;
  }
  if (!isfinite(keys[0])) {
    *result = kErrNoFinite;
    return;
  }
  const int64_t keep = sampling::top_p_keep(w, *count, top_p);
  *result = vals[sampling::pick(w, keep, u)];
}

// Bump allocator over the sampling scratch buffer.
struct Carve {
  size_t off = 0;
  template <typename T>
  size_t take(int64_t count) {
    const size_t at = off;
    off += (static_cast<size_t>(count) * sizeof(T) + 255) / 256 * 256;
    return at;
  }
};

}  // namespace

int64_t sample(const Tensor& logits, const SamplingParams& p, uint64_t step) {
  constexpr const char* op = "sample";
  SAILVL_CHECK(logits.dtype() == DType::F32 && logits.dim() == 1 && logits.size(0) > 0 &&
                   (logits.size(0) == 1 || logits.stride(0) == 1),
               Internal, op, ": logits must be a contiguous F32 [V], got ", logits.describe());
  const int64_t V = logits.size(0);
  const int64_t n = p.allowed_vocab < 0 ? V : p.allowed_vocab;
  SAILVL_CHECK(n > 0 && n <= V, Internal, op, ": allowed_vocab ", p.allowed_vocab, " outside (0, ", V, "]");
  SAILVL_CHECK(n <= INT32_MAX, Internal, op, ": vocabulary too large (", n, ")");
  SAILVL_CHECK(p.temperature >= 0 && std::isfinite(p.temperature), Internal, op, ": bad temperature ", p.temperature);
  SAILVL_CHECK(p.top_k >= 0, Internal, op, ": negative top_k ", p.top_k);
  SAILVL_CHECK(p.top_p >= 0 && p.top_p <= 1, Internal, op, ": top_p ", p.top_p, " outside [0, 1]");
  SAILVL_CHECK(p.repetition_penalty > 0 && std::isfinite(p.repetition_penalty), Internal, op,
               ": bad repetition_penalty ", p.repetition_penalty);

  // Host-side lists: banned ids (distinct, < n counted), distinct history ids.
  std::vector<int64_t> lists;
  std::vector<int64_t> banned_in(p.banned.begin(), p.banned.end());
  for (int64_t id : banned_in) SAILVL_CHECK(id >= 0, Internal, op, ": negative banned id ", id);
  std::sort(banned_in.begin(), banned_in.end());
  banned_in.erase(std::unique(banned_in.begin(), banned_in.end()), banned_in.end());
  const int64_t nb_in_range = std::count_if(banned_in.begin(), banned_in.end(), [n](int64_t id) { return id < n; });
  SAILVL_CHECK(nb_in_range < n, Internal, op, ": every candidate id is banned");
  lists.insert(lists.end(), banned_in.begin(), banned_in.end());
  const int64_t nb = static_cast<int64_t>(lists.size());
  if (p.repetition_penalty != 1.0f && !p.history.empty()) {
    std::vector<int64_t> seen(p.history.begin(), p.history.end());
    std::sort(seen.begin(), seen.end());
    seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
    for (int64_t id : seen) SAILVL_CHECK(id >= 0 && id < V, Internal, op, ": history id ", id, " outside [0, ", V, ")");
    lists.insert(lists.end(), seen.begin(), seen.end());
  }
  const int64_t nh = static_cast<int64_t>(lists.size()) - nb;

  auto& ctx = Context::get(logits.device().index);
  const cudaStream_t s = ctx.stream();
  const bool greedy = p.temperature == 0;
  const int ni = static_cast<int>(n);

  size_t cub_bytes = 0;
  if (!greedy)
    CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(
        nullptr, cub_bytes, static_cast<const float*>(nullptr), static_cast<float*>(nullptr),
        static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), ni, 0, 32, s));
  Carve cv;
  const size_t o_l = cv.take<float>(n), o_mask = cv.take<uint8_t>(n), o_lists = cv.take<int64_t>(nb + nh + 1),
               o_res = cv.take<int64_t>(2), o_bad = cv.take<int>(1);
  size_t o_kin = 0, o_kout = 0, o_vin = 0, o_vout = 0, o_w = 0, o_cub = 0;
  if (!greedy) {
    o_kin = cv.take<float>(n);
    o_kout = cv.take<float>(n);
    o_vin = cv.take<int32_t>(n);
    o_vout = cv.take<int32_t>(n);
    o_w = cv.take<double>(n);
    o_cub = cv.take<uint8_t>(static_cast<int64_t>(cub_bytes));
  }
  auto* base = static_cast<uint8_t*>(ctx.scratch(Context::Slot::Sample, cv.off));
  auto* l = reinterpret_cast<float*>(base + o_l);
  auto* mask = base + o_mask;
  auto* dl = reinterpret_cast<int64_t*>(base + o_lists);
  auto* res = reinterpret_cast<int64_t*>(base + o_res);
  auto* bad = reinterpret_cast<int*>(base + o_bad);

  if (!lists.empty())
    CUDA_CHECK(cudaMemcpyAsync(dl, lists.data(), lists.size() * sizeof(int64_t), cudaMemcpyHostToDevice, s));
  constexpr int threads = 256;
  init_kernel<<<grid_for(n, threads, ctx), threads, 0, s>>>(l, logits.data<float>(), mask, n);
  CUDA_CHECK_LAUNCH();
  if (nb + nh > 0) {
    lists_kernel<<<static_cast<unsigned>((nb + nh + threads - 1) / threads), threads, 0, s>>>(
        l, mask, n, dl, nb, dl + nb, nh, p.repetition_penalty);
    CUDA_CHECK_LAUNCH();
  }
  if (greedy) {
    argmax_kernel<<<1, kArgmaxThreads, 0, s>>>(l, mask, n, res);
    CUDA_CHECK_LAUNCH();
  } else {
    auto* kin = reinterpret_cast<float*>(base + o_kin);
    auto* kout = reinterpret_cast<float*>(base + o_kout);
    auto* vin = reinterpret_cast<int32_t*>(base + o_vin);
    auto* vout = reinterpret_cast<int32_t*>(base + o_vout);
    auto* w = reinterpret_cast<double*>(base + o_w);
    CUDA_CHECK(cudaMemsetAsync(bad, 0, sizeof(int), s));
    temper_kernel<<<grid_for(n, threads, ctx), threads, 0, s>>>(l, mask, n, p.temperature, kin, vin, bad);
    CUDA_CHECK_LAUNCH();
    CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(base + o_cub, cub_bytes, kin, kout, vin, vout, ni, 0, 32, s));
    sailvl::cuda::count_launches();  // one library call (its passes are several kernels)
    select_kernel<<<1, 1, 0, s>>>(kout, n, n - nb_in_range, p.top_k, res + 1);
    CUDA_CHECK_LAUNCH();
    weight_kernel<<<grid_for(n, threads, ctx), threads, 0, s>>>(kout, res + 1, w);
    CUDA_CHECK_LAUNCH();
    draw_kernel<<<1, 1, 0, s>>>(kout, vout, w, res + 1, bad, p.top_p, sampling::uniform(p.seed, step), res);
    CUDA_CHECK_LAUNCH();
  }
  int64_t* pinned = ctx.pinned_i64();
  CUDA_CHECK(cudaMemcpyAsync(pinned, res, sizeof(int64_t), cudaMemcpyDeviceToHost, s));
  CUDA_CHECK(cudaStreamSynchronize(s));
  const int64_t id = *pinned;
  SAILVL_CHECK(id != kErrNaN, NonFinite, op, ": NaN or +Inf logit among the candidates");
  SAILVL_CHECK(id != kErrNoFinite, NonFinite, op, ": no finite logit among the candidates");
  SAILVL_CHECK(id >= 0 && id < n, Internal, op, ": sampler produced id ", id);
  return id;
}

}  // namespace sailvl::ops::cuda
