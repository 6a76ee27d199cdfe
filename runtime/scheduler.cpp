// Continuous batching: see scheduler.h.
#include "runtime/scheduler.h"

#include <algorithm>

#include "model/model.h"
#include "runtime/memory_plan.h"
#include "tensor/log.h"
#include "tensor/stage.h"

namespace sailvl::runtime {

// ---- Stream ----

bool Stream::wait_text(std::string& text, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [this] { return !pending_.empty() || done_; });
  text.swap(pending_);
  pending_.clear();
  return !(done_ && text.empty());
}

bool Stream::finished() const {
  std::lock_guard<std::mutex> lock(mu_);
  return done_;
}

double Stream::ttft_seconds() const {
  std::lock_guard<std::mutex> lock(mu_);
  return has_first_ ? std::chrono::duration<double>(first_token_ - submitted_).count() : -1.0;
}

void Stream::push(const std::string& text) {
  if (text.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_ += text;
  }
  cv_.notify_all();
}

void Stream::finish(GenerationResult r, std::optional<Error> e) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    result_ = std::move(r);
    error_ = std::move(e);
    done_ = true;
  }
  cv_.notify_all();
}

// ---- slots ----

struct Scheduler::Slot {
  Sequence seq;
  std::optional<Job> job;
  std::shared_ptr<Stream> stream;
  std::unique_ptr<Decoder> dec;
  bool decoding = false;     // prefill done, generating
  int64_t next_token = -1;   // fed in the next decode step
  std::vector<size_t> todo;  // images still to encode before the prefill can run
  std::vector<Tensor> rows;  // per image of the job: its projector rows once encoded
  int64_t first_needed = 0;  // the first image the prefill needs rows of
  uint64_t last_used = 0;
  std::chrono::steady_clock::time_point t_decode{};

  Slot(const model::SailVL& m, int64_t context, std::shared_ptr<model::LlmWorkspace> ws)
      : seq(m, context, 0, std::move(ws)) {}
  bool busy() const { return job.has_value(); }
};

Scheduler::Scheduler(const model::SailVL& m, SchedulerOptions opt) : m_(&m), opt_(std::move(opt)) {
  SAILVL_CHECK(opt_.slots >= 1 && opt_.slots <= 1024, Usage, "--parallel must be in [1, 1024], got ", opt_.slots);
  context_ = opt_.context > 0 ? opt_.context : m.config().llm.max_position_embeddings;
  if (opt_.prefill_budget <= 0) opt_.prefill_budget = prefill_chunk_tokens(m.device());
  cache_ = opt_.image_cache ? opt_.image_cache : std::make_shared<ImageCache>(default_image_cache_bytes(m.device()));
  // One workspace for every slot's prefill chunks and the batched decode step (the loop is one thread).
  const int64_t rows = std::max(std::min(opt_.prefill_budget, context_), opt_.slots);
  auto ws = std::make_shared<model::LlmWorkspace>(m.llm().make_workspace(rows));
  for (int64_t i = 0; i < opt_.slots; ++i) slots_.push_back(std::make_unique<Slot>(m, context_, ws));
  ws_ = m.llm().make_workspace(opt_.slots);
  step_logits_ = Tensor::empty({opt_.slots, m.config().llm.vocab}, DType::F32, m.device());
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  Error gone(ErrorKind::Cancelled, "the server is shutting down");
  for (auto& w : queue_) w.stream->finish({}, gone);
  for (auto& s : slots_)
    if (s->busy()) s->stream->finish(s->dec ? s->dec->result() : GenerationResult{}, gone);
}

std::shared_ptr<Stream> Scheduler::submit(Job job) {
  auto stream = std::make_shared<Stream>();
  stream->prompt_tokens_ = static_cast<int64_t>(job.ids.size());
  stream->submitted_ = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (draining_ || stop_ || static_cast<int64_t>(queue_.size()) >= opt_.max_queue) return nullptr;
    queue_.push_back({std::move(job), stream});
  }
  cv_.notify_all();
  return stream;
}

void Scheduler::drain(std::chrono::milliseconds grace) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    draining_ = true;
  }
  const auto deadline = std::chrono::steady_clock::now() + grace;
  for (;;) {
    bool busy = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      busy = !queue_.empty();
      for (const auto& s : slots_) busy = busy || s->busy();
    }
    if (!busy) return;
    if (std::chrono::steady_clock::now() > deadline) {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& w : queue_) w.stream->cancel();
      for (auto& s : slots_)
        if (s->busy()) s->stream->cancel();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    cv_.notify_all();
  }
}

