// `sailvl chat`: a conversation that remembers, on the session engine (runtime/session.h): a
// follow-up question prefills only its own text, an image is encoded once. Works at a terminal
// (line editing via libedit when built with it) and from a pipe:
//
//   printf '/image cat.jpg\nWhat is this?\nAnd its colour?\n' | sailvl chat -m DIR
//
// Commands (a mistyped one prints one line and changes nothing):
//   /image PATH    attach a picture to the next question (decoded now, encoded once)
//   /reset, /clear forget the conversation (the image cache stays)
//   /system TEXT   replace the system message (starts a new conversation)
//   /save FILE     the conversation as JSON: system, turns, images with their SHA-256
//   /load FILE     restore one (images re-read and checked against their SHA-256); also --resume FILE
//   /help          the list;  /exit, /bye, /quit or Ctrl-D leave
// Every error inside a turn (an unreadable image, a prompt over the context, Ctrl-C) prints one line
// and returns to the prompt with the conversation as it was. Ctrl-C at an empty prompt prints a
// hint; a second one within 2 s quits with 130.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/common.h"
#include "runtime/chat.h"
#include "tensor/sha256.h"

#ifdef SAILVL_HAVE_LIBEDIT
#include <editline/readline.h>
#endif

namespace sailvl::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

void setup(Args& a) {
  a.usage_line = "sailvl chat -m DIR [-i IMG]... [options]";
  a.description =
      "Interactive multi-turn chat that remembers: follow-ups prefill only the new text, images are\n"
      "encoded once. Commands: /image PATH, /reset (/clear), /system TEXT, /save FILE, /load FILE,\n"
      "/help, /exit (/bye, /quit, Ctrl-D). Reads from a pipe too (one question or command per line).";
  add_model_flags(a);
  add_image_flags(a);
  add_generation_flags(a);
  a.option("--system", "TEXT", "replace the default (UniVL) system message");
  a.flag("--parse-special", "let special-token text in questions (e.g. <|im_end|>) act as control tokens");
  a.option("--image-cache", "MiB", "image-embedding cache bound (default 512 on CPU, 1024 on a GPU)");
  a.option("--resume", "FILE", "continue a conversation saved with /save");
  a.flag("--json", "one JSON object per turn on stdout (JSON Lines: run --json's fields + turn number)");
  add_observe_flags(a);
  a.examples = {"sailvl chat -m ~/models/SAIL-VL-1d5-2B -i cat.jpg",
                "printf '/image a.jpg\\nWhat is this?\\nWhy?\\n' | sailvl chat -m DIR --json",
                "sailvl chat -m DIR --resume talk.json -c 8192"};
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
  if (tty) std::cerr << "> " << std::flush;
  return static_cast<bool>(std::getline(std::cin, line));
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

const char* kHelp =
    "/image PATH    attach a picture to the next question\n"
    "/reset         forget the conversation (alias /clear; the image cache stays)\n"
    "/system TEXT   replace the system message (starts a new conversation)\n"
    "/save FILE     write the conversation as JSON (system, turns, images with SHA-256)\n"
    "/load FILE     restore a saved conversation\n"
    "/help          this list\n"
    "/exit          leave (also /bye, /quit, Ctrl-D)\n";

// /save: {"format": "sailvl-chat-v1", "system": ..., "turns": [{"question", "answer"}],
//         "images": [{"path", "sha256", "frame"}]}
void save(const runtime::Session& s, const std::string& path) {
  ordered_json j;
  j["format"] = "sailvl-chat-v1";
  j["system"] = s.system() ? ordered_json(*s.system()) : ordered_json(nullptr);
  j["turns"] = ordered_json::array();
  for (const auto& t : s.history()) j["turns"].push_back({{"question", t.question}, {"answer", t.answer}});
  j["images"] = ordered_json::array();
  for (const auto& img : s.images())
    j["images"].push_back({{"path", fs::absolute(img.source).string()}, {"sha256", img.sha256}, {"frame", img.frame}});
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  SAILVL_CHECK(f.good(), Usage, "/save ", escape_for_print(path), ": cannot write there");
  f << j.dump(2) << "\n";
  SAILVL_CHECK(f.good(), Usage, "/save ", escape_for_print(path), ": write failed");
}

// /load and --resume: the file checked field by field, every image re-read and its SHA-256 compared.
void load(runtime::Session& s, const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  SAILVL_CHECK(f.good(), Usage, "/load ", escape_for_print(path), ": cannot read the file");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorKind::Usage, "/load ", escape_for_print(path), ": not JSON (", e.what(), ")");
  }
  auto bad = [&](const char* what) { fail(ErrorKind::Usage, "/load ", escape_for_print(path), ": ", what); };
  if (!j.is_object() || j.value("format", "") != "sailvl-chat-v1") bad("not a conversation saved by sailvl chat");
  std::optional<std::string> system;
  if (j.contains("system") && !j["system"].is_null()) {
    if (!j["system"].is_string()) bad("\"system\" must be a string or null");
    system = j["system"].get<std::string>();
  }
  std::vector<runtime::ChatTurn> turns;
  if (!j.contains("turns") || !j["turns"].is_array()) bad("\"turns\" must be a list");
  for (const auto& t : j["turns"]) {
    if (!t.is_object() || !t.contains("question") || !t["question"].is_string() || !t.contains("answer") ||
        !t["answer"].is_string())
      bad("each turn needs \"question\" and \"answer\" strings");
    turns.push_back({t["question"].get<std::string>(), t["answer"].get<std::string>()});
  }
  std::vector<runtime::ImageInput> images;
  if (!j.contains("images") || !j["images"].is_array()) bad("\"images\" must be a list");
  for (const auto& i : j["images"]) {
    if (!i.is_object() || !i.contains("path") || !i["path"].is_string() || !i.contains("sha256") ||
        !i["sha256"].is_string())
      bad("each image needs \"path\" and \"sha256\" strings");
    runtime::ImageInput in = runtime::ImageInput::from_file(i["path"].get<std::string>());
    SAILVL_CHECK(in.sha256 == i["sha256"].get<std::string>(), BadImage, "/load: image ", in.source,
                 " has changed since the conversation was saved (SHA-256 differs)");
    in.frame = i.value("frame", false);
    images.push_back(std::move(in));
  }
  s.restore(std::move(system), std::move(turns), std::move(images));
}

