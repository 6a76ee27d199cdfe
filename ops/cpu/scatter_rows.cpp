// Row scatter (placing projected image features at the <IMG_CONTEXT> positions, docs/MODEL.md §8):
//   dst[rows[k], :] = src[k, :]   for k in [0, K).
// A byte copy per row (same dtype on both sides). Every row index is checked to be in range
// before anything is written.
// Parallel plan: sequential memcpy; K·D is at most a few million floats, and a duplicated row
// index then has a defined result (the last write wins, as in index_put_ with accumulate=False
// when indices are unique; duplicates are a caller bug but not memory-unsafe).
// Preconditions: dst [R, D], src [K, D] same dtype, both with contiguous rows; rows I64 [K].
#include <cstring>

#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/cpu_util.h"

namespace sailvl::ops::cpu {

void scatter_rows(const Tensor& dst, const Tensor& rows, const Tensor& src) {
  constexpr const char* op = "scatter_rows";
  SAILVL_OP_CHECK(dst.dim() == 2 && src.dim() == 2 && dst.dtype() == src.dtype() && dst.size(1) == src.size(1), op,
                  "dst [R, D] and src [K, D] of one dtype expected, got ", dst.describe(), " and ", src.describe());
  SAILVL_OP_CHECK(
      rows.device().is_cpu() && rows.dim() == 1 && rows.dtype() == DType::I64 && rows.size(0) == src.size(0), op,
      "rows must be I64 [", src.size(0), "], got ", rows.describe());
  SAILVL_OP_CHECK(dst.size(1) <= 1 || (dst.stride(1) == 1 && src.stride(1) == 1), op, "rows must be contiguous");
  const int64_t R = dst.size(0), K = src.size(0), D = dst.size(1);
  const int64_t es = static_cast<int64_t>(dtype_size(dst.dtype()));
  const int64_t* idx = rows.data<int64_t>();
  for (int64_t k = 0; k < K; ++k)
    SAILVL_OP_CHECK(idx[k * rows.stride(0)] >= 0 && idx[k * rows.stride(0)] < R, op, "row index ",
                    idx[k * rows.stride(0)], " (entry ", k, ") outside [0, ", R, ")");
  auto* d = static_cast<uint8_t*>(dst.raw_data());
  const auto* s = static_cast<const uint8_t*>(src.raw_data());
  for (int64_t k = 0; k < K; ++k)
    std::memcpy(d + idx[k * rows.stride(0)] * dst.stride(0) * es, s + k * src.stride(0) * es,
                static_cast<size_t>(D * es));
}

}  // namespace sailvl::ops::cpu