SchedulerStats Scheduler::stats() const {
  SchedulerStats st;
  std::lock_guard<std::mutex> lock(mu_);
  st.queued = static_cast<int64_t>(queue_.size());
  st.slots = static_cast<int64_t>(slots_.size());
  for (const auto& s : slots_) {
    st.active += s->busy();
    st.kv_tokens += s->seq.length();
    st.kv_capacity += context_;
  }
  st.image_cache_bytes = cache_->bytes();
  st.iterations = iterations_;
  st.batched_rows = batched_rows_;
  st.decode_steps = decode_steps_;
  st.decode_seconds = static_cast<double>(decode_us_.load()) / 1e6;
  return st;
}

void Scheduler::loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (stop_) return;
    }
    if (!iterate()) {  // idle: sleep until a job arrives
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(50), [this] { return stop_ || !queue_.empty(); });
    }
  }
}

bool Scheduler::iterate() {
  ++iterations_;
  // Cancelled streams (client gone, drain timeout) leave first.
  for (auto& s : slots_)
    if (s->busy() && s->stream->cancelled()) {
      if (s->dec) s->dec->stop(StopReason::Cancelled);
      finish(*s, std::nullopt);
    }
  admit();
  bool worked = false;
  for (const auto& s : slots_) worked = worked || s->busy();
  if (!worked) return false;
  decode_step();
  admission_work();
  return true;
}

void Scheduler::admit() {
  std::lock_guard<std::mutex> lock(mu_);
  while (!queue_.empty()) {
    Waiting& w = queue_.front();
    if (w.stream->cancelled()) {
      w.stream->finish({}, std::nullopt);
      queue_.pop_front();
      continue;
    }
    // The free slot with the longest common prefix, else the least recently used one.
    Slot* best = nullptr;
    int64_t best_prefix = -1;
    for (auto& s : slots_) {
      if (s->busy()) continue;
      const int64_t p = s->seq.common_prefix(w.job.ids, w.job.tags);
      if (p > best_prefix || (p == best_prefix && s->last_used < best->last_used)) {
        best = s.get();
        best_prefix = p;
      }
    }
    if (!best) return;  // every slot is busy
    Slot& s = *best;
    s.job = std::move(w.job);
    s.stream = std::move(w.stream);
    queue_.pop_front();
    s.last_used = ++tick_;
    s.decoding = false;
    s.rows.assign(s.job->images.size(), Tensor());
    s.todo.clear();
    try {
      Job& j = *s.job;
      GenerationOptions g = j.gen;
      g.cancel = nullptr;  // the loop checks the stream's flag itself
      Stream* out = s.stream.get();
      g.on_token = [out](int64_t, const std::string& text) { out->push(text); };
      s.dec = std::make_unique<Decoder>(*m_, g, context_);
      s.dec->result().timings.prompt_tokens = static_cast<int64_t>(j.ids.size());
      s.dec->result().timings.image_tiles = static_cast<int64_t>(j.tags.size()) / m_->image_tokens_per_tile();
      SAILVL_CHECK(static_cast<int64_t>(j.ids.size()) <= context_, ContextOverflow, "the prompt needs ", j.ids.size(),
                   " tokens but a slot holds ", context_);
      // What the cache already holds stays; the images whose rows the rest needs are encoded first.
      const int64_t keep = std::min<int64_t>(best_prefix, static_cast<int64_t>(j.ids.size()) - 1);
      s.seq.truncate(keep);
      s.dec->result().timings.cached_tokens = keep;
      const int64_t k0 = std::count(j.ids.begin(), j.ids.begin() + keep, m_->special().img_context);
      s.first_needed = static_cast<int64_t>(j.images.size());
      for (size_t i = 0; i < j.images.size(); ++i) {
        const int64_t end = i + 1 < j.images.size() ? j.first_row[i + 1] : static_cast<int64_t>(j.tags.size());
        if (end > k0) {
          if (s.first_needed == static_cast<int64_t>(j.images.size())) s.first_needed = static_cast<int64_t>(i);
          s.todo.push_back(i);
        }
      }
    } catch (const Error& e) {
      finish(s, e);
    }
  }
}

void Scheduler::decode_step() {
  std::vector<Slot*> live;
  for (auto& s : slots_)
    if (s->busy() && s->decoding) live.push_back(s.get());
  if (live.empty()) return;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<Sequence*> seqs;
  std::vector<int64_t> tokens;
  for (Slot* s : live) {
    seqs.push_back(&s->seq);
    tokens.push_back(s->next_token);
  }
  const int64_t B = static_cast<int64_t>(live.size());
  const Tensor logits = step_logits_.narrow(0, 0, B);
  try {
    StageScope stage("decode");
    Sequence::step_batch(seqs, tokens, ws_, logits);
    model::finish_stage(m_->device());
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::Cuda) throw;  // a sticky CUDA error leaves the device unusable
    for (Slot* s : live) finish(*s, e);      // the batch failed (e.g. out of memory): its requests get 500
    return;
  }
  ++decode_steps_;
  batched_rows_ += static_cast<uint64_t>(B);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  decode_us_ += static_cast<uint64_t>(ms * 1000);
  for (int64_t b = 0; b < B; ++b) {
    Slot& s = *live[static_cast<size_t>(b)];
    s.dec->result().timings.token_ms.push_back(ms);
    try {
      const std::optional<int64_t> next = s.dec->next(logits.select(0, b), s.seq.length());
      if (next)
        s.next_token = *next;
      else
        finish(s, std::nullopt);
    } catch (const Error& e) {
      finish(s, e);
    }
  }
}

