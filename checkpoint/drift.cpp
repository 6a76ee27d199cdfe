// See drift.h.
#include "checkpoint/drift.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <tuple>

#include "checkpoint/embedded_tokenizer.h"
#include "image/image.h"
#include "model/sail_vl.h"
#include "runtime/session.h"
#include "tensor/error.h"

namespace sailvl::checkpoint {

std::vector<DriftPrompt> drift_prompts() {
  const std::tuple<const char*, const char*, bool> fixed[] = {
      {"text-1", "What is the capital of France? Answer in one sentence.", false},
      {"text-2", "Write a short poem about the sea.", false},
      {"image", "Please describe the image shortly.", true},
  };
  std::vector<DriftPrompt> out;
  for (const auto& [name, question, image] : fixed) {
    DriftPrompt p;
    p.name = name;
    p.question = question;
    p.image = image;
    out.push_back(std::move(p));
  }
  return out;
}

namespace {

// Logits of every scored position of one answer, the first `ids` entries of each row.
struct Answer {
  std::vector<std::vector<float>> logits;
  std::vector<int64_t> tokens;  // the model's greedy choice at each position
};

Answer answer(const model::SailVL& m, const DriftPrompt& p, const DriftOptions& opt,
              const std::vector<int64_t>* forced) {
  runtime::SessionOptions so;
  so.preprocess.max_tiles = opt.max_tiles;
  runtime::Session s(m, so);
  std::vector<runtime::ImageInput> images;
  if (p.image) {
    const std::string_view jpg = embedded_demo_photo();
    runtime::ImageInput in;
    in.source = "the demo photo";
    in.rgb = std::make_shared<const image::RgbImage>(
        image::decode_image({reinterpret_cast<const uint8_t*>(jpg.data()), jpg.size()}, in.source));
    images.push_back(std::move(in));
  }
  const size_t ids = static_cast<size_t>(m.tokenizer().size());
  Answer a;
  runtime::GenerationOptions g;
  g.max_new_tokens = forced ? static_cast<int64_t>(forced->size()) : opt.tokens;
  g.forced = forced;
  g.on_logits = [&](int64_t, const Tensor& logits) {
    const float* l = logits.data<float>();
    a.logits.emplace_back(l, l + ids);
  };
  const runtime::TurnResult r = s.ask(p.question, std::move(images), g);
  a.tokens = r.generation.tokens;
  return a;
}

// KL(p || q) of softmax(a) and softmax(b), float64.
double kl(const std::vector<float>& a, const std::vector<float>& b) {
  const double ma = *std::max_element(a.begin(), a.end()), mb = *std::max_element(b.begin(), b.end());
  double za = 0, zb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    za += std::exp(a[i] - ma);
    zb += std::exp(b[i] - mb);
  }
  const double la = std::log(za), lb = std::log(zb);
  double k = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double lp = a[i] - ma - la, lq = b[i] - mb - lb;
    k += std::exp(lp) * (lp - lq);
  }
  return std::max(k, 0.0);  // rounding can leave a tiny negative for identical inputs
}

}  // namespace

DriftReport measure_drift(const std::string& source_dir, const std::string& quantized_dir, const DriftOptions& opt) {
  DriftReport rep;
  rep.prompts = drift_prompts();
  std::vector<Answer> src;
  {
    const model::SailVL m = model::SailVL::load(source_dir, Device::cpu());
    for (size_t i = 0; i < rep.prompts.size(); ++i) {
      if (opt.progress) opt.progress(str_cat("source model: prompt ", i + 1, "/", rep.prompts.size()));
      src.push_back(answer(m, rep.prompts[i], opt, nullptr));
    }
  }
  const model::SailVL q = model::SailVL::load(quantized_dir, Device::cpu());
  double kl_sum = 0;
  int64_t agree_all = 0;
  for (size_t i = 0; i < rep.prompts.size(); ++i) {
    if (opt.progress) opt.progress(str_cat("quantised model: prompt ", i + 1, "/", rep.prompts.size()));
    DriftPrompt& p = rep.prompts[i];
    p.source_tokens = src[i].tokens;
    const Answer a = answer(q, p, opt, &src[i].tokens);
    const size_t n = std::min(a.logits.size(), src[i].logits.size());
    SAILVL_CHECK(n == src[i].logits.size(), Internal, "drift: the quantised model scored ", a.logits.size(),
                 " positions of ", src[i].logits.size());
    int64_t agree = 0;
    double sum = 0;
    for (size_t t = 0; t < n; ++t) {
      const std::vector<float>&ls = src[i].logits[t], &lq = a.logits[t];
      agree += a.tokens[t] == src[i].tokens[t];
      const double k = kl(ls, lq);
      sum += k;
      p.max_kl = std::max(p.max_kl, k);
      for (size_t v = 0; v < ls.size(); ++v)
        p.max_logit_error = std::max(p.max_logit_error, static_cast<double>(std::fabs(ls[v] - lq[v])));
    }
    p.positions = static_cast<int64_t>(n);
    p.top1 = n ? static_cast<double>(agree) / static_cast<double>(n) : 1.0;
    p.mean_kl = n ? sum / static_cast<double>(n) : 0.0;
    rep.positions += p.positions;
    agree_all += agree;
    kl_sum += sum;
    rep.max_kl = std::max(rep.max_kl, p.max_kl);
    rep.max_logit_error = std::max(rep.max_logit_error, p.max_logit_error);
  }
  rep.top1 = rep.positions ? static_cast<double>(agree_all) / static_cast<double>(rep.positions) : 1.0;
  rep.mean_kl = rep.positions ? kl_sum / static_cast<double>(rep.positions) : 0.0;
  return rep;
}

nlohmann::ordered_json DriftReport::to_json() const {
  nlohmann::ordered_json j;
  j["method"] =
      "teacher forcing on the source model's greedy answer; per position over the tokenizer's ids: top-1 "
      "agreement of the greedy choices, KL(p_source || p_quantised) in nats, max |logit difference|";
  j["positions"] = positions;
  j["top1_agreement"] = top1;
  j["mean_kl"] = mean_kl;
  j["max_kl"] = max_kl;
  j["max_logit_error"] = max_logit_error;
  auto& ps = j["prompts"] = nlohmann::ordered_json::array();
  for (const DriftPrompt& p : prompts)
    ps.push_back({{"name", p.name},
                  {"question", p.question},
                  {"image", p.image},
                  {"positions", p.positions},
                  {"top1_agreement", p.top1},
                  {"mean_kl", p.mean_kl},
                  {"max_kl", p.max_kl},
                  {"max_logit_error", p.max_logit_error},
                  {"source_tokens", p.source_tokens}});
  return j;
}

std::string DriftReport::table() const {
  std::string s;
  char line[256];
  std::snprintf(line, sizeof line, "%-8s %9s %7s %10s %10s %12s\n", "prompt", "positions", "top-1", "mean KL", "max KL",
                "max |dlogit|");
  s += line;
  auto row = [&](const std::string& name, int64_t n, double t, double mk, double xk, double le) {
    std::snprintf(line, sizeof line, "%-8s %9lld %6.1f%% %10.2e %10.2e %12.4f\n", name.c_str(),
                  static_cast<long long>(n), 100 * t, mk, xk, le);
    s += line;
  };
  for (const DriftPrompt& p : prompts) row(p.name, p.positions, p.top1, p.mean_kl, p.max_kl, p.max_logit_error);
  row("all", positions, top1, mean_kl, max_kl, max_logit_error);
  return s;
}

}  // namespace sailvl::checkpoint
