// `sailvl chat` on the session engine, and the CLI defects found while trying it as a new user:
// follow-ups reuse the cache (counted in --json), every command error is one line and the chat goes
// on, /save + --resume + /load with SHA-256 checks, Ctrl-C at an idle prompt, and the checks that
// must happen before any weight is loaded.
#include <nlohmann/json.hpp>

#include <sstream>

#include "tests/testutil.h"

using namespace sailvl;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string bin() { return test::sailvl_binary(); }
std::string image_a() { return test::data_path("images/chat/a.png").string(); }
std::string image_b() { return test::data_path("images/chat/b.png").string(); }

std::vector<json> json_lines(const std::string& out) {
  std::vector<json> v;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) v.push_back(json::parse(line));
  return v;
}

int count_lines_with(const std::string& text, const std::string& needle) {
  int n = 0;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) n += line.find(needle) != std::string::npos;
  return n;
}

}  // namespace

// Three turns about one image: the image is encoded once, follow-ups prefill only their new text.
TEST(ChatCli, FollowUpsReuseTheCacheAndMistypedCommandsChangeNothing) {
  const fs::path model = test::tiny_model("tiny-aimv2");
  const fs::path script = test::temp_dir("chat3") / "in.txt";
  test::write_file(script, "/image " + image_b() +
                               "\nDescribe the image.\n/clearr\n/image\n/system\n/bogus\nWhat colour is it?\n"
                               "/image /nonexistent.png\nAnd the shapes?\n");
  std::string out, err;
  ASSERT_EQ(
      test::run_command(bin() + " chat --json -q -m " + model.string() + " --max-tiles 2 -n 6 < " + script.string(),
                        &out, &err),
      0)
      << err;
  const std::vector<json> turns = json_lines(out);
  ASSERT_EQ(turns.size(), 3u) << out;
  for (int i = 0; i < 3; ++i) EXPECT_EQ(turns[i]["turn"].get<int>(), i + 1);
  EXPECT_EQ(turns[0]["encoded_tiles"].get<int>(), 3);
  EXPECT_EQ(turns[0]["cached_tokens"].get<int>(), 0);
  for (int i = 1; i < 3; ++i) {
    EXPECT_EQ(turns[i]["encoded_tiles"].get<int>(), 0) << "turn " << i + 1 << " re-encoded the image";
    const int prompt = turns[i]["prompt_tokens"].get<int>(), cached = turns[i]["cached_tokens"].get<int>();
    EXPECT_GT(cached, turns[i - 1]["prompt_tokens"].get<int>() - 10) << "turn " << i + 1;
    EXPECT_LT(prompt - cached, prompt / 20) << "turn " << i + 1 << " prefilled more than its new text";
  }
  // Five mistakes, five one-line errors, and the conversation went on.
  EXPECT_EQ(count_lines_with(err, "error: "), 5) << err;
  EXPECT_NE(err.find("unknown command '/clearr'"), std::string::npos) << err;
  EXPECT_NE(err.find("/image needs a path"), std::string::npos) << err;
  EXPECT_NE(err.find("/system needs"), std::string::npos) << err;
  EXPECT_NE(err.find("no such file"), std::string::npos) << err;
}

TEST(ChatCli, ExitAliasesAndHelp) {
  const fs::path model = test::tiny_model("tiny-internvit");
  for (const char* cmd : {"/exit", "/quit", "/bye"}) {
    std::string out, err;
    EXPECT_EQ(test::run_command("printf '/help\\n" + std::string(cmd) + "\\nnever asked\\n' | " + bin() + " chat -m " +
                                    model.string() + " -n 4",
                                &out, &err),
              0)
        << err;
    EXPECT_NE(err.find("/save FILE"), std::string::npos) << err;
    EXPECT_TRUE(out.empty()) << "a question after " << cmd << " was answered: " << out;
  }
}