void Scheduler::admission_work() {
  // The least recently admitted slot that is not generating yet gets one unit of work.
  Slot* s = nullptr;
  for (auto& c : slots_)
    if (c->busy() && !c->decoding && (!s || c->last_used < s->last_used)) s = c.get();
  if (!s) return;
  Job& j = *s->job;
  Timings& tm = s->dec->result().timings;
  try {
    model::RunControl ctl;
    if (!s->todo.empty()) {  // one image per iteration
      const size_t i = s->todo.front();
      const ImageInput& img = j.images[i];
      const ImageKey key{img.key};
      if (std::optional<Tensor> hit = cache_->find(key)) {
        s->rows[i] = *hit;
      } else {
        image::PreprocessOptions p = j.preprocess;
        if (img.frame)
          p.max_tiles = 1;
        else if (img.max_tiles > 0)
          p.max_tiles = img.max_tiles;
        p.dtype = DType::BF16;
        const Tensor pixels = image::preprocess_decoded({*img.rgb}, p).pixels.to(m_->device());
        model::ImageStages st;
        const Tensor rows = m_->encode_images(pixels, &st, ctl);
        tm.vision_ms += st.vision_ms;
        tm.projector_ms += st.projector_ms;
        tm.encoded_tiles += pixels.size(0);
        s->rows[i] = rows.reshape({rows.size(0) * rows.size(1), rows.size(2)});
        cache_->insert(key, s->rows[i]);
      }
      s->todo.erase(s->todo.begin());
      return;
    }
    // One prefill chunk of at most prefill_budget tokens; the last one gives the first token's logits.
    const int64_t S = static_cast<int64_t>(j.ids.size());
    const int64_t end = std::min(S, s->seq.length() + opt_.prefill_budget);
    auto rows_from = [&](int64_t k0) -> ImageRows {
      const size_t f = static_cast<size_t>(s->first_needed);
      SAILVL_CHECK(f < j.images.size() && j.first_row[f] <= k0, Internal, "scheduler: image rows from ", k0,
                   " not encoded");
      if (f + 1 == j.images.size()) return {s->rows[f], j.first_row[f]};
      int64_t n = 0;
      for (size_t i = f; i < j.images.size(); ++i) n += s->rows[i].size(0);
      Tensor cat = Tensor::empty({n, s->rows[f].size(1)}, s->rows[f].dtype(), s->rows[f].device());
      int64_t at = 0;
      for (size_t i = f; i < j.images.size(); ++i) {
        cat.narrow(0, at, s->rows[i].size(0)).copy_from(s->rows[i]);
        at += s->rows[i].size(0);
      }
      return {cat, j.first_row[f]};
    };
    const auto t0 = std::chrono::steady_clock::now();
    const Tensor logits = end == S ? step_logits_.select(0, 0) : Tensor();
    s->seq.prefill(std::span<const int64_t>(j.ids).first(static_cast<size_t>(end)), j.tags, rows_from, logits, ctl);
    tm.prefill_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (end < S) return;
    const std::optional<int64_t> next = s->dec->next(logits, s->seq.length());  // the first token
    {
      std::lock_guard<std::mutex> lock(s->stream->mu_);
      s->stream->first_token_ = std::chrono::steady_clock::now();
      s->stream->has_first_ = true;
    }
    if (!next) {
      finish(*s, std::nullopt);
      return;
    }
    s->next_token = *next;
    s->decoding = true;
    s->t_decode = std::chrono::steady_clock::now();
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::Cuda) throw;
    finish(*s, e);
  }
}

void Scheduler::finish(Slot& s, std::optional<Error> e) {
  GenerationResult r;
  if (s.dec) {
    s.dec->finish();
    r = std::move(s.dec->result());
    if (s.decoding)
      r.timings.decode_ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s.t_decode).count();
  }
  if (e) s.seq.clear();  // after a failure nothing in the cache is trusted
  std::shared_ptr<Stream> out = std::move(s.stream);
  s.job.reset();
  s.dec.reset();
  s.decoding = false;
  s.todo.clear();
  s.rows.clear();
  out->finish(std::move(r), std::move(e));
}

}  // namespace sailvl::runtime
