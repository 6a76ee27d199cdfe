// `sailvl chat`: an interactive conversation with history, as repeated model.chat(..., history=...)
// calls keep it. Works at a terminal (line editing via libedit when built with it) and from a pipe:
//
//   printf '/image cat.jpg\nWhat is this?\nAnd its colour?\n' | sailvl chat -m DIR
//
// Images: every image of the conversation is fed again on every turn, because the history's
// questions still hold their <image> markers and model.chat() expands them against the pixels it
// is given (SAIL-VL's remote code re-encodes them each turn as well). An image attached after the
// first turn gets an "<image>\n" prefix on its question so markers and images stay in step.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>

#include "cli/session.h"
#include "runtime/chat.h"

#ifdef SAILVL_HAVE_LIBEDIT
#include <editline/readline.h>
#endif

namespace sailvl::cli {
namespace {

void setup(Args& a) {
  a.usage_line = "sailvl chat -m DIR [-i IMG]... [options]";
  a.description =
      "Interactive multi-turn chat. Commands: /image PATH (attach to the next question), /reset,\n"
      "/system TEXT, /help, /exit. Reads from a pipe too (one question per line).";
  add_model_flags(a);
  add_image_flags(a);
  add_generation_flags(a);
  a.option("--system", "TEXT", "replace the default (UniVL) system message");
}

bool read_line(bool tty, std::string& line) {
#ifdef SAILVL_HAVE_LIBEDIT
  if (tty) {
    char* s = readline("> ");
    if (!s) return false;
    line = s;
    if (!line.empty()) add_history(s);
    std::free(s);
    return true;
  }
#endif
  if (tty) {
    std::cerr << "> " << std::flush;
  }
  return static_cast<bool>(std::getline(std::cin, line));
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

int run(Args& a) {
  install_interrupt_handler();
  apply_threads(a);
  const Device device = pick_device(a);
  const std::string dir = resolve_model_dir(a.get("model"));
  log(1, a, "sailvl: loading " + dir + " on " + device.str() + " ...");
  // Memory preflight: the history may grow to the whole context; at least one image's tiles.
  const int64_t images_given = static_cast<int64_t>(a.all("image").size());
  const model::SailVL m =
      model::SailVL::load(dir, device, load_options(a, std::max<int64_t>(images_given, 1) * max_tiles_per_image(a), 0));
  const bool tty = ::isatty(0);
  if (tty) log(1, a, "sailvl: chat ready (/help for commands)");

  std::vector<std::string> images = a.all("image");  // every image of the conversation, in order
  size_t pending = images.size();                    // attached but not yet asked about
  std::vector<runtime::ChatTurn> history;
  std::optional<std::string> system;
  if (a.has("system")) system = a.get("system");
  const runtime::GenerationOptions base = generation_options(a);

  std::string line;
  while (read_line(tty, line)) {
    const std::string q = trim(line);
    if (q.empty()) continue;
    if (q == "/exit" || q == "/quit") break;
    if (q == "/help") {
      std::cerr << "/image PATH  attach an image to the next question\n/reset       forget the conversation\n"
                   "/system TEXT replace the system message (and reset)\n/exit        leave\n";
      continue;
    }
    if (q == "/reset") {
      history.clear();
      images.clear();
      pending = 0;
      log(1, a, "[conversation reset]");
      continue;
    }
    if (q.rfind("/system ", 0) == 0) {
      system = trim(q.substr(8));
      history.clear();
      images.clear();
      pending = 0;
      log(1, a, "[system message set; conversation reset]");
      continue;
    }
    if (q.rfind("/image ", 0) == 0) {
      const std::string path = trim(q.substr(7));
      std::error_code ec;
      if (!std::filesystem::is_regular_file(path, ec)) {
        SAILVL_CHECK(tty, BadImage, path, ": no such file");
        std::cerr << "error: " << path << ": no such file\n";
        continue;
      }
      images.push_back(path);
      ++pending;
      log(1, a, "[image attached: " + path + "]");
      continue;
    }
    SAILVL_CHECK(q[0] != '/', Usage, "unknown command '", escape_for_print(q), "' (/help lists them)");

    try {
      runtime::ChatRequest req;
      req.question = q;
      // After the first turn, new images need their own markers (the first turn gets its prefix
      // from the template, exactly as model.chat() adds it).
      if (!history.empty())
        for (size_t k = 0; k < pending; ++k) req.question = "<image>\n" + req.question;
      req.history = history;
      req.system_message = system;
      req.num_image_token = m.image_tokens_per_tile();
      req.layout = a.on("frames") ? runtime::ImageLayout::Video : runtime::ImageLayout::Auto;
      const image::PixelBatch batch = load_images(a, images, device);
      req.tiles = batch.tiles_per_image;
      const runtime::ChatPrompt prompt = runtime::build_chat_prompt(m.tokenizer(), req);

      runtime::GenerationOptions g = base;
      g.cancel = &interrupted();
      g.on_token = [](int64_t, const std::string& text) {
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
      };
      const std::vector<int64_t> ids(prompt.ids.begin(), prompt.ids.end());
      const runtime::GenerationResult r = runtime::generate(m, ids, batch.pixels, g);
      std::cout << "\n" << std::flush;
      std::vector<tokenizer::TokenId> out(r.tokens.begin(), r.tokens.end());
      runtime::append_turn(history, prompt, runtime::clean_response(m.tokenizer().decode(out, true)));
      pending = 0;
      log(2, a, summary_line(r.timings));
      if (r.stop == runtime::StopReason::Cancelled) clear_interrupt();  // keep the partial answer, go on
    } catch (const Error& e) {
      // A bad image or an over-long prompt ends this turn, not the conversation (at a terminal).
      // A CUDA error ends the process: a sticky one leaves the device unusable.
      if (!tty || e.kind() == ErrorKind::Cuda) throw;
      std::cerr << "error: " << e.what() << "\n";
      if (pending) {
        images.resize(images.size() - pending);
        pending = 0;
      }
    }
  }
  return 0;
}

}  // namespace

SAILVL_COMMAND(chat, "interactive multi-turn chat about images (history like model.chat)", setup, run);

}  // namespace sailvl::cli
