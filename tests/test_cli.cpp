// End-to-end tests of the `sailvl` binary on the tiny checkpoints: run, run --json, chat through a
// pipe, tokenize, inspect, --help, and one test per exit code (tensor/error.h, cli/main.cpp).
// Expected tokens come from the oracle (tests/data/models/<preset>/<case>.json: HF transformers).
#include <nlohmann/json.hpp>

#include "loader/safetensors.h"
#include "tests/testutil.h"

using namespace sailvl;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

json golden(const std::string& preset, const std::string& name) {
  return json::parse(test::read_file(test::data_path("models/" + preset + "/" + name + ".json")));
}

std::string bin() { return test::sailvl_binary(); }

std::string quote(const std::string& s) { return "'" + s + "'"; }

// The oracle's response text: decoded new tokens, special tokens skipped, stripped (card's chat()).
std::string strip(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\n\r");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\n\r") - b + 1);
}

}  // namespace

TEST(Cli, HelpAndVersion) {
  std::string out;
  EXPECT_EQ(test::run_command(bin() + " --help", &out), 0);
  for (const char* cmd : {"run", "chat", "tokenize", "inspect", "make-model", "bench"})
    EXPECT_NE(out.find(std::string("  ") + cmd), std::string::npos) << "missing from --help: " << cmd;
  for (const char* cmd : {"run", "chat", "tokenize", "inspect", "make-model", "bench"}) {
    EXPECT_EQ(test::run_command(bin() + " " + cmd + " --help", &out), 0) << cmd;
    EXPECT_NE(out.find("usage: sailvl " + std::string(cmd)), std::string::npos) << out;
  }
  EXPECT_EQ(test::run_command(bin() + " --version", &out), 0);
  EXPECT_EQ(out.rfind("sailvl ", 0), 0u);
}

TEST(Cli, RunJsonMatchesOracleGreedyTokens) {
  for (const std::string preset : {"tiny-internvit", "tiny-aimv2"}) {
    const fs::path model = test::tiny_model(preset);
    const json g = golden(preset, "b_one_image");
    const std::string img = test::data_path(g["images"][0].get<std::string>()).string();
    std::string out, err;
    const int rc = test::run_command(bin() + " run --json -q -m " + model.string() + " -i " + img + " --max-tiles " +
                                         std::to_string(g["max_num"].get<int>()) + " -n 32 -p " +
                                         quote(g["question"].get<std::string>()),
                                     &out, &err);
    ASSERT_EQ(rc, 0) << err;
    const json r = json::parse(out);
    EXPECT_EQ(r["tokens"], g["generated_ids"]) << preset;
    EXPECT_EQ(r["text"].get<std::string>(), strip(g["generated_text"].get<std::string>())) << preset;
    EXPECT_EQ(r["prompt_tokens"].get<int64_t>(), g["num_prompt_tokens"].get<int64_t>());
    EXPECT_EQ(r["image_tiles"].get<int64_t>(), 1);
  }
}

TEST(Cli, RunStreamsTextToStdoutAndSummaryToStderr) {
  const fs::path model = test::tiny_model("tiny-internvit");
  const json g = golden("tiny-internvit", "a_text");
  std::string out, err;
  ASSERT_EQ(
      test::run_command(bin() + " run -m " + model.string() + " -n 32 -p " + quote(g["question"].get<std::string>()),
                        &out, &err),
      0)
      << err;
  EXPECT_EQ(strip(out), strip(g["generated_text"].get<std::string>()));
  EXPECT_NE(err.find("prompt tokens"), std::string::npos) << err;
  EXPECT_NE(err.find("tok/s"), std::string::npos) << err;
}

