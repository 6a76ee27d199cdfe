// `sailvl run`: one answer to one question (with images), streamed to stdout as it is generated.
//
// Everything that can be checked without the weights is checked first (flags, sampling values, the
// prompt file, the image files and their <image> markers, the --logits-out path), then the model is
// loaded with the memory preflight, and the turn runs through the session engine
// (runtime/session.h) exactly as a first chat turn does.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "loader/safetensors.h"
#include "runtime/chat_template.h"
#include "runtime/taps.h"

namespace sailvl::cli {
namespace {

namespace fs = std::filesystem;

void setup(Args& a) {
  a.usage_line = "sailvl run -m DIR [-i IMG]... -p TEXT [options]";
  a.description =
      "Answer one question about zero or more images, as the model card's model.chat() does, streaming\n"
      "the answer to stdout. Logs, progress and the timing summary go to stderr.\n"
      "Several images: without <image> in the prompt they are placed as 'Image-1: <image>\\nImage-2: <image>\\n'\n"
      "before the question (one image: '<image>\\n'); or write the <image> markers yourself, one per -i, in order.\n"
      "-p @FILE and -p - read the prompt from a file / stdin, dropping one trailing newline.";
  add_model_flags(a);
  a.option("-p,--prompt", "TEXT", "the question; @FILE reads it from a file, - from stdin");
  add_image_flags(a);
  add_generation_flags(a);
  a.option("--system", "TEXT", "replace the default (UniVL) system message");
  a.flag("--parse-special", "let special-token text in the prompt (e.g. <|im_end|>) act as control tokens");
  a.flag("--json", "print one JSON object (text, tokens, prompt_tokens, image_tiles, stop, timings) instead");
  a.option("--logits-out", "FILE", "write the last prompt position's logits (F32 safetensors, tensor 'logits')");
  a.option("--dump", "DIR", "write every stage (pixels, vision, projector, prompt ids, logits) as safetensors");
  add_observe_flags(a);
  a.examples = {"sailvl run -m ~/models/SAIL-VL-1d5-2B -i cat.jpg -p 'What is in the picture?'",
                "sailvl run -m DIR -i a.jpg -i b.jpg -p 'What differs between the two images?' --temp 1 --seed 7",
                "sailvl run -m DIR -p @question.txt --json -n 256 > answer.json",
                "sailvl run -m DIR -i cat.jpg -p 'Describe it.' -n 8 --profile",
                "sailvl run -m DIR -p 'Hi' -n 2 --trace --trace-layers 0,-1"};
}

// The prompt text: -p TEXT, -p @FILE or -p -; a file or stdin loses one trailing newline (what
// echo and editors add), so `echo hi | sailvl run -p -` asks "hi".
std::string read_prompt(const Args& a) {
  const std::string p = a.get("prompt");
  std::string text;
  if (p == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), {});
  } else if (p.size() > 1 && p[0] == '@') {
    std::error_code ec;
    SAILVL_CHECK(!fs::is_directory(p.substr(1), ec), Usage, "-p ", escape_for_print(p), ": is a directory");
    std::ifstream f(p.substr(1), std::ios::binary);
    SAILVL_CHECK(f, Usage, "-p ", escape_for_print(p), ": cannot read the file");
    text.assign(std::istreambuf_iterator<char>(f), {});
  } else {
    return p;
  }
  if (!text.empty() && text.back() == '\n') text.pop_back();
  if (!text.empty() && text.back() == '\r') text.pop_back();
  return text;
}

int64_t count_markers(const std::string& s) {
  int64_t n = 0;
  for (size_t at = s.find("<image>"); at != std::string::npos; at = s.find("<image>", at + 7)) ++n;
  return n;
}

// --logits-out must be writable before anything runs: refuse now, not after the whole answer.
void check_writable(const std::string& path) {
  std::error_code ec;
  SAILVL_CHECK(!fs::is_directory(path, ec), Usage, "--logits-out ", escape_for_print(path), ": is a directory");
  const bool existed = fs::exists(path, ec);
  std::ofstream f(path, std::ios::binary | std::ios::app);
  SAILVL_CHECK(f.good(), Usage, "--logits-out ", escape_for_print(path), ": cannot write there");
  f.close();
  if (!existed) fs::remove(path, ec);
}

