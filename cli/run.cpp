// `sailvl run`: one answer to one question (with images), streamed to stdout as it is generated.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "cli/session.h"
#include "runtime/chat.h"
#include "runtime/taps.h"

namespace sailvl::cli {
namespace {

namespace fs = std::filesystem;

void setup(Args& a) {
  a.usage_line = "sailvl run -m DIR [-i IMG]... -p TEXT [options]";
  a.description =
      "Answer one question about zero or more images, as the model card's model.chat() does, streaming\n"
      "the answer to stdout. Logs and the timing summary go to stderr.";
  add_model_flags(a);
  a.option("-p,--prompt", "TEXT", "the question; @FILE reads it from a file, - from stdin");
  add_image_flags(a);
  add_generation_flags(a);
  a.option("--system", "TEXT", "replace the default (UniVL) system message");
  a.flag("--parse-special", "let special-token text in the prompt (e.g. <|im_end|>) act as control tokens");
  a.flag("--json", "print one JSON object (text, tokens, prompt_tokens, image_tiles, timings) instead");
  a.option("--logits-out", "FILE", "write the last prompt position's logits (F32 safetensors, tensor 'logits')");
  a.option("--dump", "DIR", "write every stage (pixels, vision, projector, prompt ids, logits) as safetensors");
}

// The request as the flags describe it; `tiles` per image.
runtime::ChatRequest make_request(const Args& a, const std::string& question, std::vector<int64_t> tiles,
                                  int64_t num_image_token) {
  runtime::ChatRequest req;
  req.question = question;
  req.tiles = std::move(tiles);
  req.layout = a.on("frames") ? runtime::ImageLayout::Video : runtime::ImageLayout::Auto;
  req.num_image_token = num_image_token;
  req.parse_special = a.on("parse-special");
  if (a.has("system")) req.system_message = a.get("system");
  return req;
}

std::string read_prompt(const Args& a) {
  const std::string p = a.get("prompt");
  if (p == "-") return std::string(std::istreambuf_iterator<char>(std::cin), {});
  if (p.size() > 1 && p[0] == '@') {
    std::ifstream f(p.substr(1), std::ios::binary);
    SAILVL_CHECK(f, Usage, "-p ", escape_for_print(p), ": cannot read the file");
    return std::string(std::istreambuf_iterator<char>(f), {});
  }
  return p;
}

int run(Args& a) {
  install_interrupt_handler();
  apply_threads(a);
  const std::string question = read_prompt(a);
  const Device device = pick_device(a);
  const std::string dir = resolve_model_dir(a.get("model"));
  const std::vector<std::string> paths = a.all("image");
  // Memory preflight for this request with every image at its most tiles (the exact count needs
  // the decoded images; the prompt bound needs no tokenizer).
  const int64_t per_image = max_tiles_per_image(a);
  const runtime::ChatRequest worst =
      make_request(a, question, std::vector<int64_t>(paths.size(), per_image), model::load_config(dir).num_image_token);
  const model::LoadOptions load =
      load_options(a, per_image * static_cast<int64_t>(paths.size()), runtime::max_prompt_tokens(worst));
  log(1, a, "sailvl: loading " + dir + " on " + device.str() + " ...");
  const model::SailVL m = model::SailVL::load(dir, device, load);
  log(2, a, "sailvl: " + m.config().describe());

  const image::PixelBatch images = load_images(a, paths, device);
  const runtime::ChatRequest req = make_request(a, question, images.tiles_per_image, m.image_tokens_per_tile());
  const runtime::ChatPrompt prompt = runtime::build_chat_prompt(m.tokenizer(), req);

  runtime::GenerationOptions g = generation_options(a);
  g.cancel = &interrupted();
  const bool json = a.on("json");
  bool stdout_closed = false;  // `sailvl run ... | head`: stop generating once nobody reads
  if (!json) {
    g.on_token = [&stdout_closed](int64_t, const std::string& text) {
      if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() || std::fflush(stdout) != 0) {
        stdout_closed = true;
        request_stop();
      }
    };
  }
  // Taps: --dump DIR keeps them; --logits-out alone uses a scratch directory.
  std::string taps_dir = a.get_or("dump", "");
  const bool scratch_taps = taps_dir.empty() && a.has("logits-out");
  if (scratch_taps) taps_dir = (fs::temp_directory_path() / ("sailvl-taps-" + std::to_string(::getpid()))).string();
  std::optional<runtime::Taps> taps;
  if (!taps_dir.empty()) {
    taps.emplace(taps_dir);
    g.taps = &*taps;
  }

  const std::vector<int64_t> ids(prompt.ids.begin(), prompt.ids.end());
  const runtime::GenerationResult r = runtime::generate(m, ids, images.pixels, g);
  std::vector<tokenizer::TokenId> out_ids(r.tokens.begin(), r.tokens.end());
  const std::string response = runtime::clean_response(m.tokenizer().decode(out_ids, /*skip_special=*/true));

  if (a.has("logits-out")) {
    fs::copy_file(fs::path(taps_dir) / "logits.safetensors", a.get("logits-out"), fs::copy_options::overwrite_existing);
    if (scratch_taps) fs::remove_all(taps_dir);
  }
  if (json) {
    const runtime::Timings& t = r.timings;
    nlohmann::json j = {{"text", response},
                        {"tokens", r.tokens},
                        {"prompt_tokens", t.prompt_tokens},
                        {"image_tiles", t.image_tiles},
                        {"stop", runtime::stop_reason_name(r.stop)},
                        {"timings",
                         {{"vision_ms", t.vision_ms},
                          {"projector_ms", t.projector_ms},
                          {"prefill_ms", t.prefill_ms},
                          {"ttft_ms", t.vision_ms + t.projector_ms + t.prefill_ms},
                          {"decode_ms", t.decode_ms},
                          {"decode_tokens_per_s", t.decode_tokens_per_s()}}}};
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else {
    std::cout << "\n";
    std::cout.flush();
  }
  log(1, a, summary_line(r.timings));
  if (stdout_closed) return 0;
  return r.stop == runtime::StopReason::Cancelled ? 130 : 0;
}

}  // namespace

SAILVL_COMMAND(run, "answer one question about images, streaming the reply", setup, run);

}  // namespace sailvl::cli
