// ops/quant.h: the Weight operand (float or quantised), its checks, and the format names.
// The quantiser and the reference dequantiser are CPU code: ops/cpu/quant.cpp.
#include "ops/quant.h"

namespace sailvl::ops {

const char* quant_type_name(QuantType t) {
  switch (t) {
    case QuantType::None: return "none";
    case QuantType::Q8: return "q8";
    case QuantType::Q4: return "q4";
  }
  return "?";
}

std::optional<QuantType> quant_type_from_name(std::string_view s) {
  if (s == "none") return QuantType::None;
  if (s == "q8") return QuantType::Q8;
  if (s == "q4") return QuantType::Q4;
  return std::nullopt;
}

Weight::Weight(Tensor t) : data(std::move(t)) {}

Weight Weight::from_stored(QuantType type, Tensor data, Tensor scale, std::string_view name) {
  SAILVL_CHECK(type != QuantType::None, Internal, "Weight::from_stored: ", name, " has no quantised format");
  const DType code_dtype = type == QuantType::Q8 ? DType::I8 : DType::U8;
  const char* fmt = quant_type_name(type);
  const int64_t G = quant_group(type), cpb = quant_codes_per_byte(type);
  SAILVL_CHECK(data.defined() && data.dim() == 2 && data.dtype() == code_dtype, BadModel, name, ": ", fmt,
               " codes must be a 2-D ", dtype_name(code_dtype), " tensor, got ",
               data.defined() ? data.describe() : "nothing");
  const int64_t N = data.size(0), K = data.size(1) * cpb;
  SAILVL_CHECK(scale.defined() && scale.dim() == 2 && scale.dtype() == DType::F16, BadModel, name, "_scale: ", fmt,
               " scales must be a 2-D F16 tensor, got ", scale.defined() ? scale.describe() : "nothing");
  SAILVL_CHECK(K % G == 0 && scale.size(0) == N && scale.size(1) == K / G, BadModel, name, "_scale: ", fmt, " weight ",
               data.describe(), " (K = ", K, ") needs scales [", N, ", K/", G, "] with K a multiple of ", G, ", got ",
               scale.describe());
  SAILVL_CHECK(scale.device() == data.device(), BadModel, name, ": codes and scales on different devices");
  Weight w(std::move(data));
  w.scale = std::move(scale);
  w.type = type;
  w.group = G;
  return w;
}

int64_t Weight::rows() const {
  SAILVL_CHECK(data.defined() && data.dim() == 2, Internal,
               "Weight: not a 2-D weight: ", data.defined() ? data.describe() : "undefined");
  return data.size(0);
}

int64_t Weight::cols() const {
  SAILVL_CHECK(data.defined() && data.dim() == 2, Internal,
               "Weight: not a 2-D weight: ", data.defined() ? data.describe() : "undefined");
  return data.size(1) * quant_codes_per_byte(type);
}

size_t Weight::nbytes() const {
  size_t n = data.defined() ? data.nbytes() : 0;
  if (scale.defined()) n += scale.nbytes();
  if (zero.defined()) n += zero.nbytes();
  return n;
}

std::string Weight::describe() const {
  if (!data.defined()) return "undefined";
  if (!quantized()) return data.describe();
  return str_cat(quant_type_name(type), "[", rows(), ", ", cols(), "] g", group, zero.defined() ? " asym " : " ",
                 device().str());
}

}  // namespace sailvl::ops
