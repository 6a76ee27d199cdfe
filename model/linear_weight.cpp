#include "model/linear_weight.h"

#include "model/model.h"
#include "tensor/error.h"

namespace sailvl::model {

ops::Weight linear_weight(const loader::WeightScope& W, const std::string& name, int64_t N, int64_t K,
                          ops::QuantType format, const Device& device) {
  const loader::TensorInfo& ti = W.info(name);
  if (is_floating(ti.dtype)) return ops::Weight(place(W.require(name, {N, K}), device));

  const std::string full = W.full_name(name);
  const std::string where = str_cat(W.dir(), ": tensor \"", escape_for_print(full), "\"");
  const ops::QuantType stored = ti.dtype == DType::I8   ? ops::QuantType::Q8
                                : ti.dtype == DType::U8 ? ops::QuantType::Q4
                                                        : ops::QuantType::None;
  SAILVL_CHECK(stored != ops::QuantType::None, BadModel, where, " has dtype ", dtype_name(ti.dtype),
               ", expected a floating type (BF16, F16, F32) or quantised codes (I8: q8, U8: q4)");
  const char* sname = ops::quant_type_name(stored);
  SAILVL_CHECK(format == stored, BadModel, where, " holds ", sname, " codes but config.json's quantization_config ",
               format == ops::QuantType::None ? std::string("does not quantise this part of the model")
                                              : str_cat("says ", ops::quant_type_name(format)));
  const int64_t G = ops::quant_group(stored), per_byte = ops::quant_codes_per_byte(stored);
  SAILVL_CHECK(K % G == 0, BadModel, where, " holds ", sname, " codes, but its K = ", K, " from config.json is not a ",
               "multiple of the group size ", G);
  const Shape want{N, K / per_byte};
  SAILVL_CHECK(ti.shape == want, BadModel, where, " (", sname, " codes of a [", N, ", ", K, "] weight) has shape ",
               shape_str(ti.shape), ", expected ", shape_str(want));
  const std::string scale = ops::quant_scale_name(name);
  SAILVL_CHECK(W.contains(scale), BadModel, where, " holds ", sname, " codes but its scales \"",
               escape_for_print(W.full_name(scale)), "\" are missing");
  const Tensor s = W.require(scale, {N, K / G}, DType::F16);
  SAILVL_CHECK(device.is_cpu(), BadModel, where, " is quantised (", sname, "); quantised weights run on the CPU only ",
               "(--device cpu)");
  return ops::Weight::from_stored(stored, W.get(name), s, full);
}

}  // namespace sailvl::model
