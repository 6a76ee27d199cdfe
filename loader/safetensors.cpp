// safetensors reader (over mmap) and streaming writer.
//
// Layout: [u64 LE N][N bytes JSON header][data section]. The reader follows the reference
// implementation (huggingface/safetensors, `SafeTensors::read_metadata` + `Metadata::validate`) and
// adds the rules of docs/VALIDATION.md §safetensors. Checks run in this order, each with its own
// message naming the file, the tensor (escaped) and the rule:
//   1. file >= 8 bytes; N <= 100,000,000; N <= size - 8 (never computes 8 + N first)
//   2. header: UTF-8, depth cap, duplicate keys (json_strict.h); a JSON object
//   3. "__metadata__": string -> string
//   4. each tensor: exactly {dtype, shape, data_offsets}; known dtype; shape of ints >= 0;
//      data_offsets two ints, begin <= end; numel and bytes with checked multiplication;
//      bytes == end - begin
//   5. sorted by begin: first at 0, each begins where the previous ended, and the last ends at the
//      end of the file; a short file is "truncated (incomplete download?)", a long one "trailing bytes"
// Tensor data whose address is not a multiple of its element size is copied (never reinterpret_cast).
#include "loader/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

#include "loader/json_strict.h"

namespace sailvl::loader {

using nlohmann::json;

static constexpr uint64_t kMaxHeaderLen = 100'000'000;  // the reference reader's limit
static constexpr size_t kMaxHeaderDepth = 8;            // a valid header is 3 levels deep

// a * b, or nullopt on uint64 overflow.
static bool checked_mul(uint64_t a, uint64_t b, uint64_t* out) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return false;
  *out = a * b;
  return true;
}

// A JSON integer >= 0 as uint64 (rejects floats, negatives, bools).
static bool as_u64(const json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(v.get<int64_t>());
    return true;
  }
  return false;
}

// One tensor entry of the header (rule 4).
static TensorInfo parse_tensor_entry(const std::string& file, const std::string& name, const json& e) {
  const std::string t = "tensor \"" + escape_for_print(name) + "\"";
  SAILVL_CHECK(e.is_object(), BadModel, file, ": ", t, ": header entry is not a JSON object");
  for (const auto& [k, v] : e.items())
    SAILVL_CHECK(k == "dtype" || k == "shape" || k == "data_offsets", BadModel, file, ": ", t, ": unknown field \"",
                 escape_for_print(k), "\" (expected dtype, shape, data_offsets)");
  SAILVL_CHECK(e.contains("dtype") && e["dtype"].is_string(), BadModel, file, ": ", t,
               ": missing or non-string \"dtype\"");
  SAILVL_CHECK(e.contains("shape") && e["shape"].is_array(), BadModel, file, ": ", t,
               ": missing or non-array \"shape\"");
  SAILVL_CHECK(e.contains("data_offsets") && e["data_offsets"].is_array(), BadModel, file, ": ", t,
               ": missing or non-array \"data_offsets\"");

  TensorInfo info;
  info.name = name;
  const std::string& dt = e["dtype"].get_ref<const std::string&>();
  const auto dtype = dtype_from_name(dt);
  SAILVL_CHECK(dtype.has_value(), BadModel, file, ": ", t, ": unsupported dtype \"", escape_for_print(dt),
               "\" (supported: F32, BF16, F16, I32, I64, U8, BOOL)");
  info.dtype = *dtype;

  uint64_t numel = 1;
  for (const auto& d : e["shape"]) {
    uint64_t n = 0;
    SAILVL_CHECK(as_u64(d, &n) && n <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), BadModel, file, ": ",
                 t, ": shape has a dimension that is not a non-negative integer: ", d.dump());
    SAILVL_CHECK(checked_mul(numel, n, &numel), BadModel, file, ": ", t, ": element count of shape ", e["shape"].dump(),
                 " overflows 64 bits");
    info.shape.push_back(static_cast<int64_t>(n));
  }
  uint64_t nbytes = 0;
  SAILVL_CHECK(checked_mul(numel, dtype_size(info.dtype), &nbytes) &&
                   numel <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
               BadModel, file, ": ", t, ": byte size of shape ", e["shape"].dump(), " overflows 64 bits");

  const json& off = e["data_offsets"];
  SAILVL_CHECK(off.size() == 2 && as_u64(off[0], &info.begin) && as_u64(off[1], &info.end), BadModel, file, ": ", t,
               ": data_offsets must be exactly two non-negative integers, got ", off.dump());
  SAILVL_CHECK(info.begin <= info.end, BadModel, file, ": ", t, ": data_offsets begin ", info.begin, " > end ",
               info.end);
  SAILVL_CHECK(info.end - info.begin == nbytes, BadModel, file, ": ", t, ": data_offsets span ", info.end - info.begin,
               " bytes but ", dt, e["shape"].dump(), " needs ", nbytes, " bytes");
  return info;
}

