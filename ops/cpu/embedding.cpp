// Token embedding gather: out[t, :] = float(table[ids[t], :]).
//
// table is the checkpoint's [V, D] matrix (BF16 in the mmap, F16/F32 accepted); only the T rows
// that are looked up are converted, so the table is never copied. Every id is checked to be in
// [0, V) before anything is written.
// Parallel plan: tokens split across OpenMP threads when there are many (a prefill).
// Preconditions: ids I32/I64 [T]; table [V, D] contiguous rows; out F32 [T, D].
#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/cpu_util.h"

namespace sailvl::ops::cpu {

void embedding(const Tensor& out, const Tensor& ids, const Tensor& table) {
  constexpr const char* op = "embedding";
  check_dtype(out, DType::F32, op, "out");
  SAILVL_OP_CHECK(ids.device().is_cpu() && ids.dim() == 1 && (ids.dtype() == DType::I32 || ids.dtype() == DType::I64),
                  op, "ids must be I32/I64 [T], got ", ids.describe());
  SAILVL_OP_CHECK(table.dim() == 2 && is_weight_dtype(table.dtype()) && table.stride(1) == 1, op,
                  "table must be [V, D] BF16/F16/F32 with contiguous rows, got ", table.describe());
  const int64_t T = ids.size(0), V = table.size(0), D = table.size(1);
  SAILVL_OP_CHECK(out.dim() == 2 && out.size(0) == T && out.size(1) == D, op, "out must be [", T, ", ", D, "], got ",
                  out.describe());
  const auto o = as_rows(out, op, "out");
  std::vector<int64_t> id(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) {
    id[t] = ids.dtype() == DType::I64 ? ids.data<int64_t>()[t * ids.stride(0)] : ids.data<int32_t>()[t * ids.stride(0)];
    SAILVL_OP_CHECK(id[t] >= 0 && id[t] < V, op, "token id ", id[t], " at position ", t, " outside [0, ", V, ")");
  }
  const auto* tab = static_cast<const uint8_t*>(table.raw_data());
  const int64_t row_bytes = table.stride(0) * static_cast<int64_t>(dtype_size(table.dtype()));
#pragma omp parallel for schedule(static) if (T > 16)
  for (int64_t t = 0; t < T; ++t) to_f32(o.row(t), tab + id[t] * row_bytes, table.dtype(), D);
}

}  // namespace sailvl::ops::cpu