TEST(Cli, PromptFromFileAndStdin) {
  const fs::path model = test::tiny_model("tiny-internvit");
  const json g = golden("tiny-internvit", "a_text");
  const fs::path f = test::temp_dir("prompt") / "q.txt";
  test::write_file(f, g["question"].get<std::string>());
  std::string a, b;
  ASSERT_EQ(test::run_command(bin() + " run --json -q -m " + model.string() + " -n 8 -p @" + f.string(), &a), 0);
  ASSERT_EQ(
      test::run_command("cat " + f.string() + " | " + bin() + " run --json -q -m " + model.string() + " -n 8 -p -", &b),
      0);
  EXPECT_EQ(json::parse(a)["tokens"], json::parse(b)["tokens"]);
  const auto want = std::vector<int64_t>(g["generated_ids"].begin(), g["generated_ids"].begin() + 8);
  EXPECT_EQ(json::parse(a)["tokens"].get<std::vector<int64_t>>(), want);
}

TEST(Cli, LogitsOutWritesPrefillLogits) {
  const fs::path model = test::tiny_model("tiny-internvit");
  const json g = golden("tiny-internvit", "a_text");
  const fs::path out = test::temp_dir("logits") / "logits.safetensors";
  ASSERT_EQ(test::run_command(bin() + " run -q -m " + model.string() + " -n 1 --logits-out " + out.string() + " -p " +
                                  quote(g["question"].get<std::string>()),
                              nullptr),
            0);
  auto f = loader::SafetensorsFile::open(out.string());
  const loader::TensorInfo* info = f->find("logits");
  ASSERT_NE(info, nullptr);
  EXPECT_EQ(info->dtype, DType::F32);
  Tensor logits = f->tensor(*info);
  ASSERT_EQ(logits.dim(), 1);
  // The argmax of the prefill logits (padding rows and <IMG_CONTEXT> excluded) is the first
  // generated token.
  const auto v = logits.to_floats();
  int64_t best = 0;
  for (int64_t i = 1; i < 151674; ++i)
    if (i != 151667 && v[static_cast<size_t>(i)] > v[static_cast<size_t>(best)]) best = i;
  EXPECT_EQ(best, g["generated_ids"][0].get<int64_t>());
}

TEST(Cli, ChatThroughPipeTwoTurnsWithImage) {
  const fs::path model = test::tiny_model("tiny-internvit");
  const json g = golden("tiny-internvit", "b_one_image");
  const std::string img = test::data_path(g["images"][0].get<std::string>()).string();
  const fs::path script = test::temp_dir("chat") / "in.txt";
  test::write_file(script, "/image " + img + "\n" + g["question"].get<std::string>() + "\nAnd the colours?\n/exit\n");
  std::string out, err;
  ASSERT_EQ(test::run_command(bin() + " chat -q -m " + model.string() + " --max-tiles 2 -n 32 < " + script.string(),
                              &out, &err),
            0)
      << err;
  // First answer line == the oracle's greedy answer for the same (image, question).
  const size_t nl = out.find('\n');
  ASSERT_NE(nl, std::string::npos) << out;
  EXPECT_EQ(strip(out.substr(0, nl)), strip(g["generated_text"].get<std::string>()));
  // A second answer follows (history kept: the prompt grows, so the run does not fail).
  EXPECT_GT(out.size(), nl + 1);
}

TEST(Cli, TokenizeAndDecode) {
  const fs::path model = test::tiny_model("tiny-internvit");
  std::string out;
  // docs/MODEL.md §11: "</img>\nPlease describe the image shortly." without special parsing
  // starts with the text tokens of "</img>" and ends with [198, 5501, 7512, 279, 2168, 19620, 13].
  ASSERT_EQ(
      test::run_command(
          bin() + " tokenize -m " + model.string() + " --text " + quote("\nPlease describe the image shortly."), &out),
      0);
  EXPECT_EQ(json::parse(out)["ids"], json::parse("[198, 5501, 7512, 279, 2168, 19620, 13]"));
  ASSERT_EQ(test::run_command(bin() + " tokenize -m " + model.string() + " --decode --text '[5501, 7512]'", &out), 0);
  EXPECT_EQ(strip(out), "Please describe");
}

