// Continuous batching: one scheduler thread serves many requests on one model.
//
//   Scheduler sched(model, {.slots = 4});
//   std::shared_ptr<Stream> s = sched.submit(std::move(job));   // nullptr: the queue is full (429)
//   while (s->wait_text(text)) send(text);                     // the answer as it is generated
//
// Each iteration of the loop does, in this order:
//   1. admission: queued jobs go to free slots — the slot whose cached tokens share the longest
//      prefix with the job's prompt (a conversation continuing where it left off), else the least
//      recently used one; a slot is a Sequence (its own KV cache) of up to `context` tokens;
//   2. one decode step for every slot that is generating, as ONE batched forward: the linears run
//      on all B rows at once ([B, D] GEMMs, so each weight is read once for all requests), attention
//      runs per sequence over its own KV cache (model/qwen2.cpp, SeqRows);
//   3. one unit of admission work for one slot that is not generating yet: encoding one of its
//      images (shared ImageCache: a picture seen before costs nothing) or prefilling one chunk of at
//      most `prefill_budget` prompt tokens — so running streams keep flowing while a long image
//      prompt is admitted. A slot whose prefill is complete samples its first token.
// Each answer's sampling, stop rules and streamed text are a runtime::Decoder, as in generate().
//
// Failures stay with their request: a non-finite logit, a bad image or an exception in one
// request's work ends that request with its error (HTTP 500/400) and frees its slot; the loop goes
// on. A cancelled stream (client gone) is dropped within one iteration. Batching does not change
// answers beyond summation order (tests/test_scheduler.cpp compares with requests served alone).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "model/sail_vl.h"
#include "runtime/generate.h"
#include "runtime/image_cache.h"
#include "runtime/sequence.h"
#include "runtime/session.h"

namespace sailvl::runtime {

// A request, ready to run: its prompt ids, the placeholder tags and the images they need.
struct Job {
  std::vector<int64_t> ids;
  std::vector<uint64_t> tags;      // one per <IMG_CONTEXT> (Session-style: image key and row)
  std::vector<ImageInput> images;  // in prompt order, keys set, decoded
  std::vector<int64_t> first_row;  // placeholder index of each image's first row
  image::PreprocessOptions preprocess;
  GenerationOptions gen;  // sampling, max_new_tokens, stop strings (callbacks are the scheduler's)
};

// One request's output channel, shared between the scheduler (writer) and its HTTP thread (reader).
class Stream {
 public:
  // Blocks until new text or the end: true with `text` (possibly empty) while running; false once
  // finished and every piece was taken. `timeout`: returns true with empty text when it passes.
  bool wait_text(std::string& text, std::chrono::milliseconds timeout = std::chrono::milliseconds(200));
  void cancel() { cancel_ = true; }  // the client is gone: stop within one iteration
  bool cancelled() const { return cancel_; }
  bool finished() const;
  // After the end: the result (tokens, stop reason, timings) or the error that ended it.
  const GenerationResult& result() const { return result_; }
  const std::optional<Error>& error() const { return error_; }
  int64_t prompt_tokens() const { return prompt_tokens_; }
  // Seconds from submit() to the first token (negative when none came).
  double ttft_seconds() const;

 private:
  friend class Scheduler;
  void push(const std::string& text);
  void finish(GenerationResult r, std::optional<Error> e);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string pending_;
  bool done_ = false;
  std::atomic<bool> cancel_{false};
  GenerationResult result_;
  std::optional<Error> error_;
  int64_t prompt_tokens_ = 0;
  std::chrono::steady_clock::time_point submitted_{}, first_token_{};
  bool has_first_ = false;
};

struct SchedulerOptions {
  int64_t slots = 1;                        // sequences served at once (--parallel)
  int64_t context = 0;                      // per slot; 0 = max_position_embeddings
  int64_t max_queue = 64;                   // waiting jobs before submit() refuses
  int64_t prefill_budget = 0;               // prompt tokens prefilled per iteration; 0 = prefill_chunk_tokens(device)
  std::shared_ptr<ImageCache> image_cache;  // nullptr: a new one with the device default bound
};

// Counters for /metrics (read without stopping the loop).
struct SchedulerStats {
  int64_t queued = 0, active = 0, slots = 0;
  int64_t kv_tokens = 0, kv_capacity = 0;  // tokens held in all slots' caches / their total context
  uint64_t image_cache_bytes = 0;
  uint64_t iterations = 0, batched_rows = 0;  // decode rows over all iterations (mean batch = rows / steps)
  uint64_t decode_steps = 0;
  double decode_seconds = 0;  // wall time inside the batched decode forwards
};

class Scheduler {
 public:
  Scheduler(const model::SailVL& m, SchedulerOptions opt);
  ~Scheduler();  // stops the loop (cancels what still runs)
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queue a job; nullptr when `max_queue` jobs are waiting already (or the scheduler is draining).
  std::shared_ptr<Stream> submit(Job job);
  // Stop admitting new jobs; let running ones finish for up to `grace`, then cancel them. Returns
  // when no job is left.
  void drain(std::chrono::milliseconds grace);
  SchedulerStats stats() const;
  const model::SailVL& model() const { return *m_; }
  ImageCache& image_cache() { return *cache_; }
  int64_t context() const { return context_; }

 private:
  struct Slot;
  struct Waiting {
    Job job;
    std::shared_ptr<Stream> stream;
  };
  void loop();
  bool iterate();  // one iteration; false when there was nothing to do
  void admit();
  void decode_step();
  void admission_work();
  void finish(Slot& s, std::optional<Error> e);

  const model::SailVL* m_;
  SchedulerOptions opt_;
  int64_t context_ = 0;
  std::shared_ptr<ImageCache> cache_;
  std::vector<std::unique_ptr<Slot>> slots_;
  model::LlmWorkspace ws_;  // the batched decode step's workspace (slots rows)
  Tensor step_ids_, step_emb_, step_logits_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Waiting> queue_;
  bool stop_ = false, draining_ = false;
  std::atomic<uint64_t> iterations_{0}, batched_rows_{0}, decode_steps_{0}, decode_us_{0};
  uint64_t tick_ = 0;
  std::thread thread_;
};

}  // namespace sailvl::runtime
