// The generation loop: see generate.h.
#include "runtime/generate.h"

#include <chrono>
#include <cmath>

#include "model/model.h"
#include "runtime/sequence.h"
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

// Length of the longest suffix of `text` that is a proper prefix of some stop string: that much
// text must be held back, it may still become a stop string.
size_t held_suffix(const std::string& text, const std::vector<std::string>& stop) {
  size_t keep = 0;
  for (const std::string& s : stop)
    for (size_t n = std::min(text.size(), s.size() - 1); n > keep; --n)
      if (text.compare(text.size() - n, n, s, 0, n) == 0) {
        keep = n;
        break;
      }
  return keep;
}

}  // namespace

const char* stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::EndOfTurn: return "end_of_turn";
    case StopReason::StopString: return "stop_string";
    case StopReason::MaxTokens: return "max_tokens";
    case StopReason::ContextFull: return "context_full";
    case StopReason::Cancelled: return "cancelled";
  }
  return "?";
}

const char* finish_reason_name(StopReason r) {
  switch (r) {
    case StopReason::EndOfTurn:
    case StopReason::StopString: return "stop";
    case StopReason::MaxTokens:
    case StopReason::ContextFull: return "length";
    case StopReason::Cancelled: return "cancelled";
  }
  return "?";
}

double Timings::decode_tokens_per_s() const {
  return decode_ms > 0 ? static_cast<double>(token_ms.size()) * 1000.0 / decode_ms : 0.0;
}

void check_sampling(const SamplingOptions& so) {
  if (so.do_sample) {
    SAILVL_CHECK(so.temperature > 0 && std::isfinite(so.temperature), Usage,
                 "temperature must be a finite number > 0 when sampling, got ", so.temperature);
    SAILVL_CHECK(so.top_p > 0 && so.top_p <= 1, Usage, "top_p must be in (0, 1], got ", so.top_p);
    SAILVL_CHECK(so.top_k >= 0, Usage, "top_k must be >= 0, got ", so.top_k);
  }
  SAILVL_CHECK(so.repetition_penalty > 0 && std::isfinite(so.repetition_penalty), Usage,
               "repetition_penalty must be a finite number > 0, got ", so.repetition_penalty);
}

// ---- Decoder ----

Decoder::Decoder(const model::SailVL& m, const GenerationOptions& opt, int64_t context)
    : m_(&m), opt_(opt), context_(context), stream_(m.tokenizer(), /*skip_special=*/true) {
  check_sampling(opt.sampling);
  SAILVL_CHECK(opt.max_new_tokens >= 0, Usage, "max_new_tokens must be >= 0, got ", opt.max_new_tokens);
  for (const std::string& s : opt.stop) SAILVL_CHECK(!s.empty(), Usage, "a stop string is empty");
  const SamplingOptions& so = opt.sampling;
  banned_[0] = m.special().img_context;
  sp_.temperature = so.do_sample ? so.temperature : 0.0f;
  sp_.top_k = so.do_sample ? so.top_k : 0;
  sp_.top_p = so.do_sample ? so.top_p : 1.0f;
  sp_.repetition_penalty = so.repetition_penalty;
  sp_.seed = so.seed;
  sp_.allowed_vocab = m.tokenizer().size();  // padding rows are never sampled
  sp_.banned = banned_;
  if (!m.device().is_cpu()) host_logits_ = Tensor::empty({m.config().llm.vocab}, DType::F32);
  res_.tokens.reserve(static_cast<size_t>(std::min<int64_t>(opt.max_new_tokens, 1 << 16)));
  if (opt.max_new_tokens == 0) {
    res_.stop = StopReason::MaxTokens;
    done_ = true;
  }
}

void Decoder::emit(int64_t id, std::string piece) {
  if (piece.empty() && id >= 0) {
    if (opt_.on_token) opt_.on_token(id, piece);
    return;
  }
  held_ += piece;
  std::string out;
  if (!opt_.stop.empty()) {
    size_t at = std::string::npos;  // the earliest complete stop string
    for (const std::string& s : opt_.stop) at = std::min(at, held_.find(s));
    if (at != std::string::npos) {
      out = held_.substr(0, at);
      held_.clear();
      res_.stop = StopReason::StopString;
      done_ = true;
    } else {
      const size_t keep = held_suffix(held_, opt_.stop);
      out = held_.substr(0, held_.size() - keep);
      held_.erase(0, held_.size() - keep);
    }
  } else {
    out.swap(held_);
  }
  res_.text += out;
  if (opt_.on_token) opt_.on_token(id, out);
}