SafetensorsHeader parse_safetensors(std::span<const uint8_t> file, const std::string& display_name) {
  const std::string& f = display_name;
  // Rule 1: the header length, compared against the bytes that remain after it.
  SAILVL_CHECK(file.size() >= 8, BadModel, f, ": file is ", file.size(),
               " bytes, shorter than the 8-byte safetensors header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | file[static_cast<size_t>(i)];
  const uint64_t remaining = file.size() - 8;
  SAILVL_CHECK(n <= kMaxHeaderLen, BadModel, f, ": header length ", n, " exceeds the limit of ", kMaxHeaderLen,
               " bytes");
  SAILVL_CHECK(n <= remaining, BadModel, f, ": header length ", n, " is longer than the file (", remaining,
               " bytes after the length field)");

  // Rule 2: UTF-8, depth, duplicate keys, then a JSON object.
  const std::string_view text(reinterpret_cast<const char*>(file.data()) + 8, n);
  const json h = parse_json_strict(text, f + " (header)", ErrorKind::BadModel, kMaxHeaderDepth);
  SAILVL_CHECK(h.is_object(), BadModel, f, ": header is not a JSON object");

  SafetensorsHeader out;
  out.header_len = n;
  for (const auto& [key, value] : h.items()) {
    if (key == "__metadata__") {  // Rule 3
      SAILVL_CHECK(value.is_object(), BadModel, f, ": __metadata__ is not a JSON object");
      for (const auto& [mk, mv] : value.items()) {
        SAILVL_CHECK(mv.is_string(), BadModel, f, ": __metadata__ value of \"", escape_for_print(mk),
                     "\" is not a string");
        out.metadata[mk] = mv.get<std::string>();
      }
      continue;
    }
    out.tensors.push_back(parse_tensor_entry(f, key, value));  // Rule 4
  }

  // Rule 5: contiguous coverage of the data section, in order of begin.
  std::sort(out.tensors.begin(), out.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const uint64_t data_size = remaining - n;
  uint64_t expected = 0;
  for (const TensorInfo& ti : out.tensors) {
    const std::string t = "tensor \"" + escape_for_print(ti.name) + "\"";
    SAILVL_CHECK(ti.begin >= expected, BadModel, f, ": ", t, " at data offset ", ti.begin,
                 " overlaps the previous tensor, which ends at ", expected);
    SAILVL_CHECK(ti.begin == expected, BadModel, f, ": ", t, " begins at data offset ", ti.begin,
                 " but the previous tensor ends at ", expected, " (a gap: tensors must cover the data contiguously)");
    SAILVL_CHECK(ti.end <= data_size, BadModel, f, ": truncated (incomplete download?): ", t, " ends at data offset ",
                 ti.end, " but the data section has only ", data_size, " bytes");
    expected = ti.end;
  }
  SAILVL_CHECK(expected == data_size, BadModel, f, ": trailing bytes: the tensors end at data offset ", expected,
               " but the data section has ", data_size, " bytes (", data_size - expected, " unexplained)");
  return out;
}

// ---------------------------------------------------------------------------------------------
// SafetensorsFile

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  auto f = std::shared_ptr<SafetensorsFile>(new SafetensorsFile());
  f->path_ = path;
  f->map_ = std::make_shared<MappedFile>(path);
  f->header_ = parse_safetensors(std::span<const uint8_t>(f->map_->bytes(), f->map_->nbytes()), path);
  for (size_t i = 0; i < f->header_.tensors.size(); ++i) f->index_[f->header_.tensors[i].name] = i;
  return f;
}

size_t SafetensorsFile::file_size() const { return map_ ? map_->nbytes() : 0; }

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

Tensor SafetensorsFile::tensor(const TensorInfo& info) const {
  const size_t offset = 8 + header_.header_len + info.begin;  // validated by parse_safetensors
  const size_t esize = dtype_size(info.dtype);
  const uintptr_t addr = reinterpret_cast<uintptr_t>(map_->bytes()) + offset;
  if (addr % esize == 0) return Tensor::from_storage(map_, offset, info.shape, info.dtype);  // a view: no copy
  // Misaligned (legal in the format: the header length need not be a multiple of 8): copy the
  // bytes into an aligned buffer rather than reading through a misaligned pointer.
  Tensor t = Tensor::empty(info.shape, info.dtype);
  if (info.end > info.begin) std::memcpy(t.raw_data(), map_->bytes() + offset, info.end - info.begin);
  return t;
}

// ---------------------------------------------------------------------------------------------
// SafetensorsWriter

struct SafetensorsWriter::Impl {
  std::string path;
  FILE* fp = nullptr;
  uint64_t total = 0;  // bytes of the data section
  uint64_t written = 0;
  bool finished = false;
};

SafetensorsWriter::SafetensorsWriter(const std::string& path, std::vector<Entry> entries,
                                     const std::map<std::string, std::string>& metadata)
    : impl_(std::make_unique<Impl>()) {
  impl_->path = path;
  // Header in the given order (nlohmann::ordered_json keeps insertion order), data in the same order.
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t off = 0;
  for (const Entry& e : entries) {
    SAILVL_CHECK(e.name != "__metadata__" && !h.contains(e.name), Internal, path, ": tensor \"",
                 escape_for_print(e.name), "\" written twice");
    const uint64_t bytes = static_cast<uint64_t>(shape_numel(e.shape)) * dtype_size(e.dtype);
    h[e.name] = {{"dtype", dtype_name(e.dtype)}, {"shape", e.shape}, {"data_offsets", {off, off + bytes}}};
    off += bytes;
  }
  impl_->total = off;
  std::string text = h.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // pad with spaces so the data starts 8-byte aligned
  impl_->fp = std::fopen(path.c_str(), "wb");
  SAILVL_CHECK(impl_->fp != nullptr, BadModel, path, ": cannot create (", std::strerror(errno), ")");
  std::setvbuf(impl_->fp, nullptr, _IOFBF, 1 << 20);
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));
  SAILVL_CHECK(
      std::fwrite(len, 1, 8, impl_->fp) == 8 && std::fwrite(text.data(), 1, text.size(), impl_->fp) == text.size(),
      BadModel, path, ": write failed (", std::strerror(errno), ")");
}

