// Data movement: pixel_shuffle_v2, embedding (row gather), scatter_rows.
//
// Math:
//   pixel_shuffle_v2  out[t, i*(G/2)+j, (2dy+dx)*C + c] = in[t, (2i+dy)*G + (2j+dx), c]   (docs/MODEL.md §6)
//   embedding         out[t, :] = table[ids[t], :]          (BF16/F32 table -> BF16/F32 out, converted)
//   scatter_rows      dst[rows[k], :] = src[k, :]
// Parallel plan: one grid-stride loop over output elements, one element per thread per step
// (coalesced: consecutive threads copy consecutive channels of one row). Pure copies: the cost is
// the bytes, 2·size(out) for the shuffle and the gathers.
// Range checks: ids and rows are device tensors; they are copied to the host (T or K int64s, one
// synchronisation) and checked before any kernel runs, so a bad id is an error, never a wild read.
// Preconditions (checked): see each launcher.
#include <cuda_runtime.h>

#include <vector>

#include "ops/cuda/common.cuh"
#include "ops/cuda/context.h"
#include "ops/cuda/cuda_ops.h"

namespace sailvl::ops::cuda {

namespace {

// Storage-sized element types: a pure copy moves bits, whatever the float format.
template <size_t N>
struct Bits;
template <>
struct Bits<2> {
  using type = uint16_t;
};
template <>
struct Bits<4> {
  using type = uint32_t;
};

template <typename E>
__global__ void pixel_shuffle_kernel(E* out, const E* in, int64_t T, int64_t G, int64_t C, int64_t in_rs,
                                     int64_t out_rs) {
  const int64_t Gh = G / 2, n = T * Gh * Gh * 4 * C;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < n; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t o = e / (4 * C), col = e - o * 4 * C;  // output row (t, i, j) and column
    const int64_t q = col / C, c = col - q * C, dy = q >> 1, dx = q & 1;
    const int64_t t = o / (Gh * Gh), i = (o / Gh) % Gh, j = o % Gh;
    const int64_t src = t * G * G + (2 * i + dy) * G + (2 * j + dx);
    out[o * out_rs + col] = in[src * in_rs + c];
  }
}

template <typename Out, typename Tab, typename Id>
__global__ void embedding_kernel(Out* out, int64_t out_rs, const Tab* table, int64_t tab_rs, const Id* ids,
                                 int64_t ids_stride, int64_t T, int64_t D) {
  const int64_t n = T * D;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < n; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t t = e / D, d = e - t * D;
    const int64_t id = static_cast<int64_t>(ids[t * ids_stride]);
    out[t * out_rs + d] = from_f32<Out>(to_f32(table[id * tab_rs + d]));
  }
}

template <typename E>
__global__ void scatter_rows_kernel(E* dst, int64_t dst_rs, const int64_t* rows, int64_t rows_stride, const E* src,
                                    int64_t src_rs, int64_t K, int64_t D) {
  const int64_t n = K * D;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < n; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t k = e / D, d = e - k * D;
    dst[rows[k * rows_stride] * dst_rs + d] = src[k * src_rs + d];
  }
}

// Copies an I32/I64 index vector [n] (any stride, on the device) to the host as int64.
std::vector<int64_t> indices_to_host(const Tensor& ids) {
  Tensor h = ids.to(Device::cpu()).to(DType::I64).contiguous();
  const int64_t n = h.size(0);
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = h.data<int64_t>()[i];
  return v;
}

}  // namespace

void pixel_shuffle_v2(const Tensor& out, const Tensor& in) {
  constexpr const char* op = "pixel_shuffle_v2";
  SAILVL_CHECK(in.dim() == 3 && out.dim() == 3 && in.dtype() == out.dtype() &&
                   (dtype_size(in.dtype()) == 2 || dtype_size(in.dtype()) == 4),
               Internal, op, ": expected 3-D tensors of one 2- or 4-byte dtype, got ", out.describe(), " and ",
               in.describe());
  const int64_t T = in.size(0), N = in.size(1), C = in.size(2);
  int64_t G = 0;
  while (G * G < N) ++G;
  SAILVL_CHECK(G * G == N && G % 2 == 0, Internal, op, ": token count ", N, " is not an even square grid");
  SAILVL_CHECK(out.size(0) == T && out.size(1) == N / 4 && out.size(2) == 4 * C, Internal, op, ": out must be [", T,
               ", ", N / 4, ", ", 4 * C, "], got ", out.describe());
  const RowView o = row_view(out, op, "out");
  const RowView i = row_view(in, op, "in");
  const int64_t n = out.numel();
  if (n == 0) return;
  auto& ctx = Context::get(out.device().index);
  constexpr int threads = 256;
  const unsigned grid = grid_for(n, threads, ctx);
  if (dtype_size(in.dtype()) == 2)
    pixel_shuffle_kernel<Bits<2>::type><<<grid, threads, 0, ctx.stream()>>>(
        static_cast<uint16_t*>(o.ptr), static_cast<const uint16_t*>(i.ptr), T, G, C, i.row_stride, o.row_stride);
  else
    pixel_shuffle_kernel<Bits<4>::type><<<grid, threads, 0, ctx.stream()>>>(
        static_cast<uint32_t*>(o.ptr), static_cast<const uint32_t*>(i.ptr), T, G, C, i.row_stride, o.row_stride);
  CUDA_CHECK_LAUNCH();
}

