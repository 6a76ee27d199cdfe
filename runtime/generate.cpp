// The generation loop: see generate.h.
#include "runtime/generate.h"

#include <chrono>
#include <cmath>

#include "model/model.h"
#include "ops/ops.h"
#include "tensor/stage.h"

namespace sailvl::runtime {

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// The first non-finite logit, or -1.
int64_t first_non_finite(const Tensor& host_logits) {
  const float* p = host_logits.data<float>();
  for (int64_t i = 0, n = host_logits.numel(); i < n; ++i)
    if (!std::isfinite(p[i])) return i;
  return -1;
}

}  // namespace

const char* stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::EndOfTurn: return "end_of_turn";
    case StopReason::MaxTokens: return "max_tokens";
    case StopReason::Cancelled: return "cancelled";
  }
  return "?";
}

double Timings::decode_tokens_per_s() const {
  return decode_ms > 0 ? static_cast<double>(token_ms.size()) * 1000.0 / decode_ms : 0.0;
}

GenerationResult generate(const model::SailVL& model, std::span<const int64_t> prompt, const Tensor& pixels,
                          const GenerationOptions& opt) {
  const model::LlmConfig& lc = model.config().llm;
  const Device dev = model.device();
  const int64_t S = static_cast<int64_t>(prompt.size()), V = lc.vocab;
  const int64_t tiles = pixels.defined() ? pixels.size(0) : 0;

  // ---- checks before any compute ----
  SAILVL_CHECK(S > 0, Usage, "empty prompt");
  SAILVL_CHECK(opt.max_new_tokens >= 1, Usage, "max_new_tokens must be >= 1, got ", opt.max_new_tokens);
  const int64_t context = opt.context_size > 0 ? opt.context_size : lc.max_position_embeddings;
  const int64_t image_tokens = tiles * model.image_tokens_per_tile();
  SAILVL_CHECK(S + opt.max_new_tokens <= context, ContextOverflow, "the prompt needs ", S, " tokens (", image_tokens,
               " image tokens from ", tiles, " tiles + ", S - image_tokens, " text tokens) + max_new_tokens ",
               opt.max_new_tokens, " = ", S + opt.max_new_tokens, " > context size ", context,
               "; lower -n, use fewer tiles (--max-tiles) or shorten the history");
  model.check_image_tokens(prompt, tiles);
  const SamplingOptions& so = opt.sampling;
  if (so.do_sample) {
    SAILVL_CHECK(so.temperature > 0 && std::isfinite(so.temperature), Usage,
                 "temperature must be > 0 when sampling, got ", so.temperature);
    SAILVL_CHECK(so.top_p > 0 && so.top_p <= 1, Usage, "top_p must be in (0, 1], got ", so.top_p);
    SAILVL_CHECK(so.top_k >= 0, Usage, "top_k must be >= 0, got ", so.top_k);
  }
  SAILVL_CHECK(so.repetition_penalty > 0 && std::isfinite(so.repetition_penalty), Usage,
               "repetition_penalty must be > 0, got ", so.repetition_penalty);

  GenerationResult res;
  Timings& tm = res.timings;
  tm.prompt_tokens = S;
  tm.image_tiles = tiles;
  const Taps* taps = opt.taps;

  // ---- allocate everything the loop needs ----
  const model::LanguageModel& llm = model.llm();
  model::KvCache cache = llm.make_cache(S + opt.max_new_tokens);  // K, V [S + max_new, Hkv, Dh] per layer
  model::LlmWorkspace ws = llm.make_workspace(S);
  Tensor logits = Tensor::empty({V}, DType::F32, dev);  // [V]
  Tensor logits_host = dev.is_cpu() ? logits : Tensor::empty({V}, DType::F32);
  Tensor next_id = Tensor::empty({1}, DType::I64);                                     // the token fed back  [1]
  Tensor next_emb = Tensor::empty({1, lc.hidden}, model::activation_dtype(dev), dev);  // [1, D]
  res.tokens.reserve(static_cast<size_t>(opt.max_new_tokens));
  tm.token_ms.reserve(static_cast<size_t>(opt.max_new_tokens));
  const int64_t banned[] = {model.special().img_context};
  ops::SamplingParams sp;
  sp.temperature = so.do_sample ? so.temperature : 0.0f;
  sp.top_k = so.do_sample ? so.top_k : 0;
  sp.top_p = so.do_sample ? so.top_p : 1.0f;
  sp.repetition_penalty = so.repetition_penalty;
  sp.seed = so.seed;
  sp.allowed_vocab = model.tokenizer().size();  // padding rows are never sampled
  sp.banned = banned;
  tokenizer::StreamDecoder stream(model.tokenizer(), /*skip_special=*/true);

  // ---- image path ----
  Tensor rows;
  if (tiles > 0) {
    model::ImageStages st;
    rows = model.encode_images(pixels, &st);  // [T, 256, D]
    tm.vision_ms = st.vision_ms;
    tm.projector_ms = st.projector_ms;
    if (taps) {
      taps->write("pixel_values", pixels);
      taps->write("vision", st.features);
      taps->write("pixel_shuffle", st.shuffled);
      taps->write("projector", st.rows);
    }
  }

  // ---- prefill ----
  auto t0 = Clock::now();
  std::vector<Tensor> layer_outputs;
  {
    StageScope stage("prefill");
    const Tensor E = model.embed_prompt(prompt, rows);  // [S, D]
    model::ForwardOptions fo;
    if (taps && taps->layers()) fo.layer_outputs = &layer_outputs;
    llm.forward(E, cache, ws, logits, fo);  // logits of position S-1  [V]
    model::finish_stage(dev);
  }
  tm.prefill_ms = ms_since(t0);
  if (taps) {
    taps->write_ids("prompt_ids", prompt);
    taps->write("logits", logits);
    for (size_t l = 0; l < layer_outputs.size(); ++l) taps->write("layer_" + std::to_string(l), layer_outputs[l]);
  }

  // ---- decode ----
  const auto t_decode = Clock::now();
  for (int64_t step = 0;; ++step) {
    if (opt.cancel && opt.cancel->load(std::memory_order_relaxed)) {
      res.stop = StopReason::Cancelled;
      break;
    }
    const auto t_step = Clock::now();
    int64_t token = 0;
    {
      StageScope stage("sampling", step);
      if (!dev.is_cpu()) logits_host.copy_from(logits);
      const int64_t bad = first_non_finite(logits_host);
      SAILVL_CHECK(bad < 0, NonFinite, "non-finite logit (", logits_host.data<float>()[bad], " at id ", bad,
                   ") at generation step ", step, " (position ", S + step - 1,
                   "); the checkpoint or an op produced NaN/Inf — check the weights (sailvl inspect) or run on CPU");
      sp.history = res.tokens;
      token = ops::sample(logits, sp, static_cast<uint64_t>(step));
    }
    res.tokens.push_back(token);
    tm.new_tokens = static_cast<int64_t>(res.tokens.size());
    if (opt.forced) {  // teacher forcing: continue from the reference's token
      SAILVL_CHECK(step < static_cast<int64_t>(opt.forced->size()), Internal,
                   "generate: forced tokens run out at step ", step);
      token = (*opt.forced)[static_cast<size_t>(step)];
      if (step + 1 == static_cast<int64_t>(opt.forced->size()) && token != model.special().im_end) {
        res.stop = StopReason::MaxTokens;
        tm.token_ms.push_back(ms_since(t_step));
        break;
      }
    }

    if (token == model.special().im_end) {
      res.stop = StopReason::EndOfTurn;
      tm.token_ms.push_back(ms_since(t_step));
      break;
    }
    const std::string piece = stream.push(static_cast<tokenizer::TokenId>(token));
    res.text += piece;
    if (opt.on_token) opt.on_token(token, piece);
    if (tm.new_tokens >= opt.max_new_tokens) {
      res.stop = StopReason::MaxTokens;
      tm.token_ms.push_back(ms_since(t_step));
      break;
    }
    next_id.data<int64_t>()[0] = token;
    {
      StageScope stage("decode", step);
      llm.embed(next_emb, next_id);              // e = embed_tokens[token]   [1, D]
      llm.forward(next_emb, cache, ws, logits);  // logits of the new position [V]
      model::finish_stage(dev);
    }
    tm.token_ms.push_back(ms_since(t_step));
  }
  tm.decode_ms = ms_since(t_decode);
  const std::string rest = stream.flush();
  res.text += rest;
  if (!rest.empty() && opt.on_token) opt.on_token(-1, rest);
  return res;
}

}  // namespace sailvl::runtime