SafetensorsWriter::~SafetensorsWriter() {
  if (impl_ && impl_->fp) std::fclose(impl_->fp);
}

void SafetensorsWriter::append(const void* bytes, size_t n) {
  SAILVL_CHECK(!impl_->finished && impl_->written + n <= impl_->total, Internal, impl_->path, ": appended ",
               impl_->written + n, " bytes, more than the ", impl_->total, " the header declares");
  SAILVL_CHECK(std::fwrite(bytes, 1, n, impl_->fp) == n, BadModel, impl_->path, ": write failed (",
               std::strerror(errno), ")");
  impl_->written += n;
}

void SafetensorsWriter::finish() {
  SAILVL_CHECK(impl_->written == impl_->total, Internal, impl_->path, ": finished after ", impl_->written, " of ",
               impl_->total, " data bytes");
  FILE* fp = impl_->fp;
  impl_->fp = nullptr;
  impl_->finished = true;
  SAILVL_CHECK(std::fclose(fp) == 0, BadModel, impl_->path, ": close failed (", std::strerror(errno), ")");
}

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<SafetensorsWriter::Entry> entries;
  for (const auto& [name, t] : tensors) entries.push_back({name, t.dtype(), t.shape()});
  SafetensorsWriter w(path, std::move(entries), metadata);
  for (const auto& [name, t] : tensors) {
    const Tensor host = t.to(Device::cpu()).contiguous();
    if (host.nbytes() > 0) w.append(host.raw_data(), host.nbytes());
  }
  w.finish();
}

}  // namespace sailvl::loader
