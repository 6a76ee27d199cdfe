// See quantize.h.
#include "checkpoint/quantize.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "loader/json_strict.h"
#include "loader/safetensors.h"
#include "loader/weights.h"
#include "model/config.h"
#include "model/family.h"

namespace sailvl::checkpoint {

namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

const std::string kEmbed = "language_model.model.embed_tokens.weight";
const std::string kHead = "language_model.lm_head.weight";

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  SAILVL_CHECK(f.good(), BadModel, p.string(), ": cannot read");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_file(const fs::path& p, std::string_view bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  SAILVL_CHECK(f.good(), Usage, p.string(), ": write failed");
}

// The pages of [p, p + n) of a read-only file mapping leave this process's resident set (they stay
// in the page cache; touching them again faults them back in). Neighbouring tensors that share a
// boundary page are unaffected apart from that refault.
void release(const uint8_t* p, size_t n) {
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t b = reinterpret_cast<uintptr_t>(p) / page * page;
  const uintptr_t e = (reinterpret_cast<uintptr_t>(p) + n + page - 1) / page * page;
  if (e > b) ::madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);  // a hint: failure is harmless
}

// One output tensor (or a quantised pair) and where its input lives.
struct Item {
  std::string name;    // output name ("X.weight")
  std::string source;  // input tensor it is made from
  bool quantize = false;
};

}  // namespace

