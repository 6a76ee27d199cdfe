// `sailvl make-model`: write a random-weight checkpoint in SAIL-VL's exact format (checkpoint/presets.h).
//
//   sailvl make-model --preset tiny-aimv2 --out DIR [--seed S] [--shards N] [--tie|--untie]
//                     [--lm-head stored|absent] [--quiet]
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "checkpoint/presets.h"
#include "checkpoint/quantize.h"
#include "cli/command.h"
#include "model/config.h"

using namespace sailvl;

static void setup_make_model(cli::Args& a) {
  std::string list;
  for (const auto& n : checkpoint::preset_names()) list += (list.empty() ? "" : ", ") + n;
  a.usage_line = "sailvl make-model --preset P --out DIR [options]";
  a.option("--preset", "P", "which model: " + list);
  a.option("-o,--out", "DIR", "output directory (created; must be empty unless --force)");
  a.flag("--force", "write into a non-empty directory (old safetensors files there are replaced)");
  a.option("--seed", "S", "PRNG seed (docs/CHECKPOINTS.md)", "0");
  a.option("--shards", "N", "number of safetensors files (default: the preset's)");
  a.flag("--tie", "tie lm_head to embed_tokens (no lm_head.weight stored)");
  a.flag("--untie", "store a separate lm_head.weight");
  a.option("--lm-head", "stored|absent",
           "store language_model.lm_head.weight or not, whatever --tie says (default: the preset's; "
           "a stored head is the LM head even when the config ties it)");
  a.flag("-q,--quiet", "no progress on stderr");
  a.flag("--config-only", "write only config.json (e.g. to see a full-size preset's config)");
  a.flag("--sizes",
         "write nothing; print the preset's tensor bytes in BF16 and as `sailvl quantize` would store them "
         "(q8, q4, with and without --vision), computed from the shapes");
  a.examples = {"sailvl make-model --preset tiny-aimv2 --out models/tiny-aimv2",
                "sailvl make-model --preset sailvl-1d5-2b --out models/sailvl-1d5-2b   # 4.5 GB, for benchmarks",
                "sailvl make-model --preset tiny-internvit --lm-head stored --out /tmp/stored-head",
                "sailvl make-model --preset sailvl-1d6-8b --sizes"};
}

// --sizes: one line per storage, bytes of tensor data (checkpoint/quantize.h: checkpoint_bytes).
static int print_sizes(const cli::Args& a) {
  const std::string preset = a.get("preset");
  std::optional<bool> tie;
  if (a.on("tie")) tie = true;
  if (a.on("untie")) tie = false;
  bool stored_head = checkpoint::default_stored_head(preset, tie);
  if (a.has("lm-head")) stored_head = a.get("lm-head") == "stored";
  const model::ModelConfig cfg = model::parse_config(checkpoint::preset_config(preset, tie).dump(), preset);
  const uint64_t bf16 = checkpoint::checkpoint_bytes(cfg, stored_head, std::nullopt, false);
  std::printf("%s: tensor data as stored (from the shapes; the files add a few KB of headers)\n", preset.c_str());
  std::printf("  %-12s %15llu bytes  %6.2f GB\n", "bf16", static_cast<unsigned long long>(bf16), bf16 / 1e9);
  for (const bool vision : {false, true})
    for (const ops::QuantType t : {ops::QuantType::Q8, ops::QuantType::Q4}) {
      const uint64_t b = checkpoint::checkpoint_bytes(cfg, stored_head, t, vision);
      const std::string name = std::string(ops::quant_type_name(t)) + (vision ? " --vision" : "");
      std::printf("  %-12s %15llu bytes  %6.2f GB  (%.1f %% of bf16)\n", name.c_str(),
                  static_cast<unsigned long long>(b), b / 1e9,
                  100.0 * static_cast<double>(b) / static_cast<double>(bf16));
    }
  return 0;
}

static int run_make_model(cli::Args& a) {
  checkpoint::MakeModelOptions opt;
  opt.preset = a.get("preset");
  if (a.on("sizes")) return print_sizes(a);
  opt.out_dir = a.get("out");
  opt.seed = static_cast<uint64_t>(a.get_int("seed", 0, (1LL << 62)));
  if (a.has("shards")) opt.shards = static_cast<int>(a.get_int("shards", 1, 9999));
  SAILVL_CHECK(!(a.on("tie") && a.on("untie")), Usage, "--tie and --untie exclude each other");
  if (a.on("tie")) opt.tie = true;
  if (a.on("untie")) opt.tie = false;
  if (a.has("lm-head")) {
    const std::string h = a.get("lm-head");
    SAILVL_CHECK(h == "stored" || h == "absent", Usage, "--lm-head must be stored or absent, got '",
                 escape_for_print(h), "'");
    opt.stored_head = h == "stored";
  }
  opt.quiet = a.on("quiet");
  opt.force = a.on("force");
  if (a.on("config-only")) {
    std::filesystem::create_directories(opt.out_dir);
    std::ofstream f(std::filesystem::path(opt.out_dir) / "config.json", std::ios::binary | std::ios::trunc);
    f << checkpoint::preset_config(opt.preset, opt.tie).dump(2) << "\n";
    SAILVL_CHECK(f.good(), Usage, opt.out_dir, "/config.json: write failed");
    return 0;
  }
  checkpoint::make_model(opt);
  return 0;
}

// Registered by hand: the SAILVL_COMMAND macro needs an identifier, and the name has a dash.
static ::sailvl::cli::Registrar register_make_model(
    {"make-model", "write a random-weight checkpoint in SAIL-VL's format (tests, benchmarks)", setup_make_model,
     run_make_model});
