// Tokenizer throughput: tokens/s encoding a ~1 MiB mixed corpus, beside Hugging Face `tokenizers`.
//
// The corpus is built exactly as tools/reference/make_tokenizer_goldens.py bench_corpus() builds
// it: every golden string except the long "run_*" cases, joined with '\n' (plus a final '\n'),
// repeated until it reaches 1 MiB. The Python script stores the `tokenizers` speed on the same
// text in tests/data/tokenizer/hf_speed.json; this benchmark prints it next to ours as counters.
//
//   build-bench/bench_tokenizer --benchmark_min_time=2
// Counters: tokens_per_s (ours), hf_tokens_per_s (from hf_speed.json), speedup = ours / HF.
// The piece cache is warm after the first iteration, as it is for `tokenizers` (it caches words too).
#include <benchmark/benchmark.h>

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer.h"

using namespace sailvl;

namespace {

std::string read(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

const std::string kData = std::string(SAILVL_SOURCE_DIR) + "/tests/data/";

const tokenizer::Tokenizer& tok() {
  static const tokenizer::Tokenizer t = tokenizer::Tokenizer::load(kData + "sailvl-tokenizer");
  return t;
}

const std::string& corpus() {
  static const std::string text = [] {
    const auto g = nlohmann::json::parse(read(kData + "tokenizer/goldens.json"));
    std::string unit;
    bool first = true;
    for (const auto& c : g["cases"]) {
      if (c["name"].get<std::string>().rfind("run_", 0) == 0) continue;
      if (!first) unit += '\n';
      unit += c["text"].get<std::string>();
      first = false;
    }
    unit += '\n';
    const size_t target = 1 << 20;
    const size_t reps = (target + unit.size() - 1) / unit.size();
    std::string out;
    out.reserve(reps * unit.size());
    for (size_t i = 0; i < reps; ++i) out += unit;
    return out;
  }();
  return text;
}

double hf_tokens_per_s(const char* mode) {
  try {
    const auto j = nlohmann::json::parse(read(kData + "tokenizer/hf_speed.json"));
    return j[mode]["tokens_per_s"].get<double>();
  } catch (const std::exception&) {
    return 0.0;
  }
}

void encode_corpus(benchmark::State& state, bool parse_special) {
  const std::string& text = corpus();
  tok();  // load outside the timed loop
  tokenizer::EncodeOptions opt;
  opt.parse_special = parse_special;
  int64_t tokens = 0;
  for (auto _ : state) {
    auto ids = tok().encode(text, opt);
    tokens += static_cast<int64_t>(ids.size());
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(text.size()));
  state.counters["tokens_per_s"] = benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
  const double hf = hf_tokens_per_s(parse_special ? "special" : "plain");
  state.counters["hf_tokens_per_s"] = hf;
  state.counters["corpus_bytes"] = static_cast<double>(text.size());
  state.counters["tokens"] = static_cast<double>(tokens) / static_cast<double>(state.iterations());
}

void BM_EncodeCorpusSpecial(benchmark::State& state) { encode_corpus(state, true); }
void BM_EncodeCorpusPlain(benchmark::State& state) { encode_corpus(state, false); }

void BM_DecodeCorpus(benchmark::State& state) {
  const auto ids = tok().encode(corpus());
  for (auto _ : state) {
    auto s = tok().decode(ids);
    benchmark::DoNotOptimize(s.data());
  }
  state.counters["tokens_per_s"] = benchmark::Counter(
      static_cast<double>(ids.size()) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK(BM_EncodeCorpusSpecial)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_EncodeCorpusPlain)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_DecodeCorpus)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
