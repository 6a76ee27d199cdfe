// WeightMap: every tensor of a checkpoint directory by Hugging Face name, and the prefix-scoped
// binder that checks shape and dtype (candle's VarBuilder idea; docs/CONTRIBUTING.md pattern 3).
//
// A directory holds either one `model.safetensors` or `model.safetensors.index.json`
// ({"metadata": {"total_size": N}, "weight_map": {name: shard file}}) plus the shards. Index rules
// (docs/VALIDATION.md): shard names are plain basenames; every shard exists (all missing ones listed);
// each tensor is in the shard the index names; no tensor is in two shards; no shard holds a tensor
// the index does not list. Shards are mmap'd; tensors are views into the mappings.
#include "loader/weights.h"

#include <sys/mman.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "loader/json_strict.h"

namespace sailvl::loader {

namespace fs = std::filesystem;

static std::string quoted(const std::string& name) {
  std::string q = "\"";  // appended piecewise: GCC 12 warns falsely (-Wrestrict) on "\"" + s + "\""
  q += escape_for_print(name);
  q += '"';
  return q;
}

static std::string read_text_file(const fs::path& p, size_t max_bytes) {
  std::error_code ec;
  const auto size = fs::file_size(p, ec);
  SAILVL_CHECK(!ec, BadModel, p.string(), ": cannot read (", ec.message(), ")");
  SAILVL_CHECK(size <= max_bytes, BadModel, p.string(), ": ", size, " bytes, larger than the limit of ", max_bytes);
  std::ifstream f(p, std::ios::binary);
  SAILVL_CHECK(f.good(), BadModel, p.string(), ": cannot open");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A shard name from the index must be a plain file name inside the checkpoint directory.
static void check_shard_name(const std::string& index_path, const std::string& tensor, const std::string& shard) {
  const bool bad = shard.empty() || shard == "." || shard == ".." || shard.find('/') != std::string::npos ||
                   shard.find('\\') != std::string::npos || shard.find('\0') != std::string::npos ||
                   shard.find("..") != std::string::npos;
  SAILVL_CHECK(!bad, BadModel, index_path, ": tensor ", quoted(tensor), " maps to shard ", quoted(shard),
               ", which is not a plain file name (no '/', '\\' or '..' allowed)");
}

ShardIndex parse_shard_index(std::string_view json_text, const std::string& display_name) {
  const std::string& ip = display_name;
  const nlohmann::json j = parse_json_strict(json_text, ip);
  SAILVL_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(), BadModel, ip,
               ": expected a JSON object with a \"weight_map\" object");
  ShardIndex out;
  for (const auto& [tensor, shard] : j["weight_map"].items()) {
    SAILVL_CHECK(shard.is_string(), BadModel, ip, ": weight_map value of tensor ", quoted(tensor), " is not a string");
    const std::string s = shard.get<std::string>();
    check_shard_name(ip, tensor, s);
    out.weight_map[tensor] = s;
    if (std::find(out.shards.begin(), out.shards.end(), s) == out.shards.end()) out.shards.push_back(s);
  }
  return out;
}

WeightMap WeightMap::open(const std::string& dir) {
  WeightMap w;
  w.dir_ = dir;
  const fs::path d(dir);
  SAILVL_CHECK(fs::is_directory(d), BadModel, dir, ": not a directory");
  const fs::path index = d / "model.safetensors.index.json";
  const fs::path single = d / "model.safetensors";

  if (!fs::exists(index)) {
    SAILVL_CHECK(fs::exists(single), BadModel, dir,
                 ": no model.safetensors or model.safetensors.index.json (is this a SAIL-VL checkpoint directory?)");
    w.shards_.push_back(SafetensorsFile::open(single.string()));
    const auto& ts = w.shards_[0]->header().tensors;
    for (size_t i = 0; i < ts.size(); ++i) w.where_[ts[i].name] = {0, i};
    return w;
  }

  // Sharded: parse the index, check the names, list every missing shard at once.
  const std::string ip = index.string();
  const ShardIndex parsed = parse_shard_index(read_text_file(index, 64u << 20), ip);
  const std::map<std::string, std::string>& wanted = parsed.weight_map;  // tensor -> shard
  std::vector<std::string> shard_names = parsed.shards;
  std::sort(shard_names.begin(), shard_names.end());  // model-00001-of-N first
  std::vector<std::string> missing;
  for (const auto& s : shard_names)
    if (!fs::is_regular_file(d / s)) missing.push_back(s);
  if (!missing.empty()) {
    std::string list;
    for (const auto& m : missing) list += (list.empty() ? "" : ", ") + quoted(m);
    fail(ErrorKind::BadModel, ip, ": ", missing.size(), " of ", shard_names.size(), " shards missing from ", dir, ": ",
         list);
  }

  std::map<std::string, size_t> shard_index;
  for (const auto& s : shard_names) {
    shard_index[s] = w.shards_.size();
    w.shards_.push_back(SafetensorsFile::open((d / s).string()));
  }
  // Every tensor found in a shard: in no other shard, listed in the index, and for this shard.
  // Two shards is checked over all shards first: it is the more specific diagnosis.
  for (size_t si = 0; si < w.shards_.size(); ++si) {
    const auto& ts = w.shards_[si]->header().tensors;
    for (size_t ti = 0; ti < ts.size(); ++ti) {
      const std::string& name = ts[ti].name;
      auto prev = w.where_.find(name);
      SAILVL_CHECK(prev == w.where_.end(), BadModel, dir, ": tensor ", quoted(name),
                   " is in two shards: ", quoted(shard_names[prev->second.first]), " and ", quoted(shard_names[si]));
      w.where_[name] = {si, ti};
    }
  }
  for (const auto& [name, loc] : w.where_) {
    const std::string& path = w.shards_[loc.first]->path();
    auto it = wanted.find(name);
    SAILVL_CHECK(it != wanted.end(), BadModel, path, ": tensor ", quoted(name), " is not listed in ", ip);
    SAILVL_CHECK(it->second == shard_names[loc.first], BadModel, path, ": tensor ", quoted(name),
                 " is in the wrong shard: the index says ", quoted(it->second));
  }
  for (const auto& [tensor, shard] : wanted)
    SAILVL_CHECK(w.where_.count(tensor), BadModel, ip, ": tensor ", quoted(tensor), " is not in shard ", quoted(shard),
                 " where the index says it is");
  return w;
}

bool WeightMap::contains(const std::string& name) const { return where_.count(name) != 0; }

const TensorInfo& WeightMap::info(const std::string& name) const {
  auto it = where_.find(name);
  SAILVL_CHECK(it != where_.end(), BadModel, dir_, ": tensor ", quoted(name), " is missing from the checkpoint");
  return shards_[it->second.first]->header().tensors[it->second.second];
}

Tensor WeightMap::get(const std::string& name) const {
  const TensorInfo& ti = info(name);
  return shards_[where_.at(name).first]->tensor(ti);
}

std::vector<std::string> WeightMap::names() const {
  std::vector<std::string> out;
  out.reserve(where_.size());
  for (const auto& [n, _] : where_) out.push_back(n);
  return out;  // std::map keeps them sorted
}

WeightScope WeightMap::scope(const std::string& prefix) const { return WeightScope(this, prefix); }

uint64_t WeightMap::total_bytes() const {
  uint64_t sum = 0;
  for (const auto& s : shards_)
    for (const auto& t : s->header().tensors) sum += t.end - t.begin;
  return sum;
}

// ---------------------------------------------------------------------------------------------
// WeightScope

WeightScope WeightScope::scope(const std::string& sub) const { return WeightScope(map_, full_name(sub)); }

std::string WeightScope::full_name(const std::string& name) const {
  return prefix_.empty() ? name : prefix_ + "." + name;
}

bool WeightScope::contains(const std::string& name) const { return map_->contains(full_name(name)); }

Tensor WeightScope::require(const std::string& name, const Shape& shape) const {
  const std::string full = full_name(name);
  const TensorInfo& ti = map_->info(full);
  SAILVL_CHECK(is_floating(ti.dtype), BadModel, map_->dir(), ": tensor ", quoted(full), " has dtype ",
               dtype_name(ti.dtype), ", expected a floating type (BF16, F16 or F32)");
  SAILVL_CHECK(ti.shape == shape, BadModel, map_->dir(), ": tensor ", quoted(full), " has shape ", shape_str(ti.shape),
               ", expected ", shape_str(shape), " from config.json");
  return map_->get(full);
}

Tensor WeightScope::require(const std::string& name, const Shape& shape, DType dtype) const {
  const std::string full = full_name(name);
  const TensorInfo& ti = map_->info(full);
  SAILVL_CHECK(ti.dtype == dtype, BadModel, map_->dir(), ": tensor ", quoted(full), " has dtype ", dtype_name(ti.dtype),
               ", expected ", dtype_name(dtype));
  return require(name, shape);
}

std::optional<Tensor> WeightScope::optional(const std::string& name, const Shape& shape) const {
  if (!contains(name)) return std::nullopt;
  return require(name, shape);
}

void WeightMap::prefetch(const std::function<void(uint64_t, uint64_t)>& progress) const {
  uint64_t total = 0, done = 0;
  for (const auto& s : shards_) total += s->mapping().nbytes();
  constexpr size_t kPage = 4096, kStep = size_t{64} << 20;  // report every 64 MiB
  volatile uint8_t sink = 0;
  for (const auto& s : shards_) {
    const MappedFile& m = s->mapping();
    ::madvise(const_cast<uint8_t*>(m.bytes()), m.nbytes(), MADV_WILLNEED);  // a hint; failure is harmless
    for (size_t at = 0; at < m.nbytes(); at += kStep) {
      const size_t end = std::min(m.nbytes(), at + kStep);
      uint8_t x = 0;
      for (size_t p = at; p < end; p += kPage) x ^= m.bytes()[p];
      sink = sink ^ x;
      done += end - at;
      if (progress) progress(done, total);
    }
  }
}

}  // namespace sailvl::loader