// /save writes the conversation; --resume and /load bring it back (the next turn sees the history);
// a changed image is refused by its SHA-256.
TEST(ChatCli, SaveResumeAndLoad) {
  const fs::path model = test::tiny_model("tiny-internvit");
  const fs::path dir = test::temp_dir("save");
  const fs::path img = dir / "pic.png";
  fs::copy_file(image_a(), img);
  const fs::path saved = dir / "talk.json";
  std::string out, err;
  ASSERT_EQ(test::run_command("printf '/image " + img.string() + "\\nWhat is it?\\nWhy?\\n/save " + saved.string() +
                                  "\\n' | " + bin() + " chat --json -q -m " + model.string() + " --max-tiles 2 -n 4",
                              &out, &err),
            0)
      << err;
  const json s = json::parse(test::read_file(saved));
  EXPECT_EQ(s["format"], "sailvl-chat-v1");
  ASSERT_EQ(s["turns"].size(), 2u);
  EXPECT_EQ(s["turns"][0]["question"], "<image>\nWhat is it?");
  ASSERT_EQ(s["images"].size(), 1u);
  EXPECT_EQ(s["images"][0]["sha256"].get<std::string>().size(), 64u);

  // --resume: the third turn's prompt holds the two saved turns and the image.
  ASSERT_EQ(test::run_command("printf 'And then?\\n' | " + bin() + " chat --json -q -m " + model.string() +
                                  " --max-tiles 2 -n 4 --resume " + saved.string(),
                              &out, &err),
            0)
      << err;
  std::vector<json> t = json_lines(out);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0]["turn"].get<int>(), 3);
  EXPECT_EQ(t[0]["image_tiles"].get<int>(), 1);
  // /load in a running chat does the same.
  ASSERT_EQ(test::run_command("printf 'Hi\\n/load " + saved.string() + "\\nAnd then?\\n' | " + bin() +
                                  " chat --json -q -m " + model.string() + " --max-tiles 2 -n 4",
                              &out, &err),
            0)
      << err;
  t = json_lines(out);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[1]["turn"].get<int>(), 3);
  // The image changed on disk: refused, with one line; the chat goes on.
  fs::copy_file(image_b(), img, fs::copy_options::overwrite_existing);
  ASSERT_EQ(test::run_command("printf '/load " + saved.string() + "\\nHi\\n' | " + bin() + " chat --json -q -m " +
                                  model.string() + " -n 2",
                              &out, &err),
            0)
      << err;
  EXPECT_NE(err.find("has changed since the conversation was saved"), std::string::npos) << err;
  t = json_lines(out);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0]["turn"].get<int>(), 1);
}

// Ctrl-C at an idle prompt: a hint, the chat goes on; two within 2 s quit with 130.
TEST(ChatCli, CtrlCAtAnIdlePrompt) {
  const fs::path model = test::tiny_model("tiny-internvit");
  const fs::path err_file = test::temp_dir("sigint-chat") / "err.txt";
  auto run = [&](const std::string& kills) {
    const std::string cmd = "( (sleep 5) | " + bin() + " chat -m " + model.string() + " 2> " + err_file.string() +
                            " & pid=$!; sleep 3; " + kills + " wait $pid; echo $? )";
    std::string rc;
    test::run_command(cmd, &rc);
    const size_t nl = rc.find_last_not_of(" \n");
    return rc.substr(0, nl + 1);
  };
  // One press: a hint; the chat ends normally (exit 0) when its input closes.
  EXPECT_EQ(run("kill -INT $pid;"), "0");
  EXPECT_NE(test::read_file(err_file).find("Ctrl-C again within 2 s"), std::string::npos) << test::read_file(err_file);
  // Two presses 0.3 s apart: 130.
  EXPECT_EQ(run("kill -INT $pid; sleep 0.3; kill -INT $pid;"), "130");
}

// Everything that can be wrong with the flags, files and prompt is refused before the weights are
// loaded: no "loading" line, the documented exit code.
TEST(RunCli, RefusedBeforeLoading) {
  const fs::path model = test::tiny_model("tiny-internvit");
  const fs::path dir = test::temp_dir("refuse");
  struct Case {
    std::string args;
    int rc;
    const char* says;
  };
  const Case cases[] = {
      {"--temp nan -p hi", 2, "--temp expects a number"},
      {"--top-p 2 -p hi", 2, "--top-p must be in"},
      {"--seed -1 -p hi", 2, "--seed must be in"},
      {"-i /nonexistent.png -p hi", 5, "no such file"},
      {"-i " + dir.string() + " -p hi", 5, "is a directory"},
      {"-i " + image_a() + " -p '<image> <image> compare'", 2, "2 <image> markers but 1 images"},
      {"--logits-out /nonexistent-dir/x.safetensors -p hi", 2, "cannot write there"},
      {"--logits-out " + dir.string() + " -p hi", 2, "is a directory"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.args);
    std::string out, err;
    EXPECT_EQ(test::run_command(bin() + " run -m " + model.string() + " " + c.args, &out, &err), c.rc) << err;
    EXPECT_NE(err.find(c.says), std::string::npos) << err;
    EXPECT_EQ(err.find("loading"), std::string::npos) << "weights were loaded first: " << err;
  }
  // -m: a file is not a checkpoint directory; a GGUF file says so.
  test::write_file(dir / "model.gguf", "GGUF");
  std::string err;
  EXPECT_EQ(test::run_command(bin() + " run -m " + (dir / "model.gguf").string() + " -p hi", nullptr, &err), 3);
  EXPECT_NE(err.find("GGUF"), std::string::npos) << err;
  EXPECT_EQ(test::run_command(bin() + " run -m " + (model / "config.json").string() + " -p hi", nullptr, &err), 3);
  EXPECT_NE(err.find("is a file"), std::string::npos) << err;
}