TEST(Cli, InspectSummarisesTheCheckpoint) {
  const fs::path model = test::tiny_model("tiny-aimv2");
  std::string out;
  ASSERT_EQ(test::run_command(bin() + " inspect -m " + model.string(), &out), 0);
  EXPECT_NE(out.find("AIMv2"), std::string::npos) << out;
  EXPECT_NE(out.find("shard"), std::string::npos) << out;
  EXPECT_NE(out.find("preflight"), std::string::npos) << out;  // the memory plan `run` checks
  EXPECT_NE(out.find("safety margin"), std::string::npos) << out;
}

// Which LM head a checkpoint uses and why (docs/MODEL.md, "The LM head"), for every head shape.
TEST(Cli, InspectNamesTheLmHeadAndWhy) {
  struct Case {
    fs::path dir;
    const char* text;  // the lm_head line
    const char* key;   // --json lm_head.source
  };
  const Case cases[] = {
      {test::tiny_model("tiny-internvit"), "tied to embed_tokens", "tied"},
      {test::tiny_model("tiny-aimv2"), "stored language_model.lm_head.weight", "stored"},
      {test::golden_model("tiny-internvit-stored-head"), "stored language_model.lm_head.weight", "stored"},
      {test::tiny_model("tiny-internvit", "--untie --lm-head absent", "-untied-headless"), "none stored although",
       "absent"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.dir.string());
    std::string out, err;
    ASSERT_EQ(test::run_command(bin() + " inspect -m " + c.dir.string(), &out, &err), 0) << err;
    const size_t line = out.find("\nlm_head ");
    ASSERT_NE(line, std::string::npos) << out;
    EXPECT_NE(out.substr(line, out.find('\n', line + 1) - line).find(c.text), std::string::npos) << out;
    ASSERT_EQ(test::run_command(bin() + " inspect --json -m " + c.dir.string(), &out, &err), 0) << err;
    const json j = json::parse(out);
    EXPECT_EQ(j["lm_head"]["source"], c.key);
    EXPECT_EQ(j["lm_head"]["bytes"].get<uint64_t>() > 0, std::string(c.key) == "stored");
  }
  // The head-less untied checkpoint still runs, with the embeddings as head and a one-line warning.
  std::string out, err;
  ASSERT_EQ(test::run_command(bin() + " run -m " + cases[3].dir.string() + " -n 2 -p hi", &out, &err), 0) << err;
  EXPECT_NE(err.find("warning: "), std::string::npos) << err;
  EXPECT_NE(err.find("using embed_tokens as the LM head"), std::string::npos) << err;
}

TEST(Cli, BenchJsonReportsEveryStageAgainstTheLimits) {
  const fs::path model = test::tiny_model("tiny-internvit");
  std::string out;
  ASSERT_EQ(
      test::run_command(
          bin() + " bench -m " + model.string() + " -t 2 --image-tiles 1 --prompt-tokens 400 --gen 4 --json", &out),
      0);
  const json j = json::parse(out);
  EXPECT_EQ(j["prompt_tokens"].get<int64_t>(), 400);  // padded to the requested length
  EXPECT_EQ(j["image_tiles"].get<int64_t>(), 1);
  EXPECT_EQ(j["generated"].get<int64_t>(), 4);
  for (const char* k : {"vision", "projector", "prefill"}) EXPECT_GT(j["ttft_ms"][k].get<double>(), 0) << k;
  EXPECT_GT(j["decode"]["tokens_per_s_median"].get<double>(), 0);
  EXPECT_GT(j["decode"]["copy_bandwidth_GBps"].get<double>(), 0);
  EXPECT_GT(j["peak_host_bytes"].get<int64_t>(), 0);
  // Compute limit: a peak was measured (AVX2 builds) and the FLOP counts are positive.
  EXPECT_GT(j["compute"]["prefill_GFLOP"].get<double>(), 0);
  EXPECT_GT(j["compute"]["vision_projector_GFLOP"].get<double>(), 0);
#if defined(__AVX2__) && defined(__FMA__)
  EXPECT_GT(j["compute"]["fma_peak_GFLOPs"].get<double>(), 0);
  EXPECT_GT(j["compute"]["prefill_percent_of_peak"].get<double>(), 0);
#endif
}

// ---- exit codes ----