void embedding(const Tensor& out, const Tensor& ids, const Tensor& table) {
  constexpr const char* op = "embedding";
  SAILVL_CHECK(is_act_dtype(out.dtype()), Internal, op, ": out must be BF16/F32, got ", out.describe());
  SAILVL_CHECK(ids.dim() == 1 && (ids.dtype() == DType::I32 || ids.dtype() == DType::I64), Internal, op,
               ": ids must be I32/I64 [T], got ", ids.describe());
  SAILVL_CHECK(table.dim() == 2 && is_act_dtype(table.dtype()) && table.stride(1) == 1, Internal, op,
               ": table must be [V, D] BF16/F32 with contiguous rows, got ", table.describe());
  const int64_t T = ids.size(0), V = table.size(0), D = table.size(1);
  SAILVL_CHECK(out.dim() == 2 && out.size(0) == T && out.size(1) == D, Internal, op, ": out must be [", T, ", ", D,
               "], got ", out.describe());
  const RowView o = row_view(out, op, "out");
  const std::vector<int64_t> host_ids = indices_to_host(ids);
  for (int64_t t = 0; t < T; ++t)
    SAILVL_CHECK(host_ids[t] >= 0 && host_ids[t] < V, Internal, op, ": token id ", host_ids[t], " at position ", t,
                 " outside [0, ", V, ")");
  if (T * D == 0) return;
  auto& ctx = Context::get(out.device().index);
  constexpr int threads = 256;
  const unsigned grid = grid_for(T * D, threads, ctx);
  const int64_t ts = table.stride(0), is = ids.stride(0);
  const bool i64 = ids.dtype() == DType::I64;
  const bool ob = out.dtype() == DType::BF16, tb = table.dtype() == DType::BF16;
  auto go = [&](auto* outp, const auto* tabp) {
    if (i64)
      embedding_kernel<<<grid, threads, 0, ctx.stream()>>>(outp, o.row_stride, tabp, ts, ids.data<int64_t>(), is, T, D);
    else
      embedding_kernel<<<grid, threads, 0, ctx.stream()>>>(outp, o.row_stride, tabp, ts, ids.data<int32_t>(), is, T, D);
  };
  if (ob && tb)
    go(static_cast<bf16*>(o.ptr), table.data<bf16>());
  else if (ob)
    go(static_cast<bf16*>(o.ptr), table.data<float>());
  else if (tb)
    go(static_cast<float*>(o.ptr), table.data<bf16>());
  else
    go(static_cast<float*>(o.ptr), table.data<float>());
  CUDA_CHECK_LAUNCH();
}

void scatter_rows(const Tensor& dst, const Tensor& rows, const Tensor& src) {
  constexpr const char* op = "scatter_rows";
  SAILVL_CHECK(dst.dim() == 2 && src.dim() == 2 && dst.dtype() == src.dtype() && dst.size(1) == src.size(1) &&
                   (dtype_size(dst.dtype()) == 2 || dtype_size(dst.dtype()) == 4),
               Internal, op, ": dst [R, D] and src [K, D] of one 2- or 4-byte dtype expected, got ", dst.describe(),
               " and ", src.describe());
  SAILVL_CHECK(rows.dim() == 1 && rows.dtype() == DType::I64 && rows.size(0) == src.size(0), Internal, op,
               ": rows must be I64 [", src.size(0), "], got ", rows.describe());
  SAILVL_CHECK(dst.size(1) <= 1 || (dst.stride(1) == 1 && src.stride(1) == 1), Internal, op,
               ": rows must be contiguous");
  const int64_t R = dst.size(0), K = src.size(0), D = dst.size(1);
  const std::vector<int64_t> idx = indices_to_host(rows);
  for (int64_t k = 0; k < K; ++k)
    SAILVL_CHECK(idx[k] >= 0 && idx[k] < R, Internal, op, ": row index ", idx[k], " (entry ", k, ") outside [0, ", R,
                 ")");
  if (K * D == 0) return;
  auto& ctx = Context::get(dst.device().index);
  constexpr int threads = 256;
  const unsigned grid = grid_for(K * D, threads, ctx);
  const int64_t* rp = rows.data<int64_t>();
  if (dtype_size(dst.dtype()) == 2)
    scatter_rows_kernel<<<grid, threads, 0, ctx.stream()>>>(dst.data<uint16_t>(), dst.stride(0), rp, rows.stride(0),
                                                            src.data<uint16_t>(), src.stride(0), K, D);
  else
    scatter_rows_kernel<<<grid, threads, 0, ctx.stream()>>>(dst.data<uint32_t>(), dst.stride(0), rp, rows.stride(0),
                                                            src.data<uint32_t>(), src.stride(0), K, D);
  CUDA_CHECK_LAUNCH();
}

}  // namespace sailvl::ops::cuda