QuantizeResult quantize_checkpoint(const QuantizeOptions& opt) {
  const fs::path in(opt.in_dir), out(opt.out_dir);
  SAILVL_CHECK(opt.type != ops::QuantType::None, Usage, "quantize: --type must be q8 or q4");
  const std::string cfg_text = read_file(in / "config.json");
  const model::ModelConfig cfg = model::parse_config(cfg_text, (in / "config.json").string());
  SAILVL_CHECK(!cfg.quantized(), BadModel, opt.in_dir, " is already quantised (", ops::quant_type_name(cfg.llm.quant),
               "); quantize the full-precision checkpoint instead");
  const loader::WeightMap w = loader::WeightMap::open(opt.in_dir);
  model::check_against_config(w, cfg);

  // ---- the output directory: new, or empty, or --force; never the input ----
  std::error_code ec;
  SAILVL_CHECK(!fs::exists(out, ec) || fs::is_directory(out, ec), Usage, opt.out_dir, " exists and is not a directory");
  if (fs::exists(out, ec)) {
    SAILVL_CHECK(!fs::equivalent(in, out, ec), Usage,
                 "quantize: the output directory is the input directory; "
                 "write the quantised checkpoint somewhere else");
    SAILVL_CHECK(opt.force || fs::is_empty(out, ec), Usage, opt.out_dir,
                 " is not empty; use --force to write the quantised checkpoint into it anyway");
  }
  fs::create_directories(out, ec);
  SAILVL_CHECK(!ec && fs::is_directory(out), Usage, opt.out_dir, ": cannot create the output directory (", ec.message(),
               ")");
  for (const auto& e : fs::directory_iterator(out)) {  // what an earlier run may have left
    const std::string n = e.path().filename().string();
    if (n == "model.safetensors.index.json" || n == "quantization_report.json" ||
        (n.size() > 12 && n.substr(n.size() - 12) == ".safetensors"))
      fs::remove(e.path());
  }

  // ---- which tensors to quantise: the families' linears of the parts asked for ----
  std::set<std::string> linears;
  for (const model::TensorSpec& t : model::checkpoint_tensors(cfg, /*stored_head=*/true)) {
    if (!t.linear) continue;
    const bool llm = t.name.rfind("language_model.", 0) == 0;
    if (llm || opt.vision) linears.insert(t.name);
  }
  const int64_t G = ops::quant_group(opt.type);
  QuantizeResult res;
  auto quantizable = [&](const std::string& name) {
    if (!linears.count(name)) return false;
    const loader::TensorInfo& ti = w.info(name);
    SAILVL_CHECK(ti.shape.size() == 2 && is_floating(ti.dtype), BadModel, opt.in_dir, ": tensor \"",
                 escape_for_print(name), "\" is ", dtype_name(ti.dtype), shape_str(ti.shape),
                 ", expected a float [N, K] linear weight");
    if (ti.shape[1] % G == 0) return true;
    res.kept_linears.push_back(name);
    return false;
  };
  const bool add_head = !w.contains(kHead);  // tied: quantise a copy of embed_tokens as the head

  // ---- one output shard per input shard, same names; tensors in their stored order ----
  const auto& shards = w.shards();
  const bool sharded = fs::exists(in / "model.safetensors.index.json");
  ordered_json weight_map = ordered_json::object();
  uint64_t total_in = 0, done = 0;
  for (const auto& s : shards)
    for (const auto& ti : s->header().tensors) total_in += ti.end - ti.begin;
  for (const auto& s : shards) {
    const std::string file = fs::path(s->path()).filename().string();
    std::vector<Item> items;
    for (const auto& ti : s->header().tensors) {
      items.push_back({ti.name, ti.name, quantizable(ti.name)});
      if (ti.name == kEmbed && add_head && ti.shape.size() == 2 && ti.shape[1] % G == 0) {
        items.push_back({kHead, kEmbed, true});
        res.head_added = true;
      }
    }
    std::vector<loader::SafetensorsWriter::Entry> entries;
    for (const Item& it : items) {
      const loader::TensorInfo& ti = w.info(it.source);
      if (it.quantize) {
        const int64_t N = ti.shape[0], K = ti.shape[1];
        const DType dt = opt.type == ops::QuantType::Q8 ? DType::I8 : DType::U8;
        entries.push_back({it.name, dt, {N, K / ops::quant_codes_per_byte(opt.type)}});
        entries.push_back({ops::quant_scale_name(it.name), DType::F16, {N, K / G}});
        weight_map[it.name] = file;
        weight_map[ops::quant_scale_name(it.name)] = file;
      } else {
        entries.push_back({it.name, ti.dtype, ti.shape});
        weight_map[it.name] = file;
      }
    }
    loader::SafetensorsWriter out_file((out / file).string(), entries, {{"format", "pt"}});
    const uint8_t* data0 = s->mapping().bytes() + 8 + s->header().header_len;
    for (const Item& it : items) {
      const loader::TensorInfo& ti = w.info(it.source);
      const Tensor src = w.get(it.source);
      if (it.quantize) {
        const ops::Weight q = ops::quantize(src, opt.type);
        out_file.append(q.data.raw_data(), q.data.nbytes());
        out_file.append(q.scale.raw_data(), q.scale.nbytes());
        res.out_bytes += q.data.nbytes() + q.scale.nbytes();
        ++res.quantized;
      } else {
        out_file.append(src.raw_data(), src.nbytes());
        res.out_bytes += src.nbytes();
        ++res.kept;
      }
      if (it.name == it.source) {  // the head copy reads the embedding a second time: count it once
        done += ti.end - ti.begin;
        res.in_bytes += ti.end - ti.begin;
      }
      release(data0 + ti.begin, ti.end - ti.begin);
      if (opt.progress) opt.progress(done, total_in, file);
    }
    out_file.finish();
    res.files.push_back((out / file).string());
  }
  if (sharded) {
    ordered_json index;
    index["metadata"] = {{"total_size", res.out_bytes}};
    index["weight_map"] = weight_map;
    write_file(out / "model.safetensors.index.json", index.dump(2) + "\n");
  }

  // ---- config.json with quantization_config; the other files as they are ----
  ordered_json cj = ordered_json::parse(cfg_text);
  cj["quantization_config"] = {{"quant_method", "sailvl"},
                               {"format", ops::quant_type_name(opt.type)},
                               {"group_size", G},
                               {"vision", opt.vision}};
  write_file(out / "config.json", cj.dump(2) + "\n");
  for (const auto& e : fs::directory_iterator(in)) {
    const std::string n = e.path().filename().string();
    if (!e.is_regular_file() || n == "config.json" || n == "model.safetensors.index.json" ||
        n == "quantization_report.json" || (n.size() > 12 && n.substr(n.size() - 12) == ".safetensors"))
      continue;
    fs::copy_file(e.path(), out / n, fs::copy_options::overwrite_existing, ec);
    SAILVL_CHECK(!ec, Usage, (out / n).string(), ": copy failed (", ec.message(), ")");
  }
  return res;
}

}  // namespace sailvl::checkpoint
