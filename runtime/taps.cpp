#include "runtime/taps.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "loader/safetensors.h"

namespace sailvl::runtime {

Taps::Taps(std::string dir, bool layers) : dir_(std::move(dir)), layers_(layers) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  SAILVL_CHECK(!ec, Usage, "cannot create the taps directory ", dir_, ": ", ec.message());
}

void Taps::write(const std::string& stage, const Tensor& t) const {
  loader::write_safetensors(dir_ + "/" + stage + ".safetensors", {{stage, t.contiguous()}});
}

void Taps::write_ids(const std::string& stage, std::span<const int64_t> ids) const {
  Tensor t = Tensor::empty({static_cast<int64_t>(ids.size())}, DType::I64);
  std::copy(ids.begin(), ids.end(), t.data<int64_t>());
  write(stage, t);
}

}  // namespace sailvl::runtime
