// `sailvl quantize`: write a q8/q4 copy of a checkpoint (checkpoint/quantize.h) and its drift report
// against the source (checkpoint/drift.h), saved as quantization_report.json and printed.
//
//   sailvl quantize -m IN --type q8|q4 [--vision] --out OUT [--force] [--no-report] [--report-tokens N]
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "checkpoint/drift.h"
#include "checkpoint/quantize.h"
#include "cli/command.h"
#include "cli/common.h"
#include "cli/progress.h"

using namespace sailvl;

static void setup_quantize(cli::Args& a) {
  a.usage_line = "sailvl quantize -m IN --type q8|q4 --out OUT [options]";
  a.description =
      "Store the linear weights as 8-bit (q8) or 4-bit (q4) blocks with F16 scales (docs/QUANTIZATION.md): "
      "the language model's always (LM head included), the vision tower's and projector's with --vision. "
      "Then score the result against the source (drift report: top-1 agreement, KL, logit error).";
  a.option("-m,--model", "IN", "the full-precision checkpoint directory");
  a.option("--type", "q8|q4", "the format");
  a.option("-o,--out", "OUT", "output directory (created; must be empty unless --force)");
  a.flag("--vision", "quantise the vision tower and projector linears too");
  a.flag("--force", "write into a non-empty directory (its safetensors files are replaced)");
  a.flag("--no-report", "skip the drift report (it runs both models on three prompts)");
  a.option("--report-tokens", "N", "greedy tokens per drift-report prompt", "16");
  a.option("-t,--threads", "N", "CPU threads (0 = all cores)", "0");
  a.flag("-q,--quiet", "no progress on stderr");
  a.examples = {"sailvl quantize -m ~/models/SAIL-VL-1d5-2B --type q4 --out ~/models/SAIL-VL-1d5-2B-q4",
                "sailvl quantize -m models/sailvl-2b --type q8 --vision --out models/sailvl-2b-q8v"};
}

static int run_quantize(cli::Args& a) {
  cli::apply_threads(a);
  checkpoint::QuantizeOptions o;
  o.in_dir = cli::resolve_model_dir(a.get("model"));
  o.out_dir = a.get("out");
  const std::string type = a.get("type");
  const std::optional<ops::QuantType> t = ops::quant_type_from_name(type);
  SAILVL_CHECK(t && *t != ops::QuantType::None, Usage, "--type must be q8 or q4, got '", escape_for_print(type), "'");
  o.type = *t;
  o.vision = a.on("vision");
  o.force = a.on("force");
  const bool quiet = a.on("quiet");
  const int64_t report_tokens = a.get_int("report-tokens", 1, 4096);
  cli::Progress progress(quiet ? 0 : 1);
  if (!quiet)
    o.progress = [&](uint64_t done, uint64_t total, const std::string& file) {
      (void)file;
      progress.update("quantize", static_cast<double>(done) / 1e9, static_cast<double>(total) / 1e9, "GB");
    };
  const auto t0 = std::chrono::steady_clock::now();
  const checkpoint::QuantizeResult r = checkpoint::quantize_checkpoint(o);
  progress.done("quantize");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!quiet) {
    std::fprintf(
        stderr,
        "quantize: %s -> %s (%s%s): %.3f GB -> %.3f GB (%.0f%% of the source), %lld tensors quantised, %.1f s\n",
        o.in_dir.c_str(), o.out_dir.c_str(), type.c_str(), o.vision ? ", vision too" : "", r.in_bytes / 1e9,
        r.out_bytes / 1e9,
        100.0 * static_cast<double>(r.out_bytes) / static_cast<double>(std::max<uint64_t>(r.in_bytes, 1)),
        static_cast<long long>(r.quantized), secs);
    if (r.head_added)
      std::fprintf(stderr,
                   "quantize: the LM head was tied to embed_tokens; a %s copy is stored as "
                   "language_model.lm_head.weight (embed_tokens stays as it was)\n",
                   type.c_str());
    for (const std::string& n : r.kept_linears)
      std::fprintf(stderr, "quantize: %s kept as stored (K is not a multiple of the group)\n", n.c_str());
  }
  if (a.on("no-report")) return 0;

  checkpoint::DriftOptions d;
  d.tokens = report_tokens;
  if (!quiet)
    d.progress = [](const std::string& what) { std::fprintf(stderr, "quantize: drift report, %s\n", what.c_str()); };
  const checkpoint::DriftReport rep = checkpoint::measure_drift(o.in_dir, o.out_dir, d);
  nlohmann::ordered_json j;
  j["source"] = o.in_dir;
  j["format"] = type;
  j["vision"] = o.vision;
  j["source_bytes"] = r.in_bytes;
  j["quantized_bytes"] = r.out_bytes;
  j["drift"] = rep.to_json();
  const std::string path = (std::filesystem::path(o.out_dir) / "quantization_report.json").string();
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << j.dump(2) << "\n";
  SAILVL_CHECK(f.good(), Usage, path, ": write failed");
  std::printf("drift of %s against %s (teacher-forced on the source's greedy answers):\n%s", o.out_dir.c_str(),
              o.in_dir.c_str(), rep.table().c_str());
  std::printf("report: %s\n", path.c_str());
  return 0;
}

SAILVL_COMMAND(quantize, "store a checkpoint's linear weights as q8 or q4, with a drift report", setup_quantize,
               run_quantize);