TEST(RunCli, ZeroNewTokensIsAPrefillWithLogitsAndNoScratchDirsAreLeft) {
  const fs::path model = test::tiny_model("tiny-internvit");
  const fs::path out_file = test::temp_dir("n0") / "logits.safetensors";
  auto scratch_dirs = [] {
    int n = 0;
    for (const auto& e : fs::directory_iterator(fs::temp_directory_path()))
      n += e.path().filename().string().rfind("sailvl-taps-", 0) == 0;
    return n;
  };
  const int before = scratch_dirs();
  std::string out, err;
  ASSERT_EQ(test::run_command(
                bin() + " run --json -q -m " + model.string() + " -n 0 --logits-out " + out_file.string() + " -p hi",
                &out, &err),
            0)
      << err;
  const json j = json::parse(out);
  EXPECT_TRUE(j["tokens"].empty());
  EXPECT_EQ(j["finish_reason"], "length");
  EXPECT_GT(fs::file_size(out_file), 151936u * 4);
  EXPECT_EQ(scratch_dirs(), before);
}

TEST(RunCli, PromptFromStdinAndFileDropsOneTrailingNewline) {
  const fs::path model = test::tiny_model("tiny-internvit");
  const fs::path f = test::temp_dir("nl") / "q.txt";
  test::write_file(f, "hello there\n");
  std::string a, b, c, err;
  ASSERT_EQ(test::run_command(bin() + " run --json -q -m " + model.string() + " -n 1 -p 'hello there'", &a, &err), 0)
      << err;
  ASSERT_EQ(test::run_command(bin() + " run --json -q -m " + model.string() + " -n 1 -p @" + f.string(), &b, &err), 0)
      << err;
  ASSERT_EQ(test::run_command("echo 'hello there' | " + bin() + " run --json -q -m " + model.string() + " -n 1 -p -",
                              &c, &err),
            0)
      << err;
  EXPECT_EQ(json::parse(a)["prompt_tokens"], json::parse(b)["prompt_tokens"]);
  EXPECT_EQ(json::parse(a)["prompt_tokens"], json::parse(c)["prompt_tokens"]);
}

TEST(Cli, HelpExamplesSingularTokenThreadsAndRandomWeightWarning) {
  const fs::path model = test::tiny_model("tiny-internvit");
  std::string out, err;
  for (const char* cmd : {"run", "chat", "inspect", "make-model", "bench", "tokenize"}) {
    ASSERT_EQ(test::run_command(bin() + " help " + cmd, &out, &err), 0) << cmd << err;
    EXPECT_NE(out.find(std::string("usage: sailvl ") + cmd), std::string::npos) << out;
    EXPECT_NE(out.find("examples:"), std::string::npos) << cmd << ": " << out;
  }
  ASSERT_EQ(test::run_command(bin() + " run --help", &out), 0);
  EXPECT_NE(out.find("Image-1: <image>"), std::string::npos) << "run --help must say how images are placed";
  // -t is --threads; "1 token" in the summary; the random-weights warning.
  ASSERT_EQ(test::run_command(bin() + " run -t 1 -m " + model.string() + " -n 1 -p hi", &out, &err), 0) << err;
  EXPECT_NE(err.find("| 1 token at"), std::string::npos) << err;
  EXPECT_NE(err.find("random weights"), std::string::npos) << err;
  ASSERT_EQ(test::run_command(bin() + " inspect -c 512 -m " + model.string(), &out, &err), 0) << err;
  EXPECT_NE(err.find("random weights"), std::string::npos) << err;
  EXPECT_NE(out.find("512 tokens"), std::string::npos) << out;
}

TEST(Cli, NonSailConfigSaysSo) {
  const fs::path dir = test::temp_dir("qwen2vl");
  test::write_file(dir / "config.json", R"({"model_type": "qwen2_vl", "vision_config": {}, "hidden_size": 1536})");
  std::string err;
  EXPECT_EQ(test::run_command(bin() + " inspect -m " + dir.string(), nullptr, &err), 3);
  EXPECT_NE(err.find("not a SAIL-VL checkpoint (model_type \"qwen2_vl\""), std::string::npos) << err;
}

TEST(Cli, MakeModelRefusesANonEmptyDirectoryWithoutForce) {
  const fs::path dir = test::temp_dir("mm-nonempty");
  test::write_file(dir / "notes.txt", "mine");
  std::string err;
  EXPECT_EQ(test::run_command(bin() + " make-model -q --preset tiny-internvit --out " + dir.string(), nullptr, &err),
            2);
  EXPECT_NE(err.find("--force"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(dir / "config.json"));
  EXPECT_EQ(
      test::run_command(bin() + " make-model -q --force --preset tiny-internvit --out " + dir.string(), nullptr, &err),
      0)
      << err;
  EXPECT_TRUE(fs::exists(dir / "RANDOM_WEIGHTS"));
  EXPECT_EQ(test::read_file(dir / "notes.txt"), "mine");
}