TEST(CliExitCodes, Usage2) {
  EXPECT_EQ(test::run_command(bin() + " run --no-such-flag 2>/dev/null"), 2);
  EXPECT_EQ(test::run_command(bin() + " no-such-command 2>/dev/null"), 2);
  const fs::path model = test::tiny_model("tiny-internvit");
  EXPECT_EQ(test::run_command(bin() + " run -m " + model.string() + " -p hi --temp abc 2>/dev/null"), 2);
}

TEST(CliExitCodes, BadModel3) {
  std::string err;
  EXPECT_EQ(test::run_command(bin() + " run -m /nonexistent/model -p hi", nullptr, &err), 3);
  EXPECT_NE(err.find("/nonexistent/model"), std::string::npos) << err;
  // A directory with a truncated safetensors file.
  const fs::path d = test::temp_dir("badmodel");
  fs::copy(test::tiny_model("tiny-internvit"), d, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  fs::resize_file(d / "model.safetensors", fs::file_size(d / "model.safetensors") - 100);
  EXPECT_EQ(test::run_command(bin() + " run -m " + d.string() + " -p hi", nullptr, &err), 3);
  EXPECT_NE(err.find("model.safetensors"), std::string::npos) << err;
}

TEST(CliExitCodes, BadTokenizer4) {
  const fs::path model = test::tiny_model("tiny-internvit");
  std::string err;
  // Invalid UTF-8 in the prompt: the error names the byte offset.
  EXPECT_EQ(test::run_command(bin() + " run -m " + model.string() + " -p $'ok\\xff'", nullptr, &err), 4);
  EXPECT_NE(err.find("offset 2"), std::string::npos) << err;
  // A corrupt tokenizer.json.
  const fs::path d = test::temp_dir("badtok");
  fs::copy(model, d, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  test::write_file(d / "tokenizer.json", "{\"model\": {\"vocab\": ");
  EXPECT_EQ(test::run_command(bin() + " run -m " + d.string() + " -p hi", nullptr, &err), 4);
  EXPECT_NE(err.find("tokenizer.json"), std::string::npos) << err;
}

TEST(CliExitCodes, BadImage5) {
  const fs::path model = test::tiny_model("tiny-internvit");
  const fs::path img = test::temp_dir("badimg") / "broken.png";
  test::write_file(img, std::string("\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16));
  std::string err;
  EXPECT_EQ(test::run_command(bin() + " run -m " + model.string() + " -i " + img.string() + " -p hi", nullptr, &err),
            5);
  EXPECT_NE(err.find("broken.png"), std::string::npos) << err;
}

TEST(CliExitCodes, OutOfMemory6) {
  // Find the smallest address-space limit (10 MB steps) under which a short run succeeds, then ask
  // for a long context at that limit: the KV cache (~100 MB more) cannot be allocated, and the run
  // must end with exit code 6 and a message, not a crash.
  if (SAILVL_UNDER_ASAN) GTEST_SKIP() << "ASan cannot run under ulimit -v (checked in the plain build)";
  const fs::path model = test::tiny_model("tiny-internvit");
  const std::string base = bin() + " run -q -m " + model.string() + " -p hi";
  auto ok_at = [&](int64_t kb, const std::string& extra, std::string* err = nullptr) {
    return test::run_command("ulimit -v " + std::to_string(kb) + "; " + base + extra + " >/dev/null", nullptr, err);
  };
  int64_t lo = 10000, hi = 4000000;  // KiB
  ASSERT_EQ(ok_at(hi, " -n 2 -c 256"), 0);
  while (hi - lo > 10000) {
    const int64_t mid = (lo + hi) / 2;
    (ok_at(mid, " -n 2 -c 256") == 0 ? hi : lo) = mid;
  }
  std::string err;
  EXPECT_EQ(ok_at(hi, " -n 30000 -c 32768", &err), 6) << "limit " << hi << " KiB: " << err;
  EXPECT_NE(err.find("memory"), std::string::npos) << err;
}

TEST(CliExitCodes, MemoryPreflightOutOfMemory6BeforeLoadingWeights) {
  // SAILVL_FAKE_FREE_BYTES makes the preflight believe 1000 bytes are free: `run` and `chat` must
  // refuse with exit 6 and the whole breakdown before any weight is bound (-v logs the model's
  // description right after loading; it must not appear).
  const fs::path model = test::tiny_model("tiny-internvit");
  const std::string img = test::data_path("images/demo/photo.jpg").string();
  const std::string args = " -v --device cpu -m " + model.string();
  const std::string loaded = "sailvl: custom SAIL-VL-architecture model";  // -v, right after the load
  std::string err;
  // Enough memory: the run goes through and logs the load.
  ASSERT_EQ(test::run_command("SAILVL_FAKE_FREE_BYTES=100000000000 " + bin() + " run" + args + " -n 2 -p hi >/dev/null",
                              nullptr, &err),
            0)
      << err;
  ASSERT_NE(err.find(loaded), std::string::npos) << err;

  EXPECT_EQ(test::run_command("SAILVL_FAKE_FREE_BYTES=1000 " + bin() + " run" + args + " -i " + img + " -p hi", nullptr,
                              &err),
            6)
      << err;
  for (const char* s :
       {"not enough memory on cpu", "before loading any weights", "weights", "page cache", "KV cache",
        "vision activations", "LLM prefill activations", "logits", "library workspaces", "safety margin", "total",
        "needed (without weights)", "1000 B", "SAILVL_FAKE_FREE_BYTES", "--max-tiles", "-c"})
    EXPECT_NE(err.find(s), std::string::npos) << "missing '" << s << "' in:\n" << err;
  EXPECT_NE(err.find("sailvl: loading"), std::string::npos) << err;
  EXPECT_EQ(err.find(loaded), std::string::npos) << "the model was loaded:\n" << err;

  EXPECT_EQ(test::run_command("echo hi | SAILVL_FAKE_FREE_BYTES=1000 " + bin() + " chat" + args, nullptr, &err), 6)
      << err;
  EXPECT_NE(err.find("KV cache"), std::string::npos) << err;
  // A malformed value is a usage error.
  EXPECT_EQ(
      test::run_command("SAILVL_FAKE_FREE_BYTES=lots " + bin() + " run --device cpu -m " + model.string() + " -p hi",
                        nullptr, &err),
      2);
  EXPECT_NE(err.find("SAILVL_FAKE_FREE_BYTES"), std::string::npos) << err;
}

TEST(CliExitCodes, ContextOverflow7) {
  const fs::path model = test::tiny_model("tiny-internvit");
  std::string out, err;
  // The prompt (the system message alone is ~40 tokens) does not fit 32 tokens: refused, with numbers.
  EXPECT_EQ(test::run_command(bin() + " run -m " + model.string() + " -c 32 -n 8 -p hi", nullptr, &err), 7);
  EXPECT_NE(err.find("32"), std::string::npos) << err;
  // It fits 48, and -n is only a cap: the answer stops when the context is full.
  ASSERT_EQ(test::run_command(bin() + " run --json -q -m " + model.string() + " -c 48 -n 32 -p hi", &out, &err), 0)
      << err;
  const json j = json::parse(out);
  EXPECT_EQ(j["finish_reason"], "length");
  EXPECT_EQ(j["stop"], "context_full");
  EXPECT_EQ(j["prompt_tokens"].get<int64_t>() + static_cast<int64_t>(j["tokens"].size()), 49);
}

TEST(CliExitCodes, NonFiniteLogits8) {
  // Poison the final norm weight with NaN in a copy of the checkpoint: every logit becomes NaN.
  const fs::path d = test::temp_dir("nan");
  fs::copy(test::tiny_model("tiny-internvit"), d, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  const fs::path st = d / "model.safetensors";
  uint64_t data_start = 0, begin = 0, end = 0;
  {
    auto f = loader::SafetensorsFile::open(st.string());
    const loader::TensorInfo* info = f->find("language_model.model.norm.weight");
    ASSERT_NE(info, nullptr);
    data_start = 8 + f->header().header_len;
    begin = info->begin;
    end = info->end;
  }
  std::string bytes = test::read_file(st);
  for (uint64_t i = data_start + begin; i + 1 < data_start + end; i += 2) {
    bytes[i] = static_cast<char>(0xc0);  // BF16 0x7fc0 = quiet NaN, little-endian
    bytes[i + 1] = static_cast<char>(0x7f);
  }
  test::write_file(st, bytes);
  std::string err;
  EXPECT_EQ(test::run_command(bin() + " run -m " + d.string() + " -n 4 -p hi", nullptr, &err), 8);
  EXPECT_NE(err.find("step"), std::string::npos) << err;
}

TEST(CliExitCodes, CudaFailure9) {
  const fs::path model = test::tiny_model("tiny-internvit");
  std::string out;
  test::run_command(bin() + " run -m " + model.string() + " --device cuda -n 1 -p hi 2>&1", &out);
  // Where a GPU answers this is not a failure; the test is about machines without one.
  if (out.find("no usable CUDA device") == std::string::npos &&
      out.find("without the CUDA backend") == std::string::npos)
    GTEST_SKIP() << "a CUDA device is usable here";
  EXPECT_EQ(test::run_command(bin() + " run -m " + model.string() + " --device cuda -n 1 -p hi 2>/dev/null"), 9);
}

TEST(CliExitCodes, Interrupted130KeepsPartialAnswer) {
  const fs::path model = test::tiny_model("tiny-internvit");
  const fs::path out = test::temp_dir("sigint") / "out.txt";
  // Send SIGINT once the answer has started (the first bytes are in the file), whatever the load.
  const std::string cmd = "( " + bin() + " run -q -m " + model.string() + " -n 30000 -c 32768 -p hi > " + out.string() +
                          " & pid=$!; for i in $(seq 600); do [ -s " + out.string() +
                          " ] && break; sleep 0.1; done; sleep 0.5; kill -INT $pid; wait $pid; echo $? )";
  std::string rc;
  test::run_command(cmd, &rc);
  EXPECT_EQ(strip(rc), "130");
  EXPECT_FALSE(strip(test::read_file(out)).empty()) << "the partial answer was not kept";
}

TEST(CliExitCodes, BrokenPipeIsNotACrash) {
  const fs::path model = test::tiny_model("tiny-internvit");
  std::string out;
  const int rc = test::run_command("set -o pipefail; " + bin() + " run -q -m " + model.string() +
                                       " -n 2000 -p hi | head -c 1 >/dev/null; echo ${PIPESTATUS[0]}",
                                   &out);
  (void)rc;
  EXPECT_EQ(strip(out), "0");
}

TEST(Cli, FindsModelInHuggingFaceCacheLayout) {
  // ~/.cache/huggingface/hub/models--ORG--NAME/snapshots/REV with refs/main naming REV; no network.
  const fs::path hf = test::temp_dir("hfhome");
  const fs::path snap = hf / "hub" / "models--TestOrg--Tiny-SAIL" / "snapshots" / "0123abcd";
  fs::create_directories(snap.parent_path());
  fs::create_directory_symlink(fs::absolute(test::tiny_model("tiny-internvit")), snap);
  test::write_file(hf / "hub" / "models--TestOrg--Tiny-SAIL" / "refs" / "main", "0123abcd");
  std::string out, err;
  EXPECT_EQ(test::run_command("HF_HOME=" + hf.string() + " " + bin() + " inspect -m TestOrg/Tiny-SAIL", &out, &err), 0)
      << err;
  EXPECT_NE(out.find("InternViT"), std::string::npos) << out;
  EXPECT_EQ(test::run_command(
                "HF_HOME=" + hf.string() + " HF_HUB_CACHE= " + bin() + " run --json -q -n 2 -m TestOrg/Tiny-SAIL -p hi",
                &out, &err),
            0)
      << err;
  // A name that is not in the cache: exit 3 and the places that were looked in.
  EXPECT_EQ(test::run_command("HF_HOME=" + hf.string() + " " + bin() + " inspect -m TestOrg/Missing", &out, &err), 3);
  EXPECT_NE(err.find("models--TestOrg--Missing"), std::string::npos) << err;
}