std::optional<int64_t> Decoder::next(const Tensor& logits, int64_t seq_length) {
  if (done_) return std::nullopt;
  if (opt_.cancel && opt_.cancel->load(std::memory_order_relaxed)) {
    res_.stop = StopReason::Cancelled;
    done_ = true;
    return std::nullopt;
  }
  const int64_t step = step_++;
  int64_t token = 0;
  {
    StageScope stage("sampling", step);
    const Tensor& host = m_->device().is_cpu() ? logits : host_logits_;
    if (!m_->device().is_cpu()) host_logits_.copy_from(logits.reshape({logits.numel()}));
    const int64_t bad = first_non_finite(host);
    SAILVL_CHECK(bad < 0, NonFinite, "non-finite logit (", host.data<float>()[bad], " at id ", bad,
                 ") at generation step ", step, " (position ", seq_length - 1,
                 "); the checkpoint or an op produced NaN/Inf — check the weights (sailvl inspect) or run on CPU");
    if (opt_.on_logits) opt_.on_logits(step, host);
    sp_.history = res_.tokens;
    token = ops::sample(logits.reshape({logits.numel()}), sp_, static_cast<uint64_t>(step));
  }
  res_.tokens.push_back(token);
  res_.timings.new_tokens = static_cast<int64_t>(res_.tokens.size());
  if (opt_.forced) {  // teacher forcing: continue from the reference's token
    SAILVL_CHECK(step < static_cast<int64_t>(opt_.forced->size()), Internal, "generate: forced tokens run out at step ",
                 step);
    token = (*opt_.forced)[static_cast<size_t>(step)];
    if (step + 1 == static_cast<int64_t>(opt_.forced->size()) && token != m_->special().im_end) {
      res_.stop = StopReason::MaxTokens;
      done_ = true;
      return std::nullopt;
    }
  }
  if (token == m_->special().im_end) {
    res_.stop = StopReason::EndOfTurn;
    done_ = true;
    return std::nullopt;
  }
  emit(token, stream_.push(static_cast<tokenizer::TokenId>(token)));
  if (done_) return std::nullopt;  // a stop string
  if (res_.timings.new_tokens >= opt_.max_new_tokens) {
    res_.stop = StopReason::MaxTokens;
    done_ = true;
    return std::nullopt;
  }
  if (seq_length >= context_) {  // no room to feed it: the context is full
    res_.stop = StopReason::ContextFull;
    done_ = true;
    return std::nullopt;
  }
  return token;
}

void Decoder::finish() {
  done_ = true;
  if (res_.stop == StopReason::StopString) return;  // what followed the stop string is dropped
  emit(-1, stream_.flush());
  if (!held_.empty()) {  // the end came first: held-back text was not a stop string after all
    res_.text += held_;
    if (opt_.on_token) opt_.on_token(-1, held_);
    held_.clear();
  }
}

// ---- one generation ----

GenerationResult generate(const model::SailVL& model, std::span<const int64_t> prompt, const Tensor& pixels,
                          const GenerationOptions& opt) {
  const model::LlmConfig& lc = model.config().llm;
  const Device dev = model.device();
  const int64_t S = static_cast<int64_t>(prompt.size());
  const int64_t tiles = pixels.defined() ? pixels.size(0) : 0;

  // ---- checks before any compute ----
  SAILVL_CHECK(S > 0, Usage, "empty prompt");
  const int64_t context = opt.context_size > 0 ? opt.context_size : lc.max_position_embeddings;
  const int64_t image_tokens = tiles * model.image_tokens_per_tile();
  SAILVL_CHECK(S <= context, ContextOverflow, "the prompt needs ", S, " tokens (", image_tokens, " image tokens from ",
               tiles, " tiles + ", S - image_tokens, " text tokens) but the context holds ", context,
               "; use fewer tiles (--max-tiles), a larger -c or a shorter history");
  model.check_image_tokens(prompt, tiles);
  Decoder dec(model, opt, context);
  GenerationResult& res = dec.result();
  Timings& tm = res.timings;
  tm.prompt_tokens = S;
  tm.image_tiles = tiles;
  const Taps* taps = opt.taps;

  // ---- image path ----
  Tensor rows;
  if (tiles > 0) {
    model::ImageStages st;
    model::RunControl ctl{opt.cancel, nullptr};
    if (opt.progress) ctl.progress = [&opt](int64_t d, int64_t t) { opt.progress(Phase::Vision, d, t); };
    rows = model.encode_images(pixels, &st, ctl);  // [T, 256, D]
    tm.vision_ms = st.vision_ms;
    tm.projector_ms = st.projector_ms;
    tm.encoded_tiles = tiles;
    if (taps) {
      taps->write("pixel_values", pixels);
      taps->write("vision", st.features);
      taps->write("pixel_shuffle", st.shuffled);
      taps->write("projector", st.rows);
    }
  }

  // ---- prefill ----
  Sequence seq(model, context);
  seq.reserve(S + opt.max_new_tokens);  // every KV row this generation may need, before any compute
  Tensor logits = Tensor::empty({lc.vocab}, DType::F32, dev);  // [V]
  auto t0 = Clock::now();
  std::vector<Tensor> layer_outputs;
  model::RunControl pctl{opt.cancel, nullptr};
  if (opt.progress) pctl.progress = [&opt](int64_t d, int64_t t) { opt.progress(Phase::Prefill, d, t); };
  seq.prefill(
      prompt, {},
      [&rows](int64_t) {
        return ImageRows{rows, 0};
      },
      logits, pctl, taps && taps->layers() ? &layer_outputs : nullptr);
  tm.prefill_ms = ms_since(t0);
  if (opt.on_prefill_logits) opt.on_prefill_logits(logits);
  if (taps) {
    taps->write_ids("prompt_ids", prompt);
    taps->write("logits", logits);
    for (size_t l = 0; l < layer_outputs.size(); ++l) taps->write("layer_" + std::to_string(l), layer_outputs[l]);
  }

  // ---- decode ----
  const auto t_decode = Clock::now();
  for (;;) {
    const auto t_step = Clock::now();
    const std::optional<int64_t> next = dec.next(logits, seq.length());
    if (!next) {
      if (res.stop != StopReason::Cancelled && !res.tokens.empty()) tm.token_ms.push_back(ms_since(t_step));
      break;
    }
    {
      StageScope stage("decode", static_cast<int64_t>(tm.token_ms.size()));
      seq.step(*next, logits);  // logits of the new position  [V]
      model::finish_stage(dev);
    }
    tm.token_ms.push_back(ms_since(t_step));
  }
  tm.decode_ms = ms_since(t_decode);
  dec.finish();
  return res;
}

}  // namespace sailvl::runtime