int run(Args& a) {
  install_interrupt_handler();
  apply_threads(a);
  const runtime::GenerationOptions base = generation_options(a);
  Observation observe(a);  // --profile (a table after every answer) / --trace, checked now
  const std::string dir = resolve_model_dir(a.get("model"));
  const Device device = pick_device(a, dir);
  std::vector<runtime::ImageInput> pending = read_images(a, a.all("image"));  // attached, not asked about yet
  // Memory preflight: the history may grow to the whole context; at least one image's tiles.
  const int64_t images_given = std::max<int64_t>(static_cast<int64_t>(pending.size()), 1);
  const model::SailVL m = load_model(a, dir, device, workload(a, images_given * max_tiles_per_image(a), 0));
  runtime::Session session(m, session_options(a));
  if (a.has("resume")) load(session, a.get("resume"));
  const bool tty = ::isatty(0), json = a.on("json");
  if (tty) log(1, a, "sailvl: chat ready (/help for commands)");
  // One line per error; the conversation goes on.
  auto say_error = [](const std::string& msg) { std::cerr << "error: " << msg << "\n"; };

  std::string line;
  for (;;) {
    set_busy(false);
    clear_interrupt();
    if (!read_line(tty, line)) break;  // Ctrl-D / end of input
    const std::string q = trim(line);
    if (q.empty()) continue;
    if (q[0] == '/') {
      const size_t sp = q.find(' ');
      const std::string cmd = q.substr(0, sp), arg = sp == std::string::npos ? "" : trim(q.substr(sp + 1));
      try {
        if (cmd == "/exit" || cmd == "/quit" || cmd == "/bye") break;
        if (cmd == "/help") {
          std::cerr << kHelp;
        } else if (cmd == "/reset" || cmd == "/clear") {
          session.reset();
          pending.clear();
          log(1, a, "[conversation reset]");
        } else if (cmd == "/system") {
          SAILVL_CHECK(!arg.empty(), Usage, "/system needs the new system message: /system TEXT");
          session.set_system(arg);
          pending.clear();
          log(1, a, "[system message set; conversation reset]");
        } else if (cmd == "/image") {
          SAILVL_CHECK(!arg.empty(), Usage, "/image needs a path: /image PATH");
          std::vector<runtime::ImageInput> img = read_images(a, {arg});
          pending.push_back(std::move(img[0]));
          log(1, a, "[image attached: " + arg + "]");
        } else if (cmd == "/save") {
          SAILVL_CHECK(!arg.empty(), Usage, "/save needs a file name: /save FILE");
          save(session, arg);
          log(1, a, "[saved " + std::to_string(session.history().size()) + " turns to " + arg + "]");
        } else if (cmd == "/load") {
          SAILVL_CHECK(!arg.empty(), Usage, "/load needs a file name: /load FILE");
          load(session, arg);
          pending.clear();
          log(1, a, "[loaded " + std::to_string(session.history().size()) + " turns from " + arg + "]");
        } else {
          fail(ErrorKind::Usage, "unknown command '", escape_for_print(cmd), "' (/help lists them)");
        }
      } catch (const Error& e) {
        if (e.kind() == ErrorKind::Cuda) throw;  // a sticky CUDA error leaves the device unusable
        say_error(e.what());
      }
      continue;
    }

    // A turn.
    set_busy(true);
    Progress progress(verbosity(a));
    runtime::GenerationOptions g = base;
    attach_progress(g, progress);
    g.cancel = &interrupted();
    if (!json)
      g.on_token = [&progress](int64_t, const std::string& text) {
        progress.clear();
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
      };
    try {
      observe.begin(device);
      const runtime::TurnResult r = session.ask(q, pending, g);
      observe.stop();
      progress.clear();
      if (!r.kept) {
        std::cout << (json ? "" : "\n") << std::flush;
        observe.end();
        std::cerr << "[interrupted: this turn is dropped, the conversation is unchanged]\n";
        pending.clear();
        continue;
      }
      pending.clear();
      if (json) {
        const nlohmann::ordered_json profile = observe.end();  // --profile: the table on stderr
        std::cout << turn_json(r.generation, r.response, r.turn, &profile) << "\n" << std::flush;
      } else {
        if (r.generation.stop == runtime::StopReason::ContextFull) std::cout << " [context full]";
        std::cout << "\n" << std::flush;
        observe.end();  // --profile: the table on stderr, after the answer's line
      }
      log(2, a, summary_line(r.generation.timings));
    } catch (const Error& e) {
      progress.clear();
      if (e.kind() == ErrorKind::Cuda) throw;
      if (e.kind() == ErrorKind::Cancelled)
        std::cerr << "[interrupted: this turn is dropped, the conversation is unchanged]\n";
      else
        say_error(e.what());
      if (!pending.empty()) std::cerr << "[the images attached to that question were dropped too]\n";
      pending.clear();
    }
  }
  return 0;
}

}  // namespace

SAILVL_COMMAND(chat, "interactive multi-turn chat about images that remembers (KV and image caches)", setup, run);

}  // namespace sailvl::cli