int run(Args& a) {
  install_interrupt_handler();
  set_busy(true);
  apply_threads(a);
  // ---- every check that needs no weights ----
  const std::string question = read_prompt(a);
  runtime::GenerationOptions g = generation_options(a);
  Observation observe(a);  // --profile / --trace, checked now
  const std::string dir = resolve_model_dir(a.get("model"));
  const Device device = pick_device(a, dir);
  if (a.has("logits-out")) check_writable(a.get("logits-out"));
  const std::vector<runtime::ImageInput> images = read_images(a, a.all("image"));
  const int64_t markers = count_markers(question);
  SAILVL_CHECK(markers == 0 || markers == static_cast<int64_t>(images.size()), Usage, "the prompt has ", markers,
               " <image> markers but ", images.size(), " images were given (-i); one marker per image, or none");
  const model::ModelConfig cfg = model::load_config(dir);
  runtime::SessionOptions so = session_options(a);
  // The prompt bound for the memory preflight (no tokenizer needed) with each image's real tiles.
  runtime::ChatRequest worst;
  worst.question = question;
  int64_t tiles = 0;
  for (const auto& img : images) {
    const image::TileGrid grid = image::choose_grid(img.rgb->width, img.rgb->height,
                                                    img.frame ? 1 : so.preprocess.max_tiles, so.preprocess.image_size);
    worst.tiles.push_back(grid.tiles() + (grid.tiles() > 1 ? 1 : 0));
    tiles += worst.tiles.back();
  }
  worst.layout = so.layout;
  worst.num_image_token = cfg.num_image_token;
  worst.system_message = so.system_message;

  // ---- load, then one turn ----
  const model::SailVL m = load_model(a, dir, device, workload(a, tiles, runtime::max_prompt_tokens(worst)));
  log(2, a, "sailvl: " + m.config().describe());
  runtime::Session session(m, so);

  Progress progress(verbosity(a));
  attach_progress(g, progress);
  g.cancel = &interrupted();
  const bool json = a.on("json");
  bool stdout_closed = false;  // `sailvl run ... | head`: stop generating once nobody reads
  if (!json) {
    g.on_token = [&](int64_t, const std::string& text) {
      progress.clear();
      if (text.empty()) return;
      if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() || std::fflush(stdout) != 0) {
        stdout_closed = true;
        request_stop();
      }
    };
  }
  std::optional<runtime::Taps> taps;
  if (a.has("dump")) {
    taps.emplace(a.get("dump"));
    g.taps = &*taps;
  }
  std::optional<Tensor> first_logits;  // --logits-out: the prefill's logits, written at the end
  if (a.has("logits-out")) g.on_prefill_logits = [&](const Tensor& l) { first_logits = l.to(Device::cpu()).clone(); };

  runtime::TurnResult r;
  try {
    observe.begin(device);
    r = session.ask(question, images, g);
    observe.stop();
  } catch (const Error& e) {
    progress.clear();
    if (e.kind() != ErrorKind::Cancelled) throw;
    std::cerr << "[interrupted]\n";
    return 130;
  }
  progress.clear();
  if (first_logits) loader::write_safetensors(a.get("logits-out"), {{"logits", *first_logits}});
  if (json) {
    const nlohmann::ordered_json profile = observe.end();  // --profile: the table on stderr
    std::cout << turn_json(r.generation, r.response, -1, &profile) << "\n";
  } else {
    if (r.generation.stop == runtime::StopReason::ContextFull) std::cout << " [context full]";
    std::cout << "\n";
    std::cout.flush();
    observe.end();  // --profile: the table on stderr, after the answer's line
  }
  log(1, a, summary_line(r.generation.timings));
  if (stdout_closed) return 0;
  return r.generation.stop == runtime::StopReason::Cancelled ? 130 : 0;
}

}  // namespace

SAILVL_COMMAND(run, "answer one question about images, streaming the reply", setup, run);

}  // namespace sailvl::cli
